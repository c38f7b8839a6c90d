"""`python -m firmware_bridge.sim_robot robot=so101` as a real subprocess: six emulated
STS3215 on a pseudo-terminal driving the SO-101's physics, with our `FeetechBus` as the
client. Power-on (every servo answers, limp under gravity), a goal reached in physics time,
a held pose, a 10 % torque limit that cannot hold it, torque off, latency, and the
rehearsal faults (absent id, error bits, wrong baud, bad keys).

Waits are on the state read back (never fixed sleeps), with generous timeouts: under load
physics only runs slower, never faster than the wall clock, so a lower bound in wall time
is a bound in physics time.
"""

from __future__ import annotations

import math
import re
import time

import numpy as np
import pytest

from envs.robots.so101.layout import COUNT, JOINTS, NO_LOAD_SPEED, SERVO_IDS, STALL_TORQUE, home
from firmware_bridge.sim.bus_robot import SUPPLY_VOLTAGE, TEMPERATURE
from firmware_bridge.wire.feetech import FeetechBus
from firmware_bridge.wire.feetech_table import MODEL_STS3215, ErrorBit, Reg, decode_value
from firmware_bridge.wire.servo_bus import BusError
from tests.conftest import run_cli

IDS = [SERVO_IDS[j] for j in JOINTS]
PAN, LIFT, ELBOW, WRIST = (SERVO_IDS[j] for j in JOINTS[:4])
HOME = 2048
"""The middle of each joint's range (its actuator's centre): the emulated arm's factory
calibration (homing offset 0), the map the host uses too."""
AT_ZERO = {j: HOME - round(c / COUNT) for j, c in home().items()}
"""What each servo reads with its joint at 0 rad (sim_robot's start pose): 2048 but for
wrist_roll and the gripper, whose range is not centred on 0."""
TIMEOUT_S = 15.0


def _bus(port: str, baud: int = 1_000_000, **kw) -> FeetechBus:
    return FeetechBus(port, baud, timeout_s=0.2, **kw)


def _wait(read, done, what: str, timeout_s: float = TIMEOUT_S) -> int:
    """Read until done(value); the value. Fails naming what was awaited and the last value."""
    end = time.monotonic() + timeout_s
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > end:
            raise AssertionError(f"{what}: still {value} after {timeout_s} s")
        time.sleep(0.005)


def _position(bus: FeetechBus, sid: int) -> int:
    return bus.read_register(sid, Reg.PRESENT_POSITION)


def _feedback(bus: FeetechBus, sid: int) -> tuple[int, int, int]:
    """Present position (counts), speed (counts/s) and load (0.1 %) in one read."""
    block = bus.read(sid, Reg.PRESENT_POSITION.address, 6)
    regs = (Reg.PRESENT_POSITION, Reg.PRESENT_SPEED, Reg.PRESENT_LOAD)
    return tuple(decode_value(r, block, Reg.PRESENT_POSITION.address) for r in regs)


def _power_on(bus: FeetechBus) -> None:
    """Six STS3215 answer, torque off (a real arm at power-on), limp under gravity."""
    assert [bus.ping(i) for i in IDS] == [MODEL_STS3215] * 6
    assert [bus.read_register(i, Reg.TORQUE_ENABLE) for i in IDS] == [0] * 6
    assert bus.read_register(LIFT, Reg.PRESENT_VOLTAGE) == SUPPLY_VOLTAGE
    assert bus.read_register(LIFT, Reg.PRESENT_TEMPERATURE) == TEMPERATURE
    # at 0 rad, the joints gravity does not turn stay where they started ...
    assert AT_ZERO["wrist_roll"] == HOME - 32 and AT_ZERO["gripper"] == HOME - 512
    for j in ("shoulder_pan", "wrist_roll", "gripper"):
        assert abs(_position(bus, SERVO_IDS[j]) - AT_ZERO[j]) <= 2, j
    # ... and the limp shoulder sinks under the forearm's weight (no torque, no load)
    _wait(lambda: _position(bus, LIFT), lambda p: abs(p - HOME) > 100, "limp shoulder_lift")
    assert bus.read_register(LIFT, Reg.PRESENT_LOAD) == 0
    block = bus.sync_read(IDS, Reg.PRESENT_POSITION.address, 6)  # position, speed, load
    assert len(block) == 6 and all(len(b) == 6 for b in block.values())


def _holds_home(bus: FeetechBus, what: str) -> int:
    """Wait until shoulder_lift rests at home (at 2048 +- 1, still) carrying the forearm: a
    load of more than the 10 % a reduced torque limit gives. Its load then."""
    fb = _wait(
        lambda: _feedback(bus, LIFT),
        lambda f: abs(f[0] - HOME) <= 1 and f[1] == 0 and 150 < abs(f[2]) < 1000,
        what,
    )
    return fb[2]


def _goal_reached_in_physics_time(bus: FeetechBus, goal: int) -> None:
    """A goal and torque on for the pan joint: reached, but no faster than the servo turns."""
    t0 = time.monotonic()
    bus.write_register(PAN, Reg.GOAL_POSITION, goal)
    bus.write_register(PAN, Reg.TORQUE_ENABLE, 1)
    _wait(lambda: _position(bus, PAN), lambda p: abs(p - goal) <= 3, "pan at its goal")
    assert time.monotonic() - t0 >= abs(goal - HOME) * COUNT / NO_LOAD_SPEED


def _raise_arm(bus: FeetechBus) -> int:
    """Torque on at home for shoulder_lift, elbow_flex and wrist_flex (one sync write of
    goals); shoulder_lift's load once it holds."""
    ids = [LIFT, ELBOW, WRIST]
    bus.sync_write(ids, Reg.GOAL_POSITION.address, [HOME.to_bytes(2, "little")] * 3)
    for sid in ids:
        bus.write_register(sid, Reg.TORQUE_ENABLE, 1)
    return _holds_home(bus, "shoulder_lift raised")


def test_power_on_goal_torque_limit_and_torque_off(sim_robot, tmp_path):
    applied = tmp_path / "applied.bin"
    sim = sim_robot("robot=so101", f"applied_log={applied}")
    goal = HOME + 400
    with _bus(sim.port) as bus:
        _power_on(bus)
        _goal_reached_in_physics_time(bus, goal)
        load = _raise_arm(bus)  # held at home: the shoulder carries the forearm, 0.54 N m,
        # give or take the joint's friction (frictionloss 0.052 N m: it rests anywhere in the
        # band; 0.488 seen) and a count of load quantization
        assert abs(load) * STALL_TORQUE / 1000 == pytest.approx(0.54, abs=0.06)  # N m

        bus.write_register(LIFT, Reg.TORQUE_LIMIT, 100)  # 10 %: too weak to hold it
        _wait(lambda: _position(bus, LIFT), lambda p: abs(p - HOME) > 150, "sagging shoulder")
        assert abs(bus.read_register(LIFT, Reg.PRESENT_LOAD)) <= 100

        bus.write_register(LIFT, Reg.TORQUE_LIMIT, 1000)  # full torque: it comes back
        _holds_home(bus, "shoulder re-raised")

        bus.write_register(LIFT, Reg.TORQUE_ENABLE, 0)  # limp: it drops
        _wait(lambda: _position(bus, LIFT), lambda p: abs(p - HOME) > 150, "dropped shoulder")
        assert bus.read_register(LIFT, Reg.PRESENT_LOAD) == 0
        assert _position(bus, PAN) == pytest.approx(goal, abs=3)  # the others hold
    s = sim.summary()
    assert s["robot"] == "so101" and s["transport"] == "feetech" and s["servos"] == IDS
    assert s["answers"] > s["requests"] > 0  # a sync read: one request, six answers
    assert s["rx_garbage_bytes"] == s["rx_checksum_errors"] == 0
    assert s["commands_applied"] >= 3

    records = np.frombuffer(applied.read_bytes(), np.uint8).reshape(-1, 4 + 4 * len(IDS))
    assert len(records) == s["commands_applied"]
    first = records[0, 4:].copy().view("<f4")  # torque on for pan alone: the rest limp (NaN)
    assert first[0] == pytest.approx(400 * COUNT, abs=1e-5) and np.isnan(first[1:]).all()


def test_absent_id_error_ids_and_latency(sim_robot):
    sim = sim_robot("robot=so101", "absent_ids=[4]", "error_ids={3:overload}", "latency_s=0.3")
    with _bus(sim.port) as bus:
        t0 = time.monotonic()  # the goal reaches the physics after the latency, not before
        bus.write_register(PAN, Reg.GOAL_POSITION, HOME + 300)
        bus.write_register(PAN, Reg.TORQUE_ENABLE, 1)
        _wait(lambda: _position(bus, PAN), lambda p: abs(p - HOME) > 3, "pan starts moving")
        assert time.monotonic() - t0 >= 0.3 - 0.01  # (the command is stamped a step late)

        with pytest.raises(BusError) as err:
            bus.ping(4)
        assert err.value.kind == "timeout" and err.value.servo_id == 4
        with pytest.raises(BusError) as err:
            bus.ping(3)
        assert err.value.kind == "servo_error" and err.value.error_names == ("overload",)
        bus.raise_on_servo_error = False
        present = [i for i in IDS if i != 4]
        assert len(bus.sync_read(present, Reg.PRESENT_POSITION.address, 2)) == 5
        assert bus.error_bits(3) == ErrorBit.OVERLOAD and bus.error_bits(2) == 0
        with pytest.raises(BusError) as err:
            bus.sync_read(IDS, Reg.PRESENT_POSITION.address, 2)
        assert err.value.kind == "timeout" and err.value.servo_id == 4
    assert sim.summary()["servos"] == present


def test_servos_at_another_baud_parse_nothing(sim_robot):
    sim = sim_robot("robot=so101", "bus_baud=115200")
    with _bus(sim.port) as bus, pytest.raises(BusError) as err:
        bus.ping(PAN)
    assert err.value.kind == "timeout"
    with _bus(sim.port, 115_200) as bus:  # the servos' own rate: they answer
        assert bus.ping(PAN) == MODEL_STS3215
    s = sim.summary()
    assert s["baud"] == 115_200 and s["requests"] == 2  # PING + READ at 115200, none before
    assert s["garbled_bytes"] >= 6


def _config(*overrides: str):
    """sim_robot's config as the CLI composes it (in this process)."""
    from hydra import compose, initialize_config_dir

    from firmware_bridge.sim.robot_config import SimRobotConfig
    from ppo_robot.cli import register_schema
    from ppo_robot.paths import config_dir

    register_schema("sim_robot", SimRobotConfig)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="sim_robot", overrides=list(overrides))


def test_bad_bus_key_is_one_line_and_exit_2():
    p = run_cli("firmware_bridge.sim_robot", "robot=so101", "absent_ids=[9]", timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip() == (
        "error: absent_ids: 9 is not a servo of robot=so101 (ids [1, 2, 3, 4, 5, 6])"
    )
    assert "PORT" not in p.stdout


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["error_ids={3:melted}"], "error_ids: 3: 'melted' is not an error bit (one of voltage"),
        (["error_ids=[3]"], "error_ids: must map servo ids to error bit names"),
        (["error_ids={7:overload}"], "error_ids: 7 is not a servo of robot=so101"),
        (["absent_ids=[3]", "error_ids={3:overload}"], "error_ids: servo 3 is also in absent_ids"),
        (["bus_baud=12345"], "bus_baud: 12345 is not an STS baud rate"),
        (["error_after_s=1"], "error_after_s=1.0: needs error_ids (the bits that appear)"),
    ],
)
def test_bad_bus_keys_are_named(overrides, message):
    from envs.robots import get_robot
    from firmware_bridge.sim.bus_robot import bus_faults
    from ppo_robot.cli import UserError

    cfg = _config("robot=so101", *overrides)
    with pytest.raises(UserError, match="^" + re.escape(message)):
        bus_faults(cfg, get_robot("so101"))
    assert bus_faults(_config("robot=so101", "bus_baud=115200"), get_robot("so101")).baud == 115200


def test_a_framed_robot_refuses_bus_keys():
    from envs.robots import get_robot
    from firmware_bridge.sim.robot import _controller_config
    from ppo_robot.cli import UserError

    with pytest.raises(UserError, match="^absent_ids: only a servo-bus robot has it"):
        _controller_config(_config("robot=furuta", "absent_ids=[1]"), get_robot("furuta"))
    assert _controller_config(_config("robot=furuta"), get_robot("furuta")).watchdog_ms == 50


def test_load_unit_is_the_layout_s():
    """The emulator's load unit (the load sensors' resolution) is 0.1 % of stall torque."""
    from envs.robots import get_robot

    spec = get_robot("so101")
    for j in JOINTS:
        res = next(s.resolution for s in spec.sensors if s.name == f"{j}_load")
        assert math.isclose(res * 1000, STALL_TORQUE)
