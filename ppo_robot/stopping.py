"""When training may stop: the `stop_at` target held over consecutive evaluations, and the
command's clock that `time_to_target_s` is read on (from the process's start, as the user
waits: interpreter start-up, imports and config composition included).

Floor: algo (read by the runner; imports nothing of envs).
"""

from __future__ import annotations

import os
import time

from ppo_robot.config import StopAt


def process_age_s() -> float | None:
    """Seconds since this process started (Linux: /proc/self/stat's start time against
    /proc/uptime, both since boot, 10 ms resolution); None where /proc cannot tell."""
    try:
        with open("/proc/self/stat") as f:
            # fields after the command name in parentheses (which may hold spaces)
            rest = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - int(rest[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


_IMPORTED_AT = time.perf_counter()
_AGE_AT_IMPORT = process_age_s()
PROCESS_START = _IMPORTED_AT - (_AGE_AT_IMPORT if _AGE_AT_IMPORT is not None else 0.0)
"""The process's start on time.perf_counter()'s clock (where /proc is missing: this
module's import, which the training command does first)."""


def since_start_s() -> float:
    """Wall seconds since the command started."""
    return time.perf_counter() - PROCESS_START


class TargetWatch:
    """Counts consecutive evaluations that meet the target; remembers when the streak that
    held began (the first of its evaluations: `time_to_target_s`, `target_step`)."""

    def __init__(self, target: StopAt | None) -> None:
        self.target = target if target is not None and target.enabled else None
        self.streak = 0
        self._streak_start: tuple[float, int] | None = None
        self.held: tuple[float, int] | None = None
        """(seconds since the command started, env steps) at the first evaluation of the
        first streak that held; None until one has."""

    def observe(self, success_rate: float | None, return_mean: float, step: int) -> bool:
        """One periodic evaluation; True when the target has now held for `evals` in a row."""
        if self.target is None:
            return False
        if not self.target.reached(success_rate, return_mean):
            self.streak, self._streak_start = 0, None
            return False
        if self.streak == 0:
            self._streak_start = (since_start_s(), step)
        self.streak += 1
        if self.streak >= self.target.evals and self.held is None:
            self.held = self._streak_start
        return self.streak >= self.target.evals

    def summary(self) -> dict[str, float | int | None]:
        """The summary's `time_to_target_s` and `target_step` (null where never held)."""
        if self.held is None:
            return {"time_to_target_s": None, "target_step": None}
        return {"time_to_target_s": round(self.held[0], 2), "target_step": self.held[1]}
