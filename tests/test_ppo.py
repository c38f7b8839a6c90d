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
