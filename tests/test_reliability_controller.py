"""Reliability at the controller's end: a sensor outside the spec's envelope (caught by the
host, or raised as LIMIT by sim_robot and by the C firmware), a control rate the watchdog
cannot serve refused at the handshake, and controller resets (a restarted C firmware,
another boot id, a STATE seq going back). Each test records one row of docs/reliability.md.
The rig: tests/reliability_rig.py.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.tools.faultproxy import FaultProxy
from tests.conftest import RATE_HZ, ROOT, last_json, run_cli
from tests.reliability_rig import (
    STALE_MS,
    WATCHDOG_MS,
    Controller,
    check_log,
    deploy_via,
    wait_enabled,
)

FW = ROOT / "firmware_bridge" / "firmware"


@pytest.fixture(scope="module")
def pr_host_bin() -> Path:
    p = subprocess.run(["make", "-C", str(FW), "host"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return FW / "build" / "pr_host"


# ------------------------------------------------------------------------ safe envelope


class EnvelopeFreeController:
    """A controller on a real pty with no sensor envelope of its own (as a servo bus, which
    checks nothing): the state machine sim_robot runs, its sensors at rest until `bad_after_s`
    after ENABLE, then `bad` on sensor `index`. Records every COMMAND it applied."""

    def __init__(self, bad: float, index: int = 0, bad_after_s: float = 0.5) -> None:
        import tty

        from envs.robots import get_robot
        from firmware_bridge.sim.controller import Controller as StateMachine
        from firmware_bridge.sim.controller import ControllerConfig

        spec = get_robot("furuta")
        cfg = ControllerConfig.for_spec(spec, watchdog_ms=WATCHDOG_MS)
        cfg = replace(cfg, sensor_min=None, sensor_max=None)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.port = os.ttyname(self.slave)
        self.ctl = StateMachine(cfg, lambda b: os.write(self.master, b))
        self.applied: list[tuple[int, float]] = []
        self.ctl.on_apply = lambda seq, v: self.applied.append((seq, float(v[0])))
        self.bad, self.index, self.bad_after_s = bad, index, bad_after_s
        self.bad_state_seqs: list[int] = []
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        t0 = time.monotonic()
        enabled_at = None
        while not self._stop:
            now_us = int((time.monotonic() - t0) * 1e6)
            try:
                data = os.read(self.master, 4096)
            except (BlockingIOError, OSError):
                data = b""
            if data:
                self.ctl.receive(data, now_us)
            if self.ctl.enabled and enabled_at is None:
                enabled_at = now_us
            bad = enabled_at is not None and now_us - enabled_at > self.bad_after_s * 1e6

            def sensors(bad=bad) -> np.ndarray:
                x = np.zeros(4)
                if bad:
                    x[self.index] = self.bad
                    self.bad_state_seqs.append(self.ctl.seq)
                return x

            self.ctl.poll(now_us, sensors)
            time.sleep(0.0005)

    def close(self) -> None:
        self._stop = True
        self._t.join(timeout=2)
        os.close(self.master)
        os.close(self.slave)


@pytest.mark.parametrize(
    "bad,index,name", [(np.inf, 0, "arm_angle"), (150.0, 2, "arm_velocity")], ids=["inf", "fast"]
)
def test_sensor_outside_envelope_is_a_host_fault(policy, tmp_path, row, bad, index, name):
    """A controller that checks nothing reports an inf arm angle (or a runaway velocity):
    the host checks every STATE against the spec's envelope, sends no COMMAND computed from
    it, goes to the safe state and names the sensor and the value."""
    ctl = EnvelopeFreeController(bad, index)
    try:
        p = run_cli(
            "firmware_bridge.deploy",
            f"policy={policy}",
            f"port={ctl.port}",
            "duration_s=3",
            f"log_dir={tmp_path}/logs",
            "status=false",
            "safety.max_consecutive_overruns=100000",
            timeout=60,
        )
    finally:
        ctl.close()
    assert p.returncode == 3, p.stderr
    assert "Traceback" not in p.stderr
    s = last_json(p.stdout)
    assert [f["kind"] for f in s["faults"]] == ["sensor_envelope"] and s["disable_confirmed"]
    msg = s["faults"][0]["message"]
    assert f"sensor {name} = {bad:g}" in msg and "outside its safe envelope" in msg, msg
    first_bad = min(ctl.bad_state_seqs)
    assert all(np.isfinite(v) for _, v in ctl.applied)
    log = check_log(s)
    answered = [c["state_seq"] for c in log.topic("/command")]
    assert max(answered) < first_bad, "a COMMAND answered a STATE outside the envelope"
    assert not ctl.ctl.enabled
    events = [e["kind"] for e in log.topic("/events")]
    assert "fault" in events and events[-1] == "disable"
    row.update(
        section="envelope",
        what=f"sensor out of envelope on the host ({name} = {bad:g})",
        how="a controller without an envelope of its own (the sim_robot state machine, "
        f"limits off) reports {name} = {bad:g} from 0.5 s after enable; 100 Hz policy",
        happened=f"exit 3 `sensor_envelope` ({msg}); fault event logged; DISABLE confirmed",
        safe="at the tick that read it: no COMMAND answers that STATE, DISABLE follows",
        lost=f"nothing: log complete, {s['ticks']} ticks",
    )


@pytest.mark.parametrize("firmware", ["sim_robot", "pr_host"])
def test_arm_past_its_travel_raises_limit_on_both_controllers(tmp_path, row, firmware, request):
    """The same LIMIT fault from the Python controller behind sim_robot as from the C
    firmware: an excitation without its centring walks the arm out of its 2 rad travel
    (the spec's envelope, the one number training terminates on)."""
    link = tmp_path / "ctl"
    if firmware == "pr_host":
        binary = request.getfixturevalue("pr_host_bin")
        ctl = Controller("--watchdog-ms", str(WATCHDOG_MS), link=link, binary=binary)
    else:
        ctl = Controller(f"watchdog_ms={WATCHDOG_MS}", link=link)
    try:
        p = run_cli(
            "firmware_bridge.deploy",
            "source=excitation",
            "robot=furuta",
            "excitation=steps",
            "excitation.centre=null",
            f"port={link}",
            "duration_s=6",
            f"log_dir={tmp_path}/logs",
            "status=false",
            "safety.max_consecutive_overruns=100000",
            timeout=60,
        )
    finally:
        _, ctl_err = ctl.stop()
    assert p.returncode == 3, p.stderr
    s = last_json(p.stdout)
    assert [f["kind"] for f in s["faults"]] == ["controller_limit"], s["faults"]
    msg = s["faults"][0]["message"]
    assert "LIMIT: sensor 0 outside its safe range" in msg, msg
    log = check_log(s)
    arm = np.array([st["sensors"][0] for st in log.topic("/state")])
    assert 1.8 < np.max(np.abs(arm)) < 2.3  # stopped at the envelope's edge, not beyond
    row.update(
        section="envelope",
        what=f"arm past its travel, {firmware}",
        how="`deploy source=excitation excitation=steps excitation.centre=null` (open-loop "
        "+-3 V steps walk the arm off) against "
        + ("the C firmware's host build" if firmware == "pr_host" else "sim_robot"),
        happened=f"exit 3 `controller_limit` ({msg}); the controller went safe by itself",
        safe=f"at the first STATE past 2 rad (largest arm angle logged "
        f"{np.max(np.abs(arm)):.3f} rad)",
        lost=f"nothing: log complete, {s['ticks']} ticks",
    )


# ------------------------------------------------------------------------ refused at handshake


@pytest.mark.parametrize(
    "rate,extra,expect",
    [
        (15, (), "not shorter than the controller's watchdog of 50 ms"),
        (40, ("safety.stale_state_ms=20",), "not shorter than safety.stale_state_ms=20"),
    ],
    ids=["watchdog", "stale"],
)
def test_rate_the_watchdog_cannot_serve_is_refused(policy, tmp_path, row, rate, extra, expect):
    """A control period longer than the controller's watchdog (or the host's stale-state
    limit) would trip it at every tick: refused with one line before ENABLE."""
    ctl = Controller(f"watchdog_ms={WATCHDOG_MS}", link=tmp_path / "ctl")
    try:
        p = run_cli(
            "firmware_bridge.deploy",
            "source=excitation",
            f"policy={policy}",  # the robot comes from the policy's metadata
            f"rate_hz={rate}",
            f"port={tmp_path / 'ctl'}",
            "duration_s=2",
            f"log_dir={tmp_path}/logs",
            "status=false",
            *extra,
            timeout=60,
        )
    finally:
        summary, ctl_err = ctl.stop()
    assert p.returncode == 2, p.stderr
    assert expect in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) <= 2, p.stderr
    assert summary["commands_applied"] == 0 and "ENABLE at" not in ctl_err
    assert not list((tmp_path / "logs").glob("*.mcap")) if (tmp_path / "logs").exists() else True
    row.update(
        section="handshake",
        what=f"rate below the {'watchdog' if not extra else 'stale-state limit'} ({rate} Hz)",
        how=f"`deploy rate_hz={rate}{' ' + ' '.join(extra) if extra else ''}` against "
        f"sim_robot watchdog_ms={WATCHDOG_MS}",
        happened=f"exit 2: {p.stderr.strip().splitlines()[-1].removeprefix('error: ')[:150]}",
        safe="never armed (no ENABLE sent)",
        lost="nothing written",
    )


# ------------------------------------------------------------------------ controller reset


def test_c_controller_restart_is_named_a_reset(policy, pr_host_bin, tmp_path, row):
    """The C firmware restarts behind the proxy (killed, started again on the same link):
    a new boot streams nothing until a HELLO, so the host sees a silent line, disables, and
    its probe (HELLO 0) finds the new boot id."""
    link = tmp_path / "ctl"
    a = Controller("--seed", "1", "--watchdog-ms", str(WATCHDOG_MS), link=link, binary=pr_host_bin)
    proxy = FaultProxy(str(link)).start()
    b = None
    d = deploy_via(proxy, policy, tmp_path / "logs", duration_s=5)
    try:
        wait_enabled(proxy, d)
        a.proc.kill()  # a reset: no safe-state code runs, the board simply reboots
        a.proc.wait()
        b = Controller(
            "--seed", "2", "--watchdog-ms", str(WATCHDOG_MS), link=link, binary=pr_host_bin
        )
        out, err = d.communicate(timeout=30)
    finally:
        if d.poll() is None:
            d.kill()
        px = proxy.stop()
        a.stop()
        _, b_err = b.stop() if b is not None else ({}, "")
    assert d.returncode == 3, err
    assert err.strip().splitlines()[-1].startswith("error: controller_reset:"), err
    s = last_json(out)
    assert [f["kind"] for f in s["faults"]] == ["controller_reset"]
    assert "no new STATE" in s["faults"][0]["message"]
    assert px["upstream_lost"] == 1 and px["upstream_reconnects"] >= 1
    assert "actuators armed" not in b_err  # the new boot was never armed
    check_log(s)
    row.update(
        section="reset",
        what="controller reset (C firmware restarted)",
        how="pr_host killed mid-run and started again on the same link (new boot id); "
        "the proxy reopens it; recover.max=0",
        happened="exit 3 `controller_reset` (no new STATE for 50 ms, then HELLO 0 finds "
        "the new boot id); DISABLE to the new boot",
        safe="0 ms: a new boot starts disarmed and was never re-armed",
        lost=f"none before the reset: log complete, {s['ticks']} ticks",
    )


def test_controller_with_another_boot_id_is_refused_on_recovery(policy, tmp_path, row):
    """sim_robot swapped for one with another boot id behind the proxy; with recovery on,
    the re-handshake sees the new boot id and refuses to re-enable."""
    a = Controller("boot_id=1", f"watchdog_ms={WATCHDOG_MS}", link=tmp_path / "a")
    b = Controller("boot_id=2", f"watchdog_ms={WATCHDOG_MS}", link=tmp_path / "b")
    link = tmp_path / "ctl"
    link.symlink_to(a.port)
    proxy = FaultProxy(str(link)).start()
    rig_deploy = deploy_via(proxy, policy, tmp_path / "logs", "recover.max=2", duration_s=5)
    try:
        wait_enabled(proxy, rig_deploy)
        tmp_link = tmp_path / "ctl.new"
        tmp_link.symlink_to(b.port)
        os.replace(tmp_link, link)  # the proxy's next open finds the other controller
        a.proc.kill()
        out, err = rig_deploy.communicate(timeout=30)
    finally:
        if rig_deploy.poll() is None:
            rig_deploy.kill()
        proxy.stop()
        a.stop()
        b_summary, b_err = b.stop()
    assert rig_deploy.returncode == 3, err
    assert err.strip().splitlines()[-1].startswith("error: controller_reset:"), err
    s = last_json(out)
    assert [f["kind"] for f in s["faults"]] == ["stale_state", "controller_reset"]
    assert [f["recovered"] for f in s["faults"]] == [False, False] and s["recoveries"] == 0
    assert "boot id 00000002, was 00000001" in s["faults"][1]["message"]
    assert b_summary["commands_applied"] == 0 and "ENABLE at" not in b_err
    log = check_log(s)
    assert "recover_failed" in [e["kind"] for e in log.topic("/events")]
    row.update(
        section="reset",
        what="controller reset (another boot id)",
        how="sim_robot boot_id=1 replaced behind the proxy by one with boot_id=2; recover.max=2",
        happened="exit 3 `controller_reset`: stale_state, then the recovery's handshake "
        "sees boot id 2 (was 1) and does not re-enable",
        safe="0 ms: the new controller was never armed (0 COMMANDs applied)",
        lost=f"none before the reset: log complete, {s['ticks']} ticks",
    )


def test_state_seq_going_back_is_a_reset_single_old_states_are_not(row):
    """In process, on a virtual clock: STATEs that a link duplicated or reordered are
    ignored and counted; a stream that starts again from a low seq is a controller reset."""
    from envs.robots import get_robot
    from firmware_bridge.host.loop import ControlLoop
    from firmware_bridge.host.safety import SafetyConfig, SafetyLayer
    from firmware_bridge.wire.protocol import ParserStats, State

    spec = get_robot("furuta")
    script = [[10], [11], [9], [12, 12], [13], [0], [1], [2], [3]]  # per tick

    class Link:
        parser_stats = ParserStats()

        def __init__(self) -> None:
            self.tick, self.sent, self.seq = 0, 0, 0

        def poll(self):
            seqs = script[self.tick] if self.tick < len(script) else []
            self.tick += 1
            return [
                (q, State(q * 10_000, 9, 0, 0xFFFFFFFF, 0, np.zeros(4, np.float32))) for q in seqs
            ]

        def next_seq(self) -> int:
            self.seq += 1
            return self.seq

        def send(self, frame: bytes) -> None:
            self.sent += 1

    class Log:
        def state(self, *a) -> None:
            pass

        def tick(self, *a) -> None:
            pass

    now = [0]

    def clock() -> int:
        now[0] += 1000
        return now[0]

    def sleep(s: float) -> None:
        now[0] += int(s * 1e9)

    link = Link()
    safety = SafetyLayer(spec.command_low, spec.command_high, spec.safe_command, SafetyConfig())
    loop = ControlLoop(
        link,
        spec,
        lambda obs, sensors, tick: np.zeros(1),
        safety,
        Log(),
        RATE_HZ,
        1.0,
        STALE_MS,
        10,
        clock=clock,
        sleep=sleep,
        prime=False,
    )
    res = loop.run()
    assert res.fault is not None and res.fault.kind == "controller_reset"
    assert "went back from 13 to 2" in str(res.fault)
    assert res.states_out_of_order == 5  # 9, the second 12, then 0, 1, 2
    assert res.ticks == 7 and link.sent == 7  # no COMMAND after the third old STATE
    row.update(
        section="reset",
        what="STATE seq goes back (stream restarts)",
        how="scripted link in process: seqs 10 11 9 12 12 13 0 1 2 (virtual clock)",
        happened="`controller_reset` at the third STATE in a row older than the newest; the "
        "single reordered (9) and duplicated (12) STATEs ignored and counted",
        safe="no COMMAND after the fault tick",
        lost="n/a",
    )
