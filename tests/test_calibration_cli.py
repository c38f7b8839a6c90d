"""`python -m firmware_bridge.calibrate` as a real subprocess against emulated STS3215
servos on a pseudo-terminal: a hand sweeps every joint, the file and the servos hold the
calibration; SIGTERM, an unmoved joint, a missing servo and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from envs.robots.so101.layout import JOINTS, SERVO_IDS
from firmware_bridge.sim.feetech_servos import BusEmulator
from firmware_bridge.wire.feetech_table import Reg
from firmware_bridge.wire.servo_calibration import Calibration
from tests.conftest import PY, ROOT, last_json

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
