"""The SVGD sampler against ground truth: autograd Jacobians, analytic entropies, gradcheck.

The reference step below is written independently of ``s2ac_lit.svgd`` (explicit double loop
over particles), so the Jacobian tests check the update formula and the closed-form trace at
once. Everything that compares formulas runs in float64 with tolerances near round-off.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

from s2ac_lit.kernels import bandwidth, pairwise_sq_dists
from s2ac_lit.svgd import SVGDOptions, finite_difference_hvp, svgd_run, svgd_sample

F64 = torch.float64


def make_target(d: int, seed: int = 0):
    """A smooth, anisotropic, non-quadratic log-density with a non-constant Hessian."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=F64)
    prec = a @ a.T / d + torch.eye(d, dtype=F64)
    w = torch.randn(3, d, generator=g, dtype=F64)

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        quad = -0.5 * ((x @ prec.to(x)) * x).sum(-1)
        return quad + torch.sin(x @ w.to(x).T).sum(-1)

    return log_prob


def reference_step(log_prob, x: torch.Tensor, sigma2: float, eps: float) -> torch.Tensor:
    """x + ε φ(x) for one group, by the textbook double sum (paper Eq. 3)."""
    m = x.shape[0]
    (score,) = torch.autograd.grad(log_prob(x).sum(), x, create_graph=True)
    rows = []
    for i in range(m):
        phi_i = torch.zeros_like(x[i])
        for j in range(m):
            k = torch.exp(-((x[j] - x[i]) ** 2).sum() / (2 * sigma2))
            phi_i = phi_i + k * score[j] + k * (x[i] - x[j]) / sigma2
        rows.append(x[i] + eps * phi_i / m)
    return torch.stack(rows)


def diagonal_blocks(log_prob, x: torch.Tensor, sigma2: float, eps: float) -> torch.Tensor:
    """∂x_i'/∂x_i of the joint step map, from the full autograd Jacobian. ``[M, D, D]``."""
    jac = torch.autograd.functional.jacobian(
        lambda y: reference_step(log_prob, y, sigma2, eps), x.clone().requires_grad_(True)
    )
    m = x.shape[0]
    return torch.stack([jac[i, :, i, :] for i in range(m)])


def laplacian(log_prob, x: torch.Tensor) -> torch.Tensor:
    hess = torch.func.vmap(torch.func.hessian(lambda p: log_prob(p)))(x)
    return hess.diagonal(dim1=-2, dim2=-1).sum(-1)


def gaussian_log_q0(x: torch.Tensor, var: float) -> torch.Tensor:
    d = x.shape[-1]
    return -0.5 * x.pow(2).sum(-1) / var - 0.5 * d * math.log(2 * math.pi * var)


@pytest.mark.parametrize(("m", "d"), [(2, 1), (5, 2), (7, 4)])
@pytest.mark.parametrize("bw", ["median", "mean_half", 0.7])
def test_closed_form_is_autograd_trace_minus_self_term(m: int, d: int, bw) -> None:
    log_prob = make_target(d)
    x = torch.randn(m, d, dtype=F64)
    eps = 0.05
    sigma2 = bandwidth(pairwise_sq_dists(x), bw).item()
    blocks = diagonal_blocks(log_prob, x, sigma2, eps)
    eye = torch.eye(d, dtype=F64)
    autograd_trace = (blocks - eye).diagonal(dim1=-2, dim2=-1).sum(-1) / eps
    log_q0 = torch.zeros(m, dtype=F64)

    _, log_q = svgd_sample(log_prob, x, log_q0, SVGDOptions(steps=1, step_size=eps, bandwidth=bw))
    closed_form_trace = -log_q / eps
    self_term = laplacian(log_prob, x) / m
    torch.testing.assert_close(closed_form_trace, autograd_trace - self_term, rtol=1e-9, atol=1e-9)

    _, log_q_self = svgd_sample(
        log_prob, x, log_q0, SVGDOptions(steps=1, step_size=eps, bandwidth=bw, self_term="exact")
    )
    torch.testing.assert_close(-log_q_self / eps, autograd_trace, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("m", "d"), [(3, 1), (6, 3)])
def test_exact_logdet_equals_logdet_of_autograd_jacobian(m: int, d: int) -> None:
    log_prob = make_target(d, seed=1)
    x = torch.randn(m, d, dtype=F64)
    eps = 0.3  # large enough that the log-det differs visibly from ε·trace
    sigma2 = bandwidth(pairwise_sq_dists(x), "median").item()
    blocks = diagonal_blocks(log_prob, x, sigma2, eps)
    expected = torch.logdet(blocks)
    log_q0 = torch.zeros(m, dtype=F64)
    _, log_q = svgd_sample(
        log_prob, x, log_q0, SVGDOptions(steps=1, step_size=eps, bandwidth="median"), logdet="exact"
    )
    torch.testing.assert_close(-log_q, expected, rtol=1e-9, atol=1e-9)
    _, log_q_first_order = svgd_sample(
        log_prob,
        x,
        log_q0,
        SVGDOptions(steps=1, step_size=eps, bandwidth="median", self_term="exact"),
    )
    assert (log_q - log_q_first_order).abs().max() > 1e-4  # the two modes really differ


def test_particles_follow_reference_update_over_several_steps() -> None:
    log_prob = make_target(3, seed=2)
    x = torch.randn(6, 3, dtype=F64)
    expected = x.clone()
    for _ in range(4):
        sigma2 = bandwidth(pairwise_sq_dists(expected), "mean_half").item()
        expected = reference_step(log_prob, expected.requires_grad_(True), sigma2, 0.1).detach()
    out, _ = svgd_sample(
        log_prob, x, torch.zeros(6, dtype=F64), SVGDOptions(steps=4, step_size=0.1)
    )
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_repulsion_lowers_log_density() -> None:
    """Flat target: particles only repel, spread out, and their density must fall.

    A concentrated cloud (spread 0.1 against σ² = 1) has |x_i - x_j|² ≪ Dσ², so every term of
    the closed form is negative: each particle's log q must drop, by about ε·D·(M-1)/(Mσ²)
    = 0.19 per step here. A sign error flips this by 0.38 per step, far beyond round-off.
    """
    x = 0.1 * torch.randn(10, 2, dtype=F64)
    log_q0 = torch.zeros(10, dtype=F64)
    options = SVGDOptions(steps=1, step_size=0.1, bandwidth=1.0)
    out, log_q = svgd_sample(lambda y: torch.zeros(y.shape[:-1], dtype=F64), x, log_q0, options)
    assert pairwise_sq_dists(out).sum() > pairwise_sq_dists(x).sum()
    assert torch.all(log_q < -0.15)
    _, log_q_exact = svgd_sample(
        lambda y: torch.zeros(y.shape[:-1], dtype=F64), x, log_q0, options, logdet="exact"
    )
    torch.testing.assert_close(log_q, log_q_exact, rtol=0.0, atol=2e-2)


# The paper's toy target (docs/algorithm.md §Entropy evaluation).
MU = torch.tensor([-0.6871, 0.8010], dtype=F64)
SIGMA = 5 * torch.tensor([[0.2260, 0.1652], [0.1652, 0.6779]], dtype=F64)
TRUE_ENTROPY = 0.5 * 2 * (1 + math.log(2 * math.pi)) + 0.5 * torch.logdet(SIGMA).item()


def paper_target(x: torch.Tensor) -> torch.Tensor:
    diff = x - MU
    return -0.5 * ((diff @ torch.linalg.inv(SIGMA)) * diff).sum(-1)


def entropy_estimate(bw, seeds: int, m: int = 200, steps: int = 200) -> float:
    """Mean over seeds of -mean_i log q_L(x_i), seeds run as independent groups in one call."""
    g = torch.Generator().manual_seed(1234)
    x0 = math.sqrt(6.0) * torch.randn(seeds, m, 2, generator=g, dtype=F64)
    _, log_q = svgd_sample(
        paper_target,
        x0,
        gaussian_log_q0(x0, 6.0),
        SVGDOptions(steps=steps, step_size=0.5, bandwidth=bw),
    )
    return -log_q.mean().item()


def test_entropy_of_paper_gaussian_within_three_percent() -> None:
    """Measured over 5 seeds: relative error -1.5%, seed-to-seed std 0.5%. With 3 seeds the
    standard error is ≈0.3%, so the 3% band leaves > 4 standard errors of margin."""
    assert TRUE_ENTROPY == pytest.approx(3.4112, abs=1e-4)
    estimate = entropy_estimate(5.0, seeds=3)
    assert abs(estimate - TRUE_ENTROPY) / TRUE_ENTROPY < 0.03


def test_bandwidth_bias_direction() -> None:
    """Too small a kernel variance underestimates the entropy, too large overestimates it.

    Measured (5 seeds): σ²=1 gives -17% (std 2%), σ²=100 gives +3.5% (std 0.3%); the bounds
    below sit several standard deviations inside those effects.
    """
    small = entropy_estimate(1.0, seeds=2)
    large = entropy_estimate(100.0, seeds=2)
    assert small < 0.92 * TRUE_ENTROPY
    assert large > 1.015 * TRUE_ENTROPY


def test_groups_are_independent() -> None:
    log_prob = make_target(2, seed=3)
    x = torch.randn(2, 8, 2, dtype=F64)
    x[1] += 3.0  # different spread and location: a shared bandwidth would show
    log_q0 = gaussian_log_q0(x, 1.0)
    both = svgd_sample(log_prob, x, log_q0, SVGDOptions(steps=5, step_size=0.1, bandwidth="median"))
    for k in range(2):
        alone = svgd_sample(
            log_prob, x[k], log_q0[k], SVGDOptions(steps=5, step_size=0.1, bandwidth="median")
        )
        torch.testing.assert_close(both[0][k], alone[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(both[1][k], alone[1], rtol=1e-12, atol=1e-12)


def test_gradients_reach_initial_and_target_parameters() -> None:
    """gradcheck through 3 steps: x0 = μ + σ·ξ, and a target with its own parameter.

    A fixed bandwidth keeps the map smooth for finite differences (adaptive ones are detached
    by design, which finite differences would not see).
    """
    xi = torch.randn(2, 5, 2, dtype=F64)

    def run(mu: torch.Tensor, log_sigma: torch.Tensor, scale: torch.Tensor):
        x0 = mu + log_sigma.exp() * xi
        log_q0 = gaussian_log_q0(xi, 1.0) - log_sigma.sum(-1)
        return svgd_sample(
            lambda y: -scale * (y - 0.3).pow(2).sum(-1) + torch.sin(y).sum(-1),
            x0,
            log_q0,
            SVGDOptions(steps=3, step_size=0.2, bandwidth=0.8),
            differentiable=True,
        )

    params = (
        torch.randn(2, 1, 2, dtype=F64, requires_grad=True),
        (0.3 * torch.randn(2, 1, 2, dtype=F64)).requires_grad_(True),
        torch.tensor(0.7, dtype=F64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(run, params)
    assert torch.autograd.gradgradcheck(run, params)


def test_non_differentiable_mode_is_detached_and_works_under_no_grad() -> None:
    mu = torch.zeros(4, 1, 3, requires_grad=True)
    x0 = mu + torch.randn(4, 6, 3)
    with torch.no_grad():
        x, log_q = svgd_sample(
            lambda y: -y.pow(2).sum(-1), x0, torch.zeros(4, 6), SVGDOptions(steps=2, step_size=0.1)
        )
    assert not x.requires_grad and not log_q.requires_grad
    assert torch.isfinite(log_q).all()


def test_entropy_norm_m_minus_1_rescales_the_change() -> None:
    log_prob = make_target(2)
    x = torch.randn(5, 2, dtype=F64)
    log_q0 = torch.zeros(5, dtype=F64)
    _, by_m = svgd_sample(log_prob, x, log_q0, SVGDOptions(steps=1, step_size=0.1))
    _, by_m1 = svgd_sample(
        log_prob, x, log_q0, SVGDOptions(steps=1, step_size=0.1, entropy_norm="m-1")
    )
    torch.testing.assert_close(by_m1, by_m * 5 / 4, rtol=1e-12, atol=1e-12)


def test_hutchinson_self_term_is_unbiased() -> None:
    """Average of many single-probe estimates → exact Laplacian; tolerance from their spread."""
    log_prob = make_target(3)
    x = torch.randn(4, 3, dtype=F64)
    reps = 4000
    xs = x.expand(reps, 4, 3)
    log_q0 = torch.zeros(reps, 4, dtype=F64)
    g = torch.Generator().manual_seed(0)
    _, exact = svgd_sample(
        log_prob, x, log_q0[0], SVGDOptions(steps=1, step_size=0.1, self_term="exact")
    )
    _, probe = svgd_sample(
        log_prob,
        xs,
        log_q0,
        SVGDOptions(steps=1, step_size=0.1, self_term="hutchinson"),
        generator=g,
    )
    standard_error = probe.std(0) / math.sqrt(reps)
    assert torch.all((probe.mean(0) - exact).abs() < 4 * standard_error + 1e-12)
    assert probe.std(0).max() > 1e-3  # the probes really vary


def test_bounds_clamp_every_iterate() -> None:
    x = torch.randn(3, 8, 2)
    out, _ = svgd_sample(
        lambda y: -0.01 * (y - 10.0).pow(2).sum(-1),
        x,
        torch.zeros(3, 8),
        SVGDOptions(steps=5, step_size=1.0),
        box=(-0.5, 0.5),
    )
    assert out.max() <= 0.5 and out.min() >= -0.5


def test_diagnostics_bound_the_step_jacobian() -> None:
    """The reported bound must dominate the true norm of ε(∂φ_i/∂x_i - self term)."""
    log_prob = make_target(2, seed=4)
    x = torch.randn(6, 2, dtype=F64)
    eps = 0.2
    run = svgd_run(
        log_prob,
        x,
        torch.zeros(6, dtype=F64),
        SVGDOptions(steps=1, step_size=eps, bandwidth=0.5),
        diagnostics=True,
    )
    blocks = diagonal_blocks(log_prob, x, 0.5, eps)
    hess = torch.func.vmap(torch.func.hessian(log_prob))(x)
    j_without_self = blocks - torch.eye(2, dtype=F64) - eps * hess / 6
    true_norm = torch.linalg.matrix_norm(j_without_self, ord=2).max()
    assert run.step_norm_bound.shape == (1,)
    assert true_norm <= run.step_norm_bound[0] + 1e-12
    assert run.sigma2.shape == (1,) and run.sigma2[0].item() == 0.5


def test_bad_inputs_name_the_problem() -> None:
    x = torch.randn(4, 3)
    with pytest.raises(RuntimeError, match=r"log_q0 must have shape \(4,\)"):
        svgd_sample(lambda y: y.sum(-1), x, torch.zeros(3), SVGDOptions(steps=1, step_size=0.1))
    with pytest.raises(RuntimeError, match=r"log_prob must map particles \(4, 3\) to \(4,\)"):
        svgd_sample(lambda y: y, x, torch.zeros(4), SVGDOptions(steps=1, step_size=0.1))
    with pytest.raises(ValueError, match="entropy_norm='n' is not allowed"):
        SVGDOptions(entropy_norm="n")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="validation mode"):
        svgd_sample(
            lambda y: y.sum(-1),
            x,
            torch.zeros(4),
            SVGDOptions(steps=1, step_size=0.1),
            logdet="exact",
            differentiable=True,
        )


def test_step_cap_shrinks_only_the_groups_whose_step_may_not_be_invertible() -> None:
    """With max_step_norm, a group whose bound exceeds the cap takes exactly the step of the
    fixed-ε sampler at ε·cap/bound (same particles, same log-density), a group below the cap
    is untouched, and the bound at the step actually taken is at most the cap."""
    torch.manual_seed(3)
    log_prob = make_target(2, seed=5)
    tight = 0.02 * torch.randn(1, 6, 2, dtype=F64)  # tiny σ²: repulsion bound ≫ 1
    wide = 2.0 * torch.randn(1, 6, 2, dtype=F64)
    x0 = torch.cat([tight, wide])
    log_q0 = torch.zeros(2, 6, dtype=F64)
    eps, cap = 0.1, 1.0
    fixed = svgd_run(log_prob, x0, log_q0, SVGDOptions(steps=1, step_size=eps), diagnostics=True)
    bound = fixed.step_norm_bound[:, 0]
    assert bound[0] > 10 * cap and bound[1] < cap
    capped = svgd_run(log_prob, x0, log_q0, SVGDOptions(steps=1, step_size=eps, max_step_norm=cap))
    torch.testing.assert_close(capped.particles[1], fixed.particles[1])
    torch.testing.assert_close(capped.log_q[1], fixed.log_q[1])
    eps_tight = eps * cap / bound[0].item()
    reference = svgd_run(
        log_prob, tight, log_q0[:1], SVGDOptions(steps=1, step_size=eps_tight), diagnostics=True
    )
    torch.testing.assert_close(capped.particles[:1], reference.particles)
    torch.testing.assert_close(capped.log_q[:1], reference.log_q)
    assert reference.step_norm_bound[0, 0] <= cap * (1 + 1e-9)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"steps": -1}, r"steps=-1 must be >= 0"),
        ({"step_size": 0.0}, r"step_size=0.0 must be > 0"),
        ({"bandwidth": "medain"}, r"bandwidth='medain' is not allowed; allowed: \('median'"),
        ({"bandwidth": -1.0}, r"bandwidth=-1.0 must be > 0"),
        ({"self_term": "hessian"}, r"self_term='hessian' is not allowed"),
        ({"max_step_norm": 0.0}, r"max_step_norm=0.0 must be > 0"),
    ],
)
def test_options_name_the_bad_value(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SVGDOptions(**bad)


def test_step_cap_refuses_the_exact_log_det_mode() -> None:
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match="max_step_norm"):
        svgd_run(
            lambda y: -y.pow(2).sum(-1),
            x,
            torch.zeros(4),
            SVGDOptions(steps=1, step_size=0.1, max_step_norm=1.0),
            logdet="exact",
        )


# ------------------------------------------------ the self term in the bound, the cap, compile
def hessian_of(log_prob, x: torch.Tensor) -> torch.Tensor:
    """∇²f per particle by torch.func. ``[M, D]`` → ``[M, D, D]``."""
    return torch.func.vmap(torch.func.hessian(log_prob))(x)


def test_exact_self_term_bound_adds_the_hessian_frobenius_norm_and_dominates_the_jacobian() -> None:
    """With the exact self term the bound is the j ≠ i bound plus ε‖∇²f(x_i)‖_F/M (per
    particle, then the max), and it dominates the true ‖ε ∂φ_i/∂x_i‖₂, self term included."""
    log_prob = make_target(3, seed=6)
    x = torch.randn(5, 3, dtype=F64)
    eps, s2 = 0.3, 0.8
    log_q0 = torch.zeros(5, dtype=F64)
    runs = {
        term: svgd_run(
            log_prob,
            x,
            log_q0,
            SVGDOptions(steps=1, step_size=eps, bandwidth=s2, self_term=term),
            diagnostics=True,
        )
        for term in ("none", "exact")
    }
    hess = hessian_of(log_prob, x)
    blocks = diagonal_blocks(log_prob, x, s2, eps) - torch.eye(3, dtype=F64)  # ε ∂φ_i/∂x_i
    true_norm = torch.linalg.matrix_norm(blocks, ord=2).max()
    bound_none = runs["none"].step_norm_bound[0]
    bound_exact = runs["exact"].step_norm_bound[0]
    assert true_norm <= bound_exact + 1e-12
    frob = torch.linalg.matrix_norm(hess).max()  # the largest self contribution
    assert bound_exact <= bound_none + eps * frob / 5 + 1e-12
    assert bound_exact > bound_none


def test_self_term_bound_on_a_quadratic_shifts_by_the_frobenius_norm() -> None:
    """f = -½xᵀPx has the same Hessian everywhere: exact adds ε‖P‖_F/M to every particle's
    bound, so to the max; Hutchinson adds ε‖Pv_i‖/M, between ε min and ε max over ±1 probes."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(4, 4, generator=g, dtype=F64)
    prec = a @ a.T + torch.eye(4, dtype=F64)

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return -0.5 * ((x @ prec) * x).sum(-1)

    x = torch.randn(3, 6, 4, generator=g, dtype=F64)
    log_q0 = torch.zeros(3, 6, dtype=F64)
    eps, m = 0.05, 6
    bounds = {
        term: svgd_run(
            log_prob,
            x,
            log_q0,
            SVGDOptions(steps=1, step_size=eps, self_term=term),
            diagnostics=True,
            generator=torch.Generator().manual_seed(0),
        ).step_norm_bound[:, 0]
        for term in ("none", "exact", "hutchinson")
    }
    torch.testing.assert_close(
        bounds["exact"] - bounds["none"],
        torch.full((3,), eps * torch.linalg.matrix_norm(prec).item() / m, dtype=F64),
    )
    signs = torch.tensor(
        [[(i >> k & 1) * 2 - 1 for k in range(4)] for i in range(16)], dtype=F64
    )  # every ±1 probe
    probe_norms = (signs @ prec).norm(dim=-1)
    extra = bounds["hutchinson"] - bounds["none"]
    assert torch.all(extra >= eps * probe_norms.min() / m - 1e-12)
    assert torch.all(extra <= eps * probe_norms.max() / m + 1e-12)


def test_step_cap_counts_the_self_term_when_it_is_on() -> None:
    """A steep quadratic whose j ≠ i bound is under the cap: without the self term the step is
    the fixed one; with it, ε shrinks to cap/bound (bound with ε‖P‖_F/M) and the bound at the
    step taken equals the cap."""
    prec = 60.0 * torch.eye(2, dtype=F64)

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return -0.5 * ((x @ prec) * x).sum(-1)

    x0 = 0.05 * torch.randn(1, 5, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    log_q0 = torch.zeros(1, 5, dtype=F64)
    eps, cap, s2 = 0.1, 0.5, 1.0  # a fixed σ²: the j ≠ i terms stay small
    fixed = {
        term: svgd_run(
            log_prob,
            x0,
            log_q0,
            SVGDOptions(steps=1, step_size=eps, bandwidth=s2, self_term=term),
            diagnostics=True,
        )
        for term in ("none", "exact")
    }
    assert fixed["none"].step_norm_bound[0, 0] < cap < fixed["exact"].step_norm_bound[0, 0]
    plain = svgd_run(
        log_prob, x0, log_q0, SVGDOptions(steps=1, step_size=eps, bandwidth=s2, max_step_norm=cap)
    )
    torch.testing.assert_close(plain.particles, fixed["none"].particles)
    capped = svgd_run(
        log_prob,
        x0,
        log_q0,
        SVGDOptions(steps=1, step_size=eps, bandwidth=s2, self_term="exact", max_step_norm=cap),
    )
    eps_capped = eps * cap / fixed["exact"].step_norm_bound[0, 0].item()
    reference = svgd_run(
        log_prob,
        x0,
        log_q0,
        SVGDOptions(steps=1, step_size=eps_capped, bandwidth=s2, self_term="exact"),
        diagnostics=True,
    )
    torch.testing.assert_close(capped.particles, reference.particles)
    torch.testing.assert_close(capped.log_q, reference.log_q)
    assert reference.step_norm_bound[0, 0].item() == pytest.approx(cap, rel=1e-9)


def score_of(log_prob):
    """∇f by autograd, as a closed-form ``score_fn`` would give it (differentiable)."""

    def score(x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            xg = x if x.requires_grad else x.detach().requires_grad_(True)
            return torch.autograd.grad(log_prob(xg).sum(), xg, create_graph=True)[0]

    return score


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_finite_difference_probe_matches_the_autograd_probe(dtype: torch.dtype) -> None:
    """With ``score_hvp_fn=finite_difference_hvp`` the probe's ∇²f v is a forward difference
    of the score; with the same probes it must equal autograd's Hessian-vector product up to
    the difference's O(h) truncation and O(ε_mach/h) rounding, h = √ε_mach: measured 1e-8 of
    the self term in float64, 3e-4 in float32 (tolerances 100× and 30× that), the cap
    included."""
    log_prob = make_target(3, seed=8)
    x0 = torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(3), dtype=F64).to(dtype)
    log_q0 = torch.zeros(4, 6, dtype=dtype)
    cap = 0.2
    options = SVGDOptions(steps=3, step_size=0.1, self_term="hutchinson", max_step_norm=cap)
    runs = [
        svgd_run(
            log_prob,
            x0,
            log_q0,
            options,
            score_hvp_fn=score_hvp_fn,
            generator=torch.Generator().manual_seed(5),
            diagnostics=True,
        )
        for score_hvp_fn in (None, functools.partial(finite_difference_hvp, score_of(log_prob)))
    ]
    assert (runs[0].step_norm_bound > cap).any()  # the probe's norm reaches the cap
    none = svgd_run(log_prob, x0, log_q0, SVGDOptions(steps=3, step_size=0.1))
    self_part = (runs[0].log_q - none.log_q).abs().max().item()
    tol = (1e-6 if dtype == torch.float64 else 1e-2) * max(1.0, self_part)
    torch.testing.assert_close(runs[1].log_q, runs[0].log_q, rtol=0, atol=tol)
    torch.testing.assert_close(runs[1].particles, runs[0].particles, rtol=0, atol=tol)
    torch.testing.assert_close(runs[1].step_norm_bound, runs[0].step_norm_bound, rtol=tol, atol=tol)


def test_finite_difference_probe_differentiates_like_the_autograd_probe() -> None:
    """Gradients through the finite-difference probe (first order through the score) equal
    those through autograd's Hessian-vector product (second order), to the difference's
    accuracy."""
    log_prob = make_target(2, seed=9)
    xi = torch.randn(3, 5, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    grads = []
    for score_hvp_fn in (None, functools.partial(finite_difference_hvp, score_of(log_prob))):
        shift = torch.tensor([0.3, -0.2], dtype=F64, requires_grad=True)
        x0 = xi + shift
        run = svgd_run(
            log_prob,
            x0,
            torch.zeros(3, 5, dtype=F64),
            SVGDOptions(steps=2, step_size=0.1, self_term="hutchinson"),
            differentiable=True,
            score_hvp_fn=score_hvp_fn,
            generator=torch.Generator().manual_seed(6),
        )
        (grad,) = torch.autograd.grad(run.log_q.sum() + run.particles.sum(), shift)
        grads.append(grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-6, atol=1e-8)
