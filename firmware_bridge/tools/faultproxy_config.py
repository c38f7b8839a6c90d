"""The schema of `python -m firmware_bridge.faultproxy` (configs/faultproxy.yaml), registered
as `faultproxy_schema` by firmware_bridge.tools.faultproxy; `settings_from_config`
(firmware_bridge.tools.faultproxy_settings) turns it into the proxy's own `ProxySettings`.
Tools floor.

The fault keys are `faultproxy_settings.Rates`'s fields, written there once: the top level
(both directions) and the `h2c` / `c2h` sections (one direction) are generated from them.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields, make_dataclass
from typing import Any, get_args, get_origin, get_type_hints

from firmware_bridge.tools.faultproxy_settings import Rates, settings_from_config


def _yaml_type(hint: Any) -> Any:
    """A Rates field's type as a YAML key's: a tuple is a list there."""
    return list[get_args(hint)[0]] if get_origin(hint) is tuple else hint


def _yaml_default(f: Field) -> Any:
    """A Rates field's default as a YAML key's (a tuple as a fresh list)."""
    if isinstance(f.default, tuple):
        return field(default_factory=lambda d=f.default: list(d))
    return field(default=f.default)


def _direction_section() -> type:
    """The `h2c` / `c2h` section: one optional field per `Rates` field, null by default."""
    hints = get_type_hints(Rates)
    doc = (
        "Per-direction overrides of the fault proxy's settings; null = the top-level value.\n\n"
        "One field per field of `faultproxy_settings.Rates` (its docstrings say what each is)."
    )
    return make_dataclass(
        "FaultDirectionSection",
        [(f.name, _yaml_type(hints[f.name]) | None, field(default=None)) for f in fields(Rates)],
        namespace={"__module__": __name__, "__doc__": doc},
    )


FaultDirectionSection = _direction_section()


@dataclass
class FaultProxyPorts:
    """The fault proxy's ports and seed: the first keys of `FaultProxyConfig`."""

    upstream: str = "???"
    """The controller's port (a device, pseudo-terminal or symlink), opened as a client."""
    port_link: str | None = None
    """Place a symlink to the host-side pseudo-terminal here (removed on exit)."""
    seed: int = 0
    """Seed of every random fault decision."""
    baud: int = 1_000_000
    """Baud rate of the upstream port (ignored by pseudo-terminals)."""


def _with_rates() -> type:
    """FaultProxyPorts + one key per `Rates` field, with Rates' default: the faults of both
    directions (Rates' docstrings say what each is)."""
    hints = get_type_hints(Rates)
    return make_dataclass(
        "FaultProxyRates",
        [(f.name, _yaml_type(hints[f.name]), _yaml_default(f)) for f in fields(Rates)],
        bases=(FaultProxyPorts,),
        namespace={"__module__": __name__, "__doc__": _with_rates.__doc__},
    )


@dataclass
class FaultProxyConfig(_with_rates()):
    """`python -m firmware_bridge.faultproxy`'s schema: the ports, the fault rates of both
    directions (generated from `Rates`), then the keys below."""

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
