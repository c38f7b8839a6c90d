"""The fault proxy's resolved settings: `Rates` (the faults of one direction), `ProxySettings`
(both directions and the rest but the ports), and `settings_from_config`, which resolves a
composed `FaultProxyConfig` into them, checked once (UserError naming the key).

`Rates` is the one list of the per-direction fault keys: the YAML's `h2c` / `c2h` section
(`faultproxy_config.FaultDirectionSection`) is generated from its fields. Tools floor.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from firmware_bridge.wire.protocol import MsgType
from ppo_robot.cli import UserError

DIRECTIONS = ("h2c", "c2h")
"""host -> controller, controller -> host."""
FRAME_FAULTS = ("drop", "corrupt", "duplicate", "delay", "reorder")
"""Per-frame faults, mutually exclusive: one draw decides which (if any) hits a frame."""
KINDS = (*FRAME_FAULTS, "garbage", "stall", "bit_error", "close")
"""Every kind of fault the proxy injects and counts."""
_PROBABILITIES = (*FRAME_FAULTS, "garbage", "stall", "bit_error")


@dataclass(frozen=True)
class Rates:
    """The faults of one direction. The field order is the YAML's (configs/faultproxy.yaml)."""

    drop: float = 0.0
    """Probability per frame that it is dropped."""
    duplicate: float = 0.0
    """Probability per frame that it is sent twice."""
    delay: float = 0.0
    """Probability per frame that it is held `delay_ms` (later frames overtake it)."""
    reorder: float = 0.0
    """Probability per frame that it is swapped with the next frame."""
    corrupt: float = 0.0
    """Probability per frame that one of its bytes is altered (never into a 0x00 delimiter)."""
    garbage: float = 0.0
    """Probability per frame that a garbage frame (random bytes and a 0x00) goes before it."""
    stall: float = 0.0
    """Probability per frame that the line stalls for `stall_ms` from this frame on."""
    bit_error: float = 0.0
    """Probability per byte on the wire that one of its bits flips (delimiters included)."""
    delay_ms: float = 20.0
    """How long a delayed frame is held."""
    stall_ms: float = 200.0
    """How long a stall holds the line (frames are delivered when it ends)."""
    garbage_bytes: int = 32
    """Largest garbage frame, bytes before its 0x00."""
    stall_at_s: tuple[float, ...] = ()
    """Stall the line at these times (s after the host's first byte)."""

    def check(self, where: str) -> None:
        """UserError naming `where` + the key of the first value out of range."""
        for k in _PROBABILITIES:
            p = getattr(self, k)
            if not 0.0 <= p <= 1.0:
                raise UserError(f"{where}{k} must be a probability in [0, 1], got {p}")
        total = sum(getattr(self, k) for k in FRAME_FAULTS)
        if total > 1.0:
            raise UserError(
                f"{where}drop + corrupt + duplicate + delay + reorder must be <= 1, got {total:g}"
            )
        if self.delay_ms < 0 or self.stall_ms < 0:
            raise UserError(f"{where}delay_ms and stall_ms must be >= 0")
        if not 1 <= self.garbage_bytes <= 4096:
            raise UserError(f"{where}garbage_bytes must be in 1..4096, got {self.garbage_bytes}")


@dataclass(frozen=True)
class ProxySettings:
    """Everything but the ports, resolved per direction (from FaultProxyConfig or by hand)."""

    h2c: Rates = field(default_factory=Rates)
    c2h: Rates = field(default_factory=Rates)
    seed: int = 0
    frames: tuple[str, ...] = ()
    start_after_s: float = 0.0
    close_at_s: float | None = None
    close_on: tuple[str, ...] = ()
    """Close the host's line when the host sends a frame of one of these message types."""
    reconnect: bool = True


def _message_types(key: str, values: Any) -> tuple[str, ...]:
    """Message type names (any case) -> upper-case names; UserError naming the key."""
    names = tuple(str(x).upper() for x in values)
    for n in names:
        if n not in MsgType.__members__:
            raise UserError(
                f"{key}: unknown message type '{n}' (one of {', '.join(MsgType.__members__)})"
            )
    return names


def _rates(cfg: Any, over: Any) -> Rates:
    """One direction's Rates: its section's value where set (not null), else the top level."""
    values = {}
    for f in fields(Rates):
        v = getattr(over, f.name) if over is not None else None
        v = getattr(cfg, f.name) if v is None else v
        values[f.name] = tuple(float(x) for x in v) if f.name == "stall_at_s" else v
    return Rates(**values)


def settings_from_config(cfg: Any) -> ProxySettings:
    """A FaultProxyConfig (the typed object, or the composed Hydra config: both are read
    by attribute) -> ProxySettings; UserError naming the key. `FaultProxyConfig.validate`
    is this, so the entry point's `typed_config` checks every key here."""
    _rates(cfg, None).check("")
    per = {d: _rates(cfg, getattr(cfg, d)) for d in DIRECTIONS}
    for d in DIRECTIONS:
        per[d].check(f"{d}.")
    names = _message_types("frames", cfg.frames)
    close_on = _message_types("close_on", cfg.close_on)
    if cfg.start_after_s < 0:
        raise UserError(f"start_after_s must be >= 0, got {cfg.start_after_s}")
    if cfg.close_at_s is not None and cfg.close_at_s < 0:
        raise UserError(f"close_at_s must be >= 0, got {cfg.close_at_s}")
    if cfg.duration_s is not None and cfg.duration_s <= 0:
        raise UserError(f"duration_s must be > 0, got {cfg.duration_s}")
    return ProxySettings(
        h2c=per["h2c"],
        c2h=per["c2h"],
        seed=int(cfg.seed),
        frames=names,
        start_after_s=float(cfg.start_after_s),
        close_at_s=None if cfg.close_at_s is None else float(cfg.close_at_s),
        close_on=close_on,
        reconnect=bool(cfg.reconnect),
    )
