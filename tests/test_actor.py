"""The SVGD actor: squash, initial distributions, log π against torch.distributions, selection."""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D

from s2ac_lit.actor import (
    SVGDActor,
    gather_particle,
    select_particle,
    tanh_log_abs_det,
    truncated_standard_normal,
    truncated_standard_normal_log_prob,
)
from s2ac_lit.networks import QEnsemble, _activation_and_slope

F64 = torch.float64
LOW, HIGH = [-2.0, 0.0], [2.0, 1.0]


def test_tanh_log_abs_det_matches_autograd_jacobian() -> None:
    actor = SVGDActor(3, LOW, HIGH, init="fixed").double()
    u = 4 * torch.randn(7, 2, dtype=F64)  # includes |u| > 5, where the naive form underflows
    jac = torch.func.vmap(torch.func.jacrev(actor.squash))(u)
    expected = torch.logdet(jac)
    torch.testing.assert_close(tanh_log_abs_det(u, actor.action_scale), expected)


def test_fixed_init_zero_steps_log_prob_is_the_squashed_gaussian() -> None:
    """With L = 0 the policy is the squashed N(0, σ₀²I): compare with torch.distributions."""
    actor = SVGDActor(3, LOW, HIGH, init="fixed", num_particles=64, steps=0, init_std=0.5)
    actor.double()
    obs = torch.randn(5, 3, dtype=F64)
    critic = QEnsemble(3, 2, hidden_sizes=(8,)).double()
    sample = actor.sample(obs, critic, 1.0)
    base = D.Independent(D.Normal(torch.zeros(2, dtype=F64), 0.5), 1)
    loc, scale = actor.action_loc, actor.action_scale
    squashed = D.TransformedDistribution(
        base, [D.TanhTransform(), D.AffineTransform(loc, scale, event_dim=1)]
    )
    torch.testing.assert_close(
        sample.log_prob,
        base.log_prob(sample.particles)
        - torch.logdet(torch.diag_embed(scale * (1 - torch.tanh(sample.particles) ** 2))),
    )
    inside = (sample.particles.abs() < 8).all(-1)  # TanhTransform's inverse loses precision
    torch.testing.assert_close(
        sample.log_prob[inside], squashed.log_prob(sample.action)[inside], rtol=1e-6, atol=1e-6
    )
    assert torch.all(sample.action >= torch.tensor(LOW, dtype=F64))
    assert torch.all(sample.action <= torch.tensor(HIGH, dtype=F64))


def test_truncated_normal_samples_and_density() -> None:
    t = 1.5
    xi = truncated_standard_normal((200_000, 1), t, generator=torch.Generator().manual_seed(0))
    assert xi.abs().max() <= t
    # Analytic moments of the standard normal truncated to [-t, t].
    mass = math.erf(t / math.sqrt(2))
    pdf_t = math.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    variance = 1 - 2 * t * pdf_t / mass
    # Standard error of the sample variance ≈ sqrt(2/n)·var; 5 SE below.
    assert xi.var().item() == pytest.approx(variance, abs=5 * math.sqrt(2 / 200_000) * variance)
    grid = torch.linspace(-t, t, 20001, dtype=F64).unsqueeze(-1)
    density = truncated_standard_normal_log_prob(grid, t).exp()
    assert torch.trapezoid(density, grid.squeeze(-1)).item() == pytest.approx(1.0, abs=1e-6)


def test_learned_init_zero_steps_log_prob() -> None:
    """L = 0: log q⁰ is the N(μθ, σθ²) density renormalised on μ ± tσ, per dimension."""
    actor = SVGDActor(
        3, LOW, HIGH, init="learned", num_particles=32, steps=0, hidden_sizes=(16,), truncation=2.0
    ).double()
    obs = torch.randn(4, 3, dtype=F64)
    u0, log_q0, (box_low, box_high) = actor.initial_particles(obs)
    mean = (box_low + box_high) / 2
    std = (box_high - box_low) / (2 * 2.0)
    assert torch.all(std >= actor.std_min) and torch.all(std <= actor.std_max)
    assert torch.all(u0 >= box_low - 1e-12) and torch.all(u0 <= box_high + 1e-12)
    expected = D.Normal(mean, std).log_prob(u0).sum(-1) - 2 * math.log(math.erf(2 / math.sqrt(2)))
    torch.testing.assert_close(log_q0, expected)


def test_bound_all_keeps_every_iterate_in_the_box() -> None:
    actor = SVGDActor(
        3,
        LOW,
        HIGH,
        init="learned",
        num_particles=16,
        steps=5,
        step_size=2.0,
        max_step_norm=None,  # large fixed steps, so that unbounded iterates leave the box
        bound="all",
        hidden_sizes=(16,),
    )
    obs = torch.randn(6, 3)
    critic = QEnsemble(3, 2, hidden_sizes=(16,))
    _, _, (box_low, box_high) = actor.initial_particles(obs)
    torch.manual_seed(1)
    sample = actor.sample(obs, critic, 0.01)
    torch.manual_seed(1)
    actor.bound = "init"  # the same actor and draws, with only u⁰ in the box
    free = actor.sample(obs, critic, 0.01)
    assert torch.all(sample.particles >= box_low - 1e-6)
    assert torch.all(sample.particles <= box_high + 1e-6)
    assert torch.any(free.particles < box_low) or torch.any(free.particles > box_high)


def test_particles_move_towards_high_q() -> None:
    """A linear critic Q = 5·a₀: SVGD pushes particles to larger a₀ than the initial ones."""
    critic = QEnsemble(1, 2, hidden_sizes=())
    with torch.no_grad():
        critic.layers[0].weight.zero_()
        critic.layers[0].bias.zero_()
        critic.layers[0].weight[:, 1, 0] = 5.0
    actor = SVGDActor(1, [-1.0, -1.0], [1.0, 1.0], init="fixed", num_particles=32, steps=10)
    obs = torch.zeros(8, 1)
    torch.manual_seed(3)
    moved = actor.sample(obs, critic, 1.0)
    torch.manual_seed(3)
    actor.sampler_options["steps"] = 0
    still = actor.sample(obs, critic, 1.0)
    assert moved.action[..., 0].mean() > still.action[..., 0].mean() + 0.1
    assert moved.action[..., 1].mean().abs() < 0.15  # no force along a₁


def test_select_particle_modes() -> None:
    values = torch.tensor([[0.0, 2.0, 1.0], [5.0, -1.0, 4.0]])
    assert select_particle(values, "max").tolist() == [1, 0]
    g = torch.Generator().manual_seed(0)
    n = 20_000
    idx = select_particle(values[:1].expand(n, 3), "softmax", generator=g)
    freq = torch.bincount(idx, minlength=3).double() / n
    expected = torch.softmax(values[0].double(), 0)
    # Binomial standard error per frequency, 5 SE tolerance.
    assert torch.all((freq - expected).abs() < 5 * (expected * (1 - expected) / n).sqrt())
    idx = select_particle(values[:1].expand(n, 3), "random", generator=g)
    freq = torch.bincount(idx, minlength=3).double() / n
    assert torch.all((freq - 1 / 3).abs() < 5 * math.sqrt(2 / 9 / n))


def test_gather_particle() -> None:
    action = torch.arange(24.0).reshape(2, 4, 3)
    out = gather_particle(action, torch.tensor([2, 0]))
    assert out.tolist() == [action[0, 2].tolist(), action[1, 0].tolist()]


def test_bad_actor_options() -> None:
    with pytest.raises(ValueError, match="unknown init 'gaussian'"):
        SVGDActor(3, LOW, HIGH, init="gaussian")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown bound 'some'"):
        SVGDActor(3, LOW, HIGH, bound="some")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="high > low"):
        SVGDActor(3, [1.0], [0.0])


@pytest.mark.parametrize("squash_correction", [False, True])
def test_closed_form_energy_score_matches_autograd(squash_correction: bool) -> None:
    actor = SVGDActor(
        3, LOW, HIGH, init="fixed", num_particles=8, squash_correction=squash_correction
    ).double()
    critic = QEnsemble(3, 2, hidden_sizes=(16, 16)).double()
    obs = torch.randn(5, 3, dtype=F64)
    energy = actor.energy(obs, critic, 0.7)
    u = 1.5 * torch.randn(5, 8, 2, dtype=F64, requires_grad=True)
    (expected,) = torch.autograd.grad(energy(u).sum(), u)
    torch.testing.assert_close(energy.score_fn(u.detach()), expected, rtol=1e-10, atol=1e-12)


def test_closed_form_score_gives_the_same_sample_and_gradients() -> None:
    """Sampling (and differentiating through it) with the explicit ∇ₐQ equals autograd's."""
    actor = SVGDActor(3, LOW, HIGH, init="learned", num_particles=6, steps=3, hidden_sizes=(16,))
    actor.double()
    critic = QEnsemble(3, 2, hidden_sizes=(16, 16)).double()
    obs = torch.randn(4, 3, dtype=F64)
    results = []
    for as_plain_callable in (False, True):
        # A lambda hides value_and_action_grad, so the sampler falls back to autograd.
        q = (lambda o, a: critic(o, a)) if as_plain_callable else critic
        torch.manual_seed(0)
        sample = actor.sample(obs, q, 0.5, differentiable=True)
        weight = actor.init_net[0].weight
        (grad,) = torch.autograd.grad(sample.log_prob.sum() + sample.action.sum(), weight)
        results.append((sample.action.detach(), sample.log_prob.detach(), grad))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_compiled_critic_kernels_match_eager() -> None:
    """torch.compile on CPU: same values, ∇ₐQ and parameter gradients as eager."""
    critic = QEnsemble(3, 2, hidden_sizes=(8, 8))
    obs, act = torch.randn(4, 1, 3), torch.rand(4, 5, 2)
    eager = critic.value_and_action_grad(obs, act)
    eager_grad = torch.autograd.grad(
        eager[1].sum() + critic(obs, act).sum(), critic.layers[1].weight
    )
    critic.compile_kernels()
    compiled = critic.value_and_action_grad(obs, act)
    compiled_grad = torch.autograd.grad(
        compiled[1].sum() + critic(obs, act).sum(), critic.layers[1].weight
    )
    for a, b in zip((*eager, *eager_grad), (*compiled, *compiled_grad), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_elu_with_slope_matches_autograd_reference() -> None:
    """ELU and its slope in one op: values, first and second derivatives as autograd's.

    Reference: ``F.elu`` and its slope min(h, 0) + 1 differentiated by autograd. Second
    derivatives matter: the actor loss differentiates through ∇ₐQ, and a Hutchinson self term
    differentiates it once more.
    """
    z = (3 * torch.randn(2, 5, 7, dtype=F64)).requires_grad_(True)
    weights = torch.randn(2, *z.shape, dtype=F64)
    h, slope = _activation_and_slope("elu", z)
    ref_h = torch.nn.functional.elu(z)
    ref_slope = ref_h.clamp(max=0.0) + 1.0
    torch.testing.assert_close(h, ref_h, rtol=0, atol=1e-15)
    torch.testing.assert_close(slope, ref_slope, rtol=0, atol=1e-15)
    grads = []
    for value, value_slope in ((h, slope), (ref_h, ref_slope)):
        out = (value * weights[0]).sum() + (value_slope * weights[1]).sum()
        (grad,) = torch.autograd.grad(out, z, create_graph=True)
        (second,) = torch.autograd.grad(grad.pow(2).sum(), z)
        grads.append((grad.detach(), second))
    for ours, ref in zip(*grads, strict=True):
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)
