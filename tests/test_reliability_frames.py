"""Reliability: per-frame faults on the link (drop, duplicate, reorder, delay, garbage, bit
errors, a lost ENABLE) and 1 % corruption at 500 Hz, each recording one row of
docs/reliability.md (the `row` fixture, tests/conftest.py). The rig: tests/reliability_rig.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from benchmarks._util import rate_policy
from firmware_bridge.tools.faultproxy import ProxySettings, Rates
from tests.conftest import RATE_HZ
from tests.reliability_rig import (
    Rig,
    applied_commands,
    check_applied_as_sent,
    check_log,
    inversions,
)

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
