"""Wall time of `python -m firmware_bridge.replay` on a long, fast log (60 s at 500 Hz).

The log is synthesized the way a deploy against `sim_robot` writes it: the Furuta model
stepped at 1 kHz, a STATE every control period stamped on the controller clock, a host
clock with an offset and jitter, COMMANDs acknowledged in later STATEs (so the replay's
clock mapping runs its bracket path), all through `RolloutLog`. The policy is a linear
ONNX controller carrying the robot's metadata (so the policy re-check runs on every tick);
`--policy PATH` uses an exported policy instead (it must be for the same rate).

The replay runs as the user runs it (a subprocess: imports, log reading, re-check, replay,
window errors, figures, report). Ends with one JSON line; `ok` is the target (< 10 s).

    python -m benchmarks.replay_speed [--seconds 60] [--rate 500] [--out DIR] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mujoco
import numpy as np

from envs.robots import get_robot
from firmware_bridge.logs.rollout_log import RolloutLog

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 10.0


def linear_policy(spec, path: Path, seed: int = 0) -> Path:
    """A linear ONNX controller (obs -> command) with the metadata `OnnxPolicy` checks."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = rng.normal(0.0, 0.3, (spec.obs_dim, spec.act_dim)).astype(np.float32)
    lo = spec.command_low.astype(np.float32)
    hi = spec.command_high.astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["obs", "w"], ["u"]),
        helper.make_node("Max", ["u", "lo"], ["u1"]),
        helper.make_node("Min", ["u1", "hi"], ["action"]),
    ]
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, [None, spec.obs_dim])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, [None, spec.act_dim])],
        [
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(lo, "lo"),
            numpy_helper.from_array(hi, "hi"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    meta = {
        "ppo_robot.format": "1",
        "robot.name": spec.name,
        "robot.spec_version": str(spec.version),
        "robot.layout_hash": spec.layout_hash(),
        "robot.layout": json.dumps(spec.layout()),
        "control_hz": repr(float(spec.control_hz)),
        "obs.names": json.dumps(list(spec.obs_names)),
        "action.names": json.dumps([a.name for a in spec.actuators]),
    }
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


CLOCK_OFFSET_S = 1.2345
"""The synthetic host clock minus the controller clock."""


def synthesize(
    spec, policy_path: Path, seconds: float, path: Path, seed: int = 0
) -> tuple[Path, int]:
    """A deploy-like log of `seconds` at the spec's rate; returns (path, ticks)."""
    from export.runtime import OnnxPolicy

    pol = OnnxPolicy(policy_path)
    model = spec.load_model()
    data = mujoco.MjData(model)
    mujoco.mj_resetData(model, data)
    data.qpos[1] = 0.3  # pendulum off its rest, so that it swings
    mujoco.mj_forward(model, data)
    dt = model.opt.timestep
    sub = int(round(1.0 / (spec.control_hz * dt)))
    rng = np.random.default_rng(seed)
    sidx = spec.sensor_index(model)
    meta = _run_meta(spec, policy_path, pol.sha256)
    rlog = RolloutLog(path, meta, queue_size=1 << 20, clock=lambda: 0)  # synthetic clock
    ticks = int(round(seconds * spec.control_hz))
    ctrl = np.zeros(spec.n_actuators)
    pending: list[tuple[int, np.ndarray]] = []
    n = 0
    for k in range(ticks):
        n, ctrl = _step_to_state(model, data, n, sub, pending, ctrl)
        t_ctrl = n * dt
        sens = spec.read_sensors(data.sensordata[None], sidx)[0].copy()
        # received, then the tick
        t_host = t_ctrl + CLOCK_OFFSET_S + 2e-4 + abs(rng.normal(0.0, 5e-5))
        obs = spec.observe(sens[None])[0]
        act = np.array(pol.act(obs), dtype=np.float64)
        compute_us = 300.0 + abs(rng.normal(0.0, 30.0))
        pending.append((n + 1, act.copy()))  # arrives before the next physics step
        period_error_us = float(rng.normal(0, 5))
        _put_tick(rlog, spec, k, t_host, t_ctrl, sens, obs, act, compute_us, period_error_us)
    rlog.close(
        {
            "ticks": ticks,
            "rate_hz": spec.control_hz,
            "missed_deadlines": 0,
            "stopped_by": "duration",
        }
    )
    return path, ticks


def _run_meta(spec, policy_path: Path, policy_sha256: str) -> dict:
    """The log's run record, as deploy writes it (the fields replay reads)."""
    return {
        "robot": spec.name,
        "robot_layout": spec.layout(),
        "policy_path": str(policy_path.resolve()),
        "policy_sha256": policy_sha256,
        "rate_hz": spec.control_hz,
        "source": "policy",
        "start_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "note": "synthesized by benchmarks/replay_speed.py",
    }


def _step_to_state(model, data, n: int, sub: int, pending: list, ctrl: np.ndarray):
    """Physics up to the step whose STATE this tick reads, applying each pending command
    at its step: (physics steps so far, the command in force)."""
    while True:
        n += 1
        while pending and pending[0][0] <= n:
            ctrl = pending.pop(0)[1]
        data.ctrl[:] = ctrl
        mujoco.mj_step(model, data)
        if (n - 1) % sub == 0:
            return n, ctrl


def _put_tick(rlog, spec, k, t_host, t_ctrl, sens, obs, act, compute_us, period_error_us):
    """One tick's records, as the deploy loop logs them: STATE, observation, action,
    COMMAND (acknowledged by the next STATE) and timing."""
    t_ns = int(t_host * 1e9)
    common = {"tick": k, "t_host": t_host - CLOCK_OFFSET_S}
    rlog.put(
        "/state",
        t_ns,
        {
            **common,
            "seq": k,
            "t_us": int(round(t_ctrl * 1e6)),
            "status": 9,
            "fault": 0,
            "last_cmd_seq": k - 1 if k else 0xFFFFFFFF,
            "rx_errors": 0,
            "sensors": sens.tolist(),
        },
    )
    rlog.put("/observation", t_ns, {**common, "obs": obs.tolist()})
    rlog.put("/action", t_ns, {**common, "action": act.tolist()})
    rlog.put(
        "/command",
        t_ns,
        {**common, "seq": k, "state_seq": k, "values": act.tolist(), "limited": False},
    )
    rlog.put(
        "/timing",
        t_ns,
        {
            **common,
            "deadline": k / spec.control_hz,
            "period_error_us": period_error_us,
            "state_age_ms": 0.2,
            "compute_us": compute_us,
            "obs_us": 20.0,
            "policy_us": 100.0,
            "safety_us": 10.0,
            "send_us": 50.0,
            "missed": False,
        },
    )


def _replay(log_path: Path, out_dir: Path) -> tuple[float, dict]:
    """`python -m firmware_bridge.replay` on the log, as the user runs it: (wall time in s,
    its closing JSON line). A failed replay ends the benchmark with its stderr."""
    t = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "firmware_bridge.replay", f"log={log_path}", f"out_dir={out_dir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    wall = time.perf_counter() - t
    if p.returncode != 0:
        print(p.stderr, file=sys.stderr)
        raise SystemExit(f"replay exited {p.returncode}")
    return wall, json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument(
        "--out", type=str, default=None, help="folder for the log and report (default: a temp dir)"
    )
    ap.add_argument("--policy", type=str, default=None, help="an exported ONNX policy at --rate")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="replay_speed-"))
    out.mkdir(parents=True, exist_ok=True)
    spec = get_robot("furuta", args.rate)
    policy = Path(args.policy) if args.policy else linear_policy(spec, out / "linear_policy.onnx")
    t = time.perf_counter()
    log_path, ticks = synthesize(spec, policy, args.seconds, out / "bench.mcap")
    synth_s = time.perf_counter() - t
    walls, result = [], {}
    for _ in range(max(1, args.repeats)):
        w, result = _replay(log_path, out / "report")
        walls.append(w)
    wall = float(np.median(walls))
    summary = {
        "log_s": args.seconds,
        "rate_hz": args.rate,
        "ticks": ticks,
        "log_bytes": log_path.stat().st_size,
        "synthesize_s": round(synth_s, 3),
        "replay_cli_wall_s": round(wall, 3),
        "replay_cli_wall_all_s": [round(w, 3) for w in walls],
        "replay_inside_s": result.get("replay_wall_s"),
        "target_s": TARGET_S,
        "ok": wall < TARGET_S,
        "policy_max_abs_diff": result.get("policy_max_abs_diff"),
        "sim_rmse_first": result.get("sim_rmse_first"),
        "timing": result.get("timing"),
        "missing": result.get("missing"),
        "out": str(out),
    }
    print(
        f"replay of {args.seconds:g} s at {args.rate:g} Hz ({ticks} ticks): {wall:.2f} s "
        f"(target < {TARGET_S:g} s)",
        file=sys.stderr,
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
