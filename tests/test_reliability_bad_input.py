"""Reliability: bad input to every entry point (an unparseable override, an unknown key, a
wrong type, missing or corrupt files, a busy port) is refused with one line and exit code 2,
writes nothing and sends no COMMAND or ENABLE. Each case records one row of
docs/reliability.md (the `row` fixture, tests/conftest.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from firmware_bridge.wire.link import open_serial
from firmware_bridge.wire.protocol import FrameParser, MsgType
from tests.conftest import run_cli


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
