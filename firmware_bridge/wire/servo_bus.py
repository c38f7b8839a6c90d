"""What any smart-servo bus offers the host, whatever the vendor: the `ServoBus` contract,
its `BusError`, the packet framing figures a bus declares and the bus budget built on them.

A servo bus is one half-duplex UART shared by several position servos, each answering
requests addressed to its id by reading or writing its memory table. Feetech STS/SMS
(`wire.feetech`) is the first implementation; Dynamixel Protocol 2.0 would be a second
with its own `Framing` and error bits. Wire floor: standard library only, and the UART
byte size from `wire.link`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from types import TracebackType

from firmware_bridge.wire.link import BITS_PER_BYTE


class BusErrorKind(str, Enum):
    """Why a bus transaction failed (compares equal to its string value)."""

    TIMEOUT = "timeout"
    """No answer (or not all of it) within the timeout: absent id, unplugged, wrong baud."""
    CHECKSUM = "checksum"
    """An answer arrived but its checksum was wrong (noise, a collision on the bus)."""
    MALFORMED = "malformed"
    """Bytes arrived that never formed the expected answer (garbage, wrong baud, bad length)."""
    SERVO_ERROR = "servo_error"
    """The servo answered with error bits set (voltage, overheat, overload, ...)."""


class BusError(Exception):
    """A failed bus transaction: its `kind`, the servo id concerned (None: the whole bus)
    and, for servo errors, the error bits and their names. The message is one line."""

    def __init__(
        self,
        kind: BusErrorKind | str,
        servo_id: int | None,
        message: str,
        *,
        error_bits: int = 0,
        error_names: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.kind = BusErrorKind(kind)
        self.servo_id = servo_id
        self.error_bits = error_bits
        self.error_names = error_names


def bit_names(bits: int, names: Mapping[int, str]) -> tuple[str, ...]:
    """The names of the set bits of an error byte, lowest bit first; unknown bits as bitN."""
    out = []
    for b in range(8 * max(1, (bits.bit_length() + 7) // 8)):
        mask = 1 << b
        if bits & mask:
            out.append(names.get(mask, f"bit{b}"))
    return tuple(out)


# ------------------------------------------------------------------------------ budget


@dataclass(frozen=True)
class Framing:
    """Bytes a protocol adds around the data of each packet kind the loop uses."""

    status_overhead: int
    """Bytes of a status (answer) packet beyond its data bytes."""
    sync_read_overhead: int
    """Bytes of a SYNC READ request beyond its list of ids."""
    sync_read_per_id: int
    """Bytes per id listed in a SYNC READ request."""
    sync_write_overhead: int
    """Bytes of a SYNC WRITE packet beyond its per-servo rows."""
    sync_write_per_row: int
    """Bytes per servo row of a SYNC WRITE beyond the row's data (its id)."""


PROTOCOL_1 = Framing(
    # 0xFF 0xFF ID LENGTH ERROR data CHECKSUM: the "protocol 1" layout shared by Feetech
    # STS/SCS and Dynamixel 1.0. A request adds INSTRUCTION, ADDRESS, DATA_LENGTH.
    status_overhead=6,
    sync_read_overhead=8,
    sync_read_per_id=1,
    sync_write_overhead=8,
    sync_write_per_row=1,
)


def bus_budget(
    n_servos: int,
    read_bytes: int,
    write_bytes: int,
    baud: int,
    return_delay_us: float,
    adapter_latency_us: float,
    *,
    framing: Framing = PROTOCOL_1,
) -> float:
    """Seconds of one control tick on the bus: one sync read of read_bytes from each of
    n_servos plus one sync write of write_bytes to each, at baud in 8N1 (10 bits a byte).

    The sync read is the request, then each servo's return delay and status packet in
    turn, plus the USB adapter's round-trip latency (paid once: the host waits for the
    answers). The sync write has no answer, so only its bytes count. A caller refuses a
    control rate whose period is shorter than this.
    """
    if n_servos < 1 or read_bytes < 0 or write_bytes < 0 or baud <= 0:
        raise ValueError(
            f"bus budget needs n_servos >= 1, byte counts >= 0 and baud > 0, got "
            f"{n_servos} servos, {read_bytes}/{write_bytes} bytes, {baud} baud"
        )
    byte_s = BITS_PER_BYTE / baud
    request = framing.sync_read_overhead + n_servos * framing.sync_read_per_id
    status = framing.status_overhead + read_bytes
    read_s = (
        adapter_latency_us * 1e-6
        + request * byte_s
        + n_servos * (return_delay_us * 1e-6 + status * byte_s)
    )
    write = framing.sync_write_overhead + n_servos * (framing.sync_write_per_row + write_bytes)
    return read_s + write * byte_s


# ------------------------------------------------------------------------------ registers


def to_sign_magnitude(value: int, sign_bit: int) -> int:
    """value as sign-magnitude: |value| in the bits below sign_bit, sign_bit set if < 0."""
    if abs(value) >= 1 << sign_bit:
        raise ValueError(f"{value} does not fit sign-magnitude with sign bit {sign_bit}")
    return (-value | (1 << sign_bit)) if value < 0 else value


def from_sign_magnitude(raw: int, sign_bit: int) -> int:
    """The value of a sign-magnitude raw integer (the vendor's rule: clear the sign bit,
    negate if it was set)."""
    mask = 1 << sign_bit
    return -(raw & ~mask) if raw & mask else raw


@dataclass(frozen=True)
class Field:
    """One value in a servo's memory: address, size in bytes (little-endian) and, for a
    signed value, the bit that holds its sign in a sign-magnitude encoding (Feetech's; a
    vendor with two's complement values would add its own flag here)."""

    address: int
    size: int
    sign_bit: int | None = None

    @property
    def end(self) -> int:
        return self.address + self.size

    def decode(self, data: bytes | bytearray | memoryview) -> int:
        """The value of exactly `size` bytes."""
        raw = int.from_bytes(bytes(data), "little")
        return raw if self.sign_bit is None else from_sign_magnitude(raw, self.sign_bit)

    def encode(self, value: int) -> bytes:
        """The bytes of value (ValueError if it does not fit)."""
        raw = value if self.sign_bit is None else to_sign_magnitude(value, self.sign_bit)
        if not 0 <= raw < 1 << (8 * self.size):
            raise ValueError(f"{value} does not fit {self.size} byte(s)")
        return raw.to_bytes(self.size, "little")


@dataclass(frozen=True)
class ServoRegisters:
    """Where one vendor's position servos keep what a deploy reads and writes: the facts a
    bus transport and its session need, so that another vendor (Dynamixel Protocol 2.0) is
    another one of these and a `ServoBus`, not another loop. Feetech's is
    `wire.feetech_table.FEETECH_REGISTERS`."""

    present: Mapping[str, Field]
    """Present "position", "speed" and "load" (the layout's `Sensor.register` names): read
    together each tick as one block, so they must lie within a few bytes of each other."""
    goal_position: Field
    torque_enable: Field
    """1 = torque on, 0 = limp."""
    torque_limit: Field
    """Torque the servo may use, in units of 1 / `torque_full_scale` of its stall torque."""
    torque_full_scale: int
    firmware: tuple[Field, ...]
    """Firmware version fields, most significant first."""
    return_delay: Field
    return_delay_unit_us: float
    """One unit of `return_delay` in microseconds."""
    protection: Mapping[str, tuple[Field, float]]
    """Overload protection settings by name (the deploy's `bus` keys): the register and how
    many of the key's units one register unit is."""
    eeprom_lock: Field | None = None
    """Written 0 before and 1 after writing a protection setting (None: no lock)."""
    homing_offset: Field | None = None
    """Where the servo keeps its calibration's homing offset (checked against the file at
    connect; None: the vendor keeps none)."""

    @property
    def present_block(self) -> tuple[int, int]:
        """(address, size) of the one read that covers every present value."""
        start = min(f.address for f in self.present.values())
        return start, max(f.end for f in self.present.values()) - start


# ------------------------------------------------------------------------------ contract


class ServoBus(ABC):
    """A servo bus the host talks to: reads and writes of servo memory by id and address.

    Every method either completes or raises `BusError` (and `LinkError` when the port itself
    fails). `last_error_bits` keeps each servo's error byte from its latest status packet,
    so a caller that turned raising off still sees them.
    """

    framing: Framing = PROTOCOL_1
    """The packet layout, for `bus_budget`."""
    registers: ServoRegisters
    """Where its servos keep what a deploy reads and writes."""
    timeout_s: float
    """How long a transaction waits for its answers beyond their time on the wire (a
    deploy waits longer at connect than in its loop)."""

    def __init__(self) -> None:
        self.last_error_bits: dict[int, int] = {}

    @property
    @abstractmethod
    def baud(self) -> int:
        """The bus baud rate."""

    @abstractmethod
    def error_names(self, bits: int) -> tuple[str, ...]:
        """The names of a status packet's error bits, in this vendor's meaning."""

    @abstractmethod
    def ping(self, servo_id: int) -> int:
        """Ping one servo; its model number."""

    @abstractmethod
    def read(self, servo_id: int, address: int, n: int) -> bytes:
        """n bytes of one servo's memory from address."""

    @abstractmethod
    def write(self, servo_id: int, address: int, data: bytes) -> None:
        """Write bytes into one servo's memory at address (waits for its status unless
        broadcast)."""

    @abstractmethod
    def sync_read_into(
        self, ids: Sequence[int], address: int, n: int, out: memoryview | bytearray
    ) -> None:
        """One sync read of n bytes at address from each servo, written into out (any
        writable C-contiguous buffer of at least len(ids) * n bytes, e.g. a uint8 array;
        servo i at [i*n, (i+1)*n)): the hot loop's form, into a buffer allocated once."""

    @abstractmethod
    def sync_write(self, ids: Sequence[int], address: int, rows: Sequence[bytes]) -> None:
        """One sync write: rows[i] (all the same length) into servo ids[i] at address."""

    @abstractmethod
    def close(self) -> None:
        """Release the port; idempotent."""

    def sync_read(self, ids: Sequence[int], address: int, n: int) -> dict[int, bytes]:
        """One sync read; {id: n bytes}."""
        buf = bytearray(len(ids) * n)
        self.sync_read_into(ids, address, n, memoryview(buf))
        return {sid: bytes(buf[i * n : (i + 1) * n]) for i, sid in enumerate(ids)}

    def error_bits(self, servo_id: int) -> int:
        """The error byte of the servo's latest status packet (0 before any)."""
        return self.last_error_bits.get(servo_id, 0)

    def __enter__(self) -> ServoBus:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
