"""The sim-to-real transfer study, through the same commands a user runs.

Trains the default robot with randomization `none`, `default` and `strong` (3 seeds each),
exports each policy with `export.onnx`, deploys it with `firmware_bridge.deploy` against
`firmware_bridge.sim_robot` running each reality in `configs/realities/furuta/` (perturbed plants:
heavier and lighter pendulum, weak motor, doubled friction, 10 and 20 ms latency, noisy and
biased sensors, a tilted base, a combination, and the nominal model) for several episodes,
and reads success from each deploy log with `firmware_bridge.replay` (the replay figures,
not a separate code path). Writes a JSON file, a Markdown table and a PNG; ends with one
JSON line.

    python benchmarks/transfer.py                 # full: 3 x 3 policies, 3 episodes each (< 60 min)
    python benchmarks/transfer.py --quick         # none + default, 1 seed, 2 episodes (< 10 min)
    python benchmarks/transfer.py --set edge --randomizations default adaptive
        # the edge plants (configs/realities/furuta/edge/: 20-35 ms latency, mass x0.6 / x1.4,
        # motor x0.7 / x1.3, friction x3, damping x2.5, combinations), outputs docs/transfer_edge.*
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._util import ROOT, cli, machine  # noqa: E402

REALITY_DIR = ROOT / "configs" / "realities" / "furuta"
REALITIES = sorted(REALITY_DIR.glob("*.yaml"))
"""The shipped realities; `--set NAME` takes those of REALITY_DIR/NAME/ instead."""


def _realities(name: str | None) -> list[Path]:
    if name is None:
        return REALITIES
    found = sorted((REALITY_DIR / name).glob("*.yaml"))
    if not found:
        sys.exit(f"--set {name}: no realities in {REALITY_DIR / name}")
    return found


def train_and_export(rand: str, seed: int, work: Path, total_steps: int | None) -> Path:
    run = work / f"{rand}-s{seed}"
    args = [f"run_dir={run}", f"randomization={rand}", f"seed={seed}", "progress=false"]
    args.append("stop_at=null")  # every randomization trains for the same budget
    if total_steps:
        args.append(f"total_steps={total_steps}")
    t = cli("ppo_robot.train", *args)
    onnx_path = work / f"{rand}-s{seed}.onnx"
    cli("export.onnx", f"checkpoint={t['checkpoint']}", f"output={onnx_path}")
    print(
        f"trained {rand} seed {seed}: eval success {t['success_rate']} in {t['wall_s']:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    return onnx_path


def run_reality(policy: Path, reality: Path, episodes: int, work: Path, seed: int) -> list[dict]:
    """One sim_robot with this reality; `episodes` deploys (each HELLO resets the plant)."""
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "firmware_bridge.sim_robot",
            "robot=furuta",
            f"reality={reality}",
            "reset_on_hello=true",
            f"seed={seed}",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    port = sim.stdout.readline().split()[1]
    out = []
    try:
        for e in range(episodes):
            log_dir = work / "logs" / f"{policy.stem}-{reality.stem}-{e}"
            try:
                d = cli(
                    "firmware_bridge.deploy",
                    f"policy={policy}",
                    f"port={port}",
                    "duration_s=5",
                    f"log_dir={log_dir}",
                    "status=false",
                    timeout=120,
                )
                log = d["log"]
            except RuntimeError as err:  # a fault ends the run; its log still counts
                logs = sorted(log_dir.glob("*.mcap"))
                if not logs:
                    raise
                log = str(logs[0])
                print(f"deploy ended by fault: {str(err)[-200:]}", file=sys.stderr)
            r = cli(
                "firmware_bridge.replay",
                f"log={log}",
                f"out_dir={log_dir}/replay",
                "plots=false",
                timeout=300,
            )
            out.append(
                {
                    "success": bool(r.get("success")),
                    "policy_max_abs_diff": r.get("policy_max_abs_diff"),
                }
            )
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="none + default, 1 seed, 2 episodes")
    ap.add_argument("--seeds", type=int, nargs="+")
    ap.add_argument("--episodes", type=int)
    ap.add_argument("--workers", type=int, default=2, help="deploy pairs run at once")
    ap.add_argument("--total-steps", type=int, default=None, help="override training length")
    ap.add_argument("--out", default=None, help="default: docs/transfer[_SET]")
    ap.add_argument("--set", default=None, help="a realities subfolder, e.g. edge")
    ap.add_argument("--randomizations", nargs="+", help="default: none default strong")
    args = ap.parse_args()
    realities = _realities(args.set)
    rands = args.randomizations or (
        ["none", "default"] if args.quick else ["none", "default", "strong"]
    )
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    episodes = args.episodes or (2 if args.quick else 3)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        policies = {
            (r, s): train_and_export(r, s, work, args.total_steps) for r in rands for s in seeds
        }
        t_train = time.time() - t0
        jobs = [(key, reality) for key in policies for reality in realities]
        with ThreadPoolExecutor(args.workers) as ex:
            futs = {
                (key, reality.stem): ex.submit(
                    run_reality, policies[key], reality, episodes, work, i
                )
                for i, (key, reality) in enumerate(jobs)
            }
            results = {k: f.result() for k, f in futs.items()}
    table: dict[str, dict[str, float]] = {}
    for ((rand, seed), reality), eps in results.items():
        table.setdefault(f"{rand}-s{seed}", {})[reality] = float(
            np.mean([e["success"] for e in eps])
        )
    per_rand = {
        r: {
            reality.stem: float(np.mean([table[f"{r}-s{s}"][reality.stem] for s in seeds]))
            for reality in realities
        }
        for r in rands
    }
    overall = {r: float(np.mean(list(v.values()))) for r, v in per_rand.items()}
    worst = {r: min(v.values()) for r, v in per_rand.items()}
    max_diff = max((e["policy_max_abs_diff"] or 0.0) for eps in results.values() for e in eps)
    result = {
        "quick": args.quick,
        "randomizations": rands,
        "seeds": seeds,
        "episodes_per_reality": episodes,
        "realities": [r.stem for r in realities],
        "success": table,
        "success_by_randomization": per_rand,
        "overall_success": overall,
        "worst_reality_success": worst,
        "policy_recheck_max_abs_diff": max_diff,
        "train_s": round(t_train, 1),
        "wall_s": round(time.time() - t0, 1),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(["python benchmarks/transfer.py", *sys.argv[1:]]),
    }
    out = Path(args.out or ROOT / "docs" / ("transfer" + (f"_{args.set}" if args.set else "")))
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    (out.parent / f"{out.name}{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out.parent / f"{out.name}{suffix}.md").write_text(_markdown(result))
    _plot(result, out.parent / f"{out.name}{suffix}.png")
    print(json.dumps({k: v for k, v in result.items() if k not in ("success",)}))


def _markdown(r: dict) -> str:
    rands = r["randomizations"]
    lines = [
        f"Success rate per reality (episodes of 5 s through `deploy` against `sim_robot`, success read by `replay`), "
        f"{len(r['seeds'])} seed(s) x {r['episodes_per_reality']} episodes per cell; `{r['command']}`, {r['date']}, "
        f"{r['machine']['cpus']} CPUs, {r['wall_s']:.0f} s.",
        "",
        "| reality | " + " | ".join(f"randomization={x}" for x in rands) + " |",
        "| --- | " + " | ".join("---" for _ in rands) + " |",
    ]
    for reality in r["realities"]:
        lines.append(
            f"| {reality} | "
            + " | ".join(f"{r['success_by_randomization'][x][reality]:.0%}" for x in rands)
            + " |"
        )
    lines.append(
        "| **all realities** | "
        + " | ".join(f"**{r['overall_success'][x]:.0%}**" for x in rands)
        + " |"
    )
    return "\n".join(lines) + "\n"


def _plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rands = r["randomizations"]
    realities = r["realities"]
    x = np.arange(len(realities))
    w = 0.8 / len(rands)
    fig, ax = plt.subplots(figsize=(10, 4))
    for i, rand in enumerate(rands):
        ax.bar(
            x + i * w,
            [r["success_by_randomization"][rand][k] for k in realities],
            w,
            label=f"randomization={rand}",
        )
    ax.set_xticks(x + w * (len(rands) - 1) / 2, realities, rotation=30, ha="right")
    ax.set_ylabel("success rate")
    ax.set_ylim(0, 1.05)
    ax.set_title("Furuta swing-up deployed against perturbed plants (sim_robot)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
