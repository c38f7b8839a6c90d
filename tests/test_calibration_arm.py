"""A servo arm on the host: the range recorder on a virtual clock (min and max per joint,
progress each second, a stop, an encoder wrap, a silent bus) and the arm taken from the
robot registry (a plugin arm too; a robot without a servo bus refused in one line)."""

from __future__ import annotations

import dataclasses
import threading

import pytest

import envs.robots
from envs.robots.so101.layout import JOINTS, SERVO_IDS
from firmware_bridge.host.servo_arm import record_ranges, servo_arm
from firmware_bridge.wire.servo_bus import BusError
from ppo_robot.cli import RunFault, UserError

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
