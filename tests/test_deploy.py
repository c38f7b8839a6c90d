"""Deployment through the real CLIs on real pseudo-terminals.

End to end: a policy trained by ppo_robot.train and exported by export.onnx swings the
pendulum up through firmware_bridge.deploy against firmware_bridge.sim_robot. Then the
safety behaviour a user relies on: the watchdog, SIGTERM, SIGKILL, and refusals before any
COMMAND is sent.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from firmware_bridge.logs.rollout_log import read_log
from firmware_bridge.wire.link import SerialLink
from firmware_bridge.wire.protocol import (
    Command,
    Enable,
    Fault,
    FaultCode,
    FrameParser,
    Hello,
    Info,
    MsgType,
    State,
    Status,
    encode,
)
from tests.conftest import last_json, run_cli, start_cli


def deploy_args(policy: str, port: str, tmp: Path, *extra: str) -> list[str]:
    return [f"policy={policy}", f"port={port}", f"log_dir={tmp}/logs", "status=false", *extra]


def test_end_to_end_swing_up(trained, sim_robot, tmp_path):
    sim = sim_robot()
    p = run_cli(
        "firmware_bridge.deploy",
        *deploy_args(trained["onnx"], sim.port, tmp_path, "duration_s=5"),
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    s = last_json(p.stdout)
    assert s["success"] is True, s
    assert s["ticks"] == 500 and s["faults"] == [] and s["dropped_frames"] == 0
    assert s["disable_confirmed"] is True
    log = read_log(s["log"])
    assert not log.truncated
    assert len(log.topic("/command")) == 500
    # every STATE received is logged; the controller streams one per tick, and the last one
    # or two can still be on the wire when the run ends (the phase of its clock to ours; on
    # a loaded machine its streaming thread may lag a few more: 497 of 500 seen at load 3)
    assert len(log.topic("/state")) >= s["states_received"] >= s["ticks"] - 5
    assert log.run["policy_sha256"] and log.run["robot"] == "furuta"
    # the loop's priority is recorded first (SCHED_FIFO by default: granted or not), then
    # the actuators are armed
    assert [e["kind"] for e in log.topic("/events")][:2] == ["realtime", "enable"]
    assert "summary" in log.metadata
    sim_summary = sim.summary()
    assert sim_summary["commands_applied"] == 500 and sim_summary["watchdog_trips"] == 0


def test_watchdog_trips_when_commands_stop(sim_robot):
    sim = sim_robot("watchdog_ms=50")
    with SerialLink(sim.port, n_sensors=4, n_actuators=1) as link:
        link.send_message(Hello(100))
        assert isinstance(link.wait_for(lambda m: isinstance(m, Info), 2.0), Info)
        link.send_message(Enable())
        assert link.wait_for(lambda m: getattr(m, "acked_type", None) == MsgType.ENABLE, 1.0)
        for _ in range(20):
            link.send(encode(Command(0, np.array([1.0], np.float32)), link.next_seq()))
            time.sleep(0.01)
        last_sent = time.monotonic()
        fault = link.wait_for(lambda m: isinstance(m, Fault), 1.0)
        tripped = time.monotonic()
        assert isinstance(fault, Fault) and fault.code == FaultCode.WATCHDOG
        # 50 ms watchdog; allow scheduling slack of this shared 2-core machine
        assert tripped - last_sent < 0.05 + 0.05
        st = link.wait_for(lambda m: isinstance(m, State), 0.5)
        assert isinstance(st, State)
        assert not Status(st.status) & Status.ENABLED and Status(st.status) & Status.WATCHDOG
    err = sim.stop()[1]
    assert "fault WATCHDOG" in err and "no command for" in err


def _wait_for_log(tmp: Path, timeout: float = 15.0) -> Path:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        logs = list((tmp / "logs").glob("*.mcap"))
        if logs:
            return logs[0]
        time.sleep(0.05)
    raise AssertionError("no log appeared")


def test_sigterm_disables_and_keeps_log(trained, sim_robot, tmp_path):
    sim = sim_robot()
    d = start_cli(
        "firmware_bridge.deploy", *deploy_args(trained["onnx"], sim.port, tmp_path, "duration_s=30")
    )
    _wait_for_log(tmp_path)
    time.sleep(1.0)
    d.send_signal(signal.SIGTERM)
    out, err = d.communicate(timeout=10)
    assert d.returncode == 143, err
    s = last_json(out)
    assert s["stopped_by"] == "SIGTERM" and s["disable_confirmed"] is True
    log = read_log(s["log"])
    kinds = [e["kind"] for e in log.topic("/events") if e["kind"] != "realtime"]
    assert kinds[0] == "enable" and kinds[-1] == "disable"
    assert "DISABLE at" in sim.stop()[1]


def test_sigkill_leaves_readable_log_and_controller_goes_safe(
    trained, sim_robot, tmp_path, record_property
):
    sim = sim_robot("watchdog_ms=50")
    d = start_cli(
        "firmware_bridge.deploy", *deploy_args(trained["onnx"], sim.port, tmp_path, "duration_s=30")
    )
    path = _wait_for_log(tmp_path)
    time.sleep(1.5)
    killed_ns = time.time_ns()  # the log's stamps are Unix time (clock.origin_unix_ns)
    d.send_signal(signal.SIGKILL)
    d.wait(timeout=5)
    log = read_log(path)
    assert "run" in log.metadata
    ticks = log.topic("/timing")
    assert len(ticks) > 100
    last_ns = max(log.log_time_ns["/timing"])
    assert 0 <= (killed_ns - last_ns) / 1e6 <= 100.0, "log lost more than 100 ms before the kill"
    time.sleep(0.3)
    err = sim.stop()[1]
    assert "fault WATCHDOG" in err
    safe_ms = float(re.search(r"no command for ([\d.]+) ms", err).group(1))
    lost_ms = (killed_ns - last_ns) / 1e6
    record_property(  # a row of docs/reliability.md (benchmarks/reliability_table.py)
        "reliability_row",
        json.dumps(
            {
                "section": "crash",
                "what": "deploy killed (SIGKILL), sim_robot",
                "how": "SIGKILL to deploy 1.5 s into a run at 100 Hz; sim_robot watchdog_ms=50",
                "happened": f"controller watchdog: FAULT WATCHDOG, actuators safe; MCAP "
                f"readable ({len(ticks)} ticks)",
                "safe": f"{safe_ms:.1f} ms without COMMAND (watchdog 50 ms)",
                "lost": f"log ends {lost_ms:.0f} ms before the kill (limit 100 ms)",
            }
        ),
    )


class ScriptedController:
    """A controller on a real pty that answers as told and records what the host sent."""

    def __init__(self, info: Info | None, garbage: bool = False) -> None:
        self.master, slave = os.openpty()
        import tty

        tty.setraw(slave)
        self.slave = slave
        self.port = os.ttyname(slave)
        self.info, self.garbage = info, garbage
        self.received: list[int] = []
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        parser = FrameParser()
        rng = np.random.default_rng(0)
        os.set_blocking(self.master, False)
        while not self._stop:
            try:
                data = os.read(self.master, 4096)
            except (BlockingIOError, OSError):
                data = b""
            if self.garbage:
                with contextlib.suppress(OSError):
                    os.write(self.master, rng.integers(1, 255, 64, dtype=np.uint8).tobytes())
            for _seq, msg in parser.feed(data):
                self.received.append(int(msg.TYPE))
                if isinstance(msg, Hello) and self.info is not None:
                    os.write(self.master, encode(self.info, 0))
            time.sleep(0.002)

    def close(self) -> None:
        self._stop = True
        self._t.join(timeout=2)
        os.close(self.master)
        os.close(self.slave)


def _info(name="furuta", n_sensors=4, n_actuators=1, max_rate=2000) -> Info:
    return Info(1, (1, 0, 0), 7, n_sensors, n_actuators, 10, max_rate, 50, name)


@pytest.mark.parametrize(
    "info,garbage,expect",
    [
        (_info(name="cartpole"), False, "reports robot 'cartpole'"),
        (_info(n_sensors=6), False, "reports 6 sensors"),
        (_info(n_actuators=2), False, "reports 2 actuators"),
        (_info(max_rate=50), False, "outside the controller's range"),
        (None, False, "did not answer HELLO"),
        (None, True, "garbage"),
    ],
    ids=["other-robot", "sensor-count", "actuator-count", "rate-range", "silent", "wrong-baud"],
)
def test_refused_before_any_command(trained, tmp_path, info, garbage, expect):
    ctl = ScriptedController(info, garbage)
    try:
        t0 = time.monotonic()
        p = run_cli(
            "firmware_bridge.deploy",
            *deploy_args(
                trained["onnx"], ctl.port, tmp_path, "duration_s=2", "handshake_timeout_s=1.0"
            ),
            timeout=30,
        )
        elapsed = time.monotonic() - t0
    finally:
        ctl.close()
    assert p.returncode == 2, p.stderr
    assert expect in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) <= 2
    assert int(MsgType.COMMAND) not in ctl.received and int(MsgType.ENABLE) not in ctl.received
    assert elapsed < 15
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").glob("*.mcap"))


def test_unreachable_port_and_other_robot_policy(trained, tmp_path):
    p = run_cli(
        "firmware_bridge.deploy", *deploy_args(trained["onnx"], "/dev/does-not-exist", tmp_path)
    )
    assert p.returncode == 2 and "/dev/does-not-exist" in p.stderr and "Traceback" not in p.stderr
    model = onnx.load(trained["onnx"])
    for prop in model.metadata_props:
        if prop.key == "robot.name":
            prop.value = "cartpole"
    other = tmp_path / "other.onnx"
    onnx.save(model, other)
    p = run_cli("firmware_bridge.deploy", *deploy_args(str(other), "/dev/null", tmp_path))
    assert p.returncode == 2 and "cartpole" in p.stderr
    p = run_cli(
        "firmware_bridge.deploy",
        *deploy_args(trained["onnx"], "/dev/null", tmp_path, "rate_hz=500"),
    )
    assert p.returncode == 2 and "500 Hz" in p.stderr


def test_one_clock_on_every_channel(trained, sim_robot, tmp_path):
    """Every message of a deploy log is stamped from one host clock: MCAP's log_time is the
    log's stated origin plus t_host on every channel (ticks, STATEs and events alike), so
    Foxglove and replay show one timeline, in the order things happened."""
    sim = sim_robot()
    t_before = time.time_ns()
    p = run_cli(
        "firmware_bridge.deploy",
        *deploy_args(trained["onnx"], sim.port, tmp_path, "duration_s=1"),
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    log = read_log(last_json(p.stdout)["log"])
    clock = log.run["clock"]
    origin = int(clock["origin_unix_ns"])
    assert t_before <= origin <= time.time_ns()
    for topic, rows in log.messages.items():
        stamps = np.array(log.log_time_ns[topic], dtype=np.int64)
        t_host = np.array([r["t_host"] for r in rows])
        assert np.all(np.abs(stamps - origin - np.round(t_host * 1e9)) <= 1), topic
    events = {e["kind"]: e["t_host"] for e in log.topic("/events")}
    ticks = log.array("/timing", "t_host")
    assert events["enable"] < ticks[0] and ticks[-1] < events["disable"]
    assert np.all(np.diff(ticks) > 0)
    deadlines = log.array("/timing", "deadline")
    assert np.all(ticks >= deadlines - 1e-6)  # a tick starts at (or after) its deadline


def test_excitation_takes_the_robot_from_the_policy(trained, sim_robot, tmp_path):
    sim = sim_robot()
    p = run_cli(
        "firmware_bridge.deploy",
        "source=excitation",
        *deploy_args(trained["onnx"], sim.port, tmp_path, "duration_s=1"),
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    s = last_json(p.stdout)
    assert s["source"] == "excitation" and s["ticks"] == 100
    assert read_log(s["log"]).run["robot"] == "furuta"
    p = run_cli(
        "firmware_bridge.deploy",
        "source=excitation",
        "robot=cartpole",
        *deploy_args(trained["onnx"], sim.port, tmp_path / "b", "duration_s=1"),
        timeout=60,
    )
    assert p.returncode == 2 and "robot=cartpole" in p.stderr and "'furuta'" in p.stderr
    assert not (tmp_path / "b" / "logs").exists()
