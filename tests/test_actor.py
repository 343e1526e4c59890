"""The SVGD actor: squash, initial distributions, log π against torch.distributions, selection,
and the sampler diagnostics (checked against a direct computation on the same particles, same
generator seed)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from conftest import ROOT
from torch import distributions as D

from s2ac_lit.actor import (
    DEFAULT_SVGD,
    SVGDActor,
    gather_particle,
    sampler_diagnostics,
    select_particle,
    std_from_raw,
    tanh_log_abs_det,
    truncated_standard_normal,
    truncated_standard_normal_log_prob,
)
from s2ac_lit.config import load_config
from s2ac_lit.networks import QEnsemble
from s2ac_lit.svgd import SVGDOptions, finite_difference_hvp, svgd_run

F64 = torch.float64
LOW, HIGH = [-2.0, 0.0], [2.0, 1.0]


def make_actor(init: str, steps: int, **kwargs) -> SVGDActor:
    """An actor on the (LOW, HIGH) box with 3-D observations and the default sampler but L."""
    return SVGDActor(3, LOW, HIGH, init=init, svgd=replace(DEFAULT_SVGD, steps=steps), **kwargs)


def test_tanh_log_abs_det_matches_autograd_jacobian() -> None:
    actor = SVGDActor(3, LOW, HIGH, init="fixed").double()
    u = 4 * torch.randn(7, 2, dtype=F64)  # includes |u| > 5, where the naive form underflows
    jac = torch.func.vmap(torch.func.jacrev(actor.squash))(u)
    expected = torch.logdet(jac)
    torch.testing.assert_close(tanh_log_abs_det(u, actor.action_scale), expected)


def test_fixed_init_zero_steps_log_prob_is_the_squashed_gaussian() -> None:
    """With L = 0 the policy is the squashed N(0, σ₀²I): compare with torch.distributions."""
    actor = make_actor("fixed", 0, num_particles=64, init_std=0.5)
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
    actor = make_actor("learned", 0, num_particles=32, hidden_sizes=(16,), truncation=2.0).double()
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
        bound="all",
        hidden_sizes=(16,),
        # large fixed steps, so that unbounded iterates leave the box
        svgd=SVGDOptions(steps=5, step_size=2.0, max_step_norm=None),
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
    actor = SVGDActor(
        1,
        [-1.0, -1.0],
        [1.0, 1.0],
        init="fixed",
        num_particles=32,
        svgd=replace(DEFAULT_SVGD, steps=10),
    )
    obs = torch.zeros(8, 1)
    torch.manual_seed(3)
    moved = actor.sample(obs, critic, 1.0)
    torch.manual_seed(3)
    actor.svgd = replace(actor.svgd, steps=0)
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
    with pytest.raises(ValueError, match=r"unknown bound 'none'.*same computation as 'init'"):
        SVGDActor(3, LOW, HIGH, bound="none")  # type: ignore[arg-type]
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
    """Sampling (and differentiating through it) with the explicit ∇ₐQ equals autograd's. The
    default sampler's self term then takes its Hessian-vector product by a forward difference
    (1e-8 relative in float64) where autograd's is exact, hence rtol 1e-7."""
    actor = make_actor("learned", 3, num_particles=6, hidden_sizes=(16,))
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
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


# ------------------------------------------------- diagnostics that show a collapse coming
def test_sampler_diagnostics_match_a_direct_computation() -> None:
    actor = SVGDActor(
        3,
        [-2.0, -1.0],
        [2.0, 1.0],
        num_particles=6,
        hidden_sizes=(16,),
        svgd=replace(DEFAULT_SVGD, steps=3),
    )
    critic = QEnsemble(3, 2, hidden_sizes=(16,))
    obs = torch.randn(7, 3)
    sample = actor.sample(
        obs, critic, 0.5, diagnostics=True, generator=torch.Generator().manual_seed(1)
    )
    generator = torch.Generator().manual_seed(1)  # u⁰, then the self term's probes
    u0, log_q0, _ = actor.initial_particles(obs, generator=generator)
    mean, raw = actor.init_net(obs).unsqueeze(-2).chunk(2, -1)
    std = actor.std_min + (actor.std_max - actor.std_min) * torch.sigmoid(raw)
    energy = actor.energy(obs, critic, 0.5)
    run = svgd_run(
        energy,
        u0,
        log_q0,
        actor.svgd,
        score_fn=energy.score_fn,
        score_hvp_fn=energy.score_hvp_fn,
        diagnostics=True,
        generator=generator,
    )
    torch.testing.assert_close(sample.particles, run.particles)
    torch.testing.assert_close(
        sample.log_prob, run.log_q - tanh_log_abs_det(run.particles, actor.action_scale)
    )
    d = sample.diagnostics
    expected = {
        "svgd/sigma2_first": run.sigma2[..., 0].mean(),
        "svgd/sigma2_last": run.sigma2[..., -1].mean(),
        "svgd/step_norm_bound": run.step_norm_bound.max(),
        "svgd/spread_init": u0.std(-2).mean(),
        "svgd/spread_final": run.particles.std(-2).mean(),
        "actor/saturated": (run.particles.tanh().abs() > 0.99).float().mean(),
        "actor/std_mean": std.mean(),
        "actor/std_min": std.min(),
        "actor/mean_norm": mean.norm(dim=-1).mean(),
    }
    assert set(d) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(d[key], value.detach(), msg=key)
        assert not d[key].requires_grad


def test_saturation_counts_coordinates_beyond_the_threshold() -> None:
    actor = SVGDActor(
        1, [-1.0], [1.0], init="fixed", num_particles=4, svgd=replace(DEFAULT_SVGD, steps=0)
    )
    u = torch.tensor([[[0.0], [2.0], [2.7], [-3.0]]])  # tanh: 0, 0.964, 0.991, -0.995
    d = sampler_diagnostics(u, u, torch.zeros(1, 0), torch.zeros(1, 0))
    assert float(d["actor/saturated"]) == pytest.approx(0.5)
    assert "svgd/sigma2_first" not in d  # no SVGD step, no kernel
    assert actor.init_net is None


@pytest.mark.parametrize(("init", "steps"), [("learned", 2), ("fixed", 2), ("learned", 0)])
def test_diagnostic_keys_name_exactly_what_the_sampler_returns(init: str, steps: int) -> None:
    actor = SVGDActor(
        3,
        [-1.0],
        [1.0],
        init=init,
        num_particles=4,
        hidden_sizes=(8,),
        svgd=replace(DEFAULT_SVGD, steps=steps),
    )
    sample = actor.sample(
        torch.randn(5, 3), QEnsemble(3, 1, hidden_sizes=(8,)), 1.0, diagnostics=True
    )
    assert sorted(sample.diagnostics) == sorted(actor.diagnostic_keys())


# ------------------------------------------------------------- the authors' code, key by key
@pytest.mark.parametrize("squash_correction", [False, True])
def test_pre_squash_energy_evaluates_the_critic_at_u(squash_correction: bool) -> None:
    """``energy_at="pre_squash"``: f(u) = min_k Q_k(s, u)/T, and the closed-form score is
    ∇ᵤ of that (autograd of the critic at u itself), squash log-Jacobian added if asked."""
    actor = SVGDActor(
        3,
        LOW,
        HIGH,
        init="fixed",
        num_particles=8,
        energy_at="pre_squash",
        squash_correction=squash_correction,
    ).double()
    critic = QEnsemble(3, 2, hidden_sizes=(16, 16)).double()
    obs = torch.randn(5, 3, dtype=F64)
    u = 1.5 * torch.randn(5, 8, 2, dtype=F64, requires_grad=True)
    f = critic(obs.unsqueeze(-2), u).amin(0) / 0.7
    if squash_correction:
        f = f + tanh_log_abs_det(u, actor.action_scale)
    energy = actor.energy(obs, critic, 0.7)
    torch.testing.assert_close(energy(u), f)
    (expected,) = torch.autograd.grad(f.sum(), u)
    torch.testing.assert_close(energy.score_fn(u.detach()), expected, rtol=1e-10, atol=1e-12)
    at_action = SVGDActor(3, LOW, HIGH, init="fixed", num_particles=8).double()
    assert not torch.allclose(at_action.energy(obs, critic, 0.7)(u), f)


def test_clamp_std_map_is_the_clamp_of_exp_raw() -> None:
    actor = make_actor("learned", 0, hidden_sizes=(16,), std_map="clamp").double()
    obs = 3 * torch.randn(64, 3, dtype=F64)  # wide enough for raw outputs on both clamps
    with torch.no_grad():
        actor.init_net[-1].weight.mul_(20)
    _, raw = actor.init_net(obs).unsqueeze(-2).chunk(2, dim=-1)
    expected = raw.exp().clamp(actor.std_min, actor.std_max)
    _, _, (low, high) = actor.initial_particles(obs)
    std = (high - low) / (2 * actor.truncation)
    torch.testing.assert_close(std, expected)
    assert (expected == actor.std_min).any() and (expected == actor.std_max).any()
    assert ((expected > actor.std_min) & (expected < actor.std_max)).any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clamp_std_map_has_the_authors_values_and_gradients_and_no_overflow(dtype) -> None:
    """Against the uncut clamp(exp(r), σ_min, σ_max) on raw values across both clamps, their
    edges and far past them: the same values and gradients wherever the uncut gradient is
    finite; past log(float max) the uncut gradient is NaN (0·∞), the cut one 0."""
    std_min, std_max = 0.1, 1.0
    edges = [math.log(std_min), math.log(std_max), math.log(std_max) + 1.0]
    big = math.log(torch.finfo(dtype).max) + 1.0
    raw = torch.tensor([-1e4, -60.0, *edges, -1.0, 0.5, 1.5, 60.0, big, 1e4], dtype=dtype)
    grads = []
    for std in (
        lambda r: std_from_raw(r, std_min, std_max, "clamp"),
        lambda r: r.exp().clamp(std_min, std_max),  # the authors' formula
    ):
        r = raw.clone().requires_grad_()
        value = std(r)
        (grad,) = torch.autograd.grad(value.sum(), r)
        grads.append((value.detach(), grad))
    (ours, our_grad), (theirs, their_grad) = grads
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    finite = their_grad.isfinite()
    assert not finite[raw > big - 1.0].any()  # the overflow is real in this dtype
    assert finite[raw < 80.0].all()
    torch.testing.assert_close(our_grad[finite], their_grad[finite], rtol=0, atol=0)
    assert (our_grad[~finite] == 0).all()
    inside = (raw > edges[0]) & (raw < edges[1])
    torch.testing.assert_close(our_grad[inside], raw[inside].exp())


def test_smooth_std_map_is_the_scaled_sigmoid() -> None:
    actor = make_actor("learned", 0, hidden_sizes=(16,)).double()
    obs = torch.randn(16, 3, dtype=F64)
    _, raw = actor.init_net(obs).unsqueeze(-2).chunk(2, dim=-1)
    _, _, (low, high) = actor.initial_particles(obs)
    expected = actor.std_min + (actor.std_max - actor.std_min) * torch.sigmoid(raw)
    torch.testing.assert_close((high - low) / (2 * actor.truncation), expected)


def test_leaving_out_the_scale_log_det_shifts_log_pi_by_sum_log_scale() -> None:
    critic = QEnsemble(3, 2, hidden_sizes=(8,)).double()
    obs = torch.randn(4, 3, dtype=F64)
    samples = []
    for scale_log_det in (True, False):
        actor = make_actor("fixed", 2, num_particles=6, scale_log_det=scale_log_det).double()
        torch.manual_seed(0)
        samples.append(actor.sample(obs, critic, 0.5))
    with_scale, without = samples
    torch.testing.assert_close(with_scale.action, without.action, rtol=0, atol=0)
    shift = math.log(2.0) + math.log(0.5)  # Σ ln(scale) of the (LOW, HIGH) box: scales 2, 0.5
    torch.testing.assert_close(
        without.log_prob - with_scale.log_prob, torch.full_like(without.log_prob, shift)
    )


def test_authors_preset_sets_every_choice_of_their_code() -> None:
    cfg = load_config([ROOT / "conf" / "hopper.yaml", ROOT / "conf" / "algo" / "s2ac_authors.yaml"])
    assert cfg.env.id == "Hopper-v5" and cfg.algo == "s2ac"
    assert (cfg.actor.energy_at, cfg.actor.std_map, cfg.actor.scale_log_det) == (
        "pre_squash",
        "clamp",
        False,
    )
    assert cfg.optim.update_order == "critic_first"
    assert cfg.loss.temperature == 1.0
    s = cfg.svgd
    assert (s.entropy_norm, s.include_diagonal, s.max_step_norm, s.bandwidth) == (
        "m-1",
        True,
        None,
        "mean_half",
    )


# ------------------------------------------------ the self term's probe through the critic
class TwoBowls(torch.nn.Module):
    """Two analytic critics Q₁(a) = -|a|², Q₂(a) = -|a - c|² with c = (1, 0, ...): both have
    the Hessian -2I, and min(Q₁, Q₂) has a kink on the plane a₀ = ½ where they cross."""

    def forward(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.value_and_action_grad(observation, action)[0]

    def value_and_action_grad(self, observation, action):
        c = torch.zeros(action.shape[-1], dtype=action.dtype)
        c[0] = 1.0
        q = torch.stack([-action.pow(2).sum(-1), -(action - c).pow(2).sum(-1)])
        grad = torch.stack([-2.0 * action, -2.0 * (action - c)])
        shape = torch.broadcast_shapes(observation.shape[:-1], action.shape[:-1])
        return q.expand(2, *shape), grad.expand(2, *shape, action.shape[-1])


def test_score_and_hvp_matches_autograd_on_a_critic_ensemble() -> None:
    """∇²f v by the forward difference equals autograd's Hessian-vector product of the energy
    (float64; the difference's error is ~1e-8 relative)."""
    actor = SVGDActor(3, LOW, HIGH, init="fixed", num_particles=6).double()
    critic = QEnsemble(3, 2, hidden_sizes=(16, 16)).double()
    energy = actor.energy(torch.randn(4, 3, dtype=F64), critic, 0.5)
    u = torch.randn(4, 6, 2, dtype=F64)
    v = torch.randint(0, 2, u.shape).to(F64) * 2 - 1
    score, hv = energy.score_and_hvp(u, v)
    x = u.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(energy(x).sum(), x, create_graph=True)
    (expected,) = torch.autograd.grad((g * v).sum(), x)
    torch.testing.assert_close(score, g.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(hv, expected, rtol=1e-6, atol=1e-8)


def test_score_and_hvp_keeps_the_critic_chosen_at_the_particle() -> None:
    """On the kink of min(Q₁, Q₂) a difference of the minimal critic's scores would jump from
    one critic to the other (a spike of size |c|/h); the probe keeps the critic chosen at u and
    returns the curvature both critics share, -2v/T."""
    actor = SVGDActor(3, [-1.0] * 3, [1.0] * 3, init="fixed", energy_at="pre_squash").double()
    energy = actor.energy(torch.zeros(5, 3, dtype=F64), TwoBowls(), 0.5)
    u = torch.randn(5, 4, 3, dtype=F64)
    u[..., 0] = 0.5  # on the kink
    v = torch.randint(0, 2, u.shape).to(F64) * 2 - 1
    _, hv = energy.score_and_hvp(u, v)
    torch.testing.assert_close(hv, -2.0 * v / 0.5, rtol=1e-6, atol=1e-6)
    _, naive = finite_difference_hvp(energy.score, u, v)
    assert (naive - hv).abs().max() > 1e3  # what a difference of the minimum would give


def test_default_sampler_estimates_the_self_term_and_the_authors_preset_does_not() -> None:
    assert DEFAULT_SVGD.self_term == "hutchinson"
    assert load_config().svgd.self_term == "hutchinson"
    authors = load_config(
        [ROOT / "conf" / "hopper.yaml", ROOT / "conf" / "algo" / "s2ac_authors.yaml"]
    )
    assert authors.svgd.self_term == "none"
