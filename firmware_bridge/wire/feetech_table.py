"""The Feetech STS/SMS memory table (STS3215 and kin) as data, and its value encodings.

Each register is a `Reg` member: address, size in bytes, area (EEPROM: kept over power
cycles, written only when unlocked; RAM), the sign bit of its sign-magnitude encoding (or
None for unsigned) and whether the host may write it. Multi-byte values are little-endian
("protocol end 0"); a signed value is sign-magnitude: the magnitude in the low bits and the
direction in one sign bit, not two's complement.

Sources (facts only; no code taken):
- Feetech, "SMS/STS series memory table" (FT-SMS-STS e-manual, doc.feetech.cn), mirrored
  at wiki.aifitlab.com/feetech-servo-motor-docs/feetech-sts-servo-memory-table-analysis
  and in ftservo/ftservo-wiki: addresses, sizes, EEPROM/RAM split, "BIT15 = direction"
  for goal position/speed and present position/speed, "BIT10 = direction" for present
  load, status bits (BIT0 voltage, BIT1 magnetic encoder, BIT2 temperature, BIT3 current,
  BIT5 load), baud codes 0..7.
- Feetech's SDK header SMS_STS.h (ftservo/FTServo_*): register addresses and the baud
  codes 5 = 76800, 6 = 57600, 7 = 38400, and `SMS_STS::ReadLoad` decoding bit 10.
- LeRobot, src/lerobot/motors/feetech/tables.py (huggingface/lerobot): the same
  addresses, model number 777 for the STS3215 and sign bit 11 for Homing_Offset.
  (Its baud table gives 57600/38400/19200 for codes 5..7; we follow the vendor header.)
- feetech-servo-sdk (PyPI, `scservo_sdk`): SCS_TOHOST/SCS_TOSCS, the sign-magnitude rule.
Wire floor: standard library and wire.servo_bus (the vendor-free register facts and the
sign-magnitude rule).
"""

from __future__ import annotations

from enum import Enum, IntFlag

from firmware_bridge.wire.servo_bus import (
    Field,
    ServoRegisters,
    from_sign_magnitude,
    to_sign_magnitude,
)


class Area(Enum):
    """Where a register lives."""

    EEPROM = "eeprom"
    """Kept over power cycles; written only while LOCK is 0."""
    RAM = "ram"
    """Lost at power-off; always writable (if not read-only)."""


class Reg(Enum):
    """The STS3215 memory table: (address, size, area, sign bit or None, host-writable)."""

    # -- EEPROM, read-only: version information
    FIRMWARE_MAJOR = (0, 1, Area.EEPROM, None, False)
    FIRMWARE_MINOR = (1, 1, Area.EEPROM, None, False)
    MODEL_NUMBER = (3, 2, Area.EEPROM, None, False)
    # -- EEPROM, read-write: configuration
    ID = (5, 1, Area.EEPROM, None, True)
    BAUD_RATE = (6, 1, Area.EEPROM, None, True)
    """A code of BAUD_CODES, not the rate."""
    RETURN_DELAY = (7, 1, Area.EEPROM, None, True)
    """Delay before a status packet, in units of 2 us."""
    RESPONSE_LEVEL = (8, 1, Area.EEPROM, None, True)
    """0: answer only PING and READ; 1: answer every instruction addressed to this id."""
    MIN_ANGLE_LIMIT = (9, 2, Area.EEPROM, None, True)
    MAX_ANGLE_LIMIT = (11, 2, Area.EEPROM, None, True)
    MAX_TEMPERATURE = (13, 1, Area.EEPROM, None, True)
    MAX_VOLTAGE = (14, 1, Area.EEPROM, None, True)
    MIN_VOLTAGE = (15, 1, Area.EEPROM, None, True)
    MAX_TORQUE = (16, 2, Area.EEPROM, None, True)
    """0.1 % of stall torque; copied into TORQUE_LIMIT at power-up."""
    PHASE = (18, 1, Area.EEPROM, None, True)
    UNLOAD_CONDITION = (19, 1, Area.EEPROM, None, True)
    LED_ALARM_CONDITION = (20, 1, Area.EEPROM, None, True)
    P_COEFFICIENT = (21, 1, Area.EEPROM, None, True)
    D_COEFFICIENT = (22, 1, Area.EEPROM, None, True)
    I_COEFFICIENT = (23, 1, Area.EEPROM, None, True)
    CW_DEAD_ZONE = (26, 1, Area.EEPROM, None, True)
    CCW_DEAD_ZONE = (27, 1, Area.EEPROM, None, True)
    PROTECTION_CURRENT = (28, 2, Area.EEPROM, None, True)
    """6.5 mA units."""
    HOMING_OFFSET = (31, 2, Area.EEPROM, 11, True)
    """Counts subtracted from the encoder reading (LeRobot: Present = Actual - Offset)."""
    OPERATING_MODE = (33, 1, Area.EEPROM, None, True)
    """0 position, 1 constant speed, 2 PWM, 3 step."""
    PROTECTIVE_TORQUE = (34, 1, Area.EEPROM, None, True)
    """Torque (1 %) held after overload protection trips."""
    PROTECTION_TIME = (35, 1, Area.EEPROM, None, True)
    """Overload time before protection trips, 10 ms units."""
    OVERLOAD_TORQUE = (36, 1, Area.EEPROM, None, True)
    OVERCURRENT_PROTECTION_TIME = (38, 1, Area.EEPROM, None, True)
    # -- RAM, read-write: control
    TORQUE_ENABLE = (40, 1, Area.RAM, None, True)
    ACCELERATION = (41, 1, Area.RAM, None, True)
    GOAL_POSITION = (42, 2, Area.RAM, 15, True)
    GOAL_TIME = (44, 2, Area.RAM, None, True)
    GOAL_SPEED = (46, 2, Area.RAM, 15, True)
    TORQUE_LIMIT = (48, 2, Area.RAM, None, True)
    """0.1 % of stall torque."""
    LOCK = (55, 1, Area.RAM, None, True)
    """1 (power-up): EEPROM locked; write 0 before writing EEPROM, 1 after."""
    # -- RAM, read-only: feedback
    PRESENT_POSITION = (56, 2, Area.RAM, 15, False)
    PRESENT_SPEED = (58, 2, Area.RAM, 15, False)
    PRESENT_LOAD = (60, 2, Area.RAM, 10, False)
    """0.1 % of PWM duty, bit 10 the direction."""
    PRESENT_VOLTAGE = (62, 1, Area.RAM, None, False)
    """0.1 V units."""
    PRESENT_TEMPERATURE = (63, 1, Area.RAM, None, False)
    """Degrees Celsius."""
    STATUS = (65, 1, Area.RAM, None, False)
    """Hardware error bits (ErrorBit); the error byte of every status packet."""
    MOVING = (66, 1, Area.RAM, None, False)
    PRESENT_CURRENT = (69, 2, Area.RAM, None, False)
    """6.5 mA units."""

    def __init__(
        self, address: int, size: int, area: Area, sign_bit: int | None, writable: bool
    ) -> None:
        self.address = address
        self.size = size
        self.area = area
        self.sign_bit = sign_bit
        self.writable = writable

    @property
    def end(self) -> int:
        """The address after the register's last byte."""
        return self.address + self.size

    @property
    def field(self) -> Field:
        """The register as the vendor-free `servo_bus.Field`."""
        return Field(self.address, self.size, self.sign_bit)


class ErrorBit(IntFlag):
    """The error byte of a status packet (= the STATUS register): 1 = fault."""

    VOLTAGE = 1
    ANGLE_SENSOR = 2
    """The magnetic encoder."""
    OVERHEAT = 4
    OVERCURRENT = 8
    OVERLOAD = 32


ERROR_NAMES: dict[int, str] = {int(b): b.name.lower() for b in ErrorBit}

BAUD_CODES: dict[int, int] = {
    0: 1_000_000,
    1: 500_000,
    2: 250_000,
    3: 128_000,
    4: 115_200,
    5: 76_800,
    6: 57_600,
    7: 38_400,
}
"""BAUD_RATE register code -> baud rate (vendor SMS_STS.h)."""

PERMILLE_FULL_SCALE = 1000
"""TORQUE_LIMIT, MAX_TORQUE and PRESENT_LOAD at 100 %: their unit is 0.1 % (of stall torque,
of full drive)."""

MODEL_STS3215 = 777
"""MODEL_NUMBER of the STS3215 (LeRobot's MODEL_NUMBER_TABLE)."""

# ------------------------------------------------------------------------------ values


def encode_value(reg: Reg, value: int) -> bytes:
    """The register's bytes for value (little-endian, sign-magnitude if signed)."""
    raw = value if reg.sign_bit is None else to_sign_magnitude(value, reg.sign_bit)
    if not 0 <= raw < 1 << (8 * reg.size):
        raise ValueError(f"{reg.name}: {value} does not fit {reg.size} byte(s)")
    return raw.to_bytes(reg.size, "little")


def decode_value(reg: Reg, data: bytes | bytearray | memoryview, base_address: int = -1) -> int:
    """The value of reg in data; data starts at base_address (default: reg's own address),
    e.g. the block of a sync read that spans several registers."""
    off = 0 if base_address < 0 else reg.address - base_address
    if off < 0 or off + reg.size > len(data):
        raise ValueError(f"{reg.name} is not inside {len(data)} bytes from {base_address}")
    raw = int.from_bytes(bytes(data[off : off + reg.size]), "little")
    return raw if reg.sign_bit is None else from_sign_magnitude(raw, reg.sign_bit)


FEETECH_REGISTERS = ServoRegisters(
    present={
        "position": Reg.PRESENT_POSITION.field,
        "speed": Reg.PRESENT_SPEED.field,
        "load": Reg.PRESENT_LOAD.field,
    },
    goal_position=Reg.GOAL_POSITION.field,
    torque_enable=Reg.TORQUE_ENABLE.field,
    torque_limit=Reg.TORQUE_LIMIT.field,
    torque_full_scale=PERMILLE_FULL_SCALE,
    firmware=(Reg.FIRMWARE_MAJOR.field, Reg.FIRMWARE_MINOR.field),
    return_delay=Reg.RETURN_DELAY.field,
    return_delay_unit_us=2.0,
    protection={
        "overload_torque_pct": (Reg.OVERLOAD_TORQUE.field, 1.0),
        "overload_time_ms": (Reg.PROTECTION_TIME.field, 10.0),
        "protective_torque_pct": (Reg.PROTECTIVE_TORQUE.field, 1.0),
    },
    eeprom_lock=Reg.LOCK.field,
    homing_offset=Reg.HOMING_OFFSET.field,
)
"""The STS3215's registers as a bus transport uses them (`servo_bus.ServoRegisters`):
present position/speed/load (56..61, one 6-byte read), goal, torque enable and limit, the
version and return delay read at connect, and the overload protection (EEPROM, behind LOCK:
OVERLOAD_TORQUE %, PROTECTION_TIME in 10 ms, PROTECTIVE_TORQUE %)."""
