"""SO-101 identification from one excitation log, through the commands a user runs.

For each excitation signal (`configs/excitation/so101/<signal>.yaml`) and each repeat: a fresh
`python -m firmware_bridge.sim_robot robot=so101 reality=<reality>` (emulated STS3215 servos on
a pseudo-terminal, by default `configs/realities/so101/identify.yaml`: servo gain x0.8, friction
x1.5, armature x1.3, 20 ms), one `python -m firmware_bridge.deploy source=excitation robot=so101
excitation=<signal> duration_s=<duration> calibration=factory` against it, then
`python -m firmware_bridge.replay log=<that log> fit=[gain,coulomb,armature,latency]`. Per run:
the fitted values, their errors against the reality (multipliers: relative; latency: ms), the
window error before and after, the fit's wall time, the deploy's missed deadlines and bus
errors. Prints a Markdown table, writes JSON if asked, ends with one JSON line.

    python benchmarks/so101_identify.py [--signals prbs steps chirp multisine] [--repeats 1]
        [--duration 20] [--reality identify] [--out-json PATH] [--log-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._util import ROOT, cli, machine  # noqa: E402

ROBOT = "so101"
FIT = ("gain", "coulomb", "armature", "latency")
KEYS = {"gain": "servo_gain", "coulomb": "friction", "armature": "armature"}
"""Each fitted multiplier's entry in the reality file."""
TARGET = {"multiplier": 0.10, "latency_s": 0.020}
"""The issue's bar: multipliers within 10 %, the latency within one control period (50 Hz)."""


def truth(reality: Path) -> dict[str, float]:
    """The reality's values of the fitted quantities (a multiplier of 1 where it has none)."""
    r = yaml.safe_load(reality.read_text()) or {}
    params = r.get("params") or {}
    out = {name: float((params.get(key) or {}).get("value", 1.0)) for name, key in KEYS.items()}
    out["latency"] = float(r.get("latency_s") or 0.0)
    return out


def one_run(signal: str, args, reality: Path, log_dir: Path, k: int) -> dict:
    """sim_robot, one excitation deploy, one fit: the run's row."""
    import subprocess

    link = log_dir / f"so101-{signal}-{k}"
    sim = subprocess.Popen(
        [sys.executable, "-m", "firmware_bridge.sim_robot", f"robot={ROBOT}",
         f"reality={reality}", f"port_link={link}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = sim.stdout.readline()
        if not line.startswith("PORT "):
            sim.kill()
            raise RuntimeError(f"sim_robot did not start: {line!r} {sim.communicate()[1][-500:]}")
        run = cli(
            "firmware_bridge.deploy", "source=excitation", f"robot={ROBOT}",
            f"excitation={signal}", f"port={link}", "calibration=factory",
            f"duration_s={args.duration}", f"log_dir={log_dir / f'{signal}-{k}'}", "status=false",
            "safety.stale_state_ms=250", "bus.read_timeout_ms=200",
        )  # fmt: skip
    finally:
        sim.terminate()
        sim.communicate(timeout=10)
    t0 = time.perf_counter()
    rep = cli(
        "firmware_bridge.replay", f"log={run['log']}", f"out_dir={log_dir / f'fit-{signal}-{k}'}",
        f"fit=[{','.join(FIT)}]", "plots=false",
    )  # fmt: skip
    fit = rep["fit"]
    return {
        "signal": signal,
        "repeat": k,
        "values": fit["values"],
        "error_before": fit["error_before"],
        "error_after": fit["error_after"],
        "fit_s": round(time.perf_counter() - t0, 1),
        "missed_deadlines": run["missed_deadlines"],
        "bus_errors": run["bus_errors"],
        "log": run["log"],
    }


def judged(row: dict, true: dict[str, float]) -> dict:
    """The row with each value's error and whether all are within the issue's bar."""
    v = row["values"]
    rel = {n: v[n] / true[n] - 1 for n in KEYS}
    lat = v["latency"] - true["latency"]
    ok = all(abs(e) < TARGET["multiplier"] for e in rel.values()) and abs(lat) < TARGET["latency_s"]
    return {**row, "rel_error": rel, "latency_error_ms": round(lat * 1e3, 2), "within": ok}


def table(rows: list[dict], true: dict[str, float]) -> str:
    head = (
        "| signal | gain | friction | armature | latency ms | window error | fit s "
        "| missed | within |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    t = true
    body = (
        f"| reality | x{t['gain']:g} | x{t['coulomb']:g} | x{t['armature']:g} "
        f"| {t['latency'] * 1e3:g} | | | | |\n"
    )
    for r in rows:
        v, e = r["values"], r["rel_error"]
        cells = [f"x{v[n]:.3f} ({100 * e[n]:+.1f} %)" for n in KEYS]
        body += (
            f"| {r['signal']} | {' | '.join(cells)} | {v['latency'] * 1e3:.1f} "
            f"({r['latency_error_ms']:+.1f}) | {r['error_before']:.3f} -> {r['error_after']:.3f} "
            f"| {r['fit_s']} | {r['missed_deadlines']} | {'yes' if r['within'] else '**no**'} |\n"
        )
    return head + body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--signals", nargs="+", default=["prbs", "steps", "chirp", "multisine"])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--reality", default="identify")
    ap.add_argument("--out-json", type=Path)
    ap.add_argument("--log-dir", type=Path)
    args = ap.parse_args()
    reality = ROOT / "configs" / "realities" / ROBOT / f"{args.reality}.yaml"
    if not reality.is_file() or args.repeats < 1 or args.duration <= 0:
        print(f"error: need a reality file ({reality}), --repeats >= 1, --duration > 0")
        sys.exit(2)
    true = truth(reality)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="so101-identify-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    rows = [
        judged(one_run(s, args, reality, log_dir, k), true)
        for s in args.signals
        for k in range(args.repeats)
    ]
    print(table(rows, true))
    out = {
        "benchmark": "so101_identify",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "duration_s": args.duration,
        "reality": str(reality.relative_to(ROOT)),
        "truth": true,
        "runs": rows,
        "within": sum(r["within"] for r in rows),
    }
    if args.out_json:
        args.out_json.write_text(json.dumps(out, indent=1) + "\n")
    print(
        json.dumps({k: out[k] for k in ("benchmark", "duration_s", "within")} | {"runs": len(rows)})
    )


if __name__ == "__main__":
    main()
