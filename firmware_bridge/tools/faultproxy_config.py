"""The schema of `python -m firmware_bridge.faultproxy` (configs/faultproxy.yaml), registered
as `faultproxy_schema` by firmware_bridge.tools.faultproxy; `settings_from_config`
(firmware_bridge.tools.faultproxy_settings) turns it into the proxy's own `ProxySettings`.
Tools floor.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, get_args, get_origin, get_type_hints

from firmware_bridge.tools.faultproxy_settings import Rates, settings_from_config


def _optional(hint: Any) -> Any:
    """A Rates field's type as a YAML section's: a tuple is a list there, and null is allowed."""
    if get_origin(hint) is tuple:
        hint = list[get_args(hint)[0]]
    return hint | None


def _direction_section() -> type:
    """The `h2c` / `c2h` section: one optional field per `Rates` field, null by default."""
    hints = get_type_hints(Rates)
    doc = (
        "Per-direction overrides of the fault proxy's settings; null = the top-level value.\n\n"
        "One field per field of `faultproxy_settings.Rates` (its docstrings say what each is)."
    )
    return make_dataclass(
        "FaultDirectionSection",
        [(f.name, _optional(hints[f.name]), field(default=None)) for f in fields(Rates)],
        namespace={"__module__": __name__, "__doc__": doc},
    )


FaultDirectionSection = _direction_section()


@dataclass
class FaultProxyConfig:
    upstream: str = "???"
    """The controller's port (a device, pseudo-terminal or symlink), opened as a client."""
    port_link: str | None = None
    """Place a symlink to the host-side pseudo-terminal here (removed on exit)."""
    seed: int = 0
    """Seed of every random fault decision."""
    baud: int = 1_000_000
    """Baud rate of the upstream port (ignored by pseudo-terminals)."""
    drop: float = 0.0
    """Probability per frame that it is dropped (both directions)."""
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
    stall_at_s: list[float] = field(default_factory=list)
    """Stall both directions at these times (s after the host's first byte)."""
    h2c: FaultDirectionSection = field(default_factory=FaultDirectionSection)
    """Overrides for host -> controller."""
    c2h: FaultDirectionSection = field(default_factory=FaultDirectionSection)
    """Overrides for controller -> host."""
    frames: list[str] = field(default_factory=list)
    """Message types the per-frame faults touch (e.g. [STATE, COMMAND]); empty = every frame."""
    start_after_s: float = 0.0
    """No fault before this many seconds after the host's first byte."""
    close_at_s: float | None = None
    """Close the host's line this many seconds after its first byte (a pulled cable)."""
    close_on: list[str] = field(default_factory=list)
    """Close the host's line when the host sends a frame of one of these message types
    (e.g. [DISABLE]: a cable pulled while DISABLE is in flight); the frame is lost."""
    reconnect: bool = True
    """Reopen the upstream port when it goes away (a controller that restarts)."""
    duration_s: float | None = None
    """Stop after this long (default: run until SIGTERM/SIGINT)."""

    def validate(self) -> None:
        """Every key checked once, by resolving the settings (UserError naming the key)."""
        settings_from_config(self)
