"""Deploy without a policy: excitation signals and playback of a logged run."""

from __future__ import annotations

import numpy as np
import pytest

from firmware_bridge.host.sources import Excitation, excitation_signal
from firmware_bridge.logs.rollout_log import RolloutLog, read_log
from tests.conftest import FIT_TRUTH, last_json, run_cli, write_truth_reality


def test_excitation_signals():
    rate, T = 100.0, 8.0
    chirp = excitation_signal(Excitation("chirp", 3.0, 0.5, 0.2, 5.0), rate, T)
    assert chirp.shape == (800,) and np.max(chirp) <= 3.5 + 1e-9 and np.min(chirp) >= -2.5 - 1e-9
    # the sweep gets faster: more zero crossings (around the offset) in the last second
    c = chirp - 0.5
    early = np.sum(np.diff(np.sign(c[:100])) != 0)
    late = np.sum(np.diff(np.sign(c[-100:])) != 0)
    assert late > 4 * max(early, 1)
    prbs = excitation_signal(Excitation("prbs", 2.0, hold_s=0.05), rate, T)  # 5-tick bits
    assert set(np.round(np.unique(prbs), 9)) == {-2.0, 2.0}
    assert np.all(prbs.reshape(-1, 5) == prbs.reshape(-1, 5)[:, :1])  # 50 ms bits = 5 ticks
    steps = excitation_signal(Excitation("steps", 3.0, hold_s=0.25), rate, T)
    assert len(np.unique(steps)) == 32 and np.max(np.abs(steps)) <= 3.0
    ms = excitation_signal(Excitation("multisine", 3.0, f0_hz=0.3, f1_hz=8.0), rate, T)
    assert np.max(np.abs(ms)) == pytest.approx(3.0)


def test_excitation_beyond_limits_refused_before_enable(tmp_path):
    p = run_cli(
        "firmware_bridge.deploy",
        "source=excitation",
        "robot=furuta",
        "port=/dev/null",
        "excitation.amplitude=8",
        "excitation.offset=3",
        f"log_dir={tmp_path}",
    )
    assert p.returncode == 2
    assert "outside its limits [-10, 10] V" in p.stderr and "motor" in p.stderr
    assert not list(tmp_path.glob("*.mcap"))


def _fake_log(path, robot: str, n_act: int) -> str:
    log = RolloutLog(path, {"robot": robot})
    for k in range(10):
        log.put(
            "/command",
            k,
            {
                "tick": k,
                "t_host": k / 100,
                "seq": k,
                "state_seq": k,
                "values": [0.0] * n_act,
                "limited": False,
            },
        )
    log.close()
    return str(path)


@pytest.mark.parametrize(
    "robot,n_act,expect",
    [
        ("cartpole", 1, "from robot 'cartpole', not 'furuta'"),
        ("furuta", 2, "has 2 actuators per command"),
    ],
)
def test_playback_of_foreign_log_refused(tmp_path, robot, n_act, expect):
    log = _fake_log(tmp_path / "x.mcap", robot, n_act)
    p = run_cli(
        "firmware_bridge.deploy",
        "source=playback",
        f"log={log}",
        "robot=furuta",
        "port=/dev/null",
        f"log_dir={tmp_path}/out",
    )
    assert p.returncode == 2 and expect in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "out").exists()


def test_playback_reproduces_the_logged_run(sim_robot, tmp_path):
    """Record an excitation run, play its commands back on a fresh controller: the sensor
    traces agree (both start at rest hanging down, same model)."""
    sim = sim_robot()
    p = run_cli(
        "firmware_bridge.deploy",
        "source=excitation",
        "robot=furuta",
        f"port={sim.port}",
        "excitation=multisine",
        "excitation.amplitude=2",
        "duration_s=3",
        f"log_dir={tmp_path}/a",
        "status=false",
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    first = last_json(p.stdout)
    sim.stop()
    sim2 = sim_robot()
    p = run_cli(
        "firmware_bridge.deploy",
        "source=playback",
        f"log={first['log']}",
        f"port={sim2.port}",
        "duration_s=3",
        f"log_dir={tmp_path}/b",
        "status=false",
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    second = last_json(p.stdout)
    assert second["source"] == "playback"
    a, b = read_log(first["log"]), read_log(second["log"])
    assert b.run["source"] == "playback" and b.run["playback_log"].endswith(".mcap")
    ca = np.array([c["values"] for c in a.topic("/command")])
    cb = np.array([c["values"] for c in b.topic("/command")])
    assert np.array_equal(ca, cb)
    sa = np.array([s["sensors"] for s in a.topic("/state")])[:250]
    sb = np.array([s["sensors"] for s in b.topic("/state")])[:250]
    rmse = np.sqrt(np.mean((sa - sb) ** 2, axis=0))
    print(f"playback RMSE per sensor over 2.5 s: {rmse.round(4).tolist()}")
    assert np.max(np.abs(sa[:, 0])) > 0.3  # the arm really moved
    assert rmse[0] < 0.05 and rmse[1] < 0.05  # angles, rad


def test_fit_from_excitation_and_policy_log(trained, sim_robot, tmp_path):
    """Identification: against a plant with 3 parameters changed by 25-40 %, a fit from an
    excitation log (no policy needed yet) recovers them within 5 %, and one from a
    policy-driven log of the same length within the 10 % fitting target (its Coulomb friction
    within 25 %, see below). Which of the two is closer varies from run to run
    (docs/benchmarks.md), so that is not asserted."""
    truth = write_truth_reality(tmp_path / "truth.yaml")
    sim = sim_robot(f"reality={truth}", "reset_on_hello=true")
    common = [f"port={sim.port}", "duration_s=6", "status=false"]
    ex = last_json(
        run_cli(
            "firmware_bridge.deploy",
            "source=excitation",
            "robot=furuta",
            "excitation=prbs",  # +-1.5 V, 100 ms bits: fast and slow motion, both directions
            f"log_dir={tmp_path}/ex",
            *common,
            timeout=60,
            check=True,
        ).stdout
    )
    pol = last_json(
        run_cli(
            "firmware_bridge.deploy",
            f"policy={trained['onnx']}",
            f"log_dir={tmp_path}/pol",
            *common,
            timeout=60,
            check=True,
        ).stdout
    )
    errors = {}
    for name, log in (("excitation", ex["log"]), ("policy", pol["log"])):
        r = last_json(
            run_cli(
                "firmware_bridge.replay",
                f"log={log}",
                f"out_dir={tmp_path}/fit-{name}",
                f"fit=[{','.join(FIT_TRUTH)}]",
                "plots=false",
                timeout=600,
                check=True,
            ).stdout
        )
        vals = r["fit"]["values"]
        errors[name] = {k: abs(vals[k] / t - 1) for k, t in FIT_TRUTH.items()}
    print(f"fit relative errors: excitation {errors['excitation']}, policy {errors['policy']}")
    assert max(errors["excitation"].values()) <= 0.05, errors
    # A policy log excites what the policy does: the swing-up pins the pendulum's damping and
    # the motor gain, but once it balances the arm rarely reverses at speed, so the arm's
    # Coulomb friction is weakly seen (11.0 % on CI on 2026-12-02 with a policy that balanced
    # early; 0.0-3.5 % in earlier runs). That is why identification uses an excitation.
    policy = errors["policy"]
    assert policy["pend_damping"] <= 0.10 and policy["motor_gain"] <= 0.10, errors
    assert policy["coulomb"] <= 0.25, errors
