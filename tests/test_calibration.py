"""A servo arm's calibration: LeRobot's file (a real SO-101 follower's, round trips, every
refusal), the counts <-> rad map (by hand, against LeRobot's DEGREES formula, hypothesis
round trips), the range recorder on a virtual clock, and `python -m firmware_bridge.calibrate`
as a real subprocess against emulated STS3215 servos on a pseudo-terminal."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import signal
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import envs.robots
from envs.robots.so101.layout import (
    JOINT_RANGE,
    JOINTS,
    LOAD_FULL_SCALE,
    SERVO_IDS,
    STALL_TORQUE,
    layout,
)
from firmware_bridge.host.servo_arm import record_ranges, servo_arm
from firmware_bridge.sim.feetech_servos import BusEmulator
from firmware_bridge.wire.feetech_table import Reg
from firmware_bridge.wire.servo_bus import BusError
from firmware_bridge.wire.servo_calibration import (
    COUNT,
    Calibration,
    CalibrationError,
    JointCalibration,
)
from ppo_robot.cli import RunFault, UserError
from tests.conftest import PY, ROOT, last_json

# A real SO-101 follower's file from `lerobot-calibrate` (matrix97317/UniRobot,
# unirobot/robot/motor/so_arm101_calib.py), in the layout LeRobot writes (draccus, indent 4).
LEROBOT_FILE = """{
    "shoulder_pan": {
        "id": 1,
        "drive_mode": 0,
        "homing_offset": -1365,
        "range_min": 746,
        "range_max": 3477
    },
    "shoulder_lift": {
        "id": 2,
        "drive_mode": 0,
        "homing_offset": -1200,
        "range_min": 822,
        "range_max": 3211
    },
    "elbow_flex": {
        "id": 3,
        "drive_mode": 0,
        "homing_offset": -986,
        "range_min": 901,
        "range_max": 3110
    },
    "wrist_flex": {
        "id": 4,
        "drive_mode": 0,
        "homing_offset": -1696,
        "range_min": 849,
        "range_max": 3216
    },
    "wrist_roll": {
        "id": 5,
        "drive_mode": 0,
        "homing_offset": -375,
        "range_min": 135,
        "range_max": 3984
    },
    "gripper": {
        "id": 6,
        "drive_mode": 0,
        "homing_offset": 1871,
        "range_min": 1975,
        "range_max": 3565
    }
}"""
CENTERS = [a.center for a in layout().actuators]


def _map(cal: Calibration, center=None):
    return cal.servo_map(
        load_full_scale=LOAD_FULL_SCALE, stall_torque=STALL_TORQUE, center_rad=center
    )


# ------------------------------------------------------------------------------ the file


def test_lerobot_file_loads_and_saves_as_lerobot_writes_it(tmp_path):
    src = tmp_path / "my_follower.json"
    src.write_text(LEROBOT_FILE)
    cal = Calibration.load(src, JOINTS, SERVO_IDS)
    assert cal.joints == JOINTS and cal.ids == (1, 2, 3, 4, 5, 6)
    assert cal["gripper"] == JointCalibration(6, 0, 1871, 1975, 3565)
    assert cal["shoulder_pan"].homing_offset == -1365
    out = cal.save(tmp_path / "sub" / "again.json")
    assert out.read_text() == LEROBOT_FILE + "\n"  # key order, indent 4: LeRobot's bytes
    assert not list(out.parent.glob("*.tmp"))
    assert Calibration.load(out, JOINTS, SERVO_IDS) == cal


def test_ours_round_trips_through_json(tmp_path):
    cal = Calibration(
        JOINTS,
        tuple(JointCalibration(i + 1, i % 2, 300 * i - 900, 100 + i, 4000 - i) for i in range(6)),
    )
    path = cal.save(tmp_path / "arm.json")
    assert json.loads(path.read_text())["elbow_flex"] == {
        "id": 3,
        "drive_mode": 0,
        "homing_offset": -300,
        "range_min": 102,
        "range_max": 3998,
    }
    assert Calibration.load(path, JOINTS, SERVO_IDS) == cal


def _edit(fn):
    data = json.loads(LEROBOT_FILE)
    fn(data)
    return json.dumps(data)


def _drop_joint(d):
    del d["gripper"]


REFUSALS = [
    # (file text, what the one line must name)
    (_edit(_drop_joint), ["no calibration for joint(s) gripper"]),
    (_edit(lambda d: d.update(elbow=copy.deepcopy(d["gripper"]))), ["elbow", "not the robot's"]),
    (_edit(lambda d: d["elbow_flex"].update(id=7)), ["elbow_flex.id = 7", "other ids"]),
    (
        _edit(lambda d: d["wrist_flex"].update(range_min=3216)),
        ["wrist_flex", "range_min = 3216", "range_max = 3216"],
    ),
    (_edit(lambda d: d["wrist_roll"].update(range_max=4096)), ["wrist_roll.range_max = 4096"]),
    (_edit(lambda d: d["wrist_roll"].update(range_min=-1)), ["wrist_roll.range_min = -1"]),
    (_edit(lambda d: d["gripper"].update(homing_offset=2048)), ["gripper.homing_offset = 2048"]),
    (_edit(lambda d: d["gripper"].update(drive_mode=2)), ["gripper.drive_mode = 2"]),
    (_edit(lambda d: d["shoulder_pan"].update(offset=3)), ["shoulder_pan", "unknown key(s) offset"]),
    (_edit(lambda d: d["shoulder_pan"].pop("range_max")), ["shoulder_pan", "missing key(s) range_max"]),
    (_edit(lambda d: d["shoulder_lift"].update(range_min=822.5)), ["shoulder_lift.range_min = 822.5"]),
    (_edit(lambda d: d["shoulder_lift"].update(range_min="822")), ["shoulder_lift.range_min = '822'"]),
    (_edit(lambda d: d["shoulder_lift"].update(drive_mode=True)), ["shoulder_lift.drive_mode = True"]),
    (_edit(lambda d: d.update(gripper=[6, 0])), ["gripper: must be a mapping"]),
    ("[1, 2]", ["must map each joint"]),
    (LEROBOT_FILE[:-10], ["not valid JSON", "line"]),
]  # fmt: skip


@pytest.mark.parametrize(("text", "names"), REFUSALS)
def test_every_refusal_is_one_line_naming_file_joint_key_value(tmp_path, text, names):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(CalibrationError) as err:
        Calibration.load(path, JOINTS, SERVO_IDS)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(path))
    for name in names:
        assert name in msg
    assert isinstance(err.value, UserError)  # an entry point reports it and exits 2


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(CalibrationError, match="no such calibration file"):
        Calibration.load(tmp_path / "none.json", JOINTS, SERVO_IDS)


def test_identity_is_a_factory_servo():
    cal = Calibration.identity(JOINTS, SERVO_IDS, JOINT_RANGE)
    m = _map(cal, CENTERS)
    for j, (lo, hi) in JOINT_RANGE.items():
        c = cal[j]
        assert (c.drive_mode, c.homing_offset) == (0, 0)
        assert c.range_min + c.range_max == 4096  # mid 2048
        assert c.range_max - c.range_min == pytest.approx((hi - lo) / COUNT, abs=1)
    # a factory servo at rest reads 2048: the middle of every joint's range
    assert m.to_rad(np.full(6, 2048)) == pytest.approx(CENTERS)
    full = Calibration.identity(JOINTS, SERVO_IDS)
    assert {(c.range_min, c.range_max) for c in full.motors} == {(0, 4095)}


# ------------------------------------------------------------------------------ the map


def _cal(drive_modes=(0,) * 6, lo=1000, hi=3000) -> Calibration:
    return Calibration(
        JOINTS, tuple(JointCalibration(i + 1, d, 0, lo, hi) for i, d in enumerate(drive_modes))
    )


def test_map_by_hand():
    m = _map(_cal(drive_modes=(0, 1, 0, 0, 0, 0)))  # mid 2000
    rad = m.to_rad(np.array([2000, 2100, 1900, 2000 + 1024, 2000 - 2048, 3000]))
    assert rad == pytest.approx(
        [0, -100 * COUNT, -100 * COUNT, math.pi / 2, -math.pi, 1000 * COUNT]
    )
    assert math.isclose(100 * COUNT, 0.153398, abs_tol=1e-6)  # 100 counts = 8.79 deg
    goals = m.to_counts(np.array([0.0, 100 * COUNT, 0.4 * COUNT, 0.6 * COUNT, 9.0, -9.0]))
    assert goals.tolist() == [2000, 1900, 2000, 2001, 3000, 1000]  # rounded; clamped to range
    assert m.speed_to_rad_s(np.array([10, 10, 0, 0, 0, 0]))[:2] == pytest.approx(
        [10 * COUNT, -10 * COUNT]
    )
    load = m.load_to_torque(np.array([1000, 500, -250, 0, 0, 0]))
    assert load[:3] == pytest.approx([STALL_TORQUE, -STALL_TORQUE / 2, -STALL_TORQUE / 4])
    assert m.torque_to_load(np.array([9.0, 1.47, -1.47, 0, 0, 0])).tolist()[:3] == [
        1000,
        -500,
        -500,
    ]
    assert m.rad_s_to_speed(np.array([COUNT * 7.4, COUNT * 3] + [0] * 4)).tolist()[:2] == [7, -3]


def test_center_puts_the_middle_of_the_range_at_the_model_middle():
    """wrist_roll's and the gripper's model ranges are not centred on zero."""
    cal = Calibration.from_dict(json.loads(LEROBOT_FILE), JOINTS, SERVO_IDS)
    m = _map(cal, CENTERS)
    mids = np.array([(c.range_min + c.range_max) / 2 for c in cal.motors])
    assert m.to_rad(mids) == pytest.approx(CENTERS)
    assert CENTERS[4] == pytest.approx(0.5 * (-2.74385 + 2.84121))
    assert CENTERS[5] == pytest.approx(0.5 * (-0.174533 + 1.745329))
    assert m.to_counts(np.array(CENTERS)).tolist() == np.rint(mids).tolist()


def test_present_counts_wrap_and_are_not_clamped():
    m = _map(_cal())
    got = m.to_present(np.array([0.0, 1200 * COUNT, -2100 * COUNT, 0, 0, 0]))
    assert got.tolist()[:3] == [2000, 3200, (2000 - 2100) % 4096]


def test_out_arrays_are_filled_in_place():
    m = _map(_cal(), CENTERS)
    counts = np.array([1000, 1500, 2000, 2500, 3000, 2222], np.int64)
    rad = np.empty(6)
    goal = np.empty(6, np.int32)
    assert m.to_rad(counts, out=rad) is rad
    assert m.to_counts(rad, out=goal) is goal
    assert goal.tolist() == counts.tolist()
    speed = np.empty(6)
    assert m.speed_to_rad_s(counts, out=speed) is speed
    assert m.load_to_torque(counts, out=speed) is speed
    batch = m.to_rad(np.tile(counts, (4, 1)))  # a batch over a leading axis
    assert batch.shape == (4, 6) and batch[3] == pytest.approx(rad)


def test_per_tick_methods_allocate_nothing_given_out():
    """The host converts each tick's sync read with these: with out= they fill it and
    allocate no array (a temporary the size of the input would show as n * 8 bytes)."""
    n = 4096
    cal = Calibration(
        tuple(f"j{i}" for i in range(n)),
        tuple(JointCalibration(i + 1, i % 2, 0, 1000, 3000) for i in range(n)),
    )
    m = cal.servo_map(load_full_scale=1000, stall_torque=2.94, center_rad=np.linspace(-1, 1, n))
    counts = np.arange(n, dtype=np.int64) % 2000 + 1000  # integers, as the bus decodes them
    calls = [
        (m.to_rad, counts, np.empty(n)),
        (m.speed_to_rad_s, counts, np.empty(n)),
        (m.load_to_torque, counts, np.empty(n)),
        (m.to_counts, m.to_rad(counts), np.empty(n, np.int32)),
        (m.to_counts, m.to_rad(counts), np.empty(n, np.int64)),
    ]
    for f, x, out in calls:
        want = f(x)  # the allocating form, for the values
        f(x, out=out)  # warm up
        tracemalloc.start()
        try:
            start, _ = tracemalloc.get_traced_memory()
            for _ in range(20):
                got = f(x, out=out)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert got is out, f.__name__
        assert peak - start < n, f"{f.__name__} allocated {peak - start} bytes"
        assert np.array_equal(out, want), f.__name__


def test_a_nan_angle_is_refused_not_sent():
    m = _map(_cal())
    with pytest.raises(ValueError, match="not finite"):
        m.to_counts(np.array([0.0, math.nan, 0, 0, 0, 0]))


def test_map_agrees_with_lerobot_degrees_mode():
    """LeRobot's DEGREES: (counts - mid) * 360 / 4095 (motors_bus.py _normalize); ours is
    360 / 4096 per count, 0.024 % apart."""
    cal = Calibration.from_dict(json.loads(LEROBOT_FILE), JOINTS, SERVO_IDS)
    m = _map(cal)
    counts = np.array([746, 1100, 2000, 3000, 3984, 3565])
    mids = np.array([(c.range_min + c.range_max) / 2 for c in cal.motors])
    lerobot_deg = (counts - mids) * 360 / 4095
    assert np.degrees(m.to_rad(counts)) == pytest.approx(lerobot_deg, rel=3e-4)


motor = st.tuples(st.integers(0, 4094), st.integers(1, 4095), st.sampled_from([0, 1])).filter(
    lambda t: t[0] < t[1]
)


@given(st.lists(motor, min_size=6, max_size=6), st.lists(st.floats(0, 1), min_size=6, max_size=6))
def test_rad_to_counts_to_rad_within_half_a_count(motors, fractions):
    cal = Calibration(
        JOINTS,
        tuple(JointCalibration(i + 1, d, 0, lo, hi) for i, (lo, hi, d) in enumerate(motors)),
    )
    m = _map(cal, CENTERS)
    lo = m.to_rad(np.array([c.range_min for c in cal.motors]))
    hi = m.to_rad(np.array([c.range_max for c in cal.motors]))
    rad = lo + np.array(fractions) * (hi - lo)  # inside the calibrated range
    back = m.to_rad(m.to_counts(rad))
    assert np.all(np.abs(back - rad) <= COUNT / 2 + 1e-12)
    counts = m.to_counts(rad)
    assert np.array_equal(m.to_counts(m.to_rad(counts)), counts)  # counts survive exactly


# ------------------------------------------------------------------------------ recorder


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def wait(self, dt: float) -> None:
        self.t += dt


def _recorder(positions, *, timeout_s=2.0, stop=None, fail_at=()):
    clock, stop = _Clock(), stop or threading.Event()
    seen, reports = [0], []

    def sample(out):
        k = seen[0]
        seen[0] += 1
        if k in fail_at:
            raise BusError("timeout", 1, "no answer")
        out[:] = positions(k)

    rec = record_ranges(
        sample,
        JOINTS,
        timeout_s=timeout_s,
        period_s=0.02,
        stop=stop,
        progress=lambda t, lo, hi: reports.append((t, lo.tolist(), hi.tolist())),
        clock=clock,
        wait=clock.wait,
    )
    return rec, reports


def test_recorder_tracks_min_and_max_and_reports_each_second():
    rec, reports = _recorder(
        lambda k: [2047 + (k % 50) * 10 - 200] * 5 + [2047], fail_at={7}, timeout_s=2.5
    )
    assert rec.ended == "timeout" and rec.duration_s == pytest.approx(2.5, abs=0.03)
    assert rec.mins.tolist() == [1847] * 5 + [2047]
    assert rec.maxs.tolist() == [1847 + 490] * 5 + [2047]
    assert rec.bus_errors == 1 and rec.samples == pytest.approx(125, abs=2)
    assert [round(t) for t, _, _ in reports] == [1, 2]


def test_recorder_ends_on_stop():
    stop = threading.Event()

    def still(k: int) -> list[int]:
        if k == 10:
            stop.set()  # as Ctrl-C's handler does
        return [2047] * 6

    rec, _ = _recorder(still, stop=stop, timeout_s=60)
    assert rec.ended == "stopped" and rec.duration_s < 1 and rec.samples == 11


def test_recorder_refuses_a_joint_that_crosses_the_encoder_wrap():
    with pytest.raises(UserError, match="wrist_roll jumped from 4090 to 3"):
        _recorder(lambda k: [2047] * 4 + [4090 if k < 5 else 3, 2047])


def test_recorder_faults_when_the_bus_stays_silent():
    with pytest.raises(RunFault, match="25 failed reads in a row"):
        _recorder(lambda k: [2047] * 6, fail_at=set(range(1, 100)))


# ------------------------------------------------------------------------------ the arm


def test_the_arm_comes_from_the_registry():
    arm = servo_arm("so101")
    assert arm.joints == JOINTS == tuple(a.name for a in envs.robots.get_robot("so101").actuators)
    assert dict(arm.ids) == SERVO_IDS and arm.id_list == [1, 2, 3, 4, 5, 6]
    assert arm.baud == envs.robots.settings("so101")["baud"] == 1_000_000


def test_a_registered_servo_robot_needs_no_layout_module(tmp_path, monkeypatch):
    """A plugin arm: its ids from its actuators' bus_id, its baud from its robot.yaml."""
    so101 = envs.robots.get_entry("so101")
    actuators = tuple(dataclasses.replace(a, bus_id=a.bus_id + 10) for a in so101.layout.actuators)
    layout_ = dataclasses.replace(so101.layout, name="plugin_arm", actuators=actuators)
    (tmp_path / "robot.yaml").write_text("transport: feetech\nbaud: 500000\n")
    entry = dataclasses.replace(so101, layout=layout_, folder=tmp_path)
    monkeypatch.setitem(envs.robots.robots(), "plugin_arm", entry)
    arm = servo_arm("plugin_arm")
    assert arm.joints == JOINTS and arm.id_list == [11, 12, 13, 14, 15, 16]
    assert arm.baud == 500_000
    with pytest.raises(UserError, match=r"no such robot .*with a servo bus: plugin_arm, so101\)"):
        servo_arm("nope")


@pytest.mark.parametrize("name", ["furuta", "servo_test"])
def test_a_robot_without_a_servo_bus_is_refused_in_one_line(name):
    with pytest.raises(UserError) as e:
        servo_arm(name)
    assert str(e.value) == (
        f"robot={name} has no servo bus to calibrate (its transport is framed; "
        "robots with one: so101)"
    )


# ------------------------------------------------------------------------------ the CLI

RAW_MID = {1: 2900, 2: 1500, 3: 2100, 4: 1000, 5: 3500, 6: 2600}
"""Raw encoder counts of the pose the user holds at start (the middle of each range)."""
HALF = {1: 1300, 2: 1100, 3: 1000, 4: 900, 5: 1800, 6: 600}
"""Half of each joint's range, in counts, as the test's hand moves it."""


class Hand:
    """Moves the emulated servos' encoders as a user would: holds the middle pose until the
    servos are homed, sweeps every joint to both ends (dwelling there), holds the middle."""

    def __init__(self, emu: BusEmulator, moved=tuple(RAW_MID)) -> None:
        self.emu, self.moved = emu, moved
        self.swept, self.stop = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _hold(self, pose: dict[int, int], seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self.stop.is_set():
            for sid, counts in pose.items():
                self.emu.servo(sid).set_encoder_position(counts)
            time.sleep(0.002)

    def _at(self, fraction: float) -> dict[int, int]:
        return {
            s: RAW_MID[s] + (round(HALF[s] * fraction) if s in self.moved else 0) for s in RAW_MID
        }

    def _homed(self) -> bool:
        return all(self.emu.servo(s).get(Reg.HOMING_OFFSET) == RAW_MID[s] - 2047 for s in RAW_MID)

    def _run(self) -> None:
        while not self._homed() and not self.stop.is_set():
            self._hold(self._at(0), 0.01)
        self._hold(self._at(0), 0.3)
        for f in [*np.linspace(0, 1, 21), *[1] * 40, *np.linspace(1, -1, 41), *[-1] * 40]:
            self._hold(self._at(f), 0.01)
        self.swept.set()
        while not self.stop.is_set():
            self._hold(self._at(0), 0.05)


@pytest.fixture
def bus_pty() -> Iterator[tuple[BusEmulator, str]]:
    """Six factory STS3215 (ids 1..6) served on a pty from a thread; the port's path."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)
    emu = BusEmulator(list(RAW_MID), master)
    stop = threading.Event()
    thread = threading.Thread(target=emu.serve_forever, args=(stop,), daemon=True)
    thread.start()
    yield emu, path
    stop.set()
    thread.join(2)
    os.close(master)


def _calibrate(port: str, out: Path, *args: str) -> list[str]:
    return [
        PY, "-m", "firmware_bridge.calibrate", "robot=so101", f"port={port}", f"out={out}",
        "bus_timeout_ms=300", *args,
    ]  # fmt: skip


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PPO_ROBOT_HYDRA_DIR": str(tmp_path / "hydra")}


def _expected_file() -> dict:
    return {
        j: {
            "id": SERVO_IDS[j],
            "drive_mode": 0,
            "homing_offset": RAW_MID[SERVO_IDS[j]] - 2047,
            "range_min": 2047 - HALF[SERVO_IDS[j]],
            "range_max": 2047 + HALF[SERVO_IDS[j]],
        }
        for j in JOINTS
    }


def test_cli_records_a_sweep_and_ends_on_its_timeout(bus_pty, tmp_path):
    emu, port = bus_pty
    hand = Hand(emu)
    hand.thread.start()
    out = tmp_path / "cal" / "my_follower.json"
    try:
        p = subprocess.run(
            _calibrate(port, out, "timeout_s=6"),
            cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        hand.stop.set()
    assert p.returncode == 0, p.stderr
    assert hand.swept.is_set()
    assert json.loads(out.read_text()) == _expected_file()
    cal = Calibration.load(out, JOINTS, SERVO_IDS)  # and it is a file we accept
    summary = last_json(p.stdout)
    assert summary["baud"] == 1_000_000  # baud= left null: the robot's (robot.yaml)
    assert summary["ended"] == "timeout" and summary["duration_s"] == pytest.approx(6, abs=0.2)
    assert summary["joints"]["gripper"]["range_max"] == cal["gripper"].range_max
    assert json.loads((out.parent / "my_follower.summary.json").read_text()) == summary
    progress = [ln for ln in p.stderr.splitlines() if " s  shoulder_pan " in ln]
    assert 4 <= len(progress) <= 6  # one line a second
    for sid in RAW_MID:  # the servos now hold the calibration (as lerobot-calibrate leaves them)
        s = emu.servo(sid)
        assert s.get(Reg.HOMING_OFFSET) == RAW_MID[sid] - 2047
        assert (s.get(Reg.MIN_ANGLE_LIMIT), s.get(Reg.MAX_ANGLE_LIMIT)) == (
            2047 - HALF[sid],
            2047 + HALF[sid],
        )
        assert (s.get(Reg.LOCK), s.torque_enabled) == (1, False)


def test_cli_ends_on_sigterm_and_writes_the_file(bus_pty, tmp_path):
    emu, port = bus_pty
    hand = Hand(emu)
    hand.thread.start()
    out = tmp_path / "arm.json"
    proc = subprocess.Popen(
        _calibrate(port, out, "timeout_s=120"),
        cwd=ROOT, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert hand.swept.wait(90), "the CLI never homed the servos"
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        hand.stop.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert last_json(stdout)["ended"] == "stopped"
    assert json.loads(out.read_text()) == _expected_file()


def test_cli_refuses_a_joint_that_was_not_moved(bus_pty, tmp_path):
    emu, port = bus_pty
    hand = Hand(emu, moved=(1, 2, 3, 4, 5))  # the gripper stays put
    hand.thread.start()
    out = tmp_path / "arm.json"
    try:
        p = subprocess.run(
            _calibrate(port, out, "timeout_s=5"),
            cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        hand.stop.set()
    assert p.returncode == 2, p.stderr
    (line,) = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert "gripper (2047..2047)" in line and "min_span=200" in line
    assert not out.exists() and not list(tmp_path.glob("*.json"))


def test_cli_names_a_missing_servo(tmp_path):
    master, slave = os.openpty()
    port = os.ttyname(slave)
    os.close(slave)
    emu = BusEmulator([1, 2, 3, 4, 5], master)  # no gripper servo
    stop = threading.Event()
    thread = threading.Thread(target=emu.serve_forever, args=(stop,), daemon=True)
    thread.start()
    out = tmp_path / "arm.json"
    try:
        p = subprocess.run(
            _calibrate(port, out), cwd=ROOT, env=_env(tmp_path), capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
    finally:
        stop.set()
        thread.join(2)
        os.close(master)
    assert p.returncode == 2
    assert (
        p.stderr.strip().splitlines()[-1].startswith("error: servo id 6 (gripper) does not answer")
    )
    assert not out.exists()
    assert all(emu.servo(s).get(Reg.HOMING_OFFSET) == 0 for s in range(1, 6))  # untouched


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["robot=nope", "port=/dev/null"], "robot=nope: no such robot"),
        (["robot=furuta", "port=/dev/null"], "robot=furuta has no servo bus"),
        (["robot=so101", "port=/nonexistent/ttyACM0"], "does not exist"),
        (["robot=so101", "port=/dev/null"], "is not a serial port"),
        (["robot=so101", "port=/dev/null", "baud=9600"], "not an STS baud rate"),
        (["robot=so101", "port=/dev/null", "timeout_s=0"], "timeout_s must be > 0"),
    ],
    ids=["unknown_robot", "no_servo_bus", "no_port", "not_a_port", "bad_baud", "bad_timeout"],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, args, said):
    out = tmp_path / "arm.json"
    p = subprocess.run(
        [PY, "-m", "firmware_bridge.calibrate", *args, f"out={out}"],
        cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 2
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith("error: ") and said in line
    assert not out.exists()
