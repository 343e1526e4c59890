"""SQLLoss: soft value against hand computations, gradient routing, amortised SVGD gradient."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import mock_replay_batch, set_constant_critic, with_target_updater
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

from s2ac_lit.actor import SVGDActor, tanh_log_abs_det
from s2ac_lit.networks import QEnsemble
from s2ac_lit.objectives import S2ACLoss, SQLLoss
from s2ac_lit.objectives.common import amortized_svgd_loss
from s2ac_lit.objectives.sql import soft_value
from s2ac_lit.svgd import svgd_direction_at

OBS_DIM, BATCH = 3, 6


def make_batch(action_dim: int, batch: int = BATCH) -> TensorDict:
    terminated = torch.tensor([[True], [False]]).repeat(batch // 2, 1)
    return mock_replay_batch(batch, OBS_DIM, action_dim, terminated=terminated)


def make_loss(
    low=(-2.0,),
    high=(2.0,),
    *,
    alpha: float = 0.5,
    hidden=(8,),
    sampler_hidden=None,
    gamma: float = 0.9,
    **kwargs,
) -> SQLLoss:
    actor = SVGDActor(
        OBS_DIM,
        low,
        high,
        init="fixed",
        amortized=True,
        squash_correction=True,
        hidden_sizes=hidden if sampler_hidden is None else sampler_hidden,
        **kwargs,
    )
    critic = QEnsemble(OBS_DIM, len(low), hidden_sizes=hidden)
    loss = SQLLoss(actor, critic, alpha_init=alpha, amortized_particles=5, loss_function="l2")
    return with_target_updater(loss.make_value_estimator(gamma=gamma))


def test_soft_value_hand_computation() -> None:
    q = torch.tensor([[1.0, 2.0, 3.0], [-4.0, 0.0, 0.5]], dtype=torch.float64)
    alpha, log_vol = 0.5, math.log(4.0)
    expected = [
        alpha * math.log(sum(math.exp(v / alpha) for v in row) / 3) + alpha * log_vol
        for row in q.tolist()
    ]
    assert soft_value(q, alpha, log_vol).tolist() == pytest.approx(expected, abs=1e-12)


def test_soft_value_converges_to_log_partition() -> None:
    """Q(a) = w·a on [-1, 1]: α log ∫ exp(wa/α) da = α log(α(e^{w/α} - e^{-w/α})/w)."""
    w, alpha = 1.5, 0.5
    a = torch.rand(400_000, dtype=torch.float64) * 2 - 1
    exact = alpha * math.log(alpha * (math.exp(w / alpha) - math.exp(-w / alpha)) / w)
    # The volume term α·log 2 = 0.35 is 100× the tolerance.
    assert soft_value(w * a, alpha, math.log(2.0)).item() == pytest.approx(exact, abs=3e-3)


@pytest.mark.parametrize(
    ("low", "high"), [((-2.0,), (2.0,)), ((-1.0, 0.0), (1.0, 3.0)), ((-1.0,) * 3, (1.0,) * 3)]
)
def test_constant_critic_value_and_target_exact(low, high) -> None:
    """Q ≡ c: V = c + α Σ_d log(high_d - low_d), whatever the proposals; the target follows."""
    alpha, gamma, c = 0.5, 0.9, 1.25
    loss = make_loss(low, high, alpha=alpha, gamma=gamma)
    set_constant_critic(loss.qvalue_network, [c, c])
    loss.target_qvalue_network_params.update(loss.qvalue_network_params.detach().clone())
    log_vol = sum(math.log(h - lo) for lo, h in zip(low, high, strict=True))
    if low == (-1.0,) * 3:
        assert log_vol == pytest.approx(3 * math.log(2.0))  # SQL's α·A·log 2 case
    value = loss.state_value(torch.randn(4, OBS_DIM), loss.target_qvalue_network_params)
    torch.testing.assert_close(value, torch.full((4,), c + alpha * log_vol))

    td = make_batch(len(low))
    reward = td["next", "reward"].squeeze(-1)
    not_term = (~td["next", "terminated"]).squeeze(-1).float()
    target = reward + gamma * not_term * (c + alpha * log_vol)
    expected = 2 * (c - target).pow(2).mean()  # Σ over the two critics
    loss_q, _ = loss.critic_loss(td)
    torch.testing.assert_close(loss_q, expected)


def test_value_uses_min_over_critics() -> None:
    loss = make_loss(alpha=0.3)
    set_constant_critic(loss.qvalue_network, [2.0, -1.0])
    params = loss.qvalue_network_params.detach()
    value = loss.state_value(torch.randn(5, OBS_DIM), params)
    torch.testing.assert_close(value, torch.full((5,), -1.0 + 0.3 * math.log(4.0)))


def test_forward_outputs() -> None:
    loss = make_loss(alpha=0.7)
    out = loss(make_batch(1))
    assert set(out.keys()) == set(loss.out_keys)
    assert loss.out_keys[:5] == ["loss_actor", "loss_qvalue", "loss_alpha", "alpha", "entropy"]
    assert out["loss_alpha"].item() == 0.0
    assert out["alpha"].item() == pytest.approx(0.7)
    assert all(torch.isfinite(v).all() for v in out.values())


def _grads(params) -> list[torch.Tensor | None]:
    return [p.grad for p in params]


def test_gradient_routing() -> None:
    loss = make_loss(low=(-1.0, -1.0), high=(1.0, 1.0))
    critic = list(loss.qvalue_network.parameters())
    sampler = list(loss.actor_network.amortized.parameters())
    targets = list(loss.target_qvalue_network_params.values(True, True))
    td = make_batch(2)

    loss(td)["loss_qvalue"].backward()
    assert all(g is not None and g.abs().sum() > 0 for g in _grads(critic))
    assert all(g is None for g in _grads(sampler) + _grads(targets))

    loss.zero_grad(set_to_none=True)
    loss(td)["loss_actor"].backward()
    assert all(g is not None and g.abs().sum() > 0 for g in _grads(sampler))
    assert all(g is None for g in _grads(critic) + _grads(targets))


def test_amortized_svgd_gradient_by_hand() -> None:
    """A linear sampler u = W[s; ξ] + b: ∇_b L = -mean φ, ∇_W L = -mean φ [s; ξ]ᵀ (φ fixed)."""
    alpha, m, a_dim = 0.5, 5, 2
    loss = make_loss(low=(-1.0, -2.0), high=(1.0, 2.0), alpha=alpha, sampler_hidden=())
    actor = loss.actor_network
    linear = actor.amortized.net[0]  # the loss's functional params share these Parameters
    obs = torch.randn(BATCH, OBS_DIM)
    td = make_batch(a_dim).set("observation", obs)

    torch.manual_seed(7)
    sampler_loss, _ = loss.amortized_loss(td)
    grad_w, grad_b = torch.autograd.grad(sampler_loss, [linear.weight, linear.bias])

    torch.manual_seed(7)
    noise = torch.randn(BATCH, m, a_dim)
    inputs = torch.cat([obs.unsqueeze(-2).expand(-1, m, -1), noise], -1)
    u = (inputs @ linear.weight.T + linear.bias).detach()
    critic = loss.qvalue_network

    def energy(x: torch.Tensor) -> torch.Tensor:
        q = critic(obs.unsqueeze(-2), actor.squash(x)).amin(0)
        return q / alpha + tanh_log_abs_det(x, actor.action_scale)

    phi = svgd_direction_at(energy, u, actor.svgd)
    torch.testing.assert_close(grad_b, -phi.sum((0, 1)) / (BATCH * m))
    torch.testing.assert_close(grad_w, -torch.einsum("bia,bij->aj", phi, inputs) / (BATCH * m))

    # The surrogate's gradient is -Σ φᵀ ∂u/∂ψ for any sampler (autograd's vector-Jacobian).
    u_graph = actor.amortized(obs, noise)
    expected = torch.autograd.grad(
        u_graph, linear.bias, grad_outputs=-phi / (BATCH * m), retain_graph=True
    )[0]
    got = torch.autograd.grad(amortized_svgd_loss(u_graph, phi).mean(), linear.bias)[0]
    torch.testing.assert_close(got, expected)


def test_policy_acts_in_bounds_and_selects_by_q() -> None:
    loss = make_loss(low=(-1.0, 0.0), high=(1.0, 3.0))
    obs = torch.randn(7, OBS_DIM)
    for selection in ("amortized", "softmax", "max"):
        policy = loss.policy(eval_selection=selection)
        for exploration in (ExplorationType.RANDOM, ExplorationType.DETERMINISTIC):
            with set_exploration_type(exploration), torch.no_grad():
                action = policy(TensorDict({"observation": obs}, [7]))["action"]
            assert action.shape == (7, 2)
            assert torch.all(action >= torch.tensor([-1.0, 0.0]))
            assert torch.all(action <= torch.tensor([1.0, 3.0]))

    # "max" returns the best of the sampler's candidates under min_k Q.
    policy = loss.policy(eval_selection="max", eval_particles=4)
    torch.manual_seed(3)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        chosen = policy(TensorDict({"observation": obs}, [7]))["action"]
    torch.manual_seed(3)
    candidates = loss.actor_network.squash(loss.actor_network.sample_amortized(obs, 4))
    with torch.no_grad():
        q = loss.qvalue_network(obs.unsqueeze(-2), candidates).amin(0)
    best = candidates[torch.arange(7), q.argmax(-1)]
    torch.testing.assert_close(chosen, best)


def test_rejects_actor_without_sampler_or_with_init_net() -> None:
    critic = QEnsemble(OBS_DIM, 1, hidden_sizes=(8,))
    with pytest.raises(ValueError, match="amortized=True"):
        SQLLoss(SVGDActor(OBS_DIM, [-1.0], [1.0], init="fixed"), critic)
    with pytest.raises(ValueError, match="init='fixed'"):
        SQLLoss(SVGDActor(OBS_DIM, [-1.0], [1.0], init="learned", amortized=True), critic)


def test_set_keys_is_per_instance() -> None:
    loss = make_loss()
    loss.set_keys(observation="obs")
    td = make_batch(1)
    td.rename_key_("observation", "obs")
    td.rename_key_(("next", "observation"), ("next", "obs"))
    assert torch.isfinite(loss(td)["loss_qvalue"])
    other = S2ACLoss(SVGDActor(OBS_DIM, [-1.0], [1.0]), QEnsemble(OBS_DIM, 1))
    assert other.tensor_keys.observation == "observation"
