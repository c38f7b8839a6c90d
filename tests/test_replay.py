"""Replay through the real CLIs: logs written by deploy against sim_robot on real
pseudo-terminals (and by ppo_robot.evaluate), read back, re-checked, replayed on the MJCF,
fitted; damaged and foreign files. Plus the timing and control-grid math by hand."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from envs.randomization import load, parse
from envs.robots import get_robot
from firmware_bridge.analysis import sysid
from firmware_bridge.analysis.replay import fitted_reality, suggested_randomization
from firmware_bridge.logs.rollout_log import RolloutLog, controller_seconds, read_log
from tests.conftest import FIT_TRUTH, ROOT, last_json, run_cli, start_cli, write_truth_reality

SENSORS = ["arm_angle", "pend_angle", "arm_velocity", "pend_velocity"]
TRUTH = FIT_TRUTH


def deploy(policy: str, port: str, log_dir: Path, seconds: float) -> dict:
    p = run_cli(
        "firmware_bridge.deploy",
        f"policy={policy}",
        f"port={port}",
        f"log_dir={log_dir}",
        f"duration_s={seconds}",
        "status=false",
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    return last_json(p.stdout)


def replay(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = run_cli("firmware_bridge.replay", *args, timeout=120)
    if check:
        assert p.returncode == 0, p.stderr
        assert "Traceback" not in p.stderr, p.stderr
    return p


def early_stall(log: str, horizon_s: float) -> bool:
    """sim_robot descheduled by the OS early in the run (a loaded 2-core machine): its
    STATE stamps stop tracking its physics, which no replay can undo."""
    d = read_log(log)
    t = np.array([s["t_us"] for s in d.topic("/state")]) / 1e6
    gaps = np.diff(t)
    early = t[1:] - t[0] <= horizon_s + 0.3
    return bool(np.any(np.abs(gaps[early] - 0.01) > 0.0025))


# ----------------------------------------------------------------------------- end to end


def test_deploy_log_rechecks_policy_and_overlays_simulation(trained, sim_robot, tmp_path):
    sim = sim_robot("reset_on_hello=true")
    for _attempt in range(2):  # once more if the OS stalled the simulated controller early
        s = deploy(trained["onnx"], sim.port, tmp_path / "logs", 5)
        if not early_stall(s["log"], 0.5):
            break
    out = tmp_path / "report"
    r = last_json(replay(f"log={s['log']}", f"out_dir={out}").stdout)

    assert r["ticks"] == 500 and r["missing"] == [] and r["truncated"] is False
    assert r["success"] is True and r["missed_deadlines"] is not None
    assert r["policy_recheck"] == "onnx" and r["policy_max_abs_diff"] <= 1e-6
    # the clock bracket is one STATE period wide at most (narrower when jitter helps)
    assert r["timing"]["method"].startswith("bracket") and r["timing"]["window_ms"] < 10.5
    # the swing-up overlays: over the first 0.5 s (before the pendulum nears upright, from
    # where open loop diverges) 2-10 mrad measured, against swings of +-3 rad and 20 rad/s
    first = r["sim_rmse_first"]
    assert r["rmse_horizon_s"] == 0.5
    assert first["arm_angle"] < 0.05 and first["pend_angle"] < 0.05, first
    assert first["arm_velocity"] < 0.5 and first["pend_velocity"] < 0.5, first
    assert all(r["correlation_first"][n] > 0.999 for n in SENSORS), r["correlation_first"]
    # restarted from the log every 0.3 s, the model follows the whole run
    win = r["sim_rmse_windows"]
    assert win["arm_angle"] < 0.02 and win["pend_angle"] < 0.03, win
    assert set(r["sim_rmse"]) == set(SENSORS) and set(r["time_to_divergence_s"]) == set(SENSORS)
    for f in (
        "report.md",
        "replay.json",
        "traces.png",
        "timing.png",
        "timeline.png",
        "replay_error.png",
    ):
        assert (out / f).stat().st_size > 0, f
    assert json.loads((out / "replay.json").read_text()) == r
    assert "## Simulation replay" in (out / "report.md").read_text()


def test_fit_recovers_perturbed_model(trained, sim_robot, tmp_path):
    truth = write_truth_reality(tmp_path / "truth.yaml")
    sim = sim_robot(f"reality={truth}", "reset_on_hello=true")
    logs = [deploy(trained["onnx"], sim.port, tmp_path / "logs", 4)["log"] for _ in range(2)]
    out = tmp_path / "fit"
    r = last_json(
        replay(f"log=[{','.join(logs)}]", f"out_dir={out}", f"fit=[{','.join(TRUTH)}]").stdout
    )
    fit = r["fit"]
    for name, true in TRUTH.items():
        assert abs(fit["values"][name] / true - 1) < 0.10, (name, fit["values"])
    assert fit["reduction"] >= 5.0, fit
    assert fit["logs"] == 2 and fit["windows"] >= 20

    # the fitted values drive sim_robot and replay; the suggestion is a randomization config
    fitted = load(out / "fitted_reality.yaml")
    assert {f.field for f in fitted.fields} == {
        "dof_damping",
        "dof_frictionloss",
        "actuator_gainprm",
        "actuator_biasprm",
    }
    sim2 = sim_robot(f"reality={out / 'fitted_reality.yaml'}")
    assert sim2.proc.poll() is None
    sug = load(out / "suggested_randomization.yaml")
    keys = {f.key: f for f in sug.fields}
    assert keys["motor_gain"].dist.low == pytest.approx(0.8 * fit["values"]["motor_gain"], rel=1e-4)
    assert keys["damping_pend_joint"].dist.high == pytest.approx(
        2.0 * fit["values"]["pend_damping"], rel=1e-4
    )
    assert keys["damping_arm_joint"].dist.high == 2.0  # not fitted: the default range
    assert (out / "fit_windows.png").stat().st_size > 0


def test_killed_deploy_and_cut_file_still_reported(trained, sim_robot, tmp_path):
    policy = tmp_path / "moved.onnx"
    shutil.copy(trained["onnx"], policy)
    sim = sim_robot()
    d = start_cli(
        "firmware_bridge.deploy",
        f"policy={policy}",
        f"port={sim.port}",
        f"log_dir={tmp_path / 'logs'}",
        "duration_s=30",
        "status=false",
    )
    end = time.monotonic() + 15
    while not list((tmp_path / "logs").glob("*.mcap")) and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(2.0)
    d.send_signal(signal.SIGKILL)
    d.wait(timeout=5)
    log = next((tmp_path / "logs").glob("*.mcap"))

    r = last_json(replay(f"log={log}", f"out_dir={tmp_path / 'killed'}").stdout)
    assert r["ticks"] > 100 and r["policy_max_abs_diff"] <= 1e-6
    assert r["sim_rmse_first"]["pend_angle"] < 0.1
    assert any(m.startswith(("run summary record", "end of log")) for m in r["missing"]), r[
        "missing"
    ]
    assert r["stopped_by"].startswith("unknown")

    # cut mid-record, and the policy file gone: the rest is still shown
    cut = tmp_path / "cut.mcap"
    data = log.read_bytes()
    cut.write_bytes(data[: len(data) // 2 + 7])
    policy.unlink()
    r = last_json(replay(f"log={cut}", f"out_dir={tmp_path / 'cut'}").stdout)
    assert r["truncated"] is True and r["ticks"] > 30
    assert r["policy_max_abs_diff"] is None
    assert any(m.startswith("policy re-check:") and "gone" in m for m in r["missing"]), r["missing"]
    assert r["sim_rmse_first"] is not None and (tmp_path / "cut" / "report.md").is_file()
    assert "truncated" in (tmp_path / "cut" / "report.md").read_text()


def test_simulated_log_from_evaluate(trained, tmp_path):
    log = tmp_path / "sim.mcap"
    p = run_cli(
        "ppo_robot.evaluate",
        f"checkpoint={trained['checkpoint']}",
        "episodes=2",
        f"log={log}",
        f"out_dir={tmp_path}",
    )
    assert p.returncode == 0, p.stderr
    r = last_json(
        replay(f"log={log}", f"out_dir={tmp_path / 'rep'}", "render=true", "render_fps=5").stdout
    )
    assert r["simulated"] is True and r["missing"] == []
    assert r["policy_recheck"].startswith("torch") and r["policy_max_abs_diff"] <= 1e-6
    assert r["timing"]["method"] == "log" and r["success"] is True
    # same model, exact timing: only the encoder quantization of the initial state differs
    assert max(r["sim_rmse_first"][n] for n in SENSORS[:2]) < 0.005, r["sim_rmse_first"]
    if r["render"].startswith("unavailable"):
        assert "OpenGL" in r["render"]
    else:
        assert Path(r["render"]).stat().st_size > 1000 and r["render_frames"] >= 10


def test_render_without_gl_backend_is_one_line(trained, tmp_path):
    log = tmp_path / "sim.mcap"
    run_cli(
        "ppo_robot.evaluate",
        f"checkpoint={trained['checkpoint']}",
        "episodes=1",
        f"log={log}",
        f"out_dir={tmp_path}",
        check=True,
    )
    p = run_cli(
        "firmware_bridge.replay",
        f"log={log}",
        f"out_dir={tmp_path / 'r'}",
        "render=true",
        "plots=false",
        env={"MUJOCO_GL": "disable"},
    )
    assert p.returncode == 0, p.stderr
    r = last_json(p.stdout)
    assert r["render"].startswith("unavailable:") and "\n" not in r["render"]
    assert r["sim_rmse"] is not None


def test_bad_input(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a log\n")
    for args in ([f"log={text}"], [f"log={tmp_path / 'none.mcap'}"], []):
        p = replay(*args, check=False)
        assert p.returncode == 2, (args, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("error:"), p.stderr

    # an MCAP file from another tool: shown for what it is, everything else named missing
    from mcap.writer import Writer

    foreign = tmp_path / "other.mcap"
    with open(foreign, "wb") as f:
        w = Writer(f)
        w.start()
        sid = w.register_schema(name="x", encoding="jsonschema", data=b"{}")
        ch = w.register_channel(topic="/imu", message_encoding="json", schema_id=sid)
        for i in range(5):
            w.add_message(ch, log_time=i, data=b'{"a": 1}', publish_time=i)
        w.finish()
    r = last_json(replay(f"log={foreign}", f"out_dir={tmp_path / 'f'}").stdout)
    assert any("not written by ppo-robot" in m for m in r["missing"])
    assert any(m.startswith("simulation replay") for m in r["missing"])

    log = _synthetic_log(tmp_path / "syn.mcap")
    p = replay(f"log={log}", "fit=[no_such_param]", f"out_dir={tmp_path / 'x'}", check=False)
    assert p.returncode == 2 and "unknown parameter 'no_such_param'" in p.stderr
    p = replay(f"log=[{log},{log}]", f"out_dir={tmp_path / 'x'}", check=False)
    assert p.returncode == 2 and "fit=" in p.stderr


# ----------------------------------------------------------------------------- by hand


def _synthetic_log(
    path: Path, offset: float = 2.5, phase: float = 3e-4, latency_steps: int = 0
) -> Path:
    """A deploy-like log of the Furuta driven by a square wave, host clock = controller +
    offset; each STATE reaches the host `phase` after it was sent, the COMMAND leaves 0.2 ms
    later and the controller applies it from its next physics step."""
    import mujoco

    spec = get_robot("furuta")
    m = spec.load_model()
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    idx = spec.sensor_index(m)
    meta = {"robot": "furuta", "robot_layout": spec.layout(), "rate_hz": 100.0, "source": "test"}
    ctrl, pending, n = np.zeros(1), [], 0
    with RolloutLog(path, meta) as rl:
        for k in range(150):
            while True:
                n += 1
                while pending and pending[0][0] <= n:
                    ctrl = pending.pop(0)[1]
                d.ctrl[:] = ctrl
                mujoco.mj_step(m, d)
                if (n - 1) % 10 == 0:
                    break
            t = n * 1e-3
            cmd = np.array([3.0 if (k // 20) % 2 else -3.0])
            pending.append((n + 1 + latency_steps, cmd))
            th = t + offset + phase
            rl.put(
                "/state",
                0,
                {
                    "tick": k,
                    "t_host": th,
                    "seq": k,
                    "t_us": round(t * 1e6),
                    "status": 9,
                    "fault": 0,
                    "last_cmd_seq": k - 1 if k else 0xFFFFFFFF,
                    "rx_errors": 0,
                    "sensors": d.sensordata[idx].tolist(),
                },
            )
            rl.put(
                "/command",
                0,
                {
                    "tick": k,
                    "t_host": th,
                    "seq": k,
                    "state_seq": k,
                    "values": cmd.tolist(),
                    "limited": False,
                },
            )
            rl.put(
                "/timing",
                0,
                {
                    "tick": k,
                    "t_host": th,
                    "compute_us": 200.0,
                    "send_us": 50.0,
                    "period_error_us": 0.0,
                    "state_age_ms": 0.3,
                    "missed": False,
                },
            )
    return path


def test_clock_bracket_and_exact_replay_by_hand(tmp_path):
    spec = get_robot("furuta")
    data = read_log(_synthetic_log(tmp_path / "a.mcap"))
    tr = sysid.trace_from_log(data, spec)
    # offset <= min(host - stamp) = 2.5 + 0.3 ms; >= max(send start - ack stamp) = 2.5 + 0.45 ms - 10 ms
    assert tr.timing.method == "bracket"
    assert tr.timing.window_s == pytest.approx(0.01 - 0.00015, abs=2e-6)
    assert tr.timing.offset_s == pytest.approx(2.5 + 0.0003 - 0.5 * (0.01 - 0.00015), abs=2e-6)
    sim = sysid.Simulator(spec, spec.load_model())
    sysid.refine_offset(sim, tr, 0.0, 0.3)  # the 10 ms bracket is narrowed by the dynamics
    # commands arrive 0.5 ms (sent) .. 1 ms (applied) after their STATE: the search lands there
    arrival = tr.arrivals()[5] - tr.t[5]
    assert 0.0 < arrival <= 0.0015, arrival
    rp = sysid.replay(sim, tr, 0.0)
    err = np.abs(rp.sim - rp.logged).max(axis=0)
    assert err[0] < 0.01 and err[1] < 0.01, err


def test_control_grid_by_hand():
    dt = 0.001
    safe = np.zeros(1)
    arrivals = np.array([0.0102, 0.0200])
    values = np.array([[2.0], [-1.0]])
    centers = 0.001 * np.arange(8, 24)
    u = sysid.control_grid(arrivals, values, safe, [], centers, dt)[:, 0]
    # step centred on 10 ms covers (9.5, 10.5]: 0.3 ms of 2.0 -> 0.6; from 11 ms on: 2.0;
    # the step centred on 20 ms covers (19.5, 20.5]: half 2.0, half -1.0
    assert u[centers < 0.0095].tolist() == [0.0, 0.0]
    assert u[2] == pytest.approx(0.6)
    assert u[3] == pytest.approx(2.0) and u[11] == pytest.approx(2.0)
    assert u[12] == pytest.approx(0.5)
    assert u[13] == pytest.approx(-1.0)
    # a controller that disarms at 21.2 ms: the safe command from there on
    u2 = sysid.control_grid(arrivals, values, safe, [(0.0212, np.inf)], centers, dt)[:, 0]
    assert u2[13] == pytest.approx(-1.0 * 0.7) and u2[14] == 0.0
    # disarmed from 10.0 to 15.0 ms: the COMMAND at 10.2 ms is ignored, the one at 20 ms holds
    u3 = sysid.control_grid(arrivals, values, safe, [(0.010, 0.015)], centers, dt)[:, 0]
    assert (
        np.all(u3[:12] == 0.0) and u3[12] == pytest.approx(-0.5) and u3[13] == pytest.approx(-1.0)
    )


def test_fit_outputs_are_randomization_configs():
    spec = get_robot("furuta")
    model = spec.load_model()
    params = sysid.fit_params(model)
    assert {
        "damping",
        "pend_damping",
        "arm_damping",
        "coulomb",
        "armature",
        "motor_gain",
        "pendulum_mass",
        "latency",
    } <= set(params)
    entries = {n: params[n].entries for n in ("pend_damping", "motor_gain", "latency")}
    res = sysid.FitResult(
        params=["pend_damping", "motor_gain", "latency"],
        values={"pend_damping": 1.5, "motor_gain": 0.8, "latency": 0.004},
        nominal={},
        error_before=1.0,
        error_after=0.1,
        rmse_before={},
        rmse_after={},
        windows=1,
        window_s=0.3,
        evaluations=1,
        message="",
        entries=entries,
    )
    reality = parse(fitted_reality(res))
    m = spec.load_model()
    from envs.randomization import apply_reality

    _, pert = apply_reality(reality, m, tuple(SENSORS))
    assert m.dof_damping[1] == pytest.approx(1.5 * model.dof_damping[1])
    assert m.dof_damping[0] == model.dof_damping[0]
    assert m.actuator_gainprm[0, 0] == pytest.approx(0.8 * model.actuator_gainprm[0, 0])
    assert m.actuator_biasprm[0, 2] == pytest.approx(0.8 * model.actuator_biasprm[0, 2])
    assert pert.latency_s == pytest.approx(0.004)
    sug = suggested_randomization(
        res, model, ROOT / "configs" / "randomization" / "furuta" / "default.yaml"
    )
    parse(sug)
    assert sug["latency_s"]["low"] == 0.0 and sug["latency_s"]["high"] == pytest.approx(0.0115)
    assert sug["params"]["back_emf"]["high"] == pytest.approx(1.15 * 0.8)
    assert sug["params"]["damping_pend_joint"]["low"] == pytest.approx(0.75)


def test_controller_clock_is_64_bit_and_a_reset_starts_a_new_one():
    """t_us is the controller's 64-bit clock: 83 minutes of uptime are not a wrap. Three
    STATEs in a row stamped before the newest are a reset (the host loop's rule); one or
    two are a duplicated, delayed or reordered STATE."""
    t0 = 5_000_000_000  # past 2**32 us: a 32-bit counter would have wrapped by now
    s, reset = controller_seconds([t0, t0 + 10_000, t0 + 20_000, 1_000, 11_000, 21_000, 31_000])
    assert reset == 3
    assert s[2] - s[0] == pytest.approx(0.02) and s[0] == pytest.approx(t0 / 1e6)
    s, reset = controller_seconds([0, 10_000, 5_000, 20_000, 20_000, 15_000, 30_000, 40_000])
    assert reset is None and s.size == 8
    s, reset = controller_seconds([2**32 - 10, 2**32 + 5, 2**32 + 20])
    assert reset is None and np.all(np.diff(s) > 0)


def test_replay_uses_the_states_before_a_controller_reset(tmp_path):
    """A log whose controller reset mid-run (its clock restarts): the trace keeps the first
    boot's STATEs and says so, instead of reading the new clock as a wrap or mixing them."""
    spec = get_robot("furuta")
    data = read_log(_synthetic_log(tmp_path / "a.mcap"))
    states = data.messages["/state"]
    for i, st in enumerate(states[100:]):  # a reboot: t_us from 0 again, sensors at rest
        st["t_us"] = 10_000 * i
        st["sensors"] = [0.0, 0.0, 0.0, 0.0]
    tr = sysid.trace_from_log(data, spec)
    assert tr.t.size == 100 and np.all(np.diff(tr.t) > 0)
    assert any("reset after 100 STATEs" in n for n in tr.notes), tr.notes
    assert tr.cmd.shape[0] <= 100
