"""The fixed-rate control loop. It owns its clock; link, command source, safety layer and
log are handed to it.

Each tick, at an absolute deadline (no drift; sleep, then a short spin for precision):
read the newest STATE -> check it against the robot's safe envelope -> observation by the
robot spec -> command source (the ONNX policy) -> safety -> COMMAND -> hand the tick to the
logger. Counts missed deadlines, measures
period error, state age (controller timestamp vs host clock) and per-stage compute time.
Time is injected (`clock` in ns, `sleep` in s) so tests run it on a virtual clock; in a
deploy the clock is the rollout log's, so every tick and STATE is stamped on the log's one
timeline (`firmware_bridge/logs/rollout_log.py`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from firmware_bridge.host.safety import SafetyFault, SafetyLayer
from firmware_bridge.host.transport import FramedTransport, Transport
from firmware_bridge.wire.link import LinkError
from firmware_bridge.wire.protocol import (
    RESET_AFTER_OLD_STATES,
    Fault,
    FaultCode,
    Info,
    State,
)

log = logging.getLogger(__name__)


def pct(x: np.ndarray, q: float) -> float | None:
    """Percentile of the finite values, rounded for a summary; None when there are none."""
    x = x[np.isfinite(x)]
    return round(float(np.percentile(x, q)), 3) if x.size else None


@dataclass
class LoopResult:
    ticks: int = 0
    missed_deadlines: int = 0
    period_error_us: np.ndarray = field(default_factory=lambda: np.zeros(0))
    compute_us: np.ndarray = field(default_factory=lambda: np.zeros(0))
    state_age_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    states_received: int = 0
    states_out_of_order: int = 0
    """STATEs not newer than the newest one seen (duplicated, delayed, reordered): ignored."""
    limited_ticks: int = 0
    fault: SafetyFault | None = None
    stopped_by: str = "duration"
    sensors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    """(ticks, n_sensors) the sensors each tick used (for the success test)."""


class _Run:
    """One run's buffers and counters, shared by the per-tick steps of `ControlLoop.run`
    (slots: fixed attributes, no per-tick dictionary)."""

    __slots__ = (
        "n",
        "tick0",
        "tick",
        "res",
        "period_err",
        "compute",
        "age",
        "sensors_used",
        "obs",
        "state",
        "state_seq",
        "last_seq",
        "behind",
        "offset_ns",
        "overruns",
        "t_start",
        "origin",
        "state_host_ns",
        "deadline",
        "next_status",
    )

    def __init__(self, spec, n: int, first: State | None, first_seq: int, tick0: int) -> None:
        self.n, self.tick0, self.tick = n, tick0, 0
        self.period_err = np.zeros(n)
        self.compute = np.zeros(n)
        self.age = np.full(n, np.nan)
        self.sensors_used = np.zeros((n, spec.n_sensors))
        self.res = LoopResult()
        self.obs = np.zeros(spec.obs_dim, dtype=np.float32)
        self.state: State | None = first
        self.state_seq = first_seq
        self.last_seq: int | None = first_seq if first is not None else None
        self.behind = 0  # STATEs in a row older than the newest
        self.offset_ns: float | None = None  # min over STATEs of (host receive - controller time)
        self.overruns = 0

    def start(self, t_start: int, origin_ns: int | None, status_every_ns: int) -> None:
        """The run's start time on the loop's clock: the first deadline, host-time origin."""
        self.t_start = t_start
        self.origin = t_start if origin_ns is None else origin_ns
        self.state_host_ns = t_start
        self.deadline = t_start
        self.next_status = t_start + status_every_ns


def _controller_fault(msg: Fault) -> SafetyFault:
    """The fault a controller's FAULT message stops the loop with (unknown codes by number)."""
    code = FaultCode(msg.code).name if msg.code in FaultCode._value2member_map_ else str(msg.code)
    return SafetyFault(f"controller_{code.lower()}", f"controller fault {code}: {msg.text}")


class ControlLoop:
    def __init__(
        self,
        link,
        spec,
        source: Callable[[np.ndarray, np.ndarray, int], np.ndarray],
        safety: SafetyLayer,
        rlog,
        rate_hz: float,
        duration_s: float,
        stale_state_ms: float,
        max_consecutive_overruns: int,
        clock: Callable[[], int] = time.monotonic_ns,
        sleep: Callable[[float], None] = time.sleep,
        spin_us: float = 300.0,
        boot_id: int | None = None,
        status: Callable[[dict], None] | None = None,
        status_every_s: float = 1.0,
        prime: bool = True,
        goal: np.ndarray | None = None,
    ) -> None:
        """`goal`: the run's goal (goal_dim,) for a goal-directed task (a reach target);
        the observation also reads the last command sent (`safety.last`)."""
        self.link: Transport = (
            link if isinstance(link, Transport) else FramedTransport(link, spec.n_actuators)
        )
        self.spec, self.source, self.safety, self.rlog = spec, source, safety, rlog
        self.period_ns = int(round(1e9 / rate_hz))
        self.n_ticks = int(round(duration_s * rate_hz))
        self.stale_ns = int(stale_state_ms * 1e6)
        self.max_overruns = max_consecutive_overruns
        self.clock, self.sleep = clock, sleep
        self.spin_ns = int(spin_us * 1000)
        self.boot_id = boot_id
        self.status = status
        self.status_every_ns = int(status_every_s * 1e9)
        self.stop_requested: str | None = None
        self.prime = prime
        self.goal = None if goal is None else np.asarray(goal, np.float64).reshape(1, -1)
        # Built once: views of the goal and of `safety.last`, which the safety layer
        # refreshes in place, so observing allocates no task inputs per tick.
        self.inputs = spec.inputs(1, self.goal, safety.last[None])

    def request_stop(self, why: str) -> None:
        self.stop_requested = why

    def _log_state(self, tick: int, t_ns: int, seq: int, msg: State) -> None:
        self.rlog.state(t_ns, tick, seq, msg)

    def run(
        self,
        first: State | None = None,
        first_seq: int = 0,
        tick0: int = 0,
        origin_ns: int | None = None,
        n_ticks: int | None = None,
    ) -> LoopResult:
        """Run until the duration, a stop request or a fault. `first`: the newest STATE
        seen before the loop started (taken as received at the start). `origin_ns`: the
        origin of host times on `clock` (the rollout log's; default: this run's start). A
        run resumed after a recovery passes `tick0`, so tick numbers continue, and the ticks
        left in `n_ticks`."""
        r = _Run(self.spec, self.n_ticks if n_ticks is None else n_ticks, first, first_seq, tick0)
        t_start = self.clock()
        self.started_ns = t_start
        r.start(t_start, origin_ns, self.status_every_ns)
        if first is not None:
            self._log_state(tick0, t_start, first_seq, first)
        try:
            while r.tick < r.n:
                if self.stop_requested:
                    r.res.stopped_by = self.stop_requested
                    break
                t0 = self._wait(r)
                self._read(r, t0)
                missed = self._command(r, t0, self._checked_state(r, t0))
                self._pace(r, t0, missed)
        except SafetyFault as f:
            r.res.fault = f
            r.res.stopped_by = "fault"
        except LinkError as e:  # the port went away (a pulled cable): the controller's
            r.res.fault = SafetyFault("link_lost", str(e))  # watchdog makes it safe
            r.res.stopped_by = "fault"
        return self._result(r)

    def _wait(self, r: _Run) -> int:
        """Wait for the tick's deadline (sleep, warm the caches, then spin); the tick's
        start time, its period error recorded."""
        deadline = r.deadline
        now = self.clock()
        remaining = deadline - now
        if remaining > self.spin_ns:
            self.sleep((remaining - self.spin_ns) / 1e9)
        state = r.state
        if self.prime and state is not None:
            # After a sleep of a whole period the tick's code and data are out of
            # the CPU caches (measured: 250 us cold vs 80 us warm for observation,
            # policy and safety). Run the pure stages once on the last state before
            # the deadline; their outputs are overwritten by the real tick.
            self.spec.observe(state.sensors[None], inputs=self.inputs)
            warm = self.source(r.obs, state.sensors, r.tick)
            self.safety.filter(warm, (deadline - r.t_start) / 1e9, commit=False)
            self.link.prime(r.state_seq, self.safety.last)
        while self.clock() < deadline:
            pass
        t0 = self.clock()
        r.period_err[r.tick] = (t0 - deadline) / 1e3
        return t0

    def _read(self, r: _Run, t0: int) -> None:
        """Take the newest STATE from the link; raise on a controller fault or reset."""
        for seq, msg in self.link.poll():
            if isinstance(msg, State):
                last_seq = r.last_seq
                ahead = (seq - last_seq) & 0xFFFFFFFF if last_seq is not None else 1
                if ahead == 0 or ahead >= 0x80000000:  # not newer (seq wraps)
                    r.res.states_out_of_order += 1
                    r.behind = r.behind + 1 if ahead else r.behind
                    if r.behind >= RESET_AFTER_OLD_STATES:
                        raise SafetyFault(
                            "controller_reset",
                            f"controller reset: STATE seq went back from {last_seq} to {seq}",
                        )
                    continue
                r.behind = 0
                r.last_seq = seq
                r.state, r.state_seq, r.state_host_ns = msg, seq, t0
                r.res.states_received += 1
                d = t0 - msg.t_us * 1000
                r.offset_ns = d if r.offset_ns is None else min(r.offset_ns, d)
                self._log_state(r.tick0 + r.tick, t0, seq, msg)
            elif isinstance(msg, Fault):
                raise _controller_fault(msg)
            elif isinstance(msg, Info) and self.boot_id is not None and msg.boot_id != self.boot_id:
                raise SafetyFault(
                    "controller_reset", f"controller reset: boot id {msg.boot_id:08x}"
                )

    def _checked_state(self, r: _Run, t0: int) -> State:
        """The STATE this tick acts on, after the stale, latched-fault and envelope
        checks; on the first tick the soft start begins from it."""
        state = r.state
        if state is None:
            raise SafetyFault("stale_state", "no STATE received since enable")
        if t0 - r.state_host_ns > self.stale_ns:
            raise SafetyFault(
                "stale_state",
                f"no new STATE for {(t0 - r.state_host_ns) / 1e6:.1f} ms (limit {self.stale_ns / 1e6:g} ms)",
            )
        if state.fault:
            raise SafetyFault(
                "controller_fault", f"controller reports latched fault {int(state.fault)}"
            )
        self.safety.check_state(state.sensors)
        if r.tick == 0:  # soft start ramps from the pose measured now
            self.safety.begin(state.sensors)
        return state

    def _command(self, r: _Run, t0: int, state: State) -> bool:
        """Observation, policy, safety, COMMAND on the wire; the tick recorded and logged.
        Whether it missed its deadline."""
        tick, deadline, obs = r.tick, r.deadline, r.obs
        t1 = self.clock()
        sensors = state.sensors
        obs[:] = self.spec.observe(sensors[None], inputs=self.inputs)[0]
        t2 = self.clock()
        action = self.source(obs, sensors, tick)
        t3 = self.clock()
        cmd, limited = self.safety.filter(action, (t0 - r.t_start) / 1e9)
        t4 = self.clock()
        seq_out = self.link.send_command(r.state_seq, cmd)
        t5 = self.clock()
        r.compute[tick] = (t5 - t0) / 1e3
        if r.offset_ns is not None:
            r.age[tick] = (t0 - (state.t_us * 1000 + r.offset_ns)) / 1e6
        r.sensors_used[tick] = sensors
        r.res.limited_ticks += limited
        missed = t5 > deadline + self.period_ns or r.period_err[tick] > self.period_ns / 2e3
        self.rlog.tick(
            t0,
            r.tick0 + tick,
            obs,
            np.asarray(action),
            cmd,
            seq_out,
            r.state_seq,
            limited,
            (
                (deadline - r.origin) / 1e9,
                float(r.period_err[tick]),
                float(r.age[tick]),
                float(r.compute[tick]),
                (t2 - t1) / 1e3,
                (t3 - t2) / 1e3,
                (t4 - t3) / 1e3,
                (t5 - t4) / 1e3,
                bool(missed),
            ),
        )
        return missed

    def _pace(self, r: _Run, t0: int, missed: bool) -> None:
        """End of a tick: count it, fault after too many missed deadlines in a row, move
        to the next deadline (skipping to the grid when far behind), report status."""
        r.tick += 1
        if missed:
            r.res.missed_deadlines += 1
            r.overruns += 1
            if r.overruns >= self.max_overruns:
                raise SafetyFault("overrun", f"{r.overruns} consecutive missed deadlines")
        else:
            r.overruns = 0
        deadline = r.deadline + self.period_ns
        now = self.clock()
        if now > deadline + self.period_ns:  # far behind: skip to the grid, count it
            skipped = (now - deadline) // self.period_ns
            deadline += skipped * self.period_ns
            r.res.missed_deadlines += int(skipped)
        r.deadline = deadline
        if self.status and now >= r.next_status:
            r.next_status += self.status_every_ns
            self._report(r, t0)

    def _report(self, r: _Run, t0: int) -> None:
        """The periodic status line: ticks so far, missed deadlines, jitter, bytes dropped."""
        self.status(
            {
                "t": (t0 - r.origin) / 1e9,
                "ticks": r.tick,
                "missed": r.res.missed_deadlines,
                "jitter_p99_us": float(np.percentile(np.abs(r.period_err[: r.tick]), 99)),
                "dropped": self.link.dropped,
            }
        )

    @staticmethod
    def _result(r: _Run) -> LoopResult:
        res, tick = r.res, r.tick
        res.ticks = tick
        res.period_error_us = r.period_err[:tick]
        res.compute_us = r.compute[:tick]
        res.state_age_ms = r.age[:tick]
        res.sensors = r.sensors_used[:tick]
        return res
