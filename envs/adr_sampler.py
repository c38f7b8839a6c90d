"""Automatic domain randomization in the engine: which envs probe an edge, what each env's
next episode draws, and the ranges' update from the probes' success.

The last `AdrState.probe_count(num_envs)` envs of a batch are the probes. At each reset a
probe env is given one (parameter, side) and runs its episode with that parameter at that
edge of its current range and every other adaptive parameter uniform inside its range; the
other envs draw every adaptive parameter uniform inside its range. When a probe's episode
ends its success goes to the edge's buffer (`AdrState.record`), if that edge has not moved
since the episode began. The state and the probes'
assignments are part of the env's snapshot, so a resumed run goes on bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.adr import AdrConfig, AdrState
from envs.randomization import Dist


class AdrSampler:
    """The adaptive ranges of one env batch."""

    def __init__(self, config: AdrConfig, num_envs: int) -> None:
        self.state = AdrState(config)
        self.num_envs = num_envs
        self.first_probe = num_envs - self.state.probe_count(num_envs)
        """Envs at or above this index are probes."""
        self.assigned = np.full((num_envs, 2), -1, dtype=np.int64)
        """Per env, the (parameter, side) its running episode probes; -1: none."""
        self.probed = np.zeros(num_envs, dtype=np.float64)
        """Per probe env, the edge value its running episode was given: a result counts
        only while the edge is still there (an episode started before the edge moved tested
        the old edge, and would bias the new edge's buffer)."""
        self.widened = 0
        self.narrowed = 0
        self.frozen = False
        """True: no probes, no updates: every env draws inside the ranges as they are (an
        evaluation of what training reached)."""

    def freeze(self, ranges: dict[str, Any] | None = None) -> None:
        """Stop probing and adapting; `ranges` (a `state_dict`, e.g. from a checkpoint or
        the training env) sets the ranges first."""
        if ranges is not None:
            self.state.load_state_dict(ranges)
        self.frozen = True
        self.first_probe = self.num_envs
        self.assigned[:] = -1

    def dists(self, rng: np.random.Generator, env: int) -> dict[str, Dist]:
        """The distributions of env `env`'s next episode, by parameter key."""
        s = self.state
        out = {
            n: Dist("uniform", low=float(lo), high=float(hi))
            for n, lo, hi in zip(s.names, s.low, s.high, strict=True)
        }
        if env >= self.first_probe:
            param, side = (int(x) for x in s.assign(rng, 1)[0])
            self.assigned[env] = (param, side)
            self.probed[env] = s.edge(param, side)
            out[s.names[param]] = Dist("fixed", value=self.probed[env])
        return out

    def finished(self, ids: np.ndarray, success: np.ndarray) -> None:
        """Episodes of envs `ids` ended with `success`: the probes' results recorded."""
        if self.frozen:
            return
        for i, ok in zip(ids, success, strict=True):
            param, side = self.assigned[i]
            self.assigned[i] = -1
            if param < 0 or self.probed[i] != self.state.edge(int(param), int(side)):
                continue
            moved = self.state.record(int(param), int(side), bool(ok))
            self.widened += moved > 0
            self.narrowed += moved < 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state.state_dict(),
            "assigned": self.assigned.copy(),
            "probed": self.probed.copy(),
            "moves": (self.widened, self.narrowed),
        }

    def restore(self, d: dict[str, Any]) -> None:
        self.state.load_state_dict(d["state"])
        self.assigned[...] = d["assigned"]
        self.probed[...] = d["probed"]
        self.widened, self.narrowed = d["moves"]
