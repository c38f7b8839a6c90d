"""SO-101 deploys against the emulated servo bus, through the commands a user runs.

For each rate (a policy trained at 50 Hz and one at 100 Hz, exported with `export.onnx`)
and reality (`configs/realities/so101/`, e.g. `nominal` and `perturbed`: heavier payload,
weaker servo gain, 30 ms latency): one `python -m firmware_bridge.sim_robot robot=so101
reality=... port_link=...` (emulated STS3215 servos on a pseudo-terminal, powered on limp)
and `--deploys` runs of `python -m firmware_bridge.deploy policy=... port=...
calibration=factory goal_seed=K duration_s=<the task's episode>` against it in turn, K = 0,
1, ... (a different target each deploy, the same targets in every cell). Each deploy starts
where the previous one's safe stop left the arm (torque off: slumped), as on a desk.

Per cell: success rate (the deploy summary's `success`: the task's success test on the whole
episode at the policy's rate, re-run on the logged sensors as a check; a deploy without a
judged episode, e.g. ended by a fault, is a failure), bus errors (failed sync reads on the
host; checksum errors and garbage on the emulated servos), faults, torque off confirmed,
the bus budget and achievable rate (the connect line and the summary), and tick timing as
`benchmarks/loop_timing.py` gives it for the pendulum: missed deadlines, period error p50 /
p99 / max and host compute p50 / p99 over every tick of the cell's logs (`/timing`), state
age and bus read p99. Writes JSON and a Markdown table; ends with one JSON line.

    python benchmarks/so101_deploys.py --policy-50 so101_50.onnx --policy-100 so101_100.onnx \
        [--deploys 20] [--realities nominal perturbed] [--out-md docs/so101_deploys.md] \
        [--out-json docs/so101_deploys.json] [--deploy-arg KEY=VALUE ...] [--log-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._util import ROOT, machine  # noqa: E402

ROBOT = "so101"
REALITY_DIR = ROOT / "configs" / "realities" / ROBOT
CONNECT = re.compile(r"takes ([\d.]+) ms on the bus: at most (\d+) Hz, running ([\d.]+) Hz")
"""The deploy's connect line (host.bus_session.connect): the bus budget and achievable rate."""
SUCCESS_TARGET = 0.9
"""The issue's bar: the policy succeeds on at least 90 % of the deploys of every cell."""


RECHECK = {True: "yes", False: "**no**", None: "n/a"}
"""The table's word for: the success test re-run on the logged sensors agrees."""


class InputError(Exception):
    """Bad input to this script: one line, exit 2."""


# ------------------------------------------------------------------------------ inputs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="SO-101 deploys (deploy + sim_robot over the emulated Feetech bus) per "
        "rate and reality: success, bus errors, timing.",
    )
    ap.add_argument("--policy-50", required=True, help="ONNX policy trained at 50 Hz")
    ap.add_argument("--policy-100", required=True, help="ONNX policy trained at 100 Hz")
    ap.add_argument("--deploys", type=int, default=20, help="deploys per (rate, reality)")
    ap.add_argument(
        "--realities",
        nargs="+",
        default=["nominal", "perturbed"],
        help=f"names in {REALITY_DIR.relative_to(ROOT)}/ or YAML paths",
    )
    for flag, default, what in (
        ("--goal-seed0", 0, "goal_seed of each cell's first deploy"),
        ("--timeout", 120.0, "seconds per deploy before it is killed"),
        ("--out-md", None, "write the Markdown table here"),
        ("--out-json", None, "write every figure and every deploy's record here"),
        ("--log-dir", None, "keep every deploy's log here (default: a temp dir, removed)"),
    ):
        kind = type(default) if default is not None else str
        ap.add_argument(flag, type=kind, default=default, help=what)
    ap.add_argument(
        "--deploy-arg", action="append", default=[], metavar="KEY=VALUE",
        help="an extra override for every deploy (e.g. bus.read_timeout_ms=20); default none",
    )  # fmt: skip
    return ap.parse_args(argv)


def checked_policies(args: argparse.Namespace) -> dict[int, Path]:
    """rate -> policy file, each checked to be an SO-101 policy trained at that rate."""
    from export.runtime import OnnxPolicy, PolicyError

    out = {}
    for rate, path in ((50, args.policy_50), (100, args.policy_100)):
        p = Path(path)
        if not p.is_file():
            raise InputError(f"--policy-{rate}={path}: no such file")
        try:
            info = OnnxPolicy(p).info
        except PolicyError as e:
            raise InputError(f"--policy-{rate}={path}: {e}") from None
        if info.robot != ROBOT or info.control_hz != rate:
            raise InputError(
                f"--policy-{rate}={path}: a policy for robot '{info.robot}' at "
                f"{info.control_hz:g} Hz; needs robot '{ROBOT}' at {rate} Hz "
                f"(python -m ppo_robot.train env={ROBOT} env.control_hz={rate})"
            )
        out[rate] = p.resolve()
    if args.deploys < 1:
        raise InputError(f"--deploys={args.deploys}: must be >= 1")
    return out


def reality_paths(names: list[str]) -> dict[str, Path]:
    """Reality name -> YAML: a name in configs/realities/so101/, or a path."""
    out = {}
    for name in names:
        p = Path(name) if name.endswith((".yaml", ".yml")) else REALITY_DIR / f"{name}.yaml"
        if not p.is_file():
            known = ", ".join(sorted(f.stem for f in REALITY_DIR.glob("*.yaml")))
            raise InputError(f"--realities: '{name}' is not a file nor one of {known}")
        out[p.stem] = p.resolve()
    return out


def episode_s(rate: int) -> float:
    """The task's episode length: a deploy this long is judged by the task's success test."""
    from envs.robots import get_robot

    return float(get_robot(ROBOT, rate).episode_s)


# ------------------------------------------------------------------------------ processes


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def start_sim(reality: Path, link: Path) -> subprocess.Popen:
    """sim_robot with this reality, serving the emulated arm at `link` (its log beside it,
    `sim.log`); returns once its PORT line is out (the port exists)."""
    cmd = [sys.executable, "-m", "firmware_bridge.sim_robot", f"robot={ROBOT}"]
    cmd += [f"reality={reality}", f"port_link={link}"]
    err = link.with_name("sim.log")
    with err.open("w") as f:
        sim = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=f, text=True, env=_env()
        )
    if not sim.stdout.readline().startswith("PORT"):
        sim.kill()
        sim.wait(timeout=10)
        raise RuntimeError(f"sim_robot reality={reality} did not start: {err.read_text()[-1000:]}")
    return sim


def stop_sim(sim: subprocess.Popen) -> dict:
    """SIGTERM, then sim_robot's closing JSON line (what the emulated servos saw)."""
    sim.terminate()
    try:
        out, _ = sim.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        sim.kill()
        out, _ = sim.communicate()
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def run_deploy(policy: Path, port: Path, seed: int, seconds: float, log_dir: Path, extra, timeout):
    """One deploy; its exit code, closing summary (printed after a fault too), connect
    line and the goal from its log's run record."""
    args = [f"policy={policy}", f"port={port}", "calibration=factory", f"goal_seed={seed}"]
    args += [f"duration_s={seconds}", f"log_dir={log_dir}", "status=false", *extra]
    cmd = [sys.executable, "-m", "firmware_bridge.deploy", *args]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=_env())
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    summary = json.loads(lines[-1]) if lines else None
    connect = next((m for m in map(CONNECT.search, p.stderr.splitlines()) if m), None)
    rec = {
        "goal_seed": seed,
        "rc": p.returncode,
        "summary": summary,
        "connect": None if connect is None else connect.group(0),
        "stderr_tail": p.stderr.strip()[-600:] if p.returncode else "",
    }
    if summary is not None:
        rec.update(log_outcome(summary))
    return rec


def log_outcome(summary: dict) -> dict:
    """From the deploy's log, apart from the loop's own verdict: the goal (its run record),
    the tip's distance to it at the episode's last tick, and the task's success test re-run
    on the logged sensors (`success_from_log`, which must agree with the summary's)."""
    from envs.robots import get_robot
    from envs.robots.so101.tasks import tip_position
    from firmware_bridge.analysis.replay_run import per_tick_sensors
    from firmware_bridge.logs.rollout_log import read_log

    data = read_log(summary["log"])
    goal = data.run.get("goal")
    spec = get_robot(ROBOT, summary["rate_hz"])
    sens = per_tick_sensors(data.topic("/state"), summary["ticks"], spec.n_sensors)
    out = {"goal": goal, "tip_error_end_m": None, "success_from_log": None}
    if goal is None or len(sens) < spec.episode_steps:
        return out
    episode, g = sens[: spec.episode_steps], np.asarray(goal)
    out["tip_error_end_m"] = round(float(np.linalg.norm(tip_position(spec, episode[-1]) - g)), 4)
    out["success_from_log"] = bool(spec.success(episode[None], g[None])[0])
    return out


def run_cell(rate: int, policy: Path, reality: Path, n: int, seed0: int, work: Path, args):
    """One sim_robot with this reality, `n` deploys of the policy against it: the cell's
    figures, the emulator's summary and every deploy's record."""
    cell = work / f"{rate}hz-{reality.stem}"
    cell.mkdir(parents=True, exist_ok=True)
    link = cell / "so101.pty"
    seconds = episode_s(rate)
    sim = start_sim(reality, link)
    deploys = []
    try:
        for k in range(n):
            d = run_deploy(
                policy, link, seed0 + k, seconds, cell / "logs", args.deploy_arg, args.timeout
            )
            s = d["summary"] or {}
            print(
                f"{rate} Hz {reality.stem} deploy {k + 1}/{n}: rc {d['rc']}, success "
                f"{s.get('success')}, bus errors {s.get('bus_errors')}, missed "
                f"{s.get('missed_deadlines')}",
                file=sys.stderr,
                flush=True,
            )
            deploys.append(d)
    finally:
        sim_summary = stop_sim(sim)
    # the emulator's own stall (a loaded machine): physics behind the wall clock, the bus unserved
    lag = [ln for ln in link.with_name("sim.log").read_text().splitlines() if "behind" in ln]
    sim_summary["lag_warning"] = lag[0].removeprefix("sim_robot: ") if lag else None
    return {
        "rate_hz": rate,
        "reality": reality.stem,
        "policy": str(policy),
        "figures": cell_figures(deploys, sim_summary),
        "sim": sim_summary,
        "deploys": deploys,
    }


# ------------------------------------------------------------------------------ figures


def _pct(x: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(x, q)), 1) if len(x) else None


def pooled_timing(logs: list[str]) -> dict:
    """Tick timing pooled over every tick of these logs (their `/timing` topic)."""
    from firmware_bridge.logs.rollout_log import read_log

    rows = [r for log in logs for r in read_log(log).topic("/timing")]
    err = np.abs([r["period_error_us"] for r in rows])
    comp = np.array([r["compute_us"] for r in rows])
    age = np.array([r["state_age_ms"] for r in rows])
    return {
        "ticks_logged": len(rows),
        "period_error_p50_us": _pct(err, 50),
        "period_error_p99_us": _pct(err, 99),
        "period_error_max_us": _pct(err, 100),
        "compute_p50_us": _pct(comp, 50),
        "compute_p99_us": _pct(comp, 99),
        "state_age_p99_ms": _pct(age, 99),
    }


def cell_figures(deploys: list[dict], sim: dict) -> dict:
    """The cell's figures from its deploys' summaries and logs and the emulator's summary."""
    sums = [d["summary"] for d in deploys if d["summary"] is not None]
    judged = [s["success"] for s in sums if s["success"] is not None]
    faults = [f["kind"] for s in sums for f in s["faults"]]
    connects = {d["connect"] for d in deploys}
    tip = [d["tip_error_end_m"] for d in deploys if d.get("tip_error_end_m") is not None]
    rechecked = [d for d in deploys if d.get("success_from_log") is not None]
    return {
        "deploys": len(deploys),
        "successes": sum(bool(x) for x in judged),
        "success_rate": sum(bool(x) for x in judged) / len(deploys),
        "judged": len(judged),
        "success_log_recheck_agrees": (
            all(d["success_from_log"] == d["summary"]["success"] for d in rechecked)
            if rechecked
            else None
        ),
        "tip_error_end_median_m": round(float(np.median(tip)), 4) if tip else None,
        "no_summary": len(deploys) - len(sums),
        "exit_codes": sorted({d["rc"] for d in deploys}),
        "faults": faults,
        "bus_errors": sum(s["bus_errors"] for s in sums),
        "bus_errors_by_kind": _sum_dicts(s["bus_errors_by_kind"] for s in sums),
        "sim_rx_checksum_errors": sim.get("rx_checksum_errors"),
        "sim_rx_garbage_bytes": sim.get("rx_garbage_bytes"),
        "sim_torque_on_at_exit": sim.get("torque_on_at_exit"),
        "sim_lag_warning": sim.get("lag_warning"),
        "torque_off_confirmed": sum(bool(s["torque_off_confirmed"]) for s in sums),
        "ticks": sum(s["ticks"] for s in sums),
        "missed_deadlines": sum(s["missed_deadlines"] for s in sums),
        **pooled_timing([s["log"] for s in sums]),
        "bus_read_p99_ms": max((s["bus_read_p99_ms"] or 0.0 for s in sums), default=None),
        # ^ the worst deploy's p99: the summaries hold no per-read times to pool
        "bus_budget_ms": _one({s["bus_budget_ms"] for s in sums}),
        "bus_achievable_hz": _one({s["bus_achievable_hz"] for s in sums}),
        "connect_line": _one(connects),
        "connect_printed": sum(d["connect"] is not None for d in deploys),
    }


def _sum_dicts(ds) -> dict:
    out: dict[str, int] = {}
    for d in ds:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def _one(values: set):
    """The one value all deploys agree on, else the sorted list of them."""
    return next(iter(values)) if len(values) == 1 else sorted(values, key=str)


# ------------------------------------------------------------------------------ output


def markdown(r: dict) -> str:
    """The table: one row per (rate, reality)."""
    head = (
        f"`{r['command']}`, {r['date']}, {r['machine']['cpus']} CPUs, {r['wall_s']:.0f} s; "
        f"{r['deploys_per_cell']} deploys of one episode ({r['episode_s']:g} s) per cell, "
        "goal_seed 0, 1, ... (the same targets in every cell)."
    )
    cols = (
        "rate | reality | success | judged (log re-check agrees) | tip error at end, median | "
        "bus errors (host / emulator) | faults | "
        "torque off confirmed | bus budget / achievable | ticks | missed deadlines | "
        "period error p50 / p99 / max | compute p50 / p99 | state age p99 | bus read p99"
    )
    lines = [head, "", f"| {cols} |", "|" + " --- |" * (cols.count("|") + 1)]
    for c in r["cells"]:
        f = c["figures"]
        emu = (f["sim_rx_checksum_errors"] or 0) + (f["sim_rx_garbage_bytes"] or 0)
        tip = f["tip_error_end_median_m"]
        faults = ", ".join(sorted(set(f["faults"]))) or "none"
        lines.append(
            f"| {c['rate_hz']} Hz | {c['reality']} | **{f['success_rate']:.0%}** "
            f"({f['successes']}/{f['deploys']}) | {f['judged']}/{f['deploys']} "
            f"({RECHECK[f['success_log_recheck_agrees']]}) | "
            f"{_fmt(tip and tip * 1e3, 'mm')} | "
            f"{f['bus_errors']} / {emu} | {faults} | "
            f"{f['torque_off_confirmed']}/{f['deploys']} | "
            f"{_fmt(f['bus_budget_ms'], 'ms')} / {_fmt(f['bus_achievable_hz'], 'Hz')} | "
            f"{f['ticks']:,} | {f['missed_deadlines']} | "
            f"{_fmt(f['period_error_p50_us'])} / {_fmt(f['period_error_p99_us'])} / "
            f"{_fmt(f['period_error_max_us'])} us | "
            f"{_fmt(f['compute_p50_us'])} / {_fmt(f['compute_p99_us'])} us | "
            f"{_fmt(f['state_age_p99_ms'], 'ms')} | {_fmt(f['bus_read_p99_ms'], 'ms')} |"
        )
    lags = [
        f"{c['rate_hz']} Hz {c['reality']}: {lag.removesuffix('; skipping ahead')}"
        for c in r["cells"]
        if (lag := c["figures"]["sim_lag_warning"])
    ]
    if lags:  # the emulator's own stall: a read it left unanswered is a bus error here
        lines += ["", f"The emulated arm fell behind the wall clock: {'; '.join(lags)}."]
    return "\n".join(lines) + "\n"


def _fmt(x, unit: str = "") -> str:
    """A figure for the table: n/a, thousands separated, 3 significant digits below 100."""
    if x is None:
        return "n/a"
    if isinstance(x, list):
        return "/".join(_fmt(v) for v in x) + (f" {unit}" if unit else "")
    text = f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"
    return text + (f" {unit}" if unit else "")


def verdict(cells: list[dict]) -> dict:
    """The issue's bars, each met or not, over every cell."""
    figs = [c["figures"] for c in cells]
    return {
        "success_ge_90pct_every_cell": all(f["success_rate"] >= SUCCESS_TARGET for f in figs),
        "zero_bus_errors": all(
            f["bus_errors"] == 0
            and not f["sim_rx_checksum_errors"]
            and not f["sim_rx_garbage_bytes"]
            for f in figs
        ),
        "budget_printed_every_deploy": all(f["connect_printed"] == f["deploys"] for f in figs),
        "torque_off_confirmed_every_deploy": all(
            f["torque_off_confirmed"] == f["deploys"] for f in figs
        ),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        policies = checked_policies(args)
        realities = reality_paths(args.realities)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.log_dir) if args.log_dir else Path(tmp)
        cells = [
            run_cell(rate, policy, reality, args.deploys, args.goal_seed0, work, args)
            for rate, policy in policies.items()
            for reality in realities.values()
        ]
    result = {
        "robot": ROBOT,
        "deploys_per_cell": args.deploys,
        "episode_s": episode_s(50),
        "realities": {k: str(v) for k, v in realities.items()},
        "deploy_args": args.deploy_arg,
        "cells": cells,
        "verdict": verdict(cells),
        "wall_s": round(time.time() - t0, 1),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "command": "python benchmarks/so101_deploys.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
    }
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(result, indent=2) + "\n")
    if args.out_md:
        Path(args.out_md).write_text(markdown(result))
    brief = {f"{c['rate_hz']}hz_{c['reality']}": c["figures"] for c in cells}
    print(json.dumps({"verdict": result["verdict"], "wall_s": result["wall_s"], "cells": brief}))


if __name__ == "__main__":
    main()
