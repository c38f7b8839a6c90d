"""The package from a wheel, not from the checkout: build it, install it into a folder of its
own, and from another working directory run every entry point, a short train, its export, a
deploy against the simulated controller on a packaged reality.

The wheel is built from a copy of the sources, so that a `build/` left in the checkout by an
earlier build cannot supply a file the build step forgot. The subprocesses get the install
folder as their only PYTHONPATH entry, ahead of the venv's editable install; the first test
proves the modules really come from there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import last_json

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PACKAGES = ("ppo_robot", "envs", "export", "firmware_bridge")
BUILD_INPUTS = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "configs", *PACKAGES)

HELP = {
    "ppo_robot.train": "total_steps:",
    "ppo_robot.evaluate": "episodes:",
    "export.onnx": "parity_n:",
    "firmware_bridge.deploy": "duration_s:",
    "firmware_bridge.sim_robot": "port_link:",
    "firmware_bridge.replay": "out_dir:",
    "firmware_bridge.faultproxy": "upstream:",
    "firmware_bridge.calibrate": "timeout_s:",
    "firmware_bridge.firmware.make_vectors": "--check",
}
"""The entry points known today -> a word `--help` must print (a key of its config, a flag)."""

REALITY = "configs/realities/furuta/heavy_pendulum.yaml"


class Installed:
    """The built wheel, installed with `pip install --target`, and a working directory
    outside the checkout to run it from."""

    def __init__(self, tmp: Path) -> None:
        src = tmp / "src"
        for name in BUILD_INPUTS:
            _copy(ROOT / name, src / name)
        _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src))
        (self.wheel,) = (tmp / "dist").glob("ppo_robot-*.whl")
        self.site = tmp / "site"
        _pip("install", "--no-deps", "--no-compile", "--target", str(self.site), str(self.wheel))
        self.cwd = tmp / "work"
        self.cwd.mkdir()
        self.env = {
            **os.environ,
            "PYTHONPATH": str(self.site),
            "PYTHONUNBUFFERED": "1",
            "PPO_ROBOT_HYDRA_DIR": str(tmp / "hydra"),
        }

    def popen(self, *args: str) -> subprocess.Popen:
        """`python args...` from the working directory, text pipes."""
        return subprocess.Popen(
            [PY, *args],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, timeout: float = 120, code: int = 0) -> subprocess.CompletedProcess:
        """`python args...` to the end; asserts its exit code."""
        p = subprocess.run(
            [PY, *args], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert p.returncode == code, f"{args} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
        return p


def _copy(src: Path, dst: Path) -> None:
    """A file, or a folder without build outputs."""
    if src.is_dir():
        junk = shutil.ignore_patterns("build", "__pycache__", "*.egg-info", "*.pyc")
        shutil.copytree(src, dst, ignore=junk)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


def _pip(*args: str) -> None:
    p = subprocess.run([PY, "-m", "pip", "-q", *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"pip {args[0]} failed:\n{p.stdout}\n{p.stderr}"


def _entry_points() -> list[str]:
    """Every module of the packages that runs as `python -m` (has a `__main__` guard)."""
    found = []
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            rel = f.relative_to(ROOT)
            if "build" not in rel.parts and 'if __name__ == "__main__":' in f.read_text():
                found.append(".".join(rel.with_suffix("").parts))
    return sorted(found)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    return Installed(tmp_path_factory.mktemp("wheel"))


def _shipped_sources() -> set[str]:
    """What the wheel must hold beside the modules, as paths inside it: the MJCF, the whole
    reference firmware (but its build outputs), every config as `ppo_robot/configs/...`."""
    fw = ROOT / "firmware_bridge" / "firmware"
    firmware = {
        p
        for p in fw.rglob("*")
        if p.is_file() and "build" not in p.relative_to(fw).parts and "__pycache__" not in p.parts
    }
    want = {p.relative_to(ROOT).as_posix() for p in firmware}
    robots = ROOT / "envs" / "robots"
    own = [p for ext in ("xml", "yaml", "md") for p in robots.glob(f"*/*.{ext}")]
    want |= {p.relative_to(ROOT).as_posix() for p in own}
    configs = (ROOT / "configs").rglob("*.yaml")
    want |= {"ppo_robot/configs/" + p.relative_to(ROOT / "configs").as_posix() for p in configs}
    return want


def test_wheel_holds_data_and_is_what_runs(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    want = _shipped_sources()
    for required in (
        "envs/robots/furuta/furuta.xml",
        "envs/robots/furuta/robot.yaml",
        "envs/robots/furuta/README.md",
        "firmware_bridge/firmware/Makefile",
        "firmware_bridge/firmware/lib/pr_protocol.c",
        "firmware_bridge/firmware/boards/furuta/furuta.ino",
        "firmware_bridge/firmware/test_vectors.txt",
        "ppo_robot/configs/train.yaml",
        "ppo_robot/configs/realities/furuta/heavy_pendulum.yaml",
        "ppo_robot/configs/excitation/chirp.yaml",
    ):
        assert required in want, required  # the list above is not empty by accident
    assert sorted(want - names) == []
    assert not [n for n in names if n.startswith("configs/")]  # no top-level package "configs"
    installed.run("-m", "firmware_bridge.firmware.make_vectors", "--check")  # shipped vectors
    code = (
        "import json, ppo_robot, envs, export, firmware_bridge;"
        "from ppo_robot.paths import config_dir, find_config_file;"
        "print(json.dumps({'modules': [m.__file__ for m in (ppo_robot, envs, export,"
        " firmware_bridge)], 'config_dir': str(config_dir()),"
        f" 'reality': str(find_config_file('{REALITY}', 'realities')),"
        " 'bare': str(find_config_file('heavy_pendulum', 'realities'))}))"
    )
    got = json.loads(installed.run("-c", code).stdout)
    site = installed.site.resolve()
    for f in got["modules"]:
        assert Path(f).resolve().is_relative_to(site), f
    assert Path(got["config_dir"]) == site / "ppo_robot" / "configs"
    assert (
        Path(got["reality"])
        == Path(got["bare"])
        == site / "ppo_robot/configs" / REALITY.removeprefix("configs/")
    )


def test_every_entry_point_answers_help(installed):
    modules = _entry_points()
    assert set(HELP) <= set(modules), sorted(set(HELP) - set(modules))
    procs = {m: installed.popen("-m", m, "--help") for m in modules}  # together: they import
    for module, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{module} --help exited {proc.returncode}\n{err}"
        assert HELP.get(module, "usage") in out, f"{module} --help:\n{out}"


@pytest.fixture(scope="module")
def policy(installed, tmp_path_factory) -> dict[str, Path]:
    """A 2,000-step train by the installed `ppo_robot.train`, exported by `export.onnx`."""
    d = tmp_path_factory.mktemp("policy")
    train = installed.run(
        "-m",
        "ppo_robot.train",
        f"run_dir={d}/run",
        "total_steps=2000",
        "env.num_envs=8",
        "ppo.n_steps=64",
        "eval_episodes=2",
        "progress=false",
        timeout=180,
    )
    checkpoint = Path(last_json(train.stdout)["checkpoint"])
    assert checkpoint.is_relative_to(d), checkpoint
    onnx = d / "policy.onnx"
    installed.run("-m", "export.onnx", f"checkpoint={checkpoint}", f"output={onnx}")
    assert onnx.is_file()
    return {"checkpoint": checkpoint, "onnx": onnx}


def test_deploy_against_sim_robot_on_a_packaged_reality(installed, policy, tmp_path):
    sim = installed.popen("-m", "firmware_bridge.sim_robot", f"reality={REALITY}")
    try:
        line = sim.stdout.readline()
        assert line.startswith("PORT "), f"sim_robot did not start: {line!r} {sim.stderr.read()}"
        deploy = installed.run(
            "-m",
            "firmware_bridge.deploy",
            f"policy={policy['onnx']}",
            f"port={line.split(' ', 1)[1].strip()}",
            "duration_s=1",
            f"log_dir={tmp_path}/logs",
            "status=false",
            timeout=60,
        )
    finally:
        sim.terminate()
        sim_out, sim_err = sim.communicate(timeout=10)
    s = last_json(deploy.stdout)
    assert s["ticks"] == 100 and s["faults"] == [] and Path(s["log"]).is_file(), s
    assert f"reality {REALITY}" in sim_err
    assert last_json(sim_out)["commands_applied"] == 100


def test_realities_by_name_and_missing_ones(installed, policy, tmp_path):
    """A bare reality name is looked up in the packaged realities; a name that is nowhere is
    one line naming what the user gave, exit 2."""
    ck = f"checkpoint={policy['checkpoint']}"
    ev = installed.run(
        "-m", "ppo_robot.evaluate", ck, "episodes=2", "reality=latency_10ms", f"out_dir={tmp_path}"
    )
    assert last_json(ev.stdout)["reality"] == "latency_10ms"
    bad = "configs/realities/no_such_reality.yaml"
    for module, *args in (("firmware_bridge.sim_robot",), ("ppo_robot.evaluate", ck)):
        p = installed.run("-m", module, *args, f"reality={bad}", code=2)
        assert p.stderr.strip() == f"error: reality/randomization file not found: {bad}", module
