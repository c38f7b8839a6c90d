"""Wire protocol v1's messages: one frozen dataclass per message type, each with its
header `TYPE`, and `Message`, their union. Arrays (STATE sensors, COMMAND values) are held
as read-only little-endian float32 and compared as wire bytes. Wire floor.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

from firmware_bridge.wire.constants import F32, FaultCode, MsgType, Status
from firmware_bridge.wire.errors import ProtocolError


def _frozen_f32(values: Any, what: str) -> np.ndarray:
    """A read-only 1-D little-endian float32 array; decoded arrays are taken as they are."""
    if (
        isinstance(values, np.ndarray)
        and values.dtype == F32
        and values.ndim == 1
        and not values.flags.writeable
    ):
        return values
    try:
        array = np.array(values, dtype=F32)
    except (TypeError, ValueError) as err:
        raise ProtocolError(f"{what} must be a sequence of numbers: {err}") from err
    if array.ndim != 1:
        raise ProtocolError(f"{what} must be one-dimensional, got shape {array.shape}")
    array.flags.writeable = False
    return array


class _ArrayMessage:
    """Equality and hashing for messages holding an array: fields compared as wire bytes,
    so -0.0 differs from 0.0 and a NaN equals the same NaN."""

    def _key(self) -> tuple[Any, ...]:
        return tuple(
            getattr(self, f.name).tobytes()
            if isinstance(getattr(self, f.name), np.ndarray)
            else getattr(self, f.name)
            for f in fields(self)  # type: ignore[arg-type]
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._key())


@dataclass(frozen=True)
class Hello:
    """Host -> controller: stream STATE at this rate from now on (0 stops); disarms."""

    state_rate_hz: int

    TYPE: ClassVar[MsgType] = MsgType.HELLO


@dataclass(frozen=True)
class Info:
    """Controller -> host, the answer to HELLO: what the controller is and can do."""

    protocol_version: int
    firmware_version: tuple[int, int, int]
    boot_id: int
    n_sensors: int
    n_actuators: int
    min_rate_hz: int
    max_rate_hz: int
    watchdog_ms: int
    name: str

    TYPE: ClassVar[MsgType] = MsgType.INFO


@dataclass(frozen=True, eq=False)
class State(_ArrayMessage):
    """Controller -> host: one sensor sample and the controller's status."""

    t_us: int
    status: Status | int
    fault: FaultCode | int
    last_cmd_seq: int
    rx_errors: int
    sensors: np.ndarray

    TYPE: ClassVar[MsgType] = MsgType.STATE

    def __post_init__(self) -> None:
        object.__setattr__(self, "sensors", _frozen_f32(self.sensors, "STATE sensors"))


@dataclass(frozen=True, eq=False)
class Command(_ArrayMessage):
    """Host -> controller: actuator values answering the STATE whose header seq is state_seq."""

    state_seq: int
    values: np.ndarray

    TYPE: ClassVar[MsgType] = MsgType.COMMAND

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", _frozen_f32(self.values, "COMMAND values"))


@dataclass(frozen=True)
class Enable:
    """Host -> controller: arm the actuators (answered by ACK)."""

    TYPE: ClassVar[MsgType] = MsgType.ENABLE


@dataclass(frozen=True)
class Disable:
    """Host -> controller: safe state, clear a latched fault (answered by ACK)."""

    TYPE: ClassVar[MsgType] = MsgType.DISABLE


@dataclass(frozen=True)
class Ack:
    """Controller -> host: the outcome of ENABLE or DISABLE (result 0 ok, else a fault code)."""

    acked_seq: int
    acked_type: MsgType | int
    result: FaultCode | int

    TYPE: ClassVar[MsgType] = MsgType.ACK


@dataclass(frozen=True)
class Fault:
    """Controller -> host, sent once when a fault is raised."""

    code: FaultCode | int
    t_us: int
    text: str

    TYPE: ClassVar[MsgType] = MsgType.FAULT


Message = Hello | Info | State | Command | Enable | Disable | Ack | Fault
