"""Reliability: a faulty link, controller resets and bad input to every entry point.

Each test states what a user relies on and records one row of docs/reliability.md (the
`row` fixture; `python benchmarks/reliability_table.py` runs these tests and renders the
rows from pytest's JUnit XML). Faults are injected by `firmware_bridge.faultproxy` between
`firmware_bridge.deploy` and the controller (sim_robot, or the C host build), all real
processes on real pseudo-terminals; what the controller did is read from its own log and
from the STATEs it sent (the proxy taps the intact stream).

Crashes (deploy killed with SIGKILL) are in tests/test_deploy.py and tests/test_firmware.py,
which record their rows too.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

from benchmarks._util import rate_policy
from firmware_bridge.logs.rollout_log import read_log
from firmware_bridge.tools.faultproxy import FaultProxy, ProxySettings, Rates
from firmware_bridge.wire.link import open_serial
from firmware_bridge.wire.protocol import FrameParser, MsgType
from tests.conftest import PY, ROOT, last_json, run_cli, start_cli

RATE_HZ = 100
WATCHDOG_MS = 50
STALE_MS = 50.0
SLACK_MS = 60.0
"""Scheduling slack of this shared 2-core machine on top of a safety deadline."""
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
FW = ROOT / "firmware_bridge" / "firmware"


@pytest.fixture
def row(record_property, request):
    """The test's row of docs/reliability.md: fill in section, what, how, happened, safe,
    lost; written (as a JUnit property) when the test ends, passed or not."""
    r: dict = {}
    yield r
    if r:
        r.setdefault("test", request.node.nodeid)
        record_property("reliability_row", json.dumps(r))


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> str:
    return str(rate_policy(tmp_path_factory.mktemp("p100"), RATE_HZ))


# ------------------------------------------------------------------------------ the rig


class Controller:
    """A controller process on a pty: sim_robot, or the C host build (`binary`)."""

    def __init__(self, *args: str, link: Path, binary: Path | None = None) -> None:
        if binary is None:
            cmd = [PY, "-m", "firmware_bridge.sim_robot", *args, f"port_link={link}"]
        else:
            cmd = [str(binary), *args, "--port-link", str(link)]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
        )
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise AssertionError(f"controller did not start: {line!r} {self.proc.stderr.read()}")
        self.port = line.split()[1]

    def stop(self, sig: int = signal.SIGTERM) -> tuple[dict, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        return (json.loads(lines[-1]) if lines else {}), err


def deploy_via(
    proxy: FaultProxy, policy: str, log_dir: Path, *extra: str, duration_s: float = 2.0
) -> subprocess.Popen:
    """`firmware_bridge.deploy` through the proxy, in the background."""
    return start_cli(
        "firmware_bridge.deploy",
        f"policy={policy}",
        f"port={proxy.port}",
        f"duration_s={duration_s}",
        f"log_dir={log_dir}",
        "status=false",
        # timing is benchmarked elsewhere; a busy machine must not end these runs
        "safety.max_consecutive_overruns=100000",
        *extra,
    )


def wait_enabled(
    proxy: FaultProxy, deploy: subprocess.Popen, after_s: float = 0.5, timeout: float = 30.0
) -> None:
    """Until the controller behind the proxy reports its actuators armed, then after_s more."""
    end = time.monotonic() + timeout
    while not proxy.controller.enabled:
        assert deploy.poll() is None, deploy.communicate()
        assert time.monotonic() < end, "the controller was never enabled"
        time.sleep(0.01)
    time.sleep(after_s)


class Rig:
    """controller -> FaultProxy (in this process) -> deploy, for one injected fault."""

    def __init__(self, tmp: Path, settings: ProxySettings | None = None, *ctl_args: str) -> None:
        self.tmp = tmp
        self.applied = tmp / "applied.bin"
        self.ctl = Controller(
            f"watchdog_ms={WATCHDOG_MS}", f"applied_log={self.applied}", *ctl_args, link=tmp / "ctl"
        )
        self.proxy = FaultProxy(str(tmp / "ctl"), settings).start()
        self.deploy: subprocess.Popen | None = None

    def start_deploy(self, policy: str, *extra: str, duration_s: float = 2.0) -> None:
        self.deploy = deploy_via(
            self.proxy, policy, self.tmp / "logs", *extra, duration_s=duration_s
        )

    def wait_enabled(self, after_s: float = 0.5, timeout: float = 30.0) -> None:
        wait_enabled(self.proxy, self.deploy, after_s, timeout)

    def finish(self, timeout: float = 60.0) -> tuple[int, dict | None, str]:
        out, err = self.deploy.communicate(timeout=timeout)
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        return self.deploy.returncode, (json.loads(lines[-1]) if lines else None), err

    def close(self) -> tuple[dict, str, dict]:
        """Stop everything: (controller summary, controller stderr, proxy summary)."""
        if self.deploy is not None and self.deploy.poll() is None:
            self.deploy.kill()
            self.deploy.communicate()
        proxy = self.proxy.stop()
        ctl, err = self.ctl.stop()
        return ctl, err, proxy

    def injected(self, kind: str) -> list:
        return [r for r in self.proxy.records if r.kind == kind]

    def safe_after(self, kind: str, ctl_err: str) -> tuple[float, str]:
        """ms from the first injected `kind` to the controller's next disarm (a fault it
        raised or a DISABLE), both on the controller's clock (sim_robot's log)."""
        rec = self.injected(kind)[0]
        t_inj = self.proxy.controller.controller_time(self.proxy.t0 + rec.t)
        for m in re.finditer(r"(fault \w+|DISABLE) at t=([\d.]+) s", ctl_err):
            if float(m.group(2)) >= t_inj - 0.001:
                return (float(m.group(2)) - t_inj) * 1e3, m.group(1)
        raise AssertionError(f"the controller never went safe after the {kind}:\n{ctl_err}")


def applied_commands(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype=[("seq", "<u4"), ("values", "<f4", (1,))])


def check_applied_as_sent(applied: np.ndarray, log) -> dict[int, np.ndarray]:
    """Every COMMAND the controller applied carries the seq and exact float32 values of one
    the host sent; returns the sent ones by seq."""
    sent = {c["seq"]: np.asarray(c["values"], np.float32) for c in log.topic("/command")}
    for a in applied:
        seq = int(a["seq"])
        assert seq in sent, f"the controller applied COMMAND seq {seq}, never sent"
        assert sent[seq].tobytes() == a["values"].tobytes(), f"seq {seq} applied altered"
    return sent


def check_log(s: dict):
    """The deploy log is whole (not truncated) and holds every tick."""
    log = read_log(s["log"])
    assert not log.truncated and s["log_dropped"] == 0
    assert len(log.topic("/command")) == s["ticks"]
    return log


def inversions(seqs: np.ndarray) -> int:
    return int(np.sum(np.diff(seqs.astype(np.int64)) < 0))


# ------------------------------------------------------------------- faults on the stream


STREAM = ("STATE", "COMMAND")
"""Per-frame faults hit the stream; handshake, ENABLE and DISABLE frames pass intact."""

STREAM_FAULTS = {
    "drop": (Rates(drop=0.05), "5 % of STATE and COMMAND frames dropped, both ways"),
    "duplicate": (Rates(duplicate=0.05), "5 % of STATE and COMMAND frames sent twice"),
    "reorder": (Rates(reorder=0.05), "5 % of STATE and COMMAND frames swapped with the next"),
    "delay": (
        Rates(delay=0.05, delay_ms=30.0),
        "5 % of STATE and COMMAND frames held 30 ms (later frames overtake them)",
    ),
    "garbage": (
        Rates(garbage=0.05),
        "a frame of 1-32 random bytes inserted before 5 % of the frames, both ways",
    ),
}


@pytest.mark.parametrize("kind", sorted(STREAM_FAULTS))
def test_stream_faults_are_counted_and_the_run_goes_on(policy, tmp_path, row, kind):
    rates, how = STREAM_FAULTS[kind]
    rig = Rig(tmp_path, ProxySettings(h2c=rates, c2h=rates, seed=7, frames=STREAM))
    try:
        rig.start_deploy(policy)
        rc, s, err = rig.finish()
    finally:
        ctl, ctl_err, px = rig.close()
    assert rc == 0, err
    assert s["faults"] == [] and s["ticks"] == 2 * RATE_HZ
    log = check_log(s)
    applied = applied_commands(rig.applied)
    sent = check_applied_as_sent(applied, log)
    n = {d: px["injected"][d].get(kind, 0) for d in ("h2c", "c2h")}
    assert n["h2c"] > 0 and n["c2h"] > 0, px["injected"]
    recs = [r for r in rig.proxy.records if r.kind == kind]
    cmd_hit = {r.seq for r in recs if r.direction == "h2c" and r.msg_type == "COMMAND"}
    state_hit = [r.seq for r in recs if r.direction == "c2h" and r.msg_type == "STATE"]
    seqs = [st["seq"] for st in log.topic("/state")]
    events = {e["kind"] for e in log.topic("/events")}
    ooo = s["states_out_of_order"]
    if kind == "drop":
        # the controller held its last command for each dropped one; none applied twice
        assert set(applied["seq"].tolist()) == set(sent) - cmd_hit
        assert applied.size == len(sent) - len(cmd_hit)
        lo, hi = seqs[0], seqs[-1]
        gaps = sorted(set(range(lo, hi + 1)) - set(seqs))
        assert gaps == sorted(q for q in state_hit if lo <= q <= hi)
        happened = (
            f"run completed; {len(gaps)} STATE seq gaps in the log = the STATEs dropped; "
            f"controller held its last command for the {len(cmd_hit)} COMMANDs dropped "
            f"(applied {applied.size} of {len(sent)})"
        )
        lost = f"{len(gaps)} STATEs, {len(cmd_hit)} COMMANDs; log complete"
    elif kind == "duplicate":
        assert 1 <= ooo <= len(state_hit)
        assert applied.size == len(sent) + len(cmd_hit)  # re-applied, same values
        happened = (
            f"run completed; {ooo} duplicated STATEs ignored (states_out_of_order); "
            f"controller applied {len(cmd_hit)} duplicated COMMANDs twice (same seq and values)"
        )
        lost = "nothing; log complete"
    elif kind in ("reorder", "delay"):
        assert 1 <= ooo <= len(state_hit)
        inv = inversions(applied["seq"])
        assert inv >= 1 and inv <= len(cmd_hit)
        # all applied, but for a last COMMAND held back until after the DISABLE
        missing = set(sent) - set(applied["seq"].tolist())
        assert missing <= cmd_hit and all(q >= max(sent) - 3 for q in missing)
        assert "link_errors" in events
        happened = (
            f"run completed; {ooo} STATEs older than the newest ignored (states_out_of_order), "
            f"none taken for a reset; controller applied {inv} COMMANDs after a newer one "
            f"(protocol v1 has no COMMAND order check)"
        )
        lost = f"{ooo} stale STATEs ignored; log complete"
    else:  # garbage
        assert s["dropped_frames"] == n["c2h"]
        assert ctl["rx_errors"] == n["h2c"]
        assert set(applied["seq"].tolist()) == set(sent)
        assert "link_errors" in events
        happened = (
            f"run completed; host dropped and counted {s['dropped_frames']} garbage frames "
            f"= injected; controller rx_errors {ctl['rx_errors']} = injected; every COMMAND "
            f"applied as sent"
        )
        lost = "nothing; log complete"
    row.update(
        section="link",
        what=f"{kind} (frames)",
        how=f"faultproxy: {how}; 2 s at {RATE_HZ} Hz",
        happened=f"exit 0; {happened}",
        safe="n/a (stays armed: no deadline missed)",
        lost=lost,
    )


def test_bit_errors_never_reach_the_actuators(policy, tmp_path, row):
    rig = Rig(tmp_path, ProxySettings(seed=3))
    try:
        rig.start_deploy(policy, duration_s=3.0)
        rig.wait_enabled(0.3)
        rig.proxy.rates("both", bit_error=3e-3)  # line noise on every byte, delimiters too
        time.sleep(1.5)
        rig.proxy.rates("both", bit_error=0.0)  # DISABLE at the end goes through intact
        rc, s, err = rig.finish()
    finally:
        ctl, ctl_err, px = rig.close()
    assert rc == 0, err
    flips = {d: px["injected"][d].get("bit_error", 0) for d in ("h2c", "c2h")}
    assert flips["h2c"] > 0 and flips["c2h"] > 0, flips
    assert s["dropped_frames"] > 0 and ctl["rx_errors"] > 0
    log = check_log(s)
    applied = applied_commands(rig.applied)
    sent = check_applied_as_sent(applied, log)
    row.update(
        section="link",
        what="bit errors (bytes)",
        how="faultproxy: each byte on the wire has one bit flipped with p = 3e-3, both ways, "
        f"for 1.5 s of a 3 s run at {RATE_HZ} Hz",
        happened=f"exit 0; {flips['c2h']} flips controller->host: host dropped "
        f"{s['dropped_frames']} frames ({', '.join(k[8:] for k in s['dropped_by_kind'] if k != 'dropped_total')}); "
        f"{flips['h2c']} flips host->controller: controller rx_errors {ctl['rx_errors']}; "
        f"{len(sent) - applied.size} COMMANDs not applied, every applied one bit-exact as sent",
        safe="n/a (stays armed)",
        lost=f"the hit frames ({s['dropped_frames']} to the host, {ctl['rx_errors']} to the "
        "controller); log complete",
    )


# ------------------------------------------------------------ stalls, a pulled cable


LINE_FAULTS = {
    # name: (what, how, proxy settings (scheduled) or an action once enabled, fault kind)
    "stall_c2h": (
        "line stall, controller->host",
        "faultproxy: controller->host held 300 ms (then delivered), 2 s after the host's "
        "first byte (`c2h.stall_at_s=[2] stall_ms=300`)",
        ProxySettings(c2h=Rates(stall_ms=300.0, stall_at_s=(2.0,))),
        "stale_state",
    ),
    "stall_h2c": (
        "line stall, host->controller",
        "faultproxy: host->controller held 300 ms (then delivered), 0.5 s after enable",
        lambda p: p.stall("h2c", 0.3),
        "controller_watchdog",
    ),
    "stall_both": (
        "line stall, both ways",
        "faultproxy: both directions held 300 ms, 0.5 s after enable",
        lambda p: p.stall("both", 0.3),
        "stale_state",
    ),
    "close": (
        "line closed (pulled cable)",
        "faultproxy: the host's pseudo-terminal closed 2 s after the host's first byte "
        "(`close_at_s=2`)",
        ProxySettings(close_at_s=2.0),
        "link_lost",
    ),
}


@pytest.mark.parametrize("name", list(LINE_FAULTS))
def test_dead_line_ends_the_run_and_the_controller_goes_safe(policy, tmp_path, row, name):
    what, how, act, kind = LINE_FAULTS[name]
    scheduled = isinstance(act, ProxySettings)
    rig = Rig(tmp_path, act if scheduled else None)
    try:
        rig.start_deploy(policy, duration_s=5.0)
        if not scheduled:
            rig.wait_enabled(0.5)
            act(rig.proxy)
        rc, s, err = rig.finish()
    finally:
        ctl, ctl_err, px = rig.close()
    assert rc == 3, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith(f"error: {kind}:") and "Traceback" not in err, err
    assert [f["kind"] for f in s["faults"]] == [kind] and s["ticks"] < 5 * RATE_HZ
    assert s["ticks"] > 0  # the fault came mid-run
    log = check_log(s)
    events = [e["kind"] for e in log.topic("/events")]
    assert "fault" in events and "disable" in events[events.index("fault") :]
    injected = "close" if name == "close" else "stall"
    safe_ms, by = rig.safe_after(injected, ctl_err)
    wd = [float(x) for x in re.findall(r"no command for ([\d.]+) ms", ctl_err)]
    if kind in ("controller_watchdog", "link_lost") or name == "stall_both":
        # commands stopped reaching the controller: its own watchdog made it safe
        assert by == "fault WATCHDOG", ctl_err
        assert wd and wd[0] <= WATCHDOG_MS + SLACK_MS, wd
        assert safe_ms <= WATCHDOG_MS + SLACK_MS
        safe = (
            f"{safe_ms:.0f} ms after the fault by the controller's watchdog "
            f"(no command for {wd[0]:.1f} ms; limit {WATCHDOG_MS} ms)"
        )
    else:  # the host saw the silence first and disabled
        assert by == "DISABLE", ctl_err
        assert safe_ms <= STALE_MS + SLACK_MS
        safe = (
            f"{safe_ms:.0f} ms after the fault by the host's DISABLE (stale limit {STALE_MS:g} ms)"
        )
    msg = s["faults"][0]["message"]
    row.update(
        section="link",
        what=what,
        how=f"{how}; recover.max=0",
        happened=f"exit 3 `{kind}` ({msg[:90]}); fault event logged; "
        f"DISABLE {'confirmed' if s['disable_confirmed'] else 'not confirmed (line gone)'}",
        safe=safe,
        lost=f"none of the run before the fault: log complete, {s['ticks']} ticks",
    )


@pytest.mark.parametrize("direction", ["c2h", "h2c"])
def test_transient_stall_is_recovered_without_restart(policy, tmp_path, row, direction):
    kind = "stale_state" if direction == "c2h" else "controller_watchdog"
    rig = Rig(tmp_path)
    try:
        rig.start_deploy(policy, "recover.max=1", "recover.backoff_s=0.1", duration_s=3.0)
        rig.wait_enabled(0.5)
        rig.proxy.stall(direction, 0.3)
        rc, s, err = rig.finish()
    finally:
        ctl, ctl_err, px = rig.close()
    assert rc == 0, err
    assert s["recoveries"] == 1 and s["faults"] == [
        {"kind": kind, "message": s["faults"][0]["message"], "recovered": True}
    ]
    assert s["ticks"] == 3 * RATE_HZ  # the run went on to its full length
    log = check_log(s)
    events = [e["kind"] for e in log.topic("/events")]
    assert events.count("enable") == 1 and "recover" in events and "fault" in events
    # explicit re-enable after a new handshake, never armed by anything else
    assert ctl_err.count("ENABLE at") == 2 and ctl_err.count("HELLO: streaming") >= 2
    safe_ms, by = rig.safe_after("stall", ctl_err)
    limit = (STALE_MS if kind == "stale_state" else WATCHDOG_MS) + SLACK_MS
    assert safe_ms <= limit
    row.update(
        section="recovery",
        what=f"line stall {'controller->host' if direction == 'c2h' else 'host->controller'}, "
        "recovered",
        how="faultproxy: one direction held 300 ms; recover.max=1",
        happened=f"exit 0; `{kind}` -> DISABLE, re-handshake, explicit ENABLE, run completed "
        f"({s['ticks']} ticks, recoveries 1, fault logged with recovered=true)",
        safe=f"{safe_ms:.0f} ms after the stall ({by})",
        lost="ticks during the stall and the recovery (not sent, not logged as sent)",
    )


def test_stop_during_recovery_never_re_enables(policy, tmp_path, row):
    """Ctrl-C while a recovery backs off: the run ends by its fault, disabled, and the
    controller is never armed again."""
    rig = Rig(tmp_path)
    try:
        rig.start_deploy(policy, "recover.max=3", "recover.backoff_s=1.5", duration_s=5.0)
        rig.wait_enabled(0.5)
        rig.proxy.stall("c2h", 0.3)
        end = time.monotonic() + 10
        while rig.proxy.controller.enabled:  # stale_state -> DISABLE, then the back-off
            assert time.monotonic() < end, "the host never disabled"
            time.sleep(0.01)
        time.sleep(0.5)
        rig.deploy.send_signal(signal.SIGINT)
        rc, s, err = rig.finish()
    finally:
        ctl, ctl_err, px = rig.close()
    assert rc == 3, err
    assert "Traceback" not in err
    assert s["stopped_by"] == "SIGINT" and s["recoveries"] == 0, s
    assert [(f["kind"], f["recovered"]) for f in s["faults"]] == [("stale_state", False)]
    assert ctl_err.count("ENABLE at") == 1, ctl_err
    log = check_log(s)
    events = [e["kind"] for e in log.topic("/events")]
    assert "recover_failed" in events and "recover" not in events, events
    row.update(
        section="recovery",
        what="Ctrl-C during a recovery",
        how="faultproxy: controller->host held 300 ms (stale_state); recover.max=3, "
        "recover.backoff_s=1.5; SIGINT 0.5 s into the back-off",
        happened="exit 3 `stale_state` (not recovered), stopped_by SIGINT; the recovery's "
        "handshake sees the stop and does not re-enable (ENABLE sent once in the run)",
        safe="disabled by the host's DISABLE after the stall; never armed again",
        lost=f"the rest of the run: log complete, {s['ticks']} ticks",
    )


def test_lost_enable_is_refused_before_any_command(policy, tmp_path, row):
    rig = Rig(tmp_path, ProxySettings(h2c=Rates(drop=1.0), frames=("ENABLE",)))
    try:
        rig.start_deploy(policy)
        rc, s, err = rig.finish()
    finally:
        ctl, ctl_err, px = rig.close()
    assert rc == 2 and "did not acknowledge ENABLE" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) <= 2
    assert px["frame_types"]["h2c"].get("COMMAND", 0) == 0 and ctl["commands_applied"] == 0
    assert "ENABLE at" not in ctl_err
    row.update(
        section="link",
        what="ENABLE lost on the line",
        how="faultproxy: every ENABLE frame dropped",
        happened="exit 2 `controller did not acknowledge ENABLE`; no COMMAND sent, "
        "the controller never armed",
        safe="never armed",
        lost="nothing (the log holds the refusal)",
    )


def test_link_lost_while_disable_in_flight_ends_cleanly(policy, tmp_path, row):
    """The cable is pulled exactly as the host sends DISABLE at the end of a run: the
    acknowledgement can never come. deploy still closes the log with its summary, prints
    the JSON line naming the fault and exits 3; the controller's watchdog makes it safe."""
    rig = Rig(tmp_path, ProxySettings(close_on=("DISABLE",)))
    try:
        rig.start_deploy(policy, duration_s=1.0)
        rc, s, err = rig.finish()
    finally:
        ctl, ctl_err, px = rig.close()
    assert rc == 3, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: link_lost:")
    assert s is not None and s["ticks"] == RATE_HZ and s["stopped_by"] == "duration"
    assert [f["kind"] for f in s["faults"]] == ["link_lost"] and not s["disable_confirmed"]
    assert "while DISABLE was in flight" in s["faults"][0]["message"]
    log = check_log(s)
    assert log.metadata.get("summary"), "the log was not closed with its summary"
    assert json.loads(Path(s["log"] + ".json").read_text()) == s
    events = [e["kind"] for e in log.topic("/events")]
    assert events[-2:] == ["fault", "disable"], events
    assert px["closed_at_s"] is not None and px["frame_types"]["h2c"].get("DISABLE") == 1
    wd = [float(x) for x in re.findall(r"no command for ([\d.]+) ms", ctl_err)]
    assert "fault WATCHDOG" in ctl_err and wd and wd[0] <= WATCHDOG_MS + SLACK_MS, ctl_err
    row.update(
        section="link",
        what="line closed while DISABLE is in flight",
        how="faultproxy `close_on=[DISABLE]`: the host's line closes the moment the host "
        "sends DISABLE at the end of a 1 s run (the DISABLE is lost with it)",
        happened=f"exit 3 `link_lost` ({s['faults'][0]['message'][:80]}); summary printed, "
        "log closed whole with it, signal handlers restored; DISABLE not confirmed",
        safe=f"by the controller's watchdog (no command for {wd[0]:.1f} ms; limit "
        f"{WATCHDOG_MS} ms)",
        lost=f"nothing: log complete, {s['ticks']} ticks",
    )


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


@pytest.fixture(scope="module")
def pr_host_bin() -> Path:
    p = subprocess.run(["make", "-C", str(FW), "host"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return FW / "build" / "pr_host"


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


# ---------------------------------------------------------------- corruption at 500 Hz


def test_corruption_500hz_every_frame_counted_nothing_corrupt_applied(tmp_path, row):
    """The short version of benchmarks/corruption_soak.py (60 s there): the loop keeps its
    deadlines, every corrupt frame is counted on the side that received it, and the
    controller applied exactly the intact COMMANDs, bit for bit."""
    from benchmarks.corruption_soak import corruption_run

    p500 = rate_policy(tmp_path / "p500", 500)
    r = corruption_run(Path(p500), tmp_path / "run", seconds=5.0, corrupt=0.01, seed=1)
    assert r["ok_run"], r
    assert r["corrupted_c2h"] > 0 and r["corrupted_h2c"] > 0
    assert r["ok_host_counted"] and r["ok_controller_counted"] and r["ok_actuators"], r
    row.update(
        section="soak",
        what="1 % frame corruption at 500 Hz",
        how="faultproxy CLI: corrupt=0.01 on STATE and COMMAND, both ways, 5 s at 500 Hz "
        "(60 s: benchmarks/corruption_soak.py)",
        happened=f"exit 0, {r['ticks']} ticks, no fault; host dropped {r['host_dropped']} of "
        f"{r['corrupted_c2h']} corrupted ({r['corrupted_c2h_after_last_state_read']} after the "
        "last STATE it read: in flight at close); "
        f"controller rx_errors {r['controller_rx_errors']} = "
        f"{r['corrupted_h2c']} corrupted; applied {r['commands_applied']} of "
        f"{r['commands_sent']}, all bit-exact as sent; {r['missed_deadlines']} missed "
        "deadlines (busy 2-core machine)",
        safe="n/a (stays armed)",
        lost=f"the {r['corrupted_c2h'] + r['corrupted_h2c']} corrupted frames; log complete",
    )


# ---------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def bad(tmp_path_factory, policy) -> dict[str, str]:
    """Files for the bad-input table (and a port held exclusively by this process)."""
    d = tmp_path_factory.mktemp("bad")
    ck = Path(policy).parent / "run" / "checkpoints" / "best.pt"
    (d / "junk.xml").write_text("<mujoco><worldbody><body name='x'>")
    (d / "trunc.pt").write_bytes(ck.read_bytes()[:3000])
    (d / "junk.onnx").write_bytes(b"\x08\x01garbage")
    (d / "trunc.onnx").write_bytes(Path(policy).read_bytes()[:5000])
    (d / "junk.mcap").write_bytes(np.random.default_rng(0).bytes(2000))
    model = onnx.load(policy)
    for prop in model.metadata_props:
        if prop.key == "robot.name":
            prop.value = "cartpole"
    onnx.save(model, d / "other_robot.onnx")
    sim_log = d / "sim.mcap"
    run_cli(
        "ppo_robot.evaluate",
        f"checkpoint={ck}",
        "episodes=1",
        f"log={sim_log}",
        f"out_dir={d / 'eval'}",
        check=True,
    )
    m, s = os.openpty()
    busy_path = os.ttyname(s)
    held = open_serial(busy_path)  # exclusive: another program has the port
    yield {
        "dir": str(d),
        "ck": str(ck),
        "onnx": policy,
        "busy": busy_path,
        "sim_log": str(sim_log),
    }
    held.close()
    os.close(m)
    os.close(s)


# (id, module, args, expected in the one-line error); {out} is a fresh empty folder that
# must stay empty, {port} a pseudo-terminal that records what it receives
BAD_INPUT = [
    # unparseable override, unknown key, wrong type: every entry point
    # (train's unknown key and wrong type: tests/test_train_cli.py)
    ("train-unparseable", "ppo_robot.train", ["run_dir={out}/r", "seed=[1,"], "'seed=[1,'"),
    ("evaluate-unparseable", "ppo_robot.evaluate", ["checkpoint={ck}", "out_dir={out}", "episodes=[1,"], "'episodes=[1,'"),
    ("evaluate-unknown-key", "ppo_robot.evaluate", ["checkpoint={ck}", "out_dir={out}", "no_such_key=1"], "no_such_key"),
    ("evaluate-wrong-type", "ppo_robot.evaluate", ["checkpoint={ck}", "out_dir={out}", "episodes=abc"], "episodes=abc"),
    ("export-unparseable", "export.onnx", ["checkpoint={ck}", "output={out}/p.onnx", "parity_n=[1,"], "'parity_n=[1,'"),
    ("export-unknown-key", "export.onnx", ["checkpoint={ck}", "output={out}/p.onnx", "no_such_key=1"], "no_such_key"),
    ("export-wrong-type", "export.onnx", ["checkpoint={ck}", "output={out}/p.onnx", "parity_n=abc"], "parity_n=abc"),
    ("deploy-unparseable", "firmware_bridge.deploy", ["policy={onnx}", "port={port}", "log_dir={out}", "duration_s=[1,"], "'duration_s=[1,'"),
    ("deploy-unknown-key", "firmware_bridge.deploy", ["policy={onnx}", "port={port}", "log_dir={out}", "no_such_key=1"], "no_such_key"),
    ("deploy-wrong-type", "firmware_bridge.deploy", ["policy={onnx}", "port={port}", "log_dir={out}", "duration_s=abc"], "duration_s=abc"),
    ("sim_robot-unparseable", "firmware_bridge.sim_robot", ["port_link={out}/l", "watchdog_ms=[1,"], "'watchdog_ms=[1,'"),
    ("sim_robot-unknown-key", "firmware_bridge.sim_robot", ["port_link={out}/l", "no_such_key=1"], "no_such_key"),
    ("sim_robot-wrong-type", "firmware_bridge.sim_robot", ["port_link={out}/l", "watchdog_ms=abc"], "watchdog_ms=abc"),
    ("replay-unparseable", "firmware_bridge.replay", ["log={sim_log}", "out_dir={out}/r", "window_s=[1,"], "'window_s=[1,'"),
    ("replay-unknown-key", "firmware_bridge.replay", ["log={sim_log}", "out_dir={out}/r", "no_such_key=1"], "no_such_key"),
    ("replay-wrong-type", "firmware_bridge.replay", ["log={sim_log}", "out_dir={out}/r", "window_s=abc"], "window_s=abc"),
    ("faultproxy-unparseable", "firmware_bridge.faultproxy", ["upstream={port}", "port_link={out}/l", "corrupt=[1,"], "'corrupt=[1,'"),
    ("faultproxy-unknown-key", "firmware_bridge.faultproxy", ["upstream={port}", "port_link={out}/l", "no_such_key=1"], "no_such_key"),
    ("faultproxy-wrong-type", "firmware_bridge.faultproxy", ["upstream={port}", "port_link={out}/l", "corrupt=abc"], "corrupt=abc"),
    ("faultproxy-bad-value", "firmware_bridge.faultproxy", ["upstream={port}", "port_link={out}/l", "c2h.drop=2"], "c2h.drop must be a probability"),
    # missing or corrupt files (others: test_train_cli, test_export, test_envs, test_replay)
    ("train-mjcf-missing", "ppo_robot.train", ["run_dir={out}/r", "env.model_xml={dir}/none.xml"], "MJCF file not found: {dir}/none.xml"),
    ("train-mjcf-corrupt", "ppo_robot.train", ["run_dir={out}/r", "env.model_xml={dir}/junk.xml"], "MJCF {dir}/junk.xml does not compile"),
    ("train-resume-truncated", "ppo_robot.train", ["run_dir={out}/r", "resume={dir}/trunc.pt"], "checkpoint {dir}/trunc.pt is corrupt"),
    ("evaluate-checkpoint-truncated", "ppo_robot.evaluate", ["checkpoint={dir}/trunc.pt", "out_dir={out}"], "checkpoint {dir}/trunc.pt is corrupt"),
    ("export-checkpoint-truncated", "export.onnx", ["checkpoint={dir}/trunc.pt", "output={out}/p.onnx"], "checkpoint {dir}/trunc.pt is corrupt"),
    ("deploy-onnx-missing", "firmware_bridge.deploy", ["policy={dir}/none.onnx", "port={port}", "log_dir={out}"], "policy file not found: {dir}/none.onnx"),
    ("deploy-onnx-corrupt", "firmware_bridge.deploy", ["policy={dir}/junk.onnx", "port={port}", "log_dir={out}"], "policy {dir}/junk.onnx is not a loadable ONNX file"),
    ("deploy-onnx-truncated", "firmware_bridge.deploy", ["policy={dir}/trunc.onnx", "port={port}", "log_dir={out}"], "policy {dir}/trunc.onnx is not a loadable ONNX file"),
    ("deploy-onnx-other-robot", "firmware_bridge.deploy", ["policy={dir}/other_robot.onnx", "port={port}", "log_dir={out}"], "cartpole"),
    ("deploy-mcap-missing", "firmware_bridge.deploy", ["source=playback", "log={dir}/none.mcap", "port={port}", "log_dir={out}"], "{dir}/none.mcap"),
    ("deploy-mcap-corrupt", "firmware_bridge.deploy", ["source=playback", "log={dir}/junk.mcap", "port={port}", "log_dir={out}"], "{dir}/junk.mcap is not an MCAP file"),
    ("deploy-port-busy", "firmware_bridge.deploy", ["policy={onnx}", "port={busy}", "log_dir={out}"], "serial port {busy} is busy"),
    ("deploy-port-not-serial", "firmware_bridge.deploy", ["policy={onnx}", "port={dir}/junk.xml", "log_dir={out}"], "{dir}/junk.xml is not a serial port"),
    ("sim_robot-mjcf-missing", "firmware_bridge.sim_robot", ["port_link={out}/l", "model_xml={dir}/none.xml"], "MJCF file not found: {dir}/none.xml"),
    ("sim_robot-mjcf-corrupt", "firmware_bridge.sim_robot", ["port_link={out}/l", "model_xml={dir}/junk.xml"], "MJCF {dir}/junk.xml does not compile"),
    ("sim_robot-port-missing", "firmware_bridge.sim_robot", ["port_link={out}/l", "port=/dev/does-not-exist"], "serial port /dev/does-not-exist does not exist"),
    ("sim_robot-port-busy", "firmware_bridge.sim_robot", ["port_link={out}/l", "port={busy}"], "serial port {busy} is busy"),
    ("replay-mjcf-missing", "firmware_bridge.replay", ["log={sim_log}", "out_dir={out}/r", "model_xml={dir}/none.xml"], "MJCF file not found: {dir}/none.xml"),
    ("replay-mjcf-corrupt", "firmware_bridge.replay", ["log={sim_log}", "out_dir={out}/r", "model_xml={dir}/junk.xml"], "MJCF {dir}/junk.xml does not compile"),
    ("replay-checkpoint-truncated", "firmware_bridge.replay", ["log={sim_log}", "out_dir={out}/r", "checkpoint={dir}/trunc.pt"], "checkpoint {dir}/trunc.pt is corrupt"),
    ("replay-onnx-corrupt", "firmware_bridge.replay", ["log={sim_log}", "out_dir={out}/r", "policy={dir}/junk.onnx"], "policy {dir}/junk.onnx is not a loadable ONNX file"),
    ("replay-onnx-other-robot", "firmware_bridge.replay", ["log={sim_log}", "out_dir={out}/r", "policy={dir}/other_robot.onnx"], "is for robot 'cartpole'"),
    ("replay-mcap-corrupt", "firmware_bridge.replay", ["log={dir}/junk.mcap", "out_dir={out}/r"], "{dir}/junk.mcap is not an MCAP file"),
    ("faultproxy-upstream-missing", "firmware_bridge.faultproxy", ["upstream=/dev/does-not-exist", "port_link={out}/l"], "serial port /dev/does-not-exist does not exist"),
    ("faultproxy-upstream-busy", "firmware_bridge.faultproxy", ["upstream={busy}", "port_link={out}/l"], "serial port {busy} is busy"),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_one_line_exit_2_no_output(bad, tmp_path, row, case):
    name, module, args, expect = case
    out = tmp_path / "out"
    out.mkdir()
    m, s = os.openpty()  # a port that records what it is sent
    os.set_blocking(m, False)
    subs = {**bad, "out": str(out), "port": os.ttyname(s)}
    args = [a.format(**subs) for a in args]
    # harmless settings that keep a run short if the input were (wrongly) accepted
    defaults = {
        "ppo_robot.train": ["total_steps=1000", "progress=false"],
        "firmware_bridge.deploy": ["status=false", "duration_s=1"],
        "firmware_bridge.sim_robot": ["duration_s=1"],
        "firmware_bridge.faultproxy": ["duration_s=1"],
    }.get(module, [])
    args += [d for d in defaults if not any(a.startswith(d.split("=")[0] + "=") for a in args)]
    try:
        p = run_cli(module, *args, timeout=120)
        try:
            received = os.read(m, 65536)
        except OSError:
            received = b""
    finally:
        os.close(m)
        os.close(s)
    err = p.stderr.strip()
    assert p.returncode == 2, (p.returncode, p.stdout[-500:], err[-2000:])
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert expect.format(**subs) in err and "Traceback" not in err, err
    assert p.stdout.strip() == "", p.stdout  # no summary, no PORT line
    left = sorted(str(f.relative_to(out)) for f in out.rglob("*"))
    assert left == [], f"left behind: {left}"
    types = {int(msg.TYPE) for _, msg in FrameParser().feed(received)}
    assert int(MsgType.COMMAND) not in types and int(MsgType.ENABLE) not in types
    entry = module.replace("firmware_bridge.", "").replace("ppo_robot.", "")

    def short(text: str) -> str:  # the row without this run's temporary paths
        for path, name in (
            (bad["ck"], "best.pt"),
            (bad["onnx"], "policy.onnx"),
            (bad["busy"], "BUSY_PTY"),
            (subs["port"], "PTY"),
            (bad["dir"] + "/", ""),
            (str(out), "OUT"),
        ):
            text = text.replace(path, name)
        return text

    row.update(
        section="bad_input",
        what=f"{entry}: {name.split('-', 1)[1].replace('-', ' ')}",
        how=f"`{short(' '.join(args))}`",
        happened=f"exit 2: {short(err[7:])[:140]}",
        safe="no COMMAND, no ENABLE",
        lost="no output written",
    )


def test_proxy_settings_resolve_per_direction():
    """Top-level settings apply to both directions, `h2c.`/`c2h.` override one."""
    from hydra import compose, initialize_config_dir

    from firmware_bridge.tools.faultproxy import settings_from_config
    from firmware_bridge.tools.faultproxy_config import FaultProxyConfig
    from ppo_robot.cli import CONFIG_DIR, register_schema

    register_schema("faultproxy", FaultProxyConfig)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "faultproxy",
            overrides=["upstream=x", "corrupt=0.01", "c2h.corrupt=0.2", "h2c.drop=0.5"],
        )
    st = settings_from_config(cfg)
    assert st.h2c == replace(Rates(), corrupt=0.01, drop=0.5)
    assert st.c2h == replace(Rates(), corrupt=0.2)


def test_every_rate_is_a_per_direction_key():
    """The `h2c` / `c2h` section is generated from Rates: each of its fields is a key there,
    typed as in Rates (a list for the tuple), and a wrong type is refused naming the key."""
    from dataclasses import fields

    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    from firmware_bridge.tools.faultproxy import settings_from_config
    from firmware_bridge.tools.faultproxy_config import FaultProxyConfig
    from ppo_robot.cli import CONFIG_DIR, register_schema

    given = {f.name: 0.125 for f in fields(Rates)}
    given.update(delay_ms=7.5, stall_ms=9.5, garbage_bytes=3, stall_at_s=(1.0, 2.5))
    assert set(given) == {f.name for f in fields(Rates)}
    register_schema("faultproxy", FaultProxyConfig)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        over = [f"h2c.{k}={list(v) if k == 'stall_at_s' else v}" for k, v in given.items()]
        cfg = compose("faultproxy", overrides=["upstream=x", *over])
        with pytest.raises(ConfigCompositionException, match="h2c.garbage_bytes=1.5"):
            compose("faultproxy", overrides=["upstream=x", "h2c.garbage_bytes=1.5"])
    st = settings_from_config(cfg)
    assert st.h2c == Rates(**given) and st.c2h == Rates()


def test_proxy_counts_every_fault_exactly():
    """The proxy alone, between two pseudo-terminals this test holds: each corrupted frame
    costs the receiver exactly one dropped frame, each garbage frame one more, duplicates
    arrive twice, and everything else arrives intact and in order."""
    import tty

    from firmware_bridge.wire.protocol import Command, State, encode

    ctl_master, ctl_slave = os.openpty()
    tty.setraw(ctl_slave)
    os.set_blocking(ctl_master, False)
    settings = ProxySettings(
        h2c=Rates(corrupt=0.1, garbage=0.05),
        c2h=Rates(corrupt=0.1, duplicate=0.05),
        seed=5,
    )
    proxy = FaultProxy(os.ttyname(ctl_slave), settings).start()
    host = os.open(proxy.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(host)
    got = {"h2c": bytearray(), "c2h": bytearray()}

    def drain() -> None:
        for fd, d in ((ctl_master, "h2c"), (host, "c2h")):
            try:
                while chunk := os.read(fd, 65536):
                    got[d] += chunk
            except (BlockingIOError, OSError):
                pass

    n = 400
    try:
        for i in range(n):
            os.write(host, encode(Command(i, np.array([0.5 * i], np.float32)), i))
            os.write(ctl_master, encode(State(i, 9, 0, i, 0, np.full(4, i, np.float32)), i))
            if i % 8 == 7:
                time.sleep(0.003)
                drain()
        time.sleep(0.2)
        drain()
    finally:
        summary = proxy.stop()
        os.close(host)
        os.close(ctl_master)
        os.close(ctl_slave)
    inj = summary["injected"]
    for d, n_dup in (("h2c", 0), ("c2h", inj["c2h"].get("duplicate", 0))):
        parser = FrameParser()
        msgs = parser.feed(bytes(got[d]))
        hit = {r.seq for r in proxy.records if r.direction == d and r.kind == "corrupt"}
        assert inj[d]["corrupt"] == len(hit) > 0
        assert parser.stats.dropped_total == inj[d]["corrupt"] + inj[d].get("garbage", 0)
        seqs = [seq for seq, _ in msgs]
        assert len(seqs) == n - len(hit) + n_dup
        assert sorted(set(seqs)) == sorted(set(range(n)) - hit)
        assert seqs == sorted(seqs)  # in order (a duplicate right after its original)
        for seq, m in msgs:  # intact values
            v = m.values if d == "h2c" else m.sensors
            assert np.all(v == (0.5 * seq if d == "h2c" else seq))
    assert inj["h2c"]["garbage"] > 0 and inj["c2h"]["duplicate"] > 0
