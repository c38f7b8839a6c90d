"""PPO math against hand-computed values; normalizer; checkpoints; a real learning run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ppo_robot.normalizer import RunningNorm
from ppo_robot.ppo import clipped_surrogate, gaussian_kl, kl_penalty_loss, value_loss
from ppo_robot.storage import RolloutStorage, compute_gae


def test_gae_hand_computed_with_termination_and_truncation():
    gamma, lam = 0.9, 0.8
    # env 0 terminates after t=1; env 1 is truncated after t=1 with V(final obs) = 2.0,
    # which the runner folds into the reward: 1 + 0.9 * 2.0 = 2.8, and marks done.
    rewards = torch.tensor([[1.0, 0.0], [0.0, 2.8], [1.0, 1.0]])
    values = torch.tensor([[0.5, 0.2], [0.4, 0.3], [0.6, 0.1]])
    dones = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    last = torch.tensor([0.7, 0.9])
    adv = compute_gae(rewards, values, dones, last, gamma, lam)
    # env 0: A2 = 1 + .9*.7 - .6 = 1.03; A1 = 0 - .4 = -.4; A0 = (1 + .9*.4 - .5) + .72*(-.4) = .572
    # env 1: A2 = 1 + .9*.9 - .1 = 1.71; A1 = 2.8 - .3 = 2.5; A0 = (.9*.3 - .2) + .72*2.5 = 1.87
    expected = torch.tensor([[0.572, 1.87], [-0.4, 2.5], [1.03, 1.71]])
    assert torch.allclose(adv, expected, atol=1e-6)


def test_storage_returns_are_advantage_plus_value():
    s = RolloutStorage(3, 2, 1, 1)
    rewards = [[1.0, 0.0], [0.0, 2.8], [1.0, 1.0]]
    values = [[0.5, 0.2], [0.4, 0.3], [0.6, 0.1]]
    dones = [[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    z = torch.zeros(2, 1)
    for t in range(3):
        s.add(
            z,
            z,
            torch.zeros(2),
            torch.tensor(values[t]),
            torch.tensor(rewards[t]),
            torch.tensor(dones[t]),
            z,
            z + 1,
        )
    with pytest.raises(IndexError):
        s.add(z, z, torch.zeros(2), torch.zeros(2), torch.zeros(2), torch.zeros(2), z, z)
    s.compute_returns(torch.tensor([0.7, 0.9]), 0.9, 0.8)
    assert torch.allclose(s.returns, s.advantages + s.values)
    assert s.advantages[0, 1].item() == pytest.approx(1.87, abs=1e-6)
    batches = list(s.minibatches(2, 2, torch.Generator().manual_seed(0)))
    assert len(batches) == 4 and all(b.obs.shape == (3, 1) for b in batches)


def test_recomputed_advantages_use_the_current_critic():
    from ppo_robot.config import PPOConfig
    from ppo_robot.networks import Actor, Critic
    from ppo_robot.ppo import PPO

    actor, critic = Actor(1, 1, [4]), Critic(1, [4])
    ppo = PPO(actor, critic, PPOConfig(gamma=0.5, lam=0.5, recompute_adv=True), 1)
    s = RolloutStorage(2, 1, 1, 1)
    z = torch.zeros(1, 1)
    for r in (1.0, 2.0):  # collected while the critic said 0.1 everywhere
        s.add(z, z, torch.zeros(1), torch.tensor([0.1]), torch.tensor([r]), torch.zeros(1), z, z)
    s.compute_returns(torch.tensor([0.1]), 0.5, 0.5)
    collected = s.advantages.clone()
    with torch.no_grad():  # the critic, trained in epoch 0, now says 2.0 everywhere
        for layer in critic.net:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.zero_()
                layer.bias.zero_()
        critic.net[-1].bias.fill_(2.0)
    seen = []
    refresh = ppo._recompute_advantages(s)
    for epoch in (0, 1):
        refresh(epoch)
        seen.append(s.advantages.clone())
    assert torch.equal(seen[0], collected)  # epoch 0: the critic that collected the batch
    # delta_1 = 2 + .5*2 - 2 = 1; delta_0 = 1 + .5*2 - 2 = 0; A_0 = 0 + .25*1 = .25
    assert torch.allclose(seen[1], torch.tensor([[0.25], [1.0]]))
    assert torch.allclose(s.returns, torch.tensor([[2.25], [3.0]]))
    assert torch.equal(s.values, torch.full((2, 1), 0.1))  # kept for value clipping

    # recompute_targets=False: the same advantages, the collection-time value targets stay
    s.compute_returns(torch.tensor([0.1]), 0.5, 0.5)
    collected_targets = s.returns.clone()
    ppo.cfg.recompute_targets = False
    refresh = ppo._recompute_advantages(s)
    refresh(0)
    refresh(1)
    assert torch.allclose(s.advantages, torch.tensor([[0.25], [1.0]]))
    assert torch.equal(s.returns, collected_targets)
    assert not torch.allclose(collected_targets, torch.tensor([[2.25], [3.0]]))


def test_orthogonal_or_default_initialisation():
    from ppo_robot.networks import Actor, Critic

    torch.manual_seed(0)
    actor, critic = Actor(5, 2, [32, 32], "relu"), Critic(5, [32, 32], "relu")
    hidden, head = actor.net[2], actor.net[-1]
    # orthogonal: W W^T = gain^2 I (rows <= columns), zero biases; the actor's head gain is 0.01
    assert torch.allclose(hidden.weight @ hidden.weight.T, 2 * torch.eye(32), atol=1e-5)
    assert torch.allclose(head.weight @ head.weight.T, 1e-4 * torch.eye(2), atol=1e-8)
    assert torch.allclose(critic.net[-1].weight @ critic.net[-1].weight.T, torch.eye(1))
    assert all(not m.bias.any() for m in actor.net if isinstance(m, torch.nn.Linear))
    # ortho_init=False keeps nn.Linear's own initialisation, drawn in the same order
    torch.manual_seed(0)
    plain = Actor(5, 2, [32, 32], "relu", ortho_init=False)
    torch.manual_seed(0)
    reference = [torch.nn.Linear(5, 32), torch.nn.Linear(32, 32), torch.nn.Linear(32, 2)]
    layers = [m for m in plain.net if isinstance(m, torch.nn.Linear)]
    for got, want in zip(layers, reference, strict=True):
        assert torch.equal(got.weight, want.weight) and torch.equal(got.bias, want.bias)
    assert plain.net[-1].weight.abs().max() > 0.05  # a head of gain 0.01 could not reach this


def test_minibatches_call_before_epoch_before_each_pass():
    s = RolloutStorage(4, 1, 1, 1)
    events: list[str] = []
    batches = s.minibatches(
        2, 3, torch.Generator().manual_seed(0), lambda e: events.append(f"e{e}")
    )
    for _ in batches:
        events.append("b")
    assert events == ["e0", "b", "b", "e1", "b", "b", "e2", "b", "b"]


def test_clipped_surrogate_hand_computed():
    ratio = torch.tensor([0.5, 1.5, 1.0])
    adv = torch.tensor([1.0, 1.0, -2.0])
    # min(r A, clip(r) A) = [0.5, 1.2, -2.0] -> mean -0.1 -> loss 0.1
    assert clipped_surrogate(ratio, adv, 0.2).item() == pytest.approx(0.1, abs=1e-7)


def test_kl_and_penalty_hand_computed():
    kl = gaussian_kl(torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1), torch.full((1, 1), 2.0))
    assert kl.item() == pytest.approx(math.log(2) + 2 / 8 - 0.5, abs=1e-7)
    loss = kl_penalty_loss(
        torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0]), torch.tensor([0.1, 0.3]), 2.0
    )
    assert loss.item() == pytest.approx(-1.5 + 2.0 * 0.2, abs=1e-7)


def test_value_loss_clipping():
    v, old, ret = torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([1.5])
    assert value_loss(v, old, ret, 0.0).item() == pytest.approx(0.25)
    # clipped value is 0.5 -> (0.5 - 1.5)^2 = 1.0 is the larger, so it counts
    assert value_loss(v, old, ret, 0.5).item() == pytest.approx(1.0)


def test_normalizer_matches_numpy_over_batches():
    rng = np.random.default_rng(0)
    a = rng.normal(3.0, 2.0, (1000, 3))
    b = rng.normal(-1.0, 0.5, (37, 3))
    n = RunningNorm(3)
    n.update(torch.from_numpy(a))
    n.update(torch.from_numpy(b))
    both = np.concatenate([a, b])
    assert np.allclose(n.mean.numpy(), both.mean(0), atol=1e-12)
    assert np.allclose(n.var.numpy(), both.var(0), atol=1e-12)
    assert n.count.item() == 1037
    x = torch.tensor([[3.0, 3.0, 3.0]])
    expected = (3.0 - both.mean(0)) / np.sqrt(both.var(0) + 1e-8)
    assert np.allclose(n(x).numpy()[0], expected, atol=1e-6)
    assert n(torch.full((1, 3), 1e9)).max().item() == pytest.approx(10.0)


def test_trained_policy_reaches_success(trained):
    """A real learning test: the default robot (nominal) is learned to 100 % evaluation
    success within a bounded number of steps (the fixture stops at the first perfect eval)."""
    t = trained["train"]
    assert t["success_rate"] == 1.0
    assert t["total_steps"] <= 2_500_000


# ---------------------------------------------------------------- objective=kl, lr schedules,
# kl_stop: a small actor and critic on a batch collected by `PPO.act`, as the runner does


def _ppo_and_batch(total_updates: int = 4, **overrides):
    """A PPO with a 3-observation, 2-action actor and a full 8 x 4 batch it collected."""
    from ppo_robot.config import PPOConfig
    from ppo_robot.networks import Actor, Critic
    from ppo_robot.ppo import PPO

    torch.manual_seed(0)
    ppo = PPO(Actor(3, 2, [8]), Critic(3, [8]), PPOConfig(**overrides), total_updates)
    s = RolloutStorage(8, 4, 3, 2)
    for _ in range(8):
        o = torch.randn(4, 3)
        action, logp, value, mu, sigma = ppo.act(o)
        s.add(o, action, logp, value, torch.randn(4), torch.zeros(4), mu, sigma)
    s.last_obs.copy_(torch.randn(4, 3))
    s.compute_returns(ppo.value(s.last_obs), 0.99, 0.95)
    return ppo, s


def _batch_kl_by_hand(actor, s: RolloutStorage) -> float:
    """E[KL(old || now)] over the whole batch, in float64 numpy from the Gaussian formula."""
    with torch.no_grad():
        mu1 = actor(s.obs.flatten(0, 1)).double().numpy()
    s1 = np.exp(actor.log_std.detach().double().numpy())
    mu0, s0 = s.mu.flatten(0, 1).double().numpy(), s.sigma.flatten(0, 1).double().numpy()
    kl = np.log(s1 / s0) + (s0**2 + (mu0 - mu1) ** 2) / (2 * s1**2) - 0.5
    return float(kl.sum(-1).mean())


def test_kl_objective_adapts_beta_on_the_batch_kl_after_the_update():
    """PPO1 (Schulman et al. 2017, sec. 4): d = E[KL[pi_old, pi]] over the batch once the
    update's epochs are done; beta x 2 where d > 1.5 d_targ, / 2 where d < d_targ / 1.5."""

    def run(desired_kl: float):
        ppo, s = _ppo_and_batch(
            objective="kl", desired_kl=desired_kl, kl_beta=1.0, lr=0.05, epochs=2, minibatches=4
        )
        stats = ppo.update(s, torch.Generator().manual_seed(0))
        return ppo, stats, _batch_kl_by_hand(ppo.actor, s)

    _, probe, d = run(1.0)
    assert probe.kl_post == pytest.approx(d, rel=1e-5)
    # the minibatch KLs before each step (near 0 at first) average well below d, so a rule
    # on them would decide otherwise in the first two cases below
    assert 0 < probe.kl < 0.9 * d
    cases = [
        (d / (1.5 * 1.001), 2.0),  # d just above 1.5 x target: doubled
        (d / (1.5 * 0.999), 1.0),  # just below: unchanged
        (1.5 * d * 1.001, 0.5),  # d just below target / 1.5: halved
        (1.5 * d * 0.999, 1.0),  # just above: unchanged
        (d / 10, 2.0),
        (d * 10, 0.5),
    ]
    for desired_kl, beta in cases:
        ppo, stats, d_again = run(desired_kl)
        assert d_again == d  # the target does not change the update itself
        assert ppo.beta == beta and stats.beta == beta, desired_kl
        assert ppo.lr == 0.05  # lr_schedule auto: constant under objective=kl


@pytest.mark.parametrize(
    "objective,schedule,expect",
    [
        ("clip", "auto", "adaptive"),
        ("kl", "auto", "constant"),
        ("kl", "adaptive", "adaptive"),
        ("clip", "constant", "constant"),
        ("kl", "linear", "linear"),
    ],
)
def test_auto_lr_schedule_resolves_by_objective(objective, schedule, expect, caplog):
    from ppo_robot.config import PPOConfig

    cfg = PPOConfig(objective=objective, lr_schedule=schedule)
    assert cfg.resolved_lr_schedule() == expect
    assert PPOConfig().lr_schedule == "auto"
    with caplog.at_level("WARNING", logger="ppo_robot.ppo"):
        ppo, _ = _ppo_and_batch(objective=objective, lr_schedule=schedule)
    assert ppo.lr_schedule == expect
    warned = "both adapt on the KL" in caplog.text
    assert warned == (objective == "kl" and expect == "adaptive")


def test_bad_lr_schedule_names_the_key():
    from ppo_robot.cli import UserError
    from ppo_robot.config import PPOConfig, TrainConfig, validate

    with pytest.raises(UserError, match=r"^ppo.lr_schedule must be auto, .* got 'cosine'$"):
        validate(TrainConfig(ppo=PPOConfig(lr_schedule="cosine")))


def test_constant_and_linear_learning_rates():
    """constant: exactly lr at every update; linear: lr x (1 - updates done / total updates)
    in the update's steps (desired_kl is tiny: an adaptive schedule would move it)."""
    gen = torch.Generator().manual_seed(0)
    ppo, s = _ppo_and_batch(lr_schedule="constant", lr=1e-3, desired_kl=1e-12)
    for _ in range(3):
        assert ppo.update(s, gen).lr == 1e-3
        assert [g["lr"] for g in ppo.optimizer.param_groups] == [1e-3]
    ppo, s = _ppo_and_batch(total_updates=4, lr_schedule="linear", lr=1e-3, desired_kl=1e-12)
    for k in range(5):
        assert ppo.update(s, gen).lr == 1e-3 * (1 - k / 4)
        assert [g["lr"] for g in ppo.optimizer.param_groups] == [1e-3 * (1 - k / 4)]
    assert ppo.lr == 0.0


@pytest.mark.parametrize("schedule", ["adaptive", "auto"])
@pytest.mark.parametrize(
    "lr,kl,expect",
    [
        (1e-3, 0.02 * 1.01, 1e-3 / 1.5),  # above 2 x desired_kl: / 1.5
        (1e-3, 0.02 * 0.99, 1e-3),  # just below: unchanged
        (1e-3, 0.005 * 0.99, 1e-3 * 1.5),  # below desired_kl / 2: x 1.5
        (1e-3, 0.005 * 1.01, 1e-3),  # just above: unchanged
        (1.2e-4, 0.1, 1e-4),  # / 1.5 would go below lr_min
        (1.6e-3, 1e-4, 2e-3),  # x 1.5 would go above lr_max
    ],
)
def test_adaptive_learning_rate_on_the_minibatch_kl(schedule, lr, kl, expect):
    """One minibatch step whose KL before the step is set: the stored means sit sqrt(kl) from
    the actor's in each of the 2 action dims, sigma 1: KL = 2 x kl / 2."""
    ppo, s = _ppo_and_batch(
        lr_schedule=schedule,
        lr=lr,
        lr_min=1e-4,
        lr_max=2e-3,
        desired_kl=0.01,
        epochs=1,
        minibatches=1,
    )
    s.mu += math.sqrt(kl)
    # float32 rounding of mu + sqrt(kl): well inside the 1 % margins of the cases above
    assert _batch_kl_by_hand(ppo.actor, s) == pytest.approx(kl, rel=1e-3)
    stats = ppo.update(s, torch.Generator().manual_seed(0))
    assert stats.kl == pytest.approx(kl, rel=1e-3)
    assert stats.lr == expect and ppo.optimizer.param_groups[0]["lr"] == expect


def test_kl_stop_stops_at_the_first_minibatch_over_the_limit():
    """Without kl_stop, record each minibatch's KL and the actor after each step; then a
    limit just under the first new high after step 5 stops the same update there, before
    that minibatch's step, and epochs_run says where (steps / minibatches)."""

    def run(kl_stop: float):
        ppo, s = _ppo_and_batch(
            lr=0.05, lr_schedule="constant", epochs=4, minibatches=4, kl_stop=kl_stop
        )
        kls, actors = [], [{k: v.clone() for k, v in ppo.actor.state_dict().items()}]
        loss, step = ppo.loss, ppo.optimizer.step

        def recording_loss(b):
            total, info = loss(b)
            kls.append(info["kl"])
            return total, info

        def recording_step(*args, **kwargs):
            out = step(*args, **kwargs)
            actors.append({k: v.clone() for k, v in ppo.actor.state_dict().items()})
            return out

        ppo.loss, ppo.optimizer.step = recording_loss, recording_step
        return ppo.update(s, torch.Generator().manual_seed(0)), kls, actors, ppo

    full, kls, actors, _ = run(0.0)
    assert len(kls) == 16 and full.epochs_run == 4.0
    j = next(i for i in range(5, 16) if kls[i] > max(kls[:i]))
    limit = (max(kls[:j]) + kls[j]) / 2
    stopped, kls_stopped, actors_stopped, ppo = run(limit)
    assert kls_stopped == kls[: j + 1]  # minibatch j was measured, not stepped
    assert len(actors_stopped) == j + 1 and stopped.epochs_run == j / 4
    assert all(torch.equal(v, actors[j][k]) for k, v in ppo.actor.state_dict().items())
    assert stopped.kl == pytest.approx(sum(kls[:j]) / j)


ADAM_CHECK = """
import sys, torch
from ppo_robot.ppo import adam
torch.manual_seed(0)
ps = [torch.randn(7, 5, requires_grad=True), torch.randn(5, requires_grad=True)]
qs = [p.detach().clone().requires_grad_() for p in ps]
ours = adam(ps, 1e-2)
for _ in range(6):
    ours.zero_grad(set_to_none=True)
    (ps[0].square().sum() + ps[1].sin().sum()).backward()
    ours.step()
state = ours.state_dict()
ours.load_state_dict(state)
print("dynamo_before_reference", "torch._dynamo" in sys.modules)
ref = torch.optim.Adam(qs, lr=1e-2, eps=1e-5, fused=True)
for _ in range(6):
    ref.zero_grad(set_to_none=True)
    (qs[0].square().sum() + qs[1].sin().sum()).backward()
    ref.step()
same = all(torch.equal(a, b) for a, b in zip(ps, qs))
rs = ref.state_dict()["state"]
same &= all(torch.equal(state["state"][i][k], rs[i][k]) for i in rs for k in rs[i])
print("same", same)
"""


def test_adam_steps_as_torchs_without_importing_dynamo():
    """ppo.adam skips torch.optim's torch._dynamo import (start-up) and still steps exactly
    as torch's own Adam.step: parameters and state bit-identical after 6 steps. In a fresh
    interpreter, where nothing else has imported torch._dynamo yet."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    p = subprocess.run(
        [sys.executable, "-c", ADAM_CHECK], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
    assert "dynamo_before_reference False" in p.stdout and "same True" in p.stdout, p.stdout
