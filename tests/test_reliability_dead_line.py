"""Reliability: a dead line (stalls, a pulled cable, the line closed while DISABLE is in
flight) ends the run and the controller goes safe; with recovery on, a transient stall is
recovered without a restart, and a stop during the recovery never re-enables. Each test
records one row of docs/reliability.md. The rig: tests/reliability_rig.py.
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest

from firmware_bridge.tools.faultproxy import ProxySettings, Rates
from tests.conftest import RATE_HZ
from tests.reliability_rig import SLACK_MS, STALE_MS, WATCHDOG_MS, Rig, check_log

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
