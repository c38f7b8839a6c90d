"""The SO-101 arm's model (envs/robots/so101/so101.xml) against its layout and its figures.

Real MuJoCo on the shipped MJCF: the layout's check against the model (sensors, kp/kd),
joint ranges and servo limits as README.md tables them, a servo step tracked no faster than
the STS3215 turns, the home pose held against gravity under the stall torque, the tip's
reach, and collisions (floor, non-adjacent links; adjacent links never).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import mujoco
import numpy as np
import pytest

from envs.robots.so101 import layout as so101
from envs.spec import SpecError
from envs.task import physics_substeps

FOLDER = Path(so101.__file__).parent
_S = mujoco.mjtSensor


@pytest.fixture(scope="module")
def spec():
    return replace(so101.layout(), folder=str(FOLDER))


@pytest.fixture(scope="module")
def model(spec):
    return spec.load_model()  # check_model: every sensor and actuator there, kp/kd the MJCF's


def _jid(model, name: str) -> int:
    return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)


def _at_home(model) -> mujoco.MjData:
    data = mujoco.MjData(model)
    home = so101.home()
    for j in so101.JOINTS:
        data.qpos[model.jnt_qposadr[_jid(model, j)]] = home[j]
        data.ctrl[model.actuator(j).id] = home[j]
    mujoco.mj_forward(model, data)
    return data


# ----------------------------------------------------------------------------- layout


def test_layout_is_six_servos_and_eighteen_readings(spec, model):
    assert spec.name == "so101" and spec.control_hz == 50.0
    assert [a.name for a in spec.actuators] == list(so101.JOINTS)
    assert [s.name for s in spec.sensors] == [
        f"{j}_{k}" for k in ("pos", "vel", "load") for j in so101.JOINTS
    ]
    assert model.nu == 6 and model.njnt == 6 and spec.n_sensors == 18
    assert {j: i for i, j in enumerate(so101.JOINTS, start=1)} == so101.SERVO_IDS


def test_a_gain_other_than_the_mjcfs_is_refused(spec):
    acts = list(spec.actuators)
    acts[2] = replace(acts[2], kp=so101.KP * 1.01)
    with pytest.raises(SpecError, match="actuator 'elbow_flex' kp"):
        replace(spec, actuators=tuple(acts)).load_model()


def test_sensors_are_what_the_bus_reports(spec, model):
    kinds = {"pos": _S.mjSENS_JOINTPOS, "vel": _S.mjSENS_JOINTVEL, "load": _S.mjSENS_ACTUATORFRC}
    for s in spec.sensors:
        joint, kind = s.name.rsplit("_", 1)
        sid = model.sensor(s.name).id
        assert model.sensor_type[sid] == kinds[kind], s.name
        want = model.actuator(joint).id if kind == "load" else _jid(model, joint)
        assert model.sensor_objid[sid] == want, s.name
    count = 2 * np.pi / 4096
    pos, vel, load = spec.sensors[:6], spec.sensors[6:12], spec.sensors[12:]
    assert all(s.resolution == count for s in (*pos, *vel))  # counts, counts per second
    assert all(s.resolution == pytest.approx(2.94e-3) for s in load)
    for s, j in zip(pos, so101.JOINTS, strict=True):
        lo, hi = so101.JOINT_RANGE[j]
        assert s.low == pytest.approx(lo - 0.05) and s.high == pytest.approx(hi + 0.05)
    assert all(s.high > so101.NO_LOAD_SPEED for s in vel)
    assert all(s.high > so101.STALL_TORQUE for s in load)


def test_joint_ranges_commands_and_servo_limits_as_documented(spec, model):
    documented = {  # README.md's table, from TheRobotStudio's so101_new_calib.xml
        "shoulder_pan": (-1.91986, 1.91986), "shoulder_lift": (-1.74533, 1.74533),
        "elbow_flex": (-1.69, 1.69), "wrist_flex": (-1.658063, 1.658063),
        "wrist_roll": (-2.74385, 2.84121), "gripper": (-0.174533, 1.745329),
    }  # fmt: skip
    assert documented == so101.JOINT_RANGE
    for a in spec.actuators:
        rng = np.array(documented[a.name])
        aid, jid = model.actuator(a.name).id, _jid(model, a.name)
        assert model.actuator_trnid[aid, 0] == jid
        np.testing.assert_allclose(model.jnt_range[jid], rng)
        np.testing.assert_allclose(model.actuator_ctrlrange[aid], rng)
        np.testing.assert_allclose(model.actuator_forcerange[aid], [-2.94, 2.94])
        assert (a.low, a.high, a.safe_mode, a.position_sensor) == (*rng, "hold", f"{a.name}_pos")
        dof = model.jnt_dofadr[jid]
        assert (model.dof_armature[dof], model.dof_damping[dof]) == (0.028, 0.60)
        assert model.dof_frictionloss[dof] == 0.052
    # The goal moves from the last one by at most GOAL_RATE / control_hz a tick, within range.
    mid = np.array([0.5 * (lo + hi) for lo, hi in documented.values()])[None]
    step = so101.GOAL_RATE / spec.control_hz
    assert 0.04 < step < 0.05  # 0.047 rad a tick at 50 Hz
    np.testing.assert_allclose(spec.action_to_command(np.zeros((1, 6)), mid), mid)
    np.testing.assert_allclose(spec.action_to_command(np.ones((1, 6)), mid), mid + step)
    np.testing.assert_allclose(spec.action_to_command(-np.ones((1, 6)), mid), mid - step)
    edge = spec.command_high[None] - 0.01
    np.testing.assert_allclose(
        spec.action_to_command(np.ones((1, 6)), edge), spec.command_high[None]
    )


@pytest.mark.parametrize("hz, steps", [(50.0, 4), (100.0, 2)])
def test_50_and_100_hz_are_whole_physics_steps(model, hz, steps):
    assert physics_substeps(model, hz) == steps
    assert so101.layout(hz).control_hz == hz


# ----------------------------------------------------------------------------- dynamics


@pytest.mark.parametrize("step", [0.5, -0.5])
def test_elbow_tracks_a_step_no_faster_than_the_servo_turns(model, step):
    data = _at_home(model)
    e, dt = model.actuator("elbow_flex").id, model.opt.timestep
    qe = model.jnt_qposadr[_jid(model, "elbow_flex")]
    target = data.qpos[qe] + step
    data.ctrl[e] = target
    reached, peak = None, 0.0
    for k in range(int(0.5 / dt)):
        mujoco.mj_step(model, data)
        peak = max(peak, abs(data.qvel[model.jnt_dofadr[_jid(model, "elbow_flex")]]))
        if reached is None and abs(data.qpos[qe] - target) < 0.05:
            reached = (k + 1) * dt
    assert reached is not None and reached < 0.5
    assert reached >= (abs(step) - 0.05) / so101.NO_LOAD_SPEED  # no faster than 45 rpm
    assert peak <= 1.1 * so101.NO_LOAD_SPEED  # gravity adds a few % on the way down
    assert abs(data.qpos[qe] - target) < 0.01  # and it settles


def test_home_pose_held_against_gravity_under_the_stall_torque(spec, model):
    data = _at_home(model)
    home = np.array(list(so101.home().values()))
    for _ in range(int(2.0 / model.opt.timestep)):
        mujoco.mj_step(model, data)
    q = data.qpos[[model.jnt_qposadr[_jid(model, j)] for j in so101.JOINTS]]
    np.testing.assert_allclose(q, home, atol=2 * so101.COUNT)  # within two encoder counts
    assert np.all(np.abs(data.qvel) < 1e-3)
    force = data.actuator_force
    assert np.all(np.abs(force) < 0.5 * so101.STALL_TORQUE)
    assert abs(force[model.actuator("shoulder_lift").id]) > 0.1  # it does carry the arm
    load = spec.read_sensors(data.sensordata[None], spec.sensor_index(model))[0, 12:]
    np.testing.assert_allclose(load, force, atol=so101.STALL_TORQUE / 1000)


# ----------------------------------------------------------------------------- geometry


def _random_poses(model, n: int, seed: int = 0):
    data = mujoco.MjData(model)
    lo, hi = model.jnt_range.T
    rng = np.random.default_rng(seed)
    for _ in range(n):
        data.qpos[:] = rng.uniform(lo, hi)
        mujoco.mj_forward(model, data)
        yield data


def test_tip_is_between_the_jaws_and_reaches_like_the_arm(model):
    data = mujoco.MjData(model)  # qpos 0: the gripper closed
    mujoco.mj_forward(model, data)
    tip = data.site("tip").xpos.copy()
    jaws = [data.geom(g).xpos for g in ("fixed_jaw_geom", "moving_jaw_geom")]
    assert np.linalg.norm(tip - 0.5 * (jaws[0] + jaws[1])) < 0.03
    shoulder = model.body("upper_arm").id  # its origin is on the shoulder-lift axis
    reach = [
        np.linalg.norm(d.site("tip").xpos - d.xpos[shoulder]) for d in _random_poses(model, 2000)
    ]
    # upper arm 0.116 + forearm 0.135 + wrist 0.061 + gripper 0.098 m, straight: 0.41 m
    assert 0.30 < max(reach) < 0.45 and min(reach) < 0.2


def _contact_bodies(model, data) -> set[tuple[str, str]]:
    names = set()
    for c in data.contact[: data.ncon]:
        b = sorted(model.body(model.geom_bodyid[g]).name for g in (c.geom1, c.geom2))
        names.add((b[0], b[1]))
    return names


def test_collisions_floor_and_non_adjacent_links_only(model):
    home = _at_home(model)
    assert home.ncon == 0  # the home pose touches nothing
    parent = {
        model.body(b).name: model.body(model.body_parentid[b]).name for b in range(model.nbody)
    }
    seen = set()
    for data in _random_poses(model, 3000):
        for a, b in _contact_bodies(model, data):
            assert parent[a] != b and parent[b] != a, (a, b)  # adjacent links never
            seen.add((a, b))
    assert {p for p in seen if "world" in p}  # the floor
    assert {p for p in seen if "world" not in p and "base" not in p}  # the arm hits itself
