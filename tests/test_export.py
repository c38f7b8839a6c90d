"""Export: parity, metadata, the normalizer inside the graph, mismatch refusal, bad input."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from envs.robots import get_robot
from export.onnx import parity_observations
from export.runtime import OnnxPolicy, PolicyError, PolicyMismatch
from ppo_robot.checkpoint import build_actor, load_checkpoint
from tests.conftest import last_json, run_cli


def test_parity_random_and_extreme(trained):
    ck = load_checkpoint(trained["checkpoint"])
    actor = build_actor(ck)
    spec = get_robot("furuta")
    pol = OnnxPolicy(trained["onnx"])
    mean = actor.normalizer.mean.numpy()
    std = np.sqrt(actor.normalizer.var.numpy())
    obs = parity_observations(mean, std, 2000, seed=7)
    with torch.no_grad():
        ref = spec.action_to_command(actor(torch.from_numpy(obs)).double().numpy())
    got = pol.act_batch(obs)
    assert np.max(np.abs(got - ref)) <= 1e-5
    # single-observation path (I/O binding) agrees with the batch path
    for o in obs[:50]:
        assert np.allclose(pol.act(o), pol.act_batch(o[None])[0], atol=0, rtol=0)
    # extreme inputs stay inside the command limits
    assert np.all(got <= 10.0) and np.all(got >= -10.0)


def test_metadata_round_trip(trained):
    model = onnx.load(trained["onnx"])
    meta = {p.key: p.value for p in model.metadata_props}
    spec = get_robot("furuta")
    assert meta["robot.name"] == "furuta"
    assert json.loads(meta["robot.layout"]) == json.loads(json.dumps(spec.layout()))
    assert json.loads(meta["obs.names"]) == list(spec.obs_names)
    assert json.loads(meta["action.low"]) == [-10.0] and json.loads(meta["action.high"]) == [10.0]
    assert float(meta["control_hz"]) == 100.0
    assert float(meta["parity.max_abs_diff"]) <= 1e-5
    assert meta["train.config_hash"] and meta["train.git_rev"] and meta["export.time"]
    pol = OnnxPolicy(trained["onnx"])
    assert pol.info.robot == "furuta" and pol.info.obs_dim == 5 and pol.info.act_dim == 1
    pol.check(spec)
    assert [i.name for i in pol.session.get_inputs()] == ["obs"]
    assert pol.session.get_inputs()[0].shape[0] == "batch"


def test_normalizer_is_inside_the_graph(trained):
    ck = load_checkpoint(trained["checkpoint"])
    actor = build_actor(ck)
    assert not torch.allclose(actor.normalizer.mean, torch.zeros_like(actor.normalizer.mean))
    spec = get_robot("furuta")
    pol = OnnxPolicy(trained["onnx"])
    obs = np.array([[0.3, -0.9, 0.2, 1.5, -4.0]], dtype=np.float32)
    with torch.no_grad():
        with_norm = spec.action_to_command(actor(torch.from_numpy(obs)).numpy())
        bare = spec.action_to_command(actor.net(torch.from_numpy(obs)).numpy())
    got = pol.act_batch(obs)
    assert np.allclose(got, with_norm, atol=1e-5)
    assert not np.allclose(got, bare, atol=1e-3)


def test_mismatch_refused(trained):
    pol = OnnxPolicy(trained["onnx"])
    with pytest.raises(PolicyMismatch, match="500 Hz"):
        pol.check(get_robot("furuta", 500))
    from dataclasses import replace

    other = replace(get_robot("furuta"), name="cartpole")
    with pytest.raises(PolicyMismatch, match="robot 'furuta', not 'cartpole'"):
        pol.check(other)
    fewer = replace(get_robot("furuta"), sensors=get_robot("furuta").sensors[:3])
    with pytest.raises(PolicyMismatch, match="expects 4 sensors"):
        pol.check(fewer)
    # the same robot, another task: refused by task name before the layout hash
    assert pol.info.task == "swing_up"
    with pytest.raises(
        PolicyMismatch, match="is for task 'swing_up' of robot 'furuta', not 'balance'"
    ):
        pol.check(get_robot("furuta", task="balance"))


def test_export_bad_input(tmp_path, trained):
    out = tmp_path / "p.onnx"
    p = run_cli("export.onnx", f"checkpoint={tmp_path}/missing.pt", f"output={out}")
    assert p.returncode == 2 and "checkpoint not found" in p.stderr and "Traceback" not in p.stderr
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    p = run_cli("export.onnx", f"checkpoint={bad}", f"output={out}")
    assert p.returncode == 2 and "corrupt" in p.stderr
    ck = torch.load(trained["checkpoint"], weights_only=False)
    ck["format_version"] = 99
    future = tmp_path / "future.pt"
    torch.save(ck, future)
    p = run_cli("export.onnx", f"checkpoint={future}", f"output={out}")
    assert p.returncode == 2 and "format version 99" in p.stderr
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    import os

    if os.access(ro, os.W_OK):  # root ignores permissions: use a path under a file instead
        p = run_cli("export.onnx", f"checkpoint={trained['checkpoint']}", f"output={bad}/x.onnx")
    else:
        p = run_cli("export.onnx", f"checkpoint={trained['checkpoint']}", f"output={ro}/x.onnx")
    assert p.returncode == 2 and "output" in p.stderr
    assert not out.exists()
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*tmp*"))


def test_export_cli_summary(tmp_path, trained):
    out = tmp_path / "again.onnx"
    p = run_cli("export.onnx", f"checkpoint={trained['checkpoint']}", f"output={out}", check=True)
    s = last_json(p.stdout)
    assert s["parity_max_abs_diff"] <= 1e-5 and s["parity_n_obs"] >= 10_000
    assert out.is_file() and out.with_suffix(".json").is_file()
    OnnxPolicy(out).check(get_robot("furuta"))


def test_corrupt_onnx_refused(tmp_path):
    f = tmp_path / "junk.onnx"
    f.write_bytes(b"\x08\x01garbage")
    with pytest.raises(PolicyError):
        OnnxPolicy(f)


def test_parity_failure_refuses_and_writes_nothing(tmp_path, trained):
    out = tmp_path / "strict.onnx"
    p = run_cli(
        "export.onnx", f"checkpoint={trained['checkpoint']}", f"output={out}", "parity_tol=1e-15"
    )
    assert p.returncode == 2 and "parity check failed" in p.stderr and "parity_tol" in p.stderr
    assert not out.exists() and not out.with_suffix(".json").exists()
