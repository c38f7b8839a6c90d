"""A servo bus as the control loop's transport (`transport.Transport`): each tick one sync
read of every servo's present block becomes a STATE, and a COMMAND becomes one sync write
of goal positions. The loop is the framed protocol's own; only the wire differs.

poll: one `sync_read_into` of the present position, speed and load of every servo (one
contiguous block) into a buffer allocated once, decoded (sign-magnitude, vectorized) and
mapped through the calibration's `ServoMap` into the spec's sensor order (each sensor's
`bus_id` and `register`), stamped on the host's clock (`t_us`) with a seq counting up. A
failed read (timeout, checksum, malformed answer) yields nothing and is counted by kind, so
the loop's stale-state check ends the run after a few in a row; an error bit in any
servo's status (overload, overheat, voltage, ...) raises the `servo_error` fault naming
the servo, its joint and the bits. send_command: goal counts (`ServoMap.to_counts`,
clamped to the calibrated range) as ONE sync write.

Where the values live (addresses, sizes, sign bits) is the bus's `ServoRegisters`
(`bus.registers`), so another vendor's bus is another data object, not another transport.
The decoded rows are the layout's `Sensor.register` names in order (position, speed, load).
Host floor: imports wire (the bus contract, the protocol's State), envs (the register
names) and host.safety.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable

import numpy as np

from envs.layout_types import BUS_REGISTERS as REGISTERS
from firmware_bridge.host.safety import SafetyFault
from firmware_bridge.host.transport import Transport
from firmware_bridge.wire.constants import F32
from firmware_bridge.wire.protocol import Message, State, Status
from firmware_bridge.wire.servo_bus import BusError, Field, ServoBus
from firmware_bridge.wire.servo_calibration import ServoMap

READ_TIMES = 1 << 16
"""Sync read durations kept (22 min at 50 Hz)."""
STREAMING = int(Status.ENABLED | Status.STREAMING)
"""The status a STATE from the bus carries: the servos are torqued and answering."""


def _column(raw: np.ndarray, rows: int, stride: int, f: Field, base: int) -> np.ndarray:
    """A view of one field in each of `rows` records of `stride` bytes (record i at
    raw[i*stride:]), the field at f.address - base in each: read and written in place."""
    if f.size not in (1, 2, 4, 8):
        raise ValueError(f"a {f.size}-byte register has no integer view")
    return np.ndarray(
        (rows,), dtype=f"<u{f.size}", buffer=raw, offset=f.address - base, strides=(stride,)
    )


class SignMagnitude:
    """Sign-magnitude integers <-> int64, vectorized with buffers allocated once (the
    vendor's rule: magnitude without the sign bit, negated when it is set)."""

    def __init__(self, n: int, sign_bit: int | None) -> None:
        self.bit = sign_bit
        self._flag = np.zeros(n, np.int64)

    def decode(self, raw: np.ndarray, out: np.ndarray) -> np.ndarray:
        np.copyto(out, raw, casting="unsafe")
        if self.bit is None:
            return out
        f = self._flag
        np.right_shift(out, self.bit, out=f)
        np.bitwise_and(f, 1, out=f)  # 1 where negative
        np.bitwise_and(out, ~(1 << self.bit), out=out)
        np.multiply(f, -2, out=f)
        np.add(f, 1, out=f)  # -1 where negative, else 1
        return np.multiply(out, f, out=out)

    def encode(self, values: np.ndarray, out: np.ndarray) -> np.ndarray:
        """values (int64, changed in place) into out (the register's unsigned view)."""
        if self.bit is not None:
            f = self._flag
            np.less(values, 0, out=f, casting="unsafe")
            np.abs(values, out=values)
            np.left_shift(f, self.bit, out=f)
            np.bitwise_or(values, f, out=values)
        np.copyto(out, values, casting="unsafe")
        return out


class BusTransport(Transport):
    """The loop's link on a `ServoBus`: one sync read per poll, one sync write per command.
    `bus` is opened by the caller (and answers with raising on error bits turned off, so a
    read that carries them still arrives and is told apart from a failed one)."""

    def __init__(
        self,
        bus: ServoBus,
        spec,
        smap: ServoMap,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.bus, self.smap, self.clock = bus, smap, clock
        self.origin_ns = 0
        """Where `t_us` counts from on `clock` (a deploy: the log's origin, so that a STATE's
        `t_us` and the log's `t_host` are one clock, `bus_deploy.STAMPS`)."""
        regs = bus.registers
        self.ids = [int(a.bus_id) for a in spec.actuators]
        self.joints = tuple(a.name for a in spec.actuators)
        n = len(self.ids)
        self.address, self.size = regs.present_block
        self._raw = np.zeros(n * self.size, np.uint8)
        self._columns = [
            _column(self._raw, n, self.size, regs.present[r], self.address) for r in REGISTERS
        ]
        self._signs = [SignMagnitude(n, regs.present[r].sign_bit) for r in REGISTERS]
        self.counts = np.zeros((len(REGISTERS), n), np.int64)
        """The latest read, decoded: counts of position, speed and load, actuator order."""
        self._values = np.zeros((len(REGISTERS), n))
        self._take = _sensor_index(spec, self.ids)
        self._sensors = np.zeros(len(self._take))
        goal = regs.goal_position
        self.goal_field = goal
        self._goal = np.zeros(n, np.int64)
        self._goal_raw = np.zeros(n * goal.size, np.uint8)
        self._goal_col = _column(self._goal_raw, n, goal.size, goal, goal.address)
        self._goal_sign = SignMagnitude(n, goal.sign_bit)
        view = memoryview(self._goal_raw)
        self._rows = [view[i * goal.size : (i + 1) * goal.size] for i in range(n)]
        self.seq = 0
        self.cmd_seq = 0
        self.errors: Counter[str] = Counter()
        """Failed reads by kind (timeout, checksum, malformed)."""
        self.last_error: str | None = None
        """The latest failed read's one line."""
        self.read_ms = np.zeros(READ_TIMES)
        """How long each successful sync read took (request to last answer), the latest
        READ_TIMES in a ring: the bus's round trip, in the summary."""
        self.reads = 0

    # -- reading

    def read_counts(self) -> np.ndarray:
        """One sync read of every servo's present block, decoded into `counts` (BusError
        if it failed; error bits are left to the caller, in `bus.last_error_bits`)."""
        self.bus.sync_read_into(self.ids, self.address, self.size, self._raw)
        for col, sign, out in zip(self._columns, self._signs, self.counts, strict=True):
            sign.decode(col, out)
        return self.counts

    def sensors(self, out: np.ndarray) -> np.ndarray:
        """The latest `counts` in model units, in the spec's sensor order, into out."""
        c, v, m = self.counts, self._values, self.smap
        m.to_rad(c[0], out=v[0])
        m.speed_to_rad_s(c[1], out=v[1])
        m.load_to_torque(c[2], out=v[2])
        return np.take(v.reshape(-1), self._take, out=out)

    def check_errors(self) -> None:
        """Raise the `servo_error` fault if the latest status of any servo has error bits."""
        bad = error_report(self.bus, zip(self.joints, self.ids, strict=True))
        if bad:
            raise SafetyFault("servo_error", "; ".join(bad))

    def poll(self) -> Iterable[tuple[int, Message]]:
        """One sync read as a STATE stamped with the time its request left (`t_us`, the
        host's clock: the servos sample after it): () when the read failed (counted), the
        `servo_error` fault when a servo reports error bits."""
        t_ns = self.clock()
        try:
            self.read_counts()
        except BusError as e:
            self.errors[e.kind.value] += 1
            self.last_error = str(e)
            return ()
        self.read_ms[self.reads % READ_TIMES] = (self.clock() - t_ns) / 1e6
        self.reads += 1
        self.check_errors()
        self.sensors(self._sensors)
        values = self._sensors.astype(F32)
        values.flags.writeable = False
        self.seq += 1
        state = State(
            (t_ns - self.origin_ns) // 1000, STREAMING, 0, self.cmd_seq, self.dropped, values
        )
        return ((self.seq, state),)

    # -- writing

    def _encode(self, command: np.ndarray) -> None:
        self.smap.to_counts(command, out=self._goal)
        self._goal_sign.encode(self._goal, self._goal_col)

    def write_goal_counts(self, counts: np.ndarray) -> None:
        """Goal positions in counts (as read, not clamped) as one sync write: the hold."""
        np.copyto(self._goal, counts)
        self._goal_sign.encode(self._goal, self._goal_col)
        self.bus.sync_write(self.ids, self.goal_field.address, self._rows)

    def send_command(self, state_seq: int, command: np.ndarray) -> int:  # noqa: ARG002
        self._encode(command)
        self.bus.sync_write(self.ids, self.goal_field.address, self._rows)
        self.cmd_seq += 1
        return self.cmd_seq

    def prime(self, state_seq: int, command: np.ndarray) -> None:  # noqa: ARG002
        self._encode(command)

    def read_times(self) -> np.ndarray:
        """The sync read durations kept (ms)."""
        return self.read_ms[: min(self.reads, READ_TIMES)]

    @property
    def n_sensors(self) -> int:
        return len(self._take)

    @property
    def dropped(self) -> int:
        return sum(self.errors.values())


def error_report(bus: ServoBus, servos: Iterable[tuple[str, int]]) -> list[str]:
    """One phrase per (joint, id) whose latest status packet carries error bits."""
    bits = bus.last_error_bits
    return [
        f"servo {sid} ({j}) reports {', '.join(bus.error_names(b))} (error byte 0x{b:02x})"
        for j, sid in servos
        if (b := bits.get(sid, 0))
    ]


def _sensor_index(spec, ids: list[int]) -> np.ndarray:
    """Each sensor's place in the decoded (register, servo) values, flattened; UserError
    for a sensor a servo does not report."""
    from ppo_robot.cli import UserError

    out = np.zeros(spec.n_sensors, np.intp)
    for k, s in enumerate(spec.sensors):
        if s.register not in REGISTERS or s.bus_id not in ids:
            raise UserError(
                f"robot {spec.name}: sensor {s.name} is not a servo's present value "
                f"(bus_id {s.bus_id}, register {s.register}; servos {ids}): a servo-bus "
                "robot's readings all come from its servos"
            )
        out[k] = REGISTERS.index(s.register) * len(ids) + ids.index(s.bus_id)
    return out
