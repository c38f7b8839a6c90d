"""Emulated Feetech STS3215 servos on a pseudo-terminal: the servo bus's stand-in.

`ServoMemory` is one servo's memory table (STS3215 factory values, read-only and
EEPROM-lock rules) with typed accessors for the physics side: it reads the goal, torque
enable and torque limit the host wrote and writes the present position, speed, load,
voltage, temperature and error bits. `BusEmulator` reads request bytes from the pty
master, parses them (resyncing on garbage) and answers as each servo would: after its
return delay, SYNC READ in the listed order, nothing to broadcasts, SYNC WRITE or unknown
ids. With wire_time, each answer is written when its last byte would have left the servo
at the bus baud rate, so the host sees the bus's timing. If the pty's baud rate (as the
client set it on the slave) differs from the servos', the bytes they hear are garbled and
nothing parses, as on a real bus. The owner drives it: `poll(now_ns)` from its own loop
(sim_robot's real-time loop beside the physics), or `serve_forever` in a thread (tests).

Sim floor: imports wire (the protocol and the memory table); no physics here.
"""

from __future__ import annotations

import array
import fcntl
import logging
import os
import re
import select
import termios
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from firmware_bridge.wire.feetech import (
    BROADCAST_ID,
    STATUS_OVERHEAD,
    Instruction,
    Packet,
    PacketParser,
    encode_status,
)
from firmware_bridge.wire.feetech_table import (
    BAUD_CODES,
    MODEL_STS3215,
    PERMILLE_FULL_SCALE,
    Area,
    Reg,
    decode_value,
    encode_value,
)
from firmware_bridge.wire.link import BITS_PER_BYTE

log = logging.getLogger(__name__)

MEMORY_SIZE = 256
"""Bytes of emulated memory (the table ends at 70; reads past MEMORY_SIZE go unanswered)."""
COUNTS_PER_TURN = 4096

STS3215_DEFAULTS: dict[Reg, int] = {
    # Factory values from the vendor memory table (see wire.feetech_table's sources) where
    # it gives one; the rest are a plausible resting STS3215 on a 7.4 V supply.
    Reg.FIRMWARE_MAJOR: 3,
    Reg.FIRMWARE_MINOR: 6,
    Reg.MODEL_NUMBER: MODEL_STS3215,
    Reg.BAUD_RATE: 0,  # 1 Mbaud
    Reg.RETURN_DELAY: 0,
    Reg.RESPONSE_LEVEL: 1,
    Reg.MIN_ANGLE_LIMIT: 0,
    Reg.MAX_ANGLE_LIMIT: 4095,
    Reg.MAX_TEMPERATURE: 70,
    Reg.MAX_VOLTAGE: 80,
    Reg.MIN_VOLTAGE: 40,
    Reg.MAX_TORQUE: PERMILLE_FULL_SCALE,
    Reg.P_COEFFICIENT: 32,
    Reg.D_COEFFICIENT: 32,
    Reg.I_COEFFICIENT: 0,
    Reg.CW_DEAD_ZONE: 1,
    Reg.CCW_DEAD_ZONE: 1,
    Reg.PROTECTION_CURRENT: 511,
    Reg.HOMING_OFFSET: 0,
    Reg.OPERATING_MODE: 0,
    Reg.PROTECTIVE_TORQUE: 20,
    Reg.PROTECTION_TIME: 200,
    Reg.OVERLOAD_TORQUE: 80,
    Reg.OVERCURRENT_PROTECTION_TIME: 200,
    Reg.TORQUE_LIMIT: PERMILLE_FULL_SCALE,  # MAX_TORQUE, copied at power-up
    Reg.LOCK: 1,
    Reg.GOAL_POSITION: 2048,
    Reg.PRESENT_POSITION: 2048,
    Reg.PRESENT_VOLTAGE: 74,
    Reg.PRESENT_TEMPERATURE: 25,
}


def _masks() -> tuple[bytes, bytes]:
    """Per address: host-writable, and EEPROM (needs LOCK = 0); bytes outside the table
    are read-only."""
    writable, eeprom = bytearray(MEMORY_SIZE), bytearray(MEMORY_SIZE)
    for reg in Reg:
        for a in range(reg.address, reg.end):
            writable[a] = reg.writable
            eeprom[a] = reg.area is Area.EEPROM
    return bytes(writable), bytes(eeprom)


_WRITABLE, _EEPROM = _masks()


class ServoMemory:
    """One emulated servo's memory, initialised to STS3215 factory values.

    Host writes (`write`) follow the servo's rules: read-only bytes are ignored, and EEPROM
    bytes are ignored while LOCK is 1. (The vendor table says a locked EEPROM write is
    "not saved"; we drop it outright, the stricter reading, so that a client that forgets
    to unlock is caught in simulation rather than on the arm after a power cycle.)
    `get`/`set` bypass the rules: they are the physics side's and the tests' access.
    """

    def __init__(self, servo_id: int, values: dict[Reg, int] | None = None) -> None:
        self.raw = bytearray(MEMORY_SIZE)
        for reg, value in {**STS3215_DEFAULTS, Reg.ID: servo_id, **(values or {})}.items():
            self.set(reg, value)
        self.held: tuple[int, bytes] | None = None
        """A REG_WRITE waiting for ACTION: (address, data)."""

    # -- raw access, as the bus sees it

    def read(self, address: int, n: int) -> bytes | None:
        """n bytes from address; None if past the memory (the servo does not answer)."""
        if address + n > MEMORY_SIZE:
            return None
        return bytes(self.raw[address : address + n])

    def write(self, address: int, data: bytes) -> None:
        """A host write, byte by byte under the read-only and lock rules."""
        unlocked = self.raw[Reg.LOCK.address] == 0
        for i, b in enumerate(data[: max(0, MEMORY_SIZE - address)]):
            a = address + i
            if _WRITABLE[a] and (unlocked or not _EEPROM[a]):
                self.raw[a] = b

    # -- typed access

    def get(self, reg: Reg) -> int:
        return decode_value(reg, self.raw[reg.address : reg.end])

    def set(self, reg: Reg, value: int) -> None:
        self.raw[reg.address : reg.end] = encode_value(reg, value)

    @property
    def servo_id(self) -> int:
        return self.raw[Reg.ID.address]

    @property
    def baud(self) -> int:
        """The rate this servo listens at (its BAUD_RATE code; unknown codes hear nothing)."""
        return BAUD_CODES.get(self.raw[Reg.BAUD_RATE.address], 0)

    @property
    def return_delay_ns(self) -> int:
        return 2_000 * self.raw[Reg.RETURN_DELAY.address]

    @property
    def response_level(self) -> int:
        return self.raw[Reg.RESPONSE_LEVEL.address]

    @property
    def torque_enabled(self) -> bool:
        return self.raw[Reg.TORQUE_ENABLE.address] != 0

    @property
    def goal_position(self) -> int:
        """Goal in counts as the host wrote it (0..4095 for one turn)."""
        return self.get(Reg.GOAL_POSITION)

    @property
    def torque_limit(self) -> int:
        """0.1 % of stall torque (0..1000)."""
        return self.get(Reg.TORQUE_LIMIT)

    @property
    def error_bits(self) -> int:
        """The STATUS register: the error byte of every answer (ErrorBit)."""
        return self.raw[Reg.STATUS.address]

    @error_bits.setter
    def error_bits(self, bits: int) -> None:
        self.raw[Reg.STATUS.address] = bits & 0x7F  # the vendor SDK drops answers above 0x7F

    def goal_encoder_position(self) -> int:
        """The goal in raw encoder counts: the host's goal plus HOMING_OFFSET, one turn."""
        return (self.goal_position + self.get(Reg.HOMING_OFFSET)) % COUNTS_PER_TURN

    def set_encoder_position(self, counts: int) -> None:
        """Set the present position from raw encoder counts: minus HOMING_OFFSET, one turn
        (LeRobot's feetech notes: Present_Position = Actual_Position - Homing_Offset)."""
        self.set(Reg.PRESENT_POSITION, (counts - self.get(Reg.HOMING_OFFSET)) % COUNTS_PER_TURN)

    def set_present(
        self,
        *,
        position: int | None = None,
        speed: int | None = None,
        load: int | None = None,
        voltage: int | None = None,
        temperature: int | None = None,
        current: int | None = None,
        moving: bool | None = None,
    ) -> None:
        """Write the feedback registers given (counts, counts/s, 0.1 %, 0.1 V, deg C,
        6.5 mA units), as the physics side measures them."""
        for reg, value in (
            (Reg.PRESENT_POSITION, position),
            (Reg.PRESENT_SPEED, speed),
            (Reg.PRESENT_LOAD, load),
            (Reg.PRESENT_VOLTAGE, voltage),
            (Reg.PRESENT_TEMPERATURE, temperature),
            (Reg.PRESENT_CURRENT, current),
            (Reg.MOVING, None if moving is None else int(moving)),
        ):
            if value is not None:
                self.set(reg, value)


# ------------------------------------------------------------------------------ the bus

_HANGUP_WAIT_S = 0.005
"""How long serve_forever sleeps while no client holds the pty's slave open."""
_TCGETS2 = 0x802C542A  # Linux: struct termios2, whose c_ospeed is the rate in baud
_TERMIOS_RATES = {getattr(termios, n): int(n[1:]) for n in dir(termios) if re.fullmatch(r"B\d+", n)}


def line_baud(fd: int) -> int | None:
    """The baud rate a tty (or a pty master, which reports its slave's) is set to; None
    when it cannot be told (not a tty)."""
    try:
        buf = array.array("i", [0] * 64)
        fcntl.ioctl(fd, _TCGETS2, buf)
        if buf[10] > 0:
            return buf[10]
    except OSError:
        pass
    try:
        return _TERMIOS_RATES.get(termios.tcgetattr(fd)[5])
    except termios.error:
        return None


def garble(data: bytes) -> bytes:
    """What a UART at another baud rate makes of bytes: other bytes and framing errors.
    Modelled as bytes that never hold 0xFF, so no header ever forms."""
    return bytes((b ^ 0x55) & 0x7F for b in data)


class BusEmulator:
    """Servos answering on one pty master fd, driven by `poll(now_ns)`.

    servos: ids (each a factory-fresh STS3215) or ServoMemory objects; looked up by their
    current ID register, so a host that rewrites an id sees the servo move. The fd is the
    owner's (not closed here).
    """

    def __init__(
        self, servos: Iterable[int | ServoMemory], fd: int, *, wire_time: bool = True
    ) -> None:
        self.servos = [s if isinstance(s, ServoMemory) else ServoMemory(s) for s in servos]
        self._fd = fd
        self.wire_time = wire_time
        self._parser = PacketParser()
        self._out: deque[tuple[int, bytes]] = deque()
        self._bus_free_ns = 0
        self.requests = 0
        self.answers = 0
        self.garbled_bytes = 0

    def servo(self, servo_id: int) -> ServoMemory:
        """The servo whose ID register is servo_id (KeyError if none)."""
        servo = _find(self.servos, servo_id)
        if servo is None:
            raise KeyError(f"no emulated servo with id {servo_id}")
        return servo

    @property
    def parser(self) -> PacketParser:
        return self._parser

    def next_due_ns(self) -> int | None:
        """When the next queued answer is due, if any."""
        return self._out[0][0] if self._out else None

    def poll(self, now_ns: int) -> int:
        """Take the bytes that arrived, act on the requests in them, send the answers due
        by now_ns (the owner's monotonic clock in ns; answers wait for the next poll at or
        after their time, so poll at least as often as the timing should be resolved).
        Returns the number of bytes taken."""
        data = self._read_available()
        if data:
            self._receive(data, now_ns)
        while self._out and self._out[0][0] <= now_ns:
            self._send(self._out.popleft()[1])
        return len(data)

    def serve_forever(
        self,
        stop: threading.Event,
        *,
        max_wait_s: float = 0.05,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        """Poll until stop is set, sleeping in select until bytes arrive or an answer is due."""
        while not stop.is_set():
            due = self.next_due_ns()
            wait = max_wait_s if due is None else max(0.0, min(max_wait_s, (due - clock()) / 1e9))
            try:
                ready, _, _ = select.select([self._fd], [], [], wait)
            except (OSError, ValueError):  # the fd was closed under us
                return
            if not self.poll(clock()) and ready:  # readable yet empty: no client has the
                time.sleep(min(wait, _HANGUP_WAIT_S))  # slave open (EIO); do not spin

    # -- receiving

    def _read_available(self) -> bytes:
        chunks = []
        while True:
            try:
                ready, _, _ = select.select([self._fd], [], [], 0)
                if not ready:
                    break
                chunk = os.read(self._fd, 4096)
            except OSError:  # EIO: no slave open (the client closed it); nothing to read
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def _receive(self, data: bytes, now_ns: int) -> None:
        baud = line_baud(self._fd)
        listening = [s for s in self.servos if baud is None or s.baud == baud]
        if not listening:
            self.garbled_bytes += len(data)
            data = garble(data)
        self._parser.feed(data)
        while (pkt := self._parser.next_packet()) is not None:
            self.requests += 1
            self._handle(pkt, listening, now_ns, len(pkt.params) + STATUS_OVERHEAD)

    def _handle(self, pkt: Packet, listening: list[ServoMemory], now_ns: int, size: int) -> None:
        inst, p = pkt.code, pkt.params
        if inst == Instruction.SYNC_READ and pkt.servo_id == BROADCAST_ID and len(p) >= 2 and p[1]:
            for sid in p[2:]:
                servo = _find(listening, sid)
                data = servo.read(p[0], p[1]) if servo else None
                if servo and data is not None:
                    self._answer(servo, data, now_ns, size)
        elif inst == Instruction.SYNC_WRITE and len(p) >= 2 and p[1]:
            n = p[1]
            if (len(p) - 2) % (n + 1):
                return  # rows that do not divide evenly: the servos reject the packet
            for k in range(2, len(p) - n, n + 1):
                servo = _find(listening, p[k])
                if servo:
                    servo.write(p[0], p[k + 1 : k + 1 + n])
        elif pkt.servo_id == BROADCAST_ID:
            for servo in listening:
                _execute(servo, inst, p)
        else:
            servo = _find(listening, pkt.servo_id)
            data = _execute(servo, inst, p) if servo else None
            answers = servo and (servo.response_level or inst in _ALWAYS_ANSWERED)
            if answers and data is not None:  # from the id addressed, even if it just changed
                self._answer(servo, data, now_ns, size, pkt.servo_id)

    # -- answering

    def _answer(
        self,
        servo: ServoMemory,
        data: bytes,
        now_ns: int,
        request_size: int,
        servo_id: int | None = None,
    ) -> None:
        packet = encode_status(
            servo.servo_id if servo_id is None else servo_id, servo.error_bits, data
        )
        due = now_ns
        if self.wire_time:
            byte_ns = BITS_PER_BYTE * 1e9 / servo.baud
            start = max(now_ns + request_size * byte_ns, self._bus_free_ns)
            due = int(start + servo.return_delay_ns + len(packet) * byte_ns)
            self._bus_free_ns = due
        self._out.append((due, packet))

    def _send(self, packet: bytes) -> None:
        self.answers += 1  # counted before the client can see it (tests read it after)
        try:
            os.write(self._fd, packet)
        except OSError as err:  # no slave open: the answer is lost, as on an open bus
            log.debug("answer dropped: %s", err)


_ALWAYS_ANSWERED = (Instruction.PING, Instruction.READ)
"""Answered even at RESPONSE_LEVEL 0."""


def _find(servos: list[ServoMemory], servo_id: int) -> ServoMemory | None:
    for s in servos:
        if s.servo_id == servo_id:
            return s
    return None


def _execute(servo: ServoMemory, inst: int, p: bytes) -> bytes | None:
    """Carry out one instruction on one servo; the answer's data, or None for no answer
    (bad parameters, an unknown instruction)."""
    if inst == Instruction.PING and not p:
        return b""
    if inst == Instruction.READ and len(p) == 2 and p[1]:
        return servo.read(p[0], p[1])
    if inst == Instruction.WRITE and len(p) >= 2:
        servo.write(p[0], p[1:])
        return b""
    if inst == Instruction.REG_WRITE and len(p) >= 2:
        servo.held = (p[0], bytes(p[1:]))
        return b""
    if inst == Instruction.ACTION and not p:
        if servo.held is not None:
            servo.write(*servo.held)
            servo.held = None
        return b""
    return None
