"""The robot spec fits servos and IMUs: vector sensors, position actuators and their safe
state (host safety layer, controller stand-in, simulated plant), state from sensors.

Real MuJoCo, the real controller state machine, the real control loop on a virtual clock;
the robot is tests/servo_robot.py (a position-servo pendulum with a gyro)."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import mujoco
import numpy as np
import pytest

from envs.robots import get_robot
from envs.spec import Actuator, Sensor, SpecError
from firmware_bridge.host.loop import ControlLoop
from firmware_bridge.host.safety import SafetyConfig, SafetyLayer
from firmware_bridge.host.transport import Transport
from firmware_bridge.sim.controller import Controller, ControllerConfig
from firmware_bridge.sim.plant import Plant
from firmware_bridge.wire.protocol import Enable, FrameParser, Hello, State
from tests.servo_robot import HOLD, KD, KP, ServoSpec, servo_robot

RES = 2 * np.pi / 4096  # the servo's encoder quantum


def _with_actuator(spec, **kw):
    return replace(spec, actuators=(replace(spec.actuators[0], **kw),))


def _drive(plant, command) -> None:
    """One physics step with `command` at the actuators at once (sim_robot's safe-state path)."""
    plant.hold(command)
    plant.step()


def _plant(spec, angle: float) -> Plant:
    cfg = SimpleNamespace(
        model_xml=None, reality=None, seed=0, sensor_noise_std=0.0, latency_s=0.0,
        initial_qpos=[angle],
    )  # fmt: skip
    return Plant(spec, cfg)


# ---------------------------------------------------------------- vector sensors


def test_vector_sensor_entries_index_mujocos_own_sensordata():
    spec = servo_robot()
    model = spec.load_model()
    data = mujoco.MjData(model)
    data.qpos[0], data.qvel[0] = 0.3, 1.7
    mujoco.mj_forward(model, data)
    gyro = data.sensor("gyro").data
    assert np.all(np.abs(gyro) > 0.1)  # the askew IMU: every axis sees the swing
    want = [data.sensor("angle").data[0], data.sensor("velocity").data[0], *gyro]
    got = spec.read_sensors(data.sensordata[None], spec.sensor_index(model), np.zeros(5))[0]
    np.testing.assert_array_equal(got, want)
    # each gyro axis has its own envelope: y at 41 rad/s is out, x at 41 would be too
    assert [s.high for s in spec.sensors[2:]] == [30.0, 40.0, 50.0]


@pytest.mark.parametrize(
    "component, expect",
    [(None, "sensor 'gyro' has 3 values: layout entry 'gyro_y' must name a component"),
     (3, "component 3 of 'gyro_y' is out of range"),
     (-1, "component -1 of 'gyro_y' is out of range")],
)  # fmt: skip
def test_vector_sensor_without_or_beyond_its_components_refused(component, expect):
    spec = servo_robot()
    sensors = list(spec.sensors)
    sensors[3] = replace(sensors[3], component=component)
    with pytest.raises(SpecError) as e:
        replace(spec, sensors=tuple(sensors)).load_model()
    assert expect in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------- position actuators


@pytest.mark.parametrize(
    "field, value, expect",
    [("kp", 6.0, f"actuator 'servo' kp = 6 in the spec, but the MJCF gives {KP:g}"),
     ("kd", 0.25, f"actuator 'servo' kd = 0.25 in the spec, but the MJCF gives {KD:g}"),
     ("kp", KP * (1 + 1e-6), "actuator 'servo' kp")],
)  # fmt: skip
def test_servo_gains_must_match_the_mjcf(field, value, expect):
    servo_robot().load_model()  # the matching gains load
    with pytest.raises(SpecError, match=expect):
        _with_actuator(servo_robot(), **{field: value}).load_model()


def test_position_sensor_must_measure_the_driven_joints_position():
    with pytest.raises(SpecError, match="position_sensor 'velocity' is not a jointpos sensor"):
        _with_actuator(servo_robot(), position_sensor="velocity").load_model()


def test_safe_mode_and_position_sensor_validated_at_construction():
    with pytest.raises(SpecError, match="safe_mode 'limp' is not one of"):
        Actuator("a", "rad", -1, 1, kind="position", position_sensor="x", safe_mode="limp")
    with pytest.raises(SpecError, match="'a': a position actuator needs its position_sensor"):
        Actuator("a", "rad", -1, 1, kind="position", safe_mode="hold")
    with pytest.raises(SpecError, match="safe_mode 'hold' needs kind='position'"):
        Actuator("a", "V", -1, 1, safe_mode="hold", position_sensor="x")
    with pytest.raises(SpecError, match="position_sensor 'elbow' is not in the sensor layout"):
        _with_actuator(servo_robot(), position_sensor="elbow")


def test_safe_command_for_the_latest_readings():
    readings = np.array([0.7, 0.0, 0.0, 0.0, 0.0])
    hold, off = servo_robot(), servo_robot(safe_mode="off")
    value = _with_actuator(servo_robot(), safe_mode="value", safe=0.25)
    assert hold.safe_command_for(readings).tolist() == [0.7]
    assert hold.safe_command_for(np.array([9.0, 0, 0, 0, 0])).tolist() == [1.5]  # limits
    assert hold.safe_command_for(np.array([np.nan, 0, 0, 0, 0])).tolist() == [0.0]  # `safe`
    assert np.isnan(off.safe_command_for(readings)).all()
    assert value.safe_command_for(readings).tolist() == [0.25]
    # the host safety layer gives the same; with no reading yet, the fixed `safe`
    safety = SafetyLayer.for_spec(hold, SafetyConfig())
    assert safety.safe_state(readings).tolist() == [0.7]
    assert safety.safe_state(None).tolist() == [0.0]
    assert np.isnan(SafetyLayer.for_spec(off, SafetyConfig()).safe_state(readings)).all()


def test_furuta_layout_hash_unchanged_new_fields_only_when_set():
    furuta = get_robot("furuta")
    assert furuta.layout_hash() == "854a4a9846ed4acf"  # the hash before vector sensors
    assert "safe_mode" not in furuta.layout()["actuators"][0]
    servo = servo_robot().layout()
    assert servo["actuators"][0]["safe_mode"] == "hold"
    assert servo["sensors"][3]["source"] == "gyro" and servo["sensors"][3]["component"] == 1
    assert servo_robot(safe_mode="off").layout_hash() != servo_robot().layout_hash()


# ---------------------------------------------------------------- controller and plant


def test_hold_safe_state_in_the_sim_controller_holds_the_measured_pose():
    """From boot (no host yet) and after a watchdog trip, the servo holds where it is
    against gravity; with the fixed safe command (0) it would fall to 0."""
    spec = servo_robot()
    plant = _plant(spec, 0.7)
    ctl = Controller(ControllerConfig.for_spec(spec, watchdog_ms=50), lambda b: None)
    ctl.safe_state(plant.sensors())
    assert ctl.command[0] == pytest.approx(0.7, abs=RES)
    t_us = 0
    ctl.handle(0, Hello(50), t_us)
    ctl.handle(1, Enable(), t_us)
    at_trip = None
    for _ in range(250):  # 0.5 s: armed, no command yet, then the watchdog trips
        _drive(plant, ctl.command)
        t_us += 2000
        ctl.poll(t_us, plant.sensors)
        if ctl.watchdog_trips and at_trip is None:
            at_trip = float(plant.data.qpos[0])
    assert ctl.watchdog_trips == 1 and not ctl.enabled
    # holds the pose measured at the trip (STATEs every 20 ms, one count of quantization)
    assert ctl.command[0] == pytest.approx(at_trip, abs=0.005)
    # and stays there against gravity (sag of kp = 5 at 0.7 rad: 0.013 rad per re-latch)
    assert abs(plant.data.qpos[0] - 0.7) < 0.03


def test_torque_off_makes_the_simulated_servo_limp_until_a_finite_command():
    spec = servo_robot(safe_mode="off")
    plant = _plant(spec, 0.8)
    gain = plant.model.actuator_gainprm.copy()
    ctl = Controller(ControllerConfig.for_spec(spec), lambda b: None)
    ctl.safe_state(plant.sensors())
    assert np.isnan(ctl.command).all()
    angles = []
    for _ in range(250):
        _drive(plant, ctl.command)
        angles.append(plant.data.qpos[0])
    assert min(angles) < 0.0  # swung down through the bottom: no servo force
    assert plant.model.actuator_gainprm[0, 0] == 0.0
    for _ in range(500):  # a finite command: the servo's own gains are back
        _drive(plant, np.array([0.8]))
    np.testing.assert_array_equal(plant.model.actuator_gainprm, gain)
    assert abs(plant.data.qpos[0] - 0.8) < 0.05


class _SimLink:
    """The host's side of a real Controller and Plant, stepped on the loop's virtual clock:
    STATE and COMMAND go through the real encoder and parser."""

    def __init__(self, spec, angle: float, now: list[int]) -> None:
        self.plant, self.now, self.t_ns, self.seq = _plant(spec, angle), now, 0, 1
        self.out = bytearray()
        self.ctl = Controller(ControllerConfig.for_spec(spec), self.out.extend)
        self.ctl.safe_state(self.plant.sensors())
        self.parser = FrameParser(n_sensors=spec.n_sensors)
        self.parser_stats = self.parser.stats
        self.ctl.handle(0, Hello(int(spec.control_hz)), 0)
        self.ctl.handle(1, Enable(), 0)
        self.angles: list[float] = []

    def poll(self):
        dt = int(round(self.plant.dt * 1e9))
        while self.t_ns + dt <= self.now[0]:
            self.t_ns += dt
            _drive(self.plant, self.ctl.command)
            self.ctl.poll(self.t_ns // 1000, self.plant.sensors)
            self.angles.append(float(self.plant.data.qpos[0]))
        frames = bytes(self.out)
        self.out.clear()
        return list(self.parser.feed(frames))

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def send(self, frame: bytes) -> None:
        self.ctl.receive(frame, self.now[0] // 1000)


def _closed_loop(spec, safety: SafetyLayer, angle: float, target: float):
    """0.4 s of the real ControlLoop against the servo started at `angle`, the policy
    asking for `target`; returns the link and the commands sent."""
    now = [20_000_000]
    link = _SimLink(spec, angle, now)
    first = [(q, m) for q, m in link.poll() if isinstance(m, State)][-1]
    sent = []

    class Log:
        def state(self, *a) -> None:
            pass

        def tick(self, t, tick, obs, action, cmd, *rest) -> None:
            sent.append(float(cmd[0]))

    def clock() -> int:
        now[0] += 1000
        return now[0]

    def sleep(s: float) -> None:
        now[0] += int(s * 1e9)

    loop = ControlLoop(
        link, spec, lambda obs, sensors, tick: np.array([target]), safety, Log(),
        spec.control_hz, 0.4, 50.0, 10, clock=clock, sleep=sleep, prime=False,
    )  # fmt: skip
    res = loop.run(first[1], first[0])
    assert res.fault is None, res.fault
    return link, sent


def test_soft_start_ramps_from_the_measured_pose_so_the_servo_does_not_jump():
    spec = servo_robot()
    cfg = SafetyConfig(soft_start_s=0.2)
    link, sent = _closed_loop(spec, SafetyLayer.for_spec(spec, cfg), 0.8, 0.0)
    assert sent[0] == pytest.approx(0.8, abs=0.01)  # starts where the servo is
    # the allowed distance from there grows to the full range [-1.5, 1.5] over 0.2 s,
    # i.e. by (0.8 + 1.5) / 10 per tick at 50 Hz
    assert np.all(np.abs(np.diff(sent)) <= (0.8 + 1.5) / 10 + 1e-9)
    assert sent[-1] == 0.0 and abs(link.angles[-1]) < 0.05  # and gets to the target
    early = np.array(link.angles[: int(0.04 / link.plant.dt)])  # first 40 ms
    assert np.max(np.abs(early - 0.8)) < 0.05
    # the old ramp, from the fixed safe command 0, jumps the servo 0.8 rad at enable
    old = SafetyLayer(spec.command_low, spec.command_high, spec.safe_command, cfg)
    link_old, sent_old = _closed_loop(spec, old, 0.8, 0.0)
    assert sent_old[0] == 0.0
    assert np.max(np.abs(np.array(link_old.angles[: len(early)]) - 0.8)) > 0.2


class _StateEveryTick(Transport):
    """A transport with a new STATE of fixed readings at every poll; commands counted."""

    def __init__(self, sensors: np.ndarray) -> None:
        self.sensors, self.seq, self.sent = sensors, 0, 0

    def poll(self):
        self.seq += 1
        return [(self.seq, State(self.seq * 20_000, 1, 0, 0, 0, self.sensors))]

    def send_command(self, state_seq: int, command: np.ndarray) -> int:
        self.sent += 1
        return self.sent

    def prime(self, state_seq: int, command: np.ndarray) -> None:
        pass

    @property
    def dropped(self) -> int:
        return 0


def test_the_loop_observes_its_goal_and_the_command_it_sent_the_tick_before():
    """The loop builds its task inputs once (views of the goal and of the safety layer's
    last command, refreshed in place): each tick's observation is the spec's for the goal
    and the command sent the tick before (on the first tick: the soft-start origin)."""
    spec = get_robot("so101")  # reach observes the goal and the last command
    goal = np.array([0.15, 0.05, 0.12])
    sensors = ((spec.sensor_low + spec.sensor_high) / 2).astype(np.float32)
    seen, now = [], [0]

    class Log:
        def state(self, *a) -> None:
            pass

        def tick(self, t, tick, obs, action, cmd, *rest) -> None:
            seen.append((obs.copy(), cmd.copy()))

    def clock() -> int:
        now[0] += 1000
        return now[0]

    def sleep(s: float) -> None:
        now[0] += int(s * 1e9)

    def source(obs, sens, tick):  # a different action every tick
        return np.full(spec.n_actuators, 0.3 * np.sin(tick), np.float32)

    link = _StateEveryTick(sensors)
    safety = SafetyLayer.for_spec(spec, SafetyConfig(soft_start_s=0.0))
    loop = ControlLoop(
        link, spec, source, safety, Log(), spec.control_hz, 0.2, 100.0, 10,
        clock=clock, sleep=sleep, goal=goal,
    )  # fmt: skip
    first = link.poll()[0]
    res = loop.run(first[1], first[0])
    assert res.fault is None, res.fault
    assert len(seen) == res.ticks >= 5
    last = spec.soft_start_origin(sensors)
    for obs, cmd in seen:
        np.testing.assert_array_equal(obs, spec.observe(sensors[None], goal[None], last[None])[0])
        last = cmd
    assert len({c.tobytes() for _, c in seen}) > 2  # the commands did change


# ---------------------------------------------------------------- gen_spec, state


def test_gen_spec_refuses_a_safe_mode_c_cannot_express(capsys):
    from firmware_bridge.firmware.gen_spec import main

    assert main(["servo_test", "--check"]) == 2  # registered by tests/conftest.py
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "actuator 'servo' has safe_mode 'hold'" in err and "cannot express" in err


def test_state_from_sensors_reproduces_the_simulated_state_servo():
    spec = servo_robot()
    model = spec.load_model()
    data = mujoco.MjData(model)
    data.qpos[0], data.qvel[0] = 0.37, -2.1
    mujoco.mj_forward(model, data)
    readings = spec.read_sensors(data.sensordata[None], spec.sensor_index(model))[0]
    qpos, qvel = spec.state_from_sensors(model, readings)
    assert abs(qpos[0] - 0.37) <= RES / 2 and qpos[0] != 0.37  # quantized, within a count
    assert qvel.tolist() == [-2.1]


BALL_XML = """
<mujoco>
  <compiler angle="radian"/>
  <worldbody>
    <body name="base" pos="0 0 1">
      <freejoint name="root"/>
      <geom size="0.1" mass="1"/>
      <body name="upper" pos="0 0 -0.2">
        <joint name="shoulder" type="ball"/>
        <geom size="0.05" mass="0.2"/>
        <body name="lower" pos="0 0 -0.2">
          <joint name="elbow" type="hinge" axis="0 1 0" ref="0.25"/>
          <geom size="0.04" mass="0.1"/>
        </body>
      </body>
    </body>
  </worldbody>
  <actuator><motor name="m" joint="elbow"/></actuator>
  <sensor>
    <framequat name="body_quat" objtype="xbody" objname="base"/>
    <ballquat name="shoulder_quat" joint="shoulder"/>
    <ballangvel name="shoulder_rate" joint="shoulder"/>
  </sensor>
</mujoco>
"""


def test_state_from_sensors_ball_and_free_joints(tmp_path):
    """ballquat (MuJoCo 4 refuses jointpos on a ball joint) and framequat of a free body
    set their quaternions, ballangvel the ball's rate; the unmeasured elbow stays at qpos0
    (its ref) and the free joint's position at qpos0."""
    xml = tmp_path / "ball.xml"
    xml.write_text(BALL_XML)
    comps = [("body_quat", 4), ("shoulder_quat", 4), ("shoulder_rate", 3)]
    sensors = tuple(
        Sensor(f"{src}_{i}", "-", -10, 10, source=src, component=i)
        for src, n in comps
        for i in range(n)
    )
    spec = ServoSpec(
        name="ball", version=1, xml=str(xml), sensors=sensors,
        actuators=(Actuator("m", "N m", -1, 1),), task=HOLD,
    )  # fmt: skip
    model = spec.load_model()
    data = mujoco.MjData(model)
    rng = np.random.default_rng(3)
    data.qpos[:3] = [0.3, -0.2, 1.1]
    for a in (3, 7):
        q = rng.normal(size=4)
        data.qpos[a : a + 4] = q / np.linalg.norm(q)
    data.qpos[11] = -0.6
    data.qvel[:] = rng.normal(size=model.nv)
    mujoco.mj_forward(model, data)
    readings = spec.read_sensors(data.sensordata[None], spec.sensor_index(model))[0]
    qpos, qvel = spec.state_from_sensors(model, readings)
    for a in (3, 7):  # the same rotation (q and -q are)
        assert abs(qpos[a : a + 4] @ data.qpos[a : a + 4]) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(qvel[6:9], data.qvel[6:9], atol=1e-12)
    assert qpos[:3].tolist() == model.qpos0[:3].tolist() and qpos[11] == 0.25
    assert not qvel[:6].any() and qvel[9] == 0.0
    # replay and identification start their simulations from the same state (batched)
    from firmware_bridge.analysis.sysid import StateMap

    sm = StateMap(model, spec)
    state = sm.states(readings[None], np.array([0.5]))[0]
    np.testing.assert_allclose(state[sm.qpos_at : sm.qpos_at + model.nq], qpos, atol=1e-15)
    np.testing.assert_allclose(state[sm.qvel_at : sm.qvel_at + model.nv], qvel, atol=1e-15)


def test_a_robots_own_state_from_sensors_is_what_replay_starts_from():
    from firmware_bridge.analysis.sysid import StateMap

    class Offset(ServoSpec):  # e.g. an encoder zeroed 0.1 rad off the model's zero
        def state_from_sensors(self, model, sensors):
            qpos, qvel = super().state_from_sensors(model, sensors)
            return qpos + 0.1, qvel

    base = servo_robot()
    spec = Offset(**{f: getattr(base, f) for f in base.__dataclass_fields__})
    model = spec.load_model()
    sm = StateMap(model, spec)
    readings = np.array([[0.25, 1.0, 0.0, 0.0, 0.0], [-0.5, 0.0, 0.0, 0.0, 0.0]])
    states = sm.states(readings, np.zeros(2))
    assert states[:, sm.qpos_at].tolist() == [0.35, pytest.approx(-0.4)]
    assert states[:, sm.qvel_at].tolist() == [1.0, 0.0]
