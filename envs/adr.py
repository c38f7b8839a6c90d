"""Automatic domain randomization (ADR, OpenAI et al. 2019, "Solving Rubik's Cube with a
Robot Hand", section 5): each randomized parameter's range starts at its nominal value and
grows or shrinks with the policy's success at the range's edges.

A share of the envs is set aside to probe: each such env runs its episode with one
parameter at one edge of its current range (the rest drawn inside theirs). After
`episodes` probes of an edge, success at or above `widen_above` moves that edge out by the
parameter's `step` (never past its hard `bounds`), success below `narrow_below` moves it
in (never past the nominal); the edge's probe buffer then starts over. The state (ranges
and buffers) is plain data, saved in checkpoints and restored bit for bit on resume.

The config (`adaptive:` in a randomization file, `envs.randomization`):

    adaptive:
      share: 0.15          # fraction of envs probing an edge
      episodes: 16         # probes of an edge per decision
      widen_above: 0.8     # edge success >= this: widen by `step`
      narrow_below: 0.5    # edge success < this: narrow by `step`
      params:
        pend_mass: {nominal: 1.0, bounds: [0.4, 2.0], step: 0.05}
        latency_s: {nominal: 0.005, bounds: [0.0, 0.05], step: 0.0025}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SIDES = ("low", "high")


class AdrError(ValueError):
    """An `adaptive:` config that cannot work (the message names the key)."""


@dataclass(frozen=True)
class AdrParam:
    """One adaptive parameter: where its range starts and how far and fast it may grow."""

    name: str
    nominal: float
    lower: float
    """Hard bound: the low edge never goes below it."""
    upper: float
    """Hard bound: the high edge never goes above it."""
    step: float


@dataclass(frozen=True)
class AdrConfig:
    params: tuple[AdrParam, ...]
    share: float = 0.15
    episodes: int = 16
    widen_above: float = 0.8
    narrow_below: float = 0.5


def parse_adr(cfg: Any, where: str = "randomization.adaptive") -> AdrConfig:
    """A plain mapping -> AdrConfig; bad values raise AdrError naming the key."""
    if not isinstance(cfg, dict):
        raise AdrError(f"{where}: expected a mapping")
    extra = set(cfg) - {"share", "episodes", "widen_above", "narrow_below", "params"}
    if extra:
        raise AdrError(f"{where}: unknown key '{sorted(extra)[0]}'")
    share = _number(cfg.get("share", 0.15), f"{where}.share")
    if not 0.0 < share < 1.0:
        raise AdrError(f"{where}.share: must be in (0, 1), got {share}")
    episodes = cfg.get("episodes", 16)
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise AdrError(f"{where}.episodes: must be a whole number >= 1, got {episodes!r}")
    hi = _number(cfg.get("widen_above", 0.8), f"{where}.widen_above")
    lo = _number(cfg.get("narrow_below", 0.5), f"{where}.narrow_below")
    if not 0.0 <= lo < hi <= 1.0:
        raise AdrError(
            f"{where}: thresholds out of order: need 0 <= narrow_below ({lo}) < "
            f"widen_above ({hi}) <= 1"
        )
    params = cfg.get("params") or {}
    if not isinstance(params, dict) or not params:
        raise AdrError(f"{where}.params: give at least one parameter")
    out = tuple(_param(str(k), v, f"{where}.params.{k}") for k, v in params.items())
    return AdrConfig(out, share, episodes, hi, lo)


def check_names(cfg: AdrConfig, known: set[str], where: str) -> None:
    """Every adaptive parameter is one the randomization draws (`known`)."""
    for p in cfg.params:
        if p.name not in known:
            raise AdrError(
                f"{where}.params.{p.name}: not a parameter of this randomization "
                f"(one of {sorted(known)})"
            )


def _number(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise AdrError(f"{where}: expected a number, got {v!r}")
    return float(v)


def _param(name: str, p: Any, where: str) -> AdrParam:
    if not isinstance(p, dict):
        raise AdrError(f"{where}: expected a mapping {{nominal, bounds, step}}")
    extra = set(p) - {"nominal", "bounds", "step"}
    if extra:
        raise AdrError(f"{where}: unknown key '{sorted(extra)[0]}'")
    for k in ("nominal", "bounds", "step"):
        if k not in p:
            raise AdrError(f"{where}: missing '{k}'")
    nominal = _number(p["nominal"], f"{where}.nominal")
    b = p["bounds"]
    if not isinstance(b, list | tuple) or len(b) != 2:
        raise AdrError(f"{where}.bounds: expected [low, high], got {b!r}")
    lower, upper = (_number(x, f"{where}.bounds") for x in b)
    if not lower <= nominal <= upper:
        raise AdrError(f"{where}.bounds: [{lower}, {upper}] does not contain nominal {nominal}")
    step = _number(p["step"], f"{where}.step")
    if not step > 0:
        raise AdrError(f"{where}.step: must be > 0, got {step}")
    return AdrParam(name, nominal, lower, upper, step)


@dataclass
class AdrState:
    """The current ranges and each edge's probe buffer (row: parameter, column: side)."""

    config: AdrConfig
    low: np.ndarray = field(init=False)
    high: np.ndarray = field(init=False)
    hits: np.ndarray = field(init=False)
    """(n_params, 2) successes among the edge's pending probes."""
    count: np.ndarray = field(init=False)
    """(n_params, 2) pending probes of the edge."""

    def __post_init__(self) -> None:
        nominal = np.array([p.nominal for p in self.config.params], dtype=np.float64)
        self.low, self.high = nominal.copy(), nominal.copy()
        self.hits = np.zeros((len(nominal), 2), dtype=np.int64)
        self.count = np.zeros((len(nominal), 2), dtype=np.int64)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.config.params)

    def edge(self, param: int, side: int) -> float:
        return float(self.low[param] if side == 0 else self.high[param])

    def probe_count(self, n_envs: int) -> int:
        """How many of `n_envs` probe an edge (at least one)."""
        return max(1, int(round(self.config.share * n_envs)))

    def assign(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """(n, 2) int: (parameter, side) for `n` probing episodes, uniform over the edges."""
        k = len(self.config.params)
        pick = rng.integers(0, 2 * k, size=n)
        return np.stack([pick // 2, pick % 2], axis=1)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """(n, n_params) values uniform inside the current ranges."""
        return rng.uniform(self.low, self.high, size=(n, len(self.low)))

    def record(self, param: int, side: int, success: bool) -> int:
        """One finished probe of an edge. Returns +1 if the edge widened, -1 if it
        narrowed, 0 if no decision was due."""
        self.hits[param, side] += int(bool(success))
        self.count[param, side] += 1
        cfg = self.config
        if self.count[param, side] < cfg.episodes:
            return 0
        rate = self.hits[param, side] / self.count[param, side]
        self.hits[param, side] = self.count[param, side] = 0
        if rate >= cfg.widen_above:
            return self._move(param, side, +1)
        if rate < cfg.narrow_below:
            return self._move(param, side, -1)
        return 0

    def _move(self, param: int, side: int, outward: int) -> int:
        p = self.config.params[param]
        if side == 0:
            new = self.low[param] - outward * p.step
            new = min(max(new, p.lower), p.nominal)
            moved, self.low[param] = new != self.low[param], new
        else:
            new = self.high[param] + outward * p.step
            new = max(min(new, p.upper), p.nominal)
            moved, self.high[param] = new != self.high[param], new
        return outward if moved else 0

    def ranges(self) -> dict[str, list[float]]:
        """{parameter: [low, high]}: what a policy was trained against."""
        pairs = zip(self.names, self.low, self.high, strict=True)
        return {n: [float(a), float(b)] for n, a, b in pairs}

    def envelope(self) -> dict[str, Any]:
        """A `state_dict` whose ranges are the hard bounds: the whole envelope the ranges
        may grow to, the same for every evaluation of a run (so evaluations compare)."""
        d = self.state_dict()
        d["low"] = [p.lower for p in self.config.params]
        d["high"] = [p.upper for p in self.config.params]
        return d

    def state_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "low": self.low.tolist(),
            "high": self.high.tolist(),
            "hits": self.hits.tolist(),
            "count": self.count.tolist(),
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        if list(d["names"]) != list(self.names):
            raise AdrError(
                f"adaptive ranges saved for {d['names']}, the config has {list(self.names)}"
            )
        self.low = np.array(d["low"], dtype=np.float64)
        self.high = np.array(d["high"], dtype=np.float64)
        self.hits = np.array(d["hits"], dtype=np.int64)
        self.count = np.array(d["count"], dtype=np.int64)
