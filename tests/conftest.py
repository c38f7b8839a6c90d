"""Shared fixtures: a policy trained by the real CLI, real pseudo-terminals, real processes,
and the reliability tests' 100 Hz policy and rows of docs/reliability.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks._util import rate_policy

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

TEST_ROBOTS = {"servo_test": "tests.servo_robot"}
"""Test-only robots (a folder inside tests/ each), by name -> the module a subprocess CLI
loads through PPO_ROBOT_PLUGINS. Registered in this process below; the conformance suite
runs them like shipped robots."""


def _register_test_robots() -> None:
    import importlib

    from envs.robots import register

    for module in TEST_ROBOTS.values():
        register(importlib.import_module(module).ROBOT)


_register_test_robots()


def plugin_env(robot: str, env: dict | None = None) -> dict:
    """The environment for a subprocess CLI that must see `robot` (a test robot's plugin)."""
    env = dict(os.environ if env is None else env)
    if robot in TEST_ROBOTS:
        env["PPO_ROBOT_PLUGINS"] = TEST_ROBOTS[robot]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_cli(
    module: str, *args: str, timeout: float = 300, check: bool = False, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m module args...` from the repo root; returns the completed process."""
    e = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    p = subprocess.run(
        [PY, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=e
    )
    if check and p.returncode != 0:
        raise AssertionError(
            f"{module} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
        )
    return p


def start_cli(module: str, *args: str) -> subprocess.Popen:
    """Start `python -m module args...` in the background (text pipes), e.g. a deploy to
    kill or signal mid-run."""
    return subprocess.Popen(
        [PY, "-m", module, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def last_json(stdout: str) -> dict:
    """The closing JSON summary line."""
    lines = [ln for ln in stdout.strip().splitlines() if ln.strip()]
    assert lines, "no output"
    return json.loads(lines[-1])


FIT_TRUTH = {"pend_damping": 1.4, "coulomb": 0.7, "motor_gain": 0.75}
"""A perturbed Furuta for identification tests: fit names -> true multipliers."""


def write_truth_reality(path: Path) -> str:
    """FIT_TRUTH as a reality YAML (back-EMF scales with the motor gain: both are kt/Rm)."""
    import yaml

    path.write_text(
        yaml.safe_dump(
            {
                "params": {
                    "pend_damping": {
                        "field": "dof_damping",
                        "targets": ["pend_joint"],
                        "value": 1.4,
                    },
                    "coulomb": {"field": "dof_frictionloss", "targets": ["*_joint"], "value": 0.7},
                    "gain": {
                        "field": "actuator_gainprm",
                        "targets": ["motor"],
                        "index": [0],
                        "value": 0.75,
                    },
                    "emf": {
                        "field": "actuator_biasprm",
                        "targets": ["motor"],
                        "index": [2],
                        "value": 0.75,
                    },
                }
            }
        )
    )
    return str(path)


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict:
    """A Furuta policy trained (nominal dynamics) by `ppo_robot.train` and exported by
    `export.onnx`: {"checkpoint", "onnx", "train"}. Stops as soon as evaluation succeeds
    on every episode (about 0.5-1M steps)."""
    d = tmp_path_factory.mktemp("trained")
    p = run_cli(
        "ppo_robot.train",
        f"run_dir={d}/run",
        "randomization=none",
        "total_steps=2500000",
        "eval_every=10",
        "eval_episodes=32",
        "stop_at.success=1.0",
        "stop_at.evals=1",
        "progress=false",
        # seed 0: its policy also survives the fit tests' perturbed plant (write_truth_reality);
        # seed 1's, since update_threads=1, leaves the arm's travel there within 0.4 s
        "seed=0",
        timeout=600,
        check=True,
    )
    train = last_json(p.stdout)
    onnx_path = d / "policy.onnx"
    run_cli("export.onnx", f"checkpoint={train['checkpoint']}", f"output={onnx_path}", check=True)
    return {"checkpoint": train["checkpoint"], "onnx": str(onnx_path), "train": train, "dir": d}


class SimRobot:
    """`python -m firmware_bridge.sim_robot` as a real subprocess on a pseudo-terminal."""

    def __init__(self, *args: str, link: Path | None = None) -> None:
        cmd = [PY, "-m", "firmware_bridge.sim_robot", *args]
        if link is not None:
            cmd.append(f"port_link={link}")
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise AssertionError(f"sim_robot did not start: {line!r} {self.proc.stderr.read()}")
        self.port = line.split(" ", 1)[1].strip()

    def stop(self, timeout: float = 10) -> tuple[str, str]:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return out, err

    def summary(self) -> dict:
        out, _ = self.stop()
        return last_json(out)


@pytest.fixture
def sim_robot():
    """Factory: start sim_robot processes; all are stopped at teardown."""
    started: list[SimRobot] = []

    def start(*args: str) -> SimRobot:
        s = SimRobot(*args)
        started.append(s)
        time.sleep(0.1)
        return s

    yield start
    for s in started:
        s.stop()


RATE_HZ = 100
"""The control rate of `policy`, the reliability tests' policy."""


@pytest.fixture(scope="session")
def policy(tmp_path_factory) -> str:
    """A real Furuta policy at RATE_HZ (benchmarks._util.rate_policy), for the reliability
    tests (tests/test_reliability_*.py); test_wheel.py has a `policy` of its own."""
    return str(rate_policy(tmp_path_factory.mktemp("p100"), RATE_HZ))


@pytest.fixture
def row(record_property, request):
    """The test's row of docs/reliability.md: fill in section, what, how, happened, safe,
    lost; written (as a JUnit property) when the test ends, passed or not."""
    r: dict = {}
    yield r
    if r:
        r.setdefault("test", request.node.nodeid)
        record_property("reliability_row", json.dumps(r))
