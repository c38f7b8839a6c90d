"""The robots this package ships, by name. A new robot adds one line here."""

from __future__ import annotations

from collections.abc import Callable

from envs.furuta import furuta
from envs.spec import RobotSpec, SpecError

ROBOTS: dict[str, Callable[..., RobotSpec]] = {"furuta": furuta}


def get_robot(name: str, control_hz: float | None = None) -> RobotSpec:
    """The spec of a shipped robot, optionally at another control rate."""
    if name not in ROBOTS:
        raise SpecError(f"unknown robot '{name}' (known: {sorted(ROBOTS)})")
    spec = ROBOTS[name]()
    return spec.with_rate(control_hz) if control_hz else spec
