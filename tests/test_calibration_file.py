"""A servo arm's calibration file: LeRobot's (a real SO-101 follower's) loads and saves as
LeRobot writes it, ours round-trips through JSON, and every refusal is one line naming the
file, the joint, the key and the value."""

from __future__ import annotations

import copy
import json

import pytest

from envs.robots.so101.layout import JOINTS, SERVO_IDS
from firmware_bridge.wire.servo_calibration import Calibration, CalibrationError, JointCalibration
from ppo_robot.cli import UserError
from tests.lerobot_calibration import LEROBOT_FILE


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
