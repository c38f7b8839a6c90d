"""Checks that an MJCF model carries what a robot layout declares: every sensor (and the
component a layout entry picks), every actuator, a position actuator's gains and the joint
its position sensor measures. `RobotSpec.check_model` runs them when a model loads."""

from __future__ import annotations

import math

import mujoco

from envs.layout_types import Actuator, Sensor, SpecError


def check_model(model: mujoco.MjModel, spec, where: str = "model") -> None:
    """Raise `SpecError` naming the first thing `model` lacks or contradicts in `spec`."""
    for s in spec.sensors:
        _check_sensor(model, s, spec.name, where)
    for a in spec.actuators:
        aid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, a.name)
        if aid < 0:
            raise SpecError(f"{where}: robot '{spec.name}' needs actuator '{a.name}', missing")
        if a.kind == "position":
            _check_gains(model, aid, a, where)
            _check_position_sensor(model, aid, a, spec.sensors, where)
    if model.nu != spec.n_actuators:
        raise SpecError(
            f"{where}: has {model.nu} actuators, robot '{spec.name}' defines {spec.n_actuators}"
        )


def _check_sensor(model: mujoco.MjModel, s: Sensor, robot: str, where: str) -> None:
    """The MuJoCo sensor of a layout entry exists and the entry picks one value of it."""
    src = s.mujoco_name
    sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, src)
    if sid < 0:
        raise SpecError(f"{where}: robot '{robot}' needs sensor '{src}', missing")
    dim = int(model.sensor_dim[sid])
    if s.component is None and dim != 1:
        raise SpecError(
            f"{where}: sensor '{src}' has {dim} values: layout entry '{s.name}' must name a component"
        )
    if s.component is not None and not 0 <= s.component < dim:
        raise SpecError(
            f"{where}: sensor '{src}' has {dim} values: component {s.component} of '{s.name}' "
            "is out of range"
        )


def _check_gains(model: mujoco.MjModel, aid: int, a: Actuator, where: str) -> None:
    """A position actuator's kp/kd are the MJCF's (gain kp, bias -kp q - kd qdot)."""
    g, b = model.actuator_gainprm[aid], model.actuator_biasprm[aid]
    for what, want, got in (("kp", a.kp, g[0]), ("kp", a.kp, -b[1]), ("kd", a.kd, -b[2])):
        if not math.isclose(want, float(got), rel_tol=1e-9, abs_tol=0.0):
            raise SpecError(
                f"{where}: actuator '{a.name}' {what} = {want:g} in the spec, but the MJCF "
                f"gives {float(got):g}"
            )


def _check_position_sensor(
    model: mujoco.MjModel, aid: int, a: Actuator, sensors: tuple[Sensor, ...], where: str
) -> None:
    """A position actuator's `position_sensor`, where it is a joint sensor, measures the
    joint the actuator drives (else 'hold' would hold another joint's angle)."""
    s = next(x for x in sensors if x.name == a.position_sensor)
    sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, s.mujoco_name)
    joint = int(mujoco.mjtObj.mjOBJ_JOINT)
    if int(model.sensor_objtype[sid]) != joint or int(model.actuator_trntype[aid]) != int(
        mujoco.mjtTrn.mjTRN_JOINT
    ):
        return
    if int(model.sensor_type[sid]) != int(mujoco.mjtSensor.mjSENS_JOINTPOS):
        raise SpecError(
            f"{where}: actuator '{a.name}' position_sensor '{s.name}' is not a jointpos sensor"
        )
    if int(model.sensor_objid[sid]) != int(model.actuator_trnid[aid, 0]):
        sj = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, int(model.sensor_objid[sid]))
        aj = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, int(model.actuator_trnid[aid, 0]))
        raise SpecError(
            f"{where}: actuator '{a.name}' drives joint '{aj}' but its position_sensor "
            f"'{s.name}' measures joint '{sj}'"
        )
