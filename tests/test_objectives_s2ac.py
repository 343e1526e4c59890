"""S2ACLoss: hand-computed values, gradient routing, target parameters, keys, collectors."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from conftest import mock_replay_batch, with_target_updater
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import SoftUpdate

from s2ac_lit.actor import DEFAULT_SVGD, SVGDActor
from s2ac_lit.networks import QEnsemble
from s2ac_lit.objectives import S2ACLoss

B, OBS, ACT, M = 5, 2, 1, 4
GAMMA, ALPHA = 0.9, 0.3


def linear_critic(weights: list[list[float]], biases: list[float]) -> QEnsemble:
    """Q_k(s, a) = w_k·[s, a] + b_k, K = len(weights)."""
    critic = QEnsemble(OBS, ACT, num_critics=len(weights), hidden_sizes=())
    with torch.no_grad():
        critic.layers[0].weight.copy_(torch.tensor(weights).unsqueeze(-1))
        critic.layers[0].bias.copy_(torch.tensor(biases).reshape(-1, 1, 1))
    return critic


def batch(terminated: list[bool] | None = None) -> TensorDict:
    term = torch.tensor(terminated or [False] * B).unsqueeze(-1)
    g = torch.Generator().manual_seed(11)
    return mock_replay_batch(B, OBS, ACT, terminated=term, generator=g)


def make_loss(init: str = "fixed", steps: int = 0, **kwargs) -> S2ACLoss:
    actor = SVGDActor(
        OBS,
        [-1.0],
        [1.0],
        init=init,
        num_particles=M,
        init_std=0.5,
        hidden_sizes=(8,),
        svgd=replace(DEFAULT_SVGD, steps=steps),
    )
    critic = linear_critic([[0.5, -1.0, 2.0], [1.0, 0.2, -0.5]], [0.1, -0.2])
    options = {"fixed_alpha": True, "loss_function": "l2", **kwargs}
    loss = S2ACLoss(actor, critic, alpha_init=ALPHA, **options)
    loss.make_value_estimator(gamma=GAMMA)
    return with_target_updater(loss)


def test_critic_loss_matches_hand_computation() -> None:
    """L = 0 and a fixed N(0, 0.5²) init: every term of y is computable by hand."""
    loss = make_loss()
    with torch.no_grad():  # target critics differ from the online ones
        loss.target_qvalue_network_params["layers", "0", "bias"].add_(
            torch.tensor([0.7, -0.4]).reshape(-1, 1, 1)
        )
    td = batch(terminated=[False, True, False, False, True])
    torch.manual_seed(7)
    value, _ = loss.critic_loss(td)

    torch.manual_seed(7)
    u = 0.5 * torch.randn(B, M, ACT)
    a = torch.tanh(u)
    log_pi = (
        -0.5 * (u / 0.5) ** 2 - math.log(0.5 * math.sqrt(2 * math.pi)) - torch.log(1 - a**2)
    ).sum(-1)
    s_next = td["next", "observation"]
    w = torch.tensor([[0.5, -1.0, 2.0], [1.0, 0.2, -0.5]])
    b_target = torch.tensor([0.1 + 0.7, -0.2 - 0.4])
    q_target = torch.stack(
        [s_next @ w[k, :2] + a[..., 0].T * w[k, 2] + b_target[k] for k in range(2)]
    )  # [K, M, B]
    soft_value = q_target.amin(0).mean(0) - ALPHA * log_pi.mean(-1)
    not_done = 1.0 - td["next", "terminated"].float().squeeze(-1)
    y = td["next", "reward"].squeeze(-1) + GAMMA * not_done * soft_value
    s, act = td["observation"], td["action"].squeeze(-1)
    q = torch.stack([s @ w[k, :2] + act * w[k, 2] + [0.1, -0.2][k] for k in range(2)])
    expected = ((q - y) ** 2).mean(-1).sum()
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-5)


def test_critic_target_uses_target_parameters() -> None:
    """Shifting every target critic by δ shifts y by γδ on live transitions, 0 on terminal."""
    loss = make_loss()
    td = batch(terminated=[False, True, False, False, False])
    torch.manual_seed(0)
    _, before = loss.critic_loss(td)
    with torch.no_grad():
        loss.target_qvalue_network_params["layers", "0", "bias"].add_(1.5)
    torch.manual_seed(0)
    _, after = loss.critic_loss(td)
    shift = (after["target_value"] - before["target_value"]).item()
    assert shift == pytest.approx(GAMMA * 1.5 * 4 / 5, rel=1e-5)


def gradient_owners(loss: S2ACLoss, value: torch.Tensor) -> set[str]:
    params = dict(loss.named_parameters())
    grads = torch.autograd.grad(value, list(params.values()), allow_unused=True)
    return {
        name.split(".")[0]
        for (name, _), g in zip(params.items(), grads, strict=True)
        if g is not None and g.abs().sum() > 0
    }


def test_each_loss_reaches_only_its_own_parameters() -> None:
    loss = make_loss(init="learned", steps=2, fixed_alpha=False)
    out = loss(batch())
    assert gradient_owners(loss, out["loss_qvalue"]) == {"qvalue_network_params"}
    assert gradient_owners(loss, out["loss_actor"]) == {"actor_network_params"}
    assert gradient_owners(loss, out["loss_alpha"]) == {"log_alpha"}


def test_actor_gradient_flows_through_the_svgd_steps() -> None:
    """With L = 3 the actor gradient differs from the L = 0 one: the steps are in the graph."""
    grads = []
    for steps in (0, 3):
        loss = make_loss(init="learned", steps=steps)
        torch.manual_seed(0)
        value, _ = loss.actor_loss(batch())
        weight = loss.actor_network_params["init_net", "0", "weight"]
        grads.append(torch.autograd.grad(value, weight)[0])
    assert (grads[0] - grads[1]).abs().max() > 1e-4


def test_alpha_loss_moves_alpha_towards_the_target_entropy() -> None:
    for log_prob, direction in ((5.0, +1), (-5.0, -1)):  # entropy -5 < -1 = target: raise α
        loss = make_loss(fixed_alpha=False)
        opt = torch.optim.SGD([loss.log_alpha], lr=0.1)
        value, _ = loss.alpha_loss(torch.full((B, M), log_prob))
        opt.zero_grad()
        value.backward()
        opt.step()
        assert direction * (loss.alpha.item() - ALPHA) > 0.01
    fixed = make_loss()
    assert fixed.alpha_loss(torch.ones(3))[0].item() == 0.0


def test_set_keys_renames_inputs() -> None:
    loss = make_loss()
    loss.set_keys(observation="obs", action="act")
    td = batch()
    td.rename_key_("observation", "obs")
    td.rename_key_("action", "act")
    td.rename_key_(("next", "observation"), ("next", "obs"))
    out = loss(td)
    assert torch.isfinite(out["loss_qvalue"])
    with pytest.raises(KeyError):
        loss(batch())
    with pytest.raises(ValueError, match="not an accepted tensordict key"):
        loss.set_keys(observations="obs")


def test_state_dict_round_trips_into_a_fresh_loss() -> None:
    loss = make_loss(init="learned", steps=2, fixed_alpha=False)
    updater = SoftUpdate(loss, tau=0.5)
    with torch.no_grad():
        for p in loss.qvalue_network_params.values(True, True):
            p.add_(0.3)
    updater.step()
    fresh = make_loss(init="learned", steps=2, fixed_alpha=False)
    fresh.load_state_dict(loss.state_dict())
    torch.manual_seed(5)
    a = loss(batch())
    torch.manual_seed(5)
    b = fresh(batch())
    for key in ("loss_qvalue", "loss_actor", "loss_alpha"):
        torch.testing.assert_close(a[key], b[key])


def test_soft_update_moves_target_by_tau() -> None:
    loss = make_loss()
    updater = SoftUpdate(loss, tau=0.25)
    target_before = loss.target_qvalue_network_params.clone()
    with torch.no_grad():
        loss.qvalue_network_params["layers", "0", "bias"].add_(1.0)
    updater.step()
    delta = (
        loss.target_qvalue_network_params["layers", "0", "bias"]
        - target_before["layers", "0", "bias"]
    )
    torch.testing.assert_close(delta, torch.full_like(delta, 0.25))


def test_policy_acts_in_a_collector_and_in_rollouts() -> None:
    from torchrl.collectors import Collector
    from torchrl.envs import GymEnv

    env = GymEnv("Pendulum-v1")
    env.set_seed(0)
    obs_dim = env.observation_spec["observation"].shape[-1]
    actor = SVGDActor(
        obs_dim,
        [-2.0],
        [2.0],
        num_particles=6,
        hidden_sizes=(16,),
        svgd=replace(DEFAULT_SVGD, steps=2),
    )
    loss = S2ACLoss(actor, QEnsemble(obs_dim, 1, hidden_sizes=(16,)))
    policy = loss.policy(eval_selection="max")
    collector = Collector(
        env,
        policy,
        frames_per_batch=8,
        total_frames=-1,
        auto_register_policy_transforms=False,  # as the trainer: no recurrent state
    )
    data = next(iter(collector))
    collector.shutdown()
    assert data["action"].shape == (8, 1)
    assert data["action"].abs().max() <= 2.0
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        rollout = env.rollout(5, policy)
    assert rollout["action"].shape == (5, 1)


def test_actor_loss_matches_hand_computation() -> None:
    """J = mean_s[α·mean_i log π(a_i|s) - mean_i min_k Q_k(s, a_i)] with L = 0 by hand."""
    loss = make_loss()
    td = batch()
    torch.manual_seed(3)
    value, _ = loss.actor_loss(td)
    torch.manual_seed(3)
    u = 0.5 * torch.randn(B, M, ACT)
    a = torch.tanh(u)[..., 0]
    log_pi = (-0.5 * (u / 0.5) ** 2 - math.log(0.5 * math.sqrt(2 * math.pi))).sum(-1) - torch.log(
        1 - a**2
    )
    s = td["observation"]
    q1 = (s @ torch.tensor([0.5, -1.0])).unsqueeze(-1) + 2.0 * a + 0.1
    q2 = (s @ torch.tensor([1.0, 0.2])).unsqueeze(-1) - 0.5 * a - 0.2
    expected = (ALPHA * log_pi.mean(-1) - torch.minimum(q1, q2).mean(-1)).mean()
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-5)
