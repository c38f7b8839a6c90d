"""Physics state from sensor readings: which qpos/qvel entries a robot's layout measures.

The default of `RobotSpec.state_from_sensors`, used where replay and identification start
a simulation from a log. A layout entry sets a state entry when its MuJoCo sensor measures
a joint directly:

- jointpos / jointvel of a hinge or slide joint -> that joint's qpos / qvel entry;
- ballquat / ballangvel of a ball joint (MuJoCo 4 refuses jointpos there) -> its 4 qpos /
  3 qvel entries, component by component;
- framequat of the body a free joint moves, in the world frame -> the free joint's
  orientation qpos[3:7].

Entries no sensor measures stay at the model's qpos0 / zero velocity. Quaternions are
normalized after quantized readings are written. Floor: the robot spec (imports only
mujoco and numpy).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

_S, _J = mujoco.mjtSensor, mujoco.mjtJoint


@dataclass(frozen=True)
class SensorStateMap:
    """qpos[pos_q] = sensors[pos_s], qvel[vel_q] = sensors[vel_s]; `quats`: qpos start of
    each quaternion some entry writes (normalized afterwards)."""

    pos_s: np.ndarray
    pos_q: np.ndarray
    vel_s: np.ndarray
    vel_q: np.ndarray
    quats: tuple[int, ...]


def _targets(model: mujoco.MjModel, sid: int) -> tuple[str, int, int | None] | None:
    """('q' or 'v', first state index, quaternion start or None) a sensor writes, or None."""
    typ, obj = int(model.sensor_type[sid]), int(model.sensor_objid[sid])
    if int(model.sensor_objtype[sid]) == int(mujoco.mjtObj.mjOBJ_JOINT):
        jt = int(model.jnt_type[obj])
        qa, va = int(model.jnt_qposadr[obj]), int(model.jnt_dofadr[obj])
        one_dof = jt in (int(_J.mjJNT_HINGE), int(_J.mjJNT_SLIDE))
        if typ == int(_S.mjSENS_JOINTPOS) and one_dof:
            return "q", qa, None
        if typ == int(_S.mjSENS_JOINTVEL) and one_dof:
            return "v", va, None
        if typ == int(_S.mjSENS_BALLQUAT) and jt == int(_J.mjJNT_BALL):
            return "q", qa, qa
        if typ == int(_S.mjSENS_BALLANGVEL) and jt == int(_J.mjJNT_BALL):
            return "v", va, None
        return None
    if typ == int(_S.mjSENS_FRAMEQUAT) and int(model.sensor_objtype[sid]) == int(
        mujoco.mjtObj.mjOBJ_XBODY
    ):
        j = int(model.body_jntadr[obj])
        world_ref = int(model.sensor_reftype[sid]) == int(mujoco.mjtObj.mjOBJ_UNKNOWN)
        if j >= 0 and int(model.jnt_type[j]) == int(_J.mjJNT_FREE) and world_ref:
            qa = int(model.jnt_qposadr[j]) + 3
            return "q", qa, qa
    return None


def sensor_state_map(spec, model: mujoco.MjModel) -> SensorStateMap:
    """The default map of `spec`'s layout onto `model`'s qpos/qvel."""
    pos_s, pos_q, vel_s, vel_q, quats = [], [], [], [], set()
    for i, s in enumerate(spec.sensors):
        sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, s.mujoco_name)
        t = _targets(model, sid) if sid >= 0 else None
        if t is None:
            continue
        kind, at, quat = t
        at += s.component or 0
        (pos_s if kind == "q" else vel_s).append(i)
        (pos_q if kind == "q" else vel_q).append(at)
        if quat is not None:
            quats.add(quat)
    return SensorStateMap(
        np.array(pos_s, dtype=np.int64),
        np.array(pos_q, dtype=np.int64),
        np.array(vel_s, dtype=np.int64),
        np.array(vel_q, dtype=np.int64),
        tuple(sorted(quats)),
    )


def state_from_sensors(
    spec, model: mujoco.MjModel, sensors: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Readings (n_sensors,) -> (qpos (nq,), qvel (nv,)) by the default map."""
    m = sensor_state_map(spec, model)
    qpos = np.array(model.qpos0, dtype=np.float64)
    qvel = np.zeros(model.nv)
    x = np.asarray(sensors, dtype=np.float64)
    qpos[m.pos_q] = x[m.pos_s]
    qvel[m.vel_q] = x[m.vel_s]
    for a in m.quats:
        n = np.linalg.norm(qpos[a : a + 4])
        qpos[a : a + 4] = qpos[a : a + 4] / n if n > 0 else (1.0, 0.0, 0.0, 0.0)
    return qpos, qvel
