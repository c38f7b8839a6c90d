"""The Feetech STS/SMS serial bus protocol ("protocol end 0") and `FeetechBus`, its client.

Packets (instruction and status alike):

    0xFF 0xFF  ID  LENGTH  INSTRUCTION|ERROR  PARAM...  CHECKSUM
    LENGTH = len(PARAM) + 2;  CHECKSUM = ~(ID + LENGTH + INSTRUCTION + sum(PARAM)) & 0xFF

A request goes to one id, or to the broadcast id 0xFE (never answered). The addressed
servo answers with a status packet whose third field is its error byte (`ErrorBit`) and
whose params are the data read. SYNC READ (broadcast) lists ids: each answers in turn, in
the listed order. SYNC WRITE carries one row per id and is not answered. The memory table
is `wire.feetech_table`.

Sources (facts only; no code taken): Feetech's "FT-SCS communication protocol"
(doc.feetech.cn, FT-SCS-Protocol) for the packet layout and instruction codes; the vendor
SDK feetech-servo-sdk 1.0 (`scservo_sdk`: scservo_def.py INST_*, protocol_packet_handler.py
txPacket/rxPacket, group_sync_read.py, group_sync_write.py), against whose output
tests/test_feetech.py checks our bytes.
Wire floor: standard library, pyserial, wire.link and wire.servo_bus.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from enum import IntEnum
from typing import NamedTuple

import serial

from firmware_bridge.wire.feetech_table import (
    BAUD_CODES,
    ERROR_NAMES,
    FEETECH_REGISTERS,
    Reg,
    decode_value,
    encode_value,
)
from firmware_bridge.wire.link import BITS_PER_BYTE, LinkError, open_serial
from firmware_bridge.wire.servo_bus import BusError, BusErrorKind, ServoBus, bit_names

log = logging.getLogger(__name__)

BROADCAST_ID = 0xFE
MAX_SERVO_ID = 0xFD
"""Highest id a servo can have (0xFE is broadcast; a status packet above this is noise)."""
MAX_PACKET = 250
"""Longest packet in bytes (the vendor SDK's TXPACKET_MAX_LEN / RXPACKET_MAX_LEN)."""
HEADER = b"\xff\xff"
STATUS_OVERHEAD = 6
"""Header (2) + ID + LENGTH + ERROR + CHECKSUM: a status packet's bytes beyond its data."""
DEFAULT_BAUD = 1_000_000
"""The STS factory baud rate (BAUD_RATE code 0)."""


class Instruction(IntEnum):
    """Instruction codes (FT-SCS protocol; scservo_def.py)."""

    PING = 0x01
    READ = 0x02
    WRITE = 0x03
    REG_WRITE = 0x04
    """Write, held until ACTION."""
    ACTION = 0x05
    """Apply the held REG_WRITEs (usually broadcast)."""
    SYNC_READ = 0x82
    SYNC_WRITE = 0x83


# ------------------------------------------------------------------------------ encoders


def checksum(body: bytes | bytearray | memoryview) -> int:
    """~(sum of ID, LENGTH, INSTRUCTION/ERROR and params) & 0xFF."""
    return ~sum(body) & 0xFF


def encode_packet(servo_id: int, code: int, params: bytes | bytearray = b"") -> bytes:
    """One packet: code is an instruction (request) or the error byte (status)."""
    if not 0 <= servo_id <= BROADCAST_ID:
        raise ValueError(f"servo id {servo_id} is outside 0..{BROADCAST_ID}")
    if len(params) + STATUS_OVERHEAD > MAX_PACKET:
        raise ValueError(f"packet of {len(params)} params is over {MAX_PACKET} bytes")
    body = bytes((servo_id, len(params) + 2, code)) + bytes(params)
    return HEADER + body + bytes((checksum(body),))


def _byte(name: str, value: int, low: int = 0) -> int:
    if not low <= value <= 0xFF:
        raise ValueError(f"{name} {value} is outside {low}..255")
    return value


def encode_ping(servo_id: int) -> bytes:
    return encode_packet(servo_id, Instruction.PING)


def encode_read(servo_id: int, address: int, n: int) -> bytes:
    return encode_packet(
        servo_id, Instruction.READ, bytes((_byte("address", address), _byte("length", n, 1)))
    )


def encode_write(servo_id: int, address: int, data: bytes, *, held: bool = False) -> bytes:
    """WRITE, or REG_WRITE when held (applied at the next ACTION)."""
    code = Instruction.REG_WRITE if held else Instruction.WRITE
    return encode_packet(servo_id, code, bytes((_byte("address", address),)) + bytes(data))


def encode_action(servo_id: int = BROADCAST_ID) -> bytes:
    return encode_packet(servo_id, Instruction.ACTION)


def encode_sync_read(ids: Sequence[int], address: int, n: int) -> bytes:
    """SYNC READ (broadcast): address, length, then the ids in answer order."""
    head = bytes((_byte("address", address), _byte("length", n, 1)))
    return encode_packet(BROADCAST_ID, Instruction.SYNC_READ, head + bytes(ids))


def encode_sync_write(ids: Sequence[int], address: int, rows: Sequence[bytes]) -> bytes:
    """SYNC WRITE (broadcast): address, row length, then (id, row) for each servo."""
    if len(ids) != len(rows) or not ids:
        raise ValueError(f"sync write needs one row per id, got {len(ids)} ids, {len(rows)} rows")
    n = len(rows[0])
    if any(len(r) != n for r in rows):
        raise ValueError("sync write rows must all be the same length")
    params = bytearray((_byte("address", address), _byte("length", n, 1)))
    for sid, row in zip(ids, rows, strict=True):
        params.append(_byte("servo id", sid))
        params += bytes(row)
    return encode_packet(BROADCAST_ID, Instruction.SYNC_WRITE, params)


def encode_status(servo_id: int, error: int, data: bytes | bytearray = b"") -> bytes:
    """A servo's status packet (what the emulator sends)."""
    return encode_packet(servo_id, _byte("error byte", error), data)


# ------------------------------------------------------------------------------ parser


class Packet(NamedTuple):
    """One parsed packet: code is the instruction (request) or error byte (status)."""

    servo_id: int
    code: int
    params: bytes


class PacketParser:
    """Bytes in, packets out, for either direction; resyncs on garbage.

    Bytes before a 0xFF 0xFF header are dropped (counted in `garbage`); a header with an
    impossible id or length, or a packet with a wrong checksum (`checksum_errors`), drops
    one byte and the search goes on, so a corrupt packet costs only itself. Bytes at a
    wrong baud rate never form a packet: they are counted and dropped, never raise.
    """

    def __init__(self, max_id: int = BROADCAST_ID) -> None:
        self._buf = bytearray()
        self._max_id = max_id
        self.garbage = 0
        self.checksum_errors = 0

    def clear(self) -> None:
        """Forget buffered bytes and counters (a new transaction)."""
        self._buf.clear()
        self.garbage = 0
        self.checksum_errors = 0

    @property
    def pending(self) -> int:
        """Bytes held, waiting to complete a packet."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    def _drop(self, n: int) -> None:
        del self._buf[:n]
        self.garbage += n

    def next_packet(self) -> Packet | None:
        """The next complete packet, or None until more bytes arrive."""
        buf = self._buf
        while True:
            start = buf.find(HEADER)
            if start < 0:  # keep a trailing 0xFF: it may begin a header
                self._drop(len(buf) - (1 if buf.endswith(b"\xff") else 0))
                return None
            if start:
                self._drop(start)
            if len(buf) < 4:
                return None
            sid, length = buf[2], buf[3]
            if sid > self._max_id or length < 2 or length + 4 > MAX_PACKET:
                self._drop(1)  # 0xFF 0xFF 0xFF ...: the header starts one later
                continue
            total = length + 4
            if len(buf) < total:
                return None
            if checksum(memoryview(buf)[2 : total - 1]) != buf[total - 1]:
                self.checksum_errors += 1
                self._drop(1)
                continue
            packet = Packet(sid, buf[4], bytes(buf[5 : total - 1]))
            del buf[:total]
            return packet


# ------------------------------------------------------------------------------ client


class FeetechBus(ServoBus):
    """A Feetech STS/SMS bus over a serial port (a USB adapter, or a pseudo-terminal).

    Give a port path (opened exclusively at baud by `wire.link.open_serial`) or an open
    pyserial-like port (its own baudrate is then the bus's). Each transaction clears the input, writes the request and reads
    exactly the expected status bytes within timeout_s plus the answer's time on the wire.
    BusError on timeout, checksum, malformed answers and, when raise_on_servo_error,
    error bits; the bits are kept in `last_error_bits` either way.
    response_level is the servos' RESPONSE_LEVEL: at 0 they answer only PING and READ.
    """

    registers = FEETECH_REGISTERS

    def __init__(
        self,
        port: str | serial.SerialBase,
        baud: int = DEFAULT_BAUD,
        *,
        timeout_s: float = 0.02,
        raise_on_servo_error: bool = True,
        response_level: int = 1,
        exclusive: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(port, str):
            baud = getattr(port, "baudrate", baud)
        if baud not in BAUD_CODES.values():
            raise ValueError(f"{baud} baud is not an STS baud rate ({sorted(BAUD_CODES.values())})")
        if isinstance(port, str):
            self._ser = open_serial(port, baud, exclusive=exclusive)
            self.port = port
        else:
            self._ser = port
            self.port = str(getattr(port, "port", port))
        self._baud = baud
        self._byte_s = BITS_PER_BYTE / baud
        self.timeout_s = timeout_s
        self.raise_on_servo_error = raise_on_servo_error
        self.response_level = response_level
        self._parser = PacketParser(max_id=MAX_SERVO_ID)
        self._closed = False

    @property
    def baud(self) -> int:
        return self._baud

    def error_names(self, bits: int) -> tuple[str, ...]:
        return bit_names(bits, ERROR_NAMES)

    # -- instructions

    def ping(self, servo_id: int) -> int:
        """PING, then the model number (READ of MODEL_NUMBER), as the vendor SDK does."""
        self._request(encode_ping(servo_id), (servo_id,), 0)
        return self.read_register(servo_id, Reg.MODEL_NUMBER)

    def read(self, servo_id: int, address: int, n: int) -> bytes:
        return self._request(encode_read(servo_id, address, n), (servo_id,), n)[0]

    def write(self, servo_id: int, address: int, data: bytes) -> None:
        self._write_packet(servo_id, encode_write(servo_id, address, data))

    def reg_write(self, servo_id: int, address: int, data: bytes) -> None:
        """REG_WRITE: held by the servo until `action`."""
        self._write_packet(servo_id, encode_write(servo_id, address, data, held=True))

    def action(self, servo_id: int = BROADCAST_ID) -> None:
        """ACTION: every servo addressed applies its held REG_WRITE."""
        self._write_packet(servo_id, encode_action(servo_id))

    def sync_read_into(
        self, ids: Sequence[int], address: int, n: int, out: memoryview | bytearray
    ) -> None:
        view = memoryview(out).cast("B")
        if len(view) < len(ids) * n:
            raise ValueError(f"sync read of {len(ids)} x {n} bytes needs a buffer that large")
        rows = self._request(encode_sync_read(ids, address, n), ids, n)
        for i, row in enumerate(rows):
            view[i * n : (i + 1) * n] = row

    def sync_write(self, ids: Sequence[int], address: int, rows: Sequence[bytes]) -> None:
        self._send(encode_sync_write(ids, address, [bytes(r) for r in rows]))

    # -- typed registers

    def read_register(self, servo_id: int, reg: Reg) -> int:
        return decode_value(reg, self.read(servo_id, reg.address, reg.size))

    def write_register(self, servo_id: int, reg: Reg, value: int) -> None:
        self.write(servo_id, reg.address, encode_value(reg, value))

    # -- transactions

    def _write_packet(self, servo_id: int, packet: bytes) -> None:
        if servo_id == BROADCAST_ID or self.response_level == 0:
            self._send(packet)
        else:
            self._request(packet, (servo_id,), 0)

    def _send(self, packet: bytes) -> None:
        if self._closed:
            raise LinkError(f"servo bus {self.port} is closed")
        try:
            self._ser.reset_input_buffer()
            self._ser.write(packet)
        except (serial.SerialException, OSError) as err:
            raise LinkError(f"servo bus {self.port}: write failed: {err}") from None

    def _request(self, packet: bytes, ids: Sequence[int], n: int) -> list[bytes]:
        """Send packet and collect one status packet of n data bytes from each id, in order."""
        self._send(packet)
        expected = len(ids) * (STATUS_OVERHEAD + n)
        deadline = time.monotonic() + self.timeout_s + (len(packet) + expected) * self._byte_s
        got = self._collect(ids, n, expected, deadline)
        self._check_errors(ids, got)
        return [p.params for p in got]

    def _collect(self, ids: Sequence[int], n: int, expected: int, deadline: float) -> list[Packet]:
        parser = self._parser
        parser.clear()
        index = {sid: i for i, sid in enumerate(ids)}
        got: list[Packet | None] = [None] * len(ids)
        missing, received = len(ids), 0
        odd: Packet | None = None  # an answer of the wrong size: a late one to an earlier request?
        while missing:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._failure(ids[got.index(None)], deadline, odd, n)
            chunk = self._read(max(1, expected - received), left)
            received += len(chunk)
            parser.feed(chunk)
            while (pkt := parser.next_packet()) is not None:
                i = index.get(pkt.servo_id)
                if i is None or got[i] is not None:
                    log.debug("%s: stray status packet from id %d", self.port, pkt.servo_id)
                    continue
                if len(pkt.params) != n:  # skipped: the right answer may still come
                    odd = pkt
                    continue
                got[i] = pkt
                missing -= 1
        return got  # type: ignore[return-value]

    def _read(self, n: int, timeout_s: float) -> bytes:
        try:
            self._ser.timeout = timeout_s
            return self._ser.read(n)
        except (serial.SerialException, OSError) as err:
            raise LinkError(
                f"servo bus {self.port}: read failed ({err}); was the adapter unplugged?"
            ) from None

    def _failure(self, servo_id: int, deadline: float, odd: Packet | None, n: int) -> BusError:
        p = self._parser
        if odd is not None:
            return BusError(
                BusErrorKind.MALFORMED,
                odd.servo_id,
                f"servo {odd.servo_id} on {self.port} answered {len(odd.params)} data bytes "
                f"where {n} were asked, and no answer of the right size came within "
                f"{self.timeout_s * 1e3:.0f} ms",
            )
        if p.checksum_errors:
            kind, what = BusErrorKind.CHECKSUM, f"{p.checksum_errors} packet(s) failed checksum"
        elif p.garbage or p.pending:
            kind, what = BusErrorKind.MALFORMED, f"{p.garbage + p.pending} byte(s) never parsed"
        else:
            kind, what = BusErrorKind.TIMEOUT, "no answer"
        return BusError(
            kind,
            servo_id,
            f"servo {servo_id} on {self.port}: {what} within {self.timeout_s * 1e3:.0f} ms "
            f"(is it powered, is its id {servo_id}, is the bus at {self._baud} baud?)",
        )

    def _check_errors(self, ids: Sequence[int], got: list[Packet]) -> None:
        bad = None
        for sid, pkt in zip(ids, got, strict=True):
            self.last_error_bits[sid] = pkt.code
            if pkt.code and bad is None:
                bad = pkt
        if bad is not None and self.raise_on_servo_error:
            names = self.error_names(bad.code)
            raise BusError(
                BusErrorKind.SERVO_ERROR,
                bad.servo_id,
                f"servo {bad.servo_id} on {self.port} reports {', '.join(names)} "
                f"(error byte 0x{bad.code:02x})",
                error_bits=bad.code,
                error_names=names,
            )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._ser.close()
        except (serial.SerialException, OSError) as err:
            log.warning("closing %s: %s", self.port, err)
