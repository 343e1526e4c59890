"""Stein Variational Gradient Descent with a closed-form log-density.

See docs/algorithm.md §Sampler, paper §3.2.

Particles x_1..x_M of each independent group move towards p(x) ∝ exp(f(x)) by

    x_i ← x_i + ε φ(x_i),   φ(x_i) = (1/M) Σ_j [ k(x_j, x_i) ∇f(x_j) + k(x_j, x_i)(x_i - x_j)/σ² ],

and the change-of-variables formula tracks each particle's log-density,
log q_{l+1}(x_i') = log q_l(x_i) - log|det(I + ε ∂φ(x_i)/∂x_i)|. For small ε the log-det is
≈ ε·Tr ∂φ(x_i)/∂x_i, whose closed form without the j = i (Hessian) term is the paper's Eq. (9):

    log q_L(x_i) ≈ log q_0(x_i)
                   + (ε/(n σ²)) Σ_l Σ_{j≠i} k_ij [(x_i-x_j)ᵀ∇f(x_j) + |x_i-x_j|²/σ² - D]

with n = M (consistent with the update) or M - 1 (the authors' code). ∂φ(x_i)/∂x_i is the
diagonal block of the Jacobian of the joint step map, with every particle moving.

Shapes:
    ``...``: independent groups (e.g. one per state), M particles, D dimensions, L steps.
    Particles are always ``[..., M, D]`` and log-densities ``[..., M]``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, get_args

import torch
from torch import Tensor

from s2ac_lit import kernels
from s2ac_lit.kernels import BANDWIDTH_RULES, BandwidthRule, pairwise_sq_dists, rbf_kernel

LogProb = Callable[[Tensor], Tensor]
ScoreFn = Callable[[Tensor], Tensor]
"""∇f: maps particles ``[..., M, D]`` to ``[..., M, D]``."""
ScoreHvpFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
"""(x, v) ↦ (∇f(x), ∇²f(x)v), both ``[..., M, D]``: what Hutchinson's probe needs."""
Box = tuple[Tensor | float, Tensor | float]
"""``(low, high)``, tensors or floats broadcastable to the particles."""
EntropyNorm = Literal["m", "m-1"]
SelfTerm = Literal["none", "exact", "hutchinson"]
LogDetMode = Literal["closed_form", "exact"]

ENTROPY_NORMS: tuple[EntropyNorm, ...] = get_args(EntropyNorm)
SELF_TERMS: tuple[SelfTerm, ...] = get_args(SelfTerm)
LOGDET_MODES: tuple[LogDetMode, ...] = get_args(LogDetMode)


@dataclass(frozen=True, kw_only=True)
class SVGDOptions:
    """The sampler's settings: everything of an SVGD run that does not change from call to call.

    The config's ``svgd`` section holds the same keys (plus ``num_particles``, which the caller
    draws); docs/algorithm.md §Sampler gives the maths of each.

    Attributes:
        steps: number of SVGD steps L (authors: 3 on MuJoCo, 10 on multigoal).
        step_size: ε (authors: 0.1).
        bandwidth: ``"median"``, ``"mean_half"`` (authors' default), ``"trace"`` or a fixed
            kernel variance σ² > 0. Adaptive rules are recomputed per group and per step,
            detached (:func:`s2ac_lit.kernels.bandwidth`).
        include_diagonal: adaptive rules take their statistic over all M² distances, zeros
            included (authors' code), instead of the M(M-1) off-diagonal ones.
        entropy_norm: normalise the log-det sum by ``"m"`` (consistent with the update) or
            ``"m-1"`` (authors' code).
        self_term: add the j = i term ε·Δf(x_i)/M that the closed form leaves out:
            ``"none"`` (the paper), ``"exact"`` (D extra backward passes) or ``"hutchinson"``
            (one Rademacher probe per step, drawn from the run's ``generator``; its
            Hessian-vector product comes from ``svgd_run``'s ``score_hvp_fn`` when given,
            otherwise from autograd). When on, the term's ‖∇²f(x_i)‖/M also enters the
            invertibility bound and hence the step cap.
        max_step_norm: if set, each group's step size is shrunk (per step, detached) so that
            the invertibility bound ε‖∂φ/∂x‖ (with the self term when it is on) stays at or
            below this value; the closed-form log-density is only valid for an invertible step
            map (docs/algorithm.md §Stability). None keeps ε fixed (the paper and the authors'
            sampler); the S2AC actor and the trainer default to 0.5.

    Raises:
        ValueError: a value out of range or not among the allowed choices, named as
            ``name=value``.
    """

    steps: int = 3
    step_size: float = 0.1
    bandwidth: BandwidthRule | float = "mean_half"
    include_diagonal: bool = False
    entropy_norm: EntropyNorm = "m"
    self_term: SelfTerm = "none"
    max_step_norm: float | None = None

    def __post_init__(self) -> None:
        for name, allowed in (("entropy_norm", ENTROPY_NORMS), ("self_term", SELF_TERMS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not allowed; allowed: {allowed}")
        if isinstance(self.bandwidth, str) and self.bandwidth not in BANDWIDTH_RULES:
            raise ValueError(
                f"bandwidth={self.bandwidth!r} is not allowed; allowed: {BANDWIDTH_RULES} or a "
                "kernel variance > 0"
            )
        for name, value in (
            ("bandwidth", self.bandwidth),
            ("step_size", self.step_size),
            ("max_step_norm", self.max_step_norm),
        ):
            if not isinstance(value, str) and value is not None and value <= 0:
                raise ValueError(f"{name}={value!r} must be > 0")
        if self.steps < 0:
            raise ValueError(f"steps={self.steps!r} must be >= 0")


class SVGDResult(NamedTuple):
    """Everything one sampler run produces.

    Attributes:
        particles: ``[..., M, D]`` particles after the last step.
        log_q: ``[..., M]`` log-density of each final particle.
        sigma2: ``[..., L]`` kernel variance used at each step.
        step_norm_bound: ``[..., L]`` upper bound on max_i ε‖∂φ(x_i)/∂x_i‖₂, or None unless
            ``diagnostics=True``. Below 1 the step map of each particle is invertible, which
            the change of variables needs. The self (Hessian) term enters only when
            ``self_term`` is on: exactly (``exact``) or as Hutchinson's estimate.
    """

    particles: Tensor
    log_q: Tensor
    sigma2: Tensor
    step_norm_bound: Tensor | None


def svgd_direction(x: Tensor, score: Tensor, kernel: Tensor, sigma2: Tensor) -> Tensor:
    """SVGD update direction φ (paper Eq. 3), driving force plus repulsion.

    Uses the symmetry of the kernel: Σ_j k_ij (x_i - x_j) = x_i Σ_j k_ij - (K x)_i.

    Shapes:
        x, score: ``[..., M, D]``; kernel: ``[..., M, M]``; sigma2: ``[...]`` → ``[..., M, D]``.
    """
    m = x.shape[-2]
    s2 = sigma2[..., None, None]
    repulsion = (kernel.sum(-1, keepdim=True) * x - kernel @ x) / s2
    return (kernel @ score + repulsion) / m


def stein_trace(
    x: Tensor,
    score: Tensor,
    kernel: Tensor,
    sq_dists: Tensor,
    sigma2: Tensor,
    *,
    entropy_norm: EntropyNorm = "m",
) -> Tensor:
    """Closed-form Tr ∂φ(x_i)/∂x_i without the j = i term (paper Eq. 9, per step).

    Tr = -(1/(n σ²)) Σ_{j≠i} k_ij [(x_i - x_j)ᵀ ∇f(x_j) + |x_i - x_j|²/σ² - D]. The j = i
    entry of the first two terms is zero by construction, so the sums run over all j and only
    the constant -D needs the diagonal (k_ii = 1) removed.

    Shapes:
        x, score: ``[..., M, D]``; kernel, sq_dists: ``[..., M, M]``; sigma2: ``[...]``
        → ``[..., M]``.
    """
    m, d = x.shape[-2], x.shape[-1]
    n = m if entropy_norm == "m" else m - 1
    s2 = sigma2[..., None]
    drift = (x * (kernel @ score)).sum(-1) - (kernel @ (x * score).sum(-1, keepdim=True))[..., 0]
    spread = (kernel * sq_dists).sum(-1) / s2 - d * (kernel.sum(-1) - 1.0)
    return -(drift + spread) / (n * s2)


class _Derivatives(NamedTuple):
    """∇f at the particles and, with a self term, Δf and a norm of ∇²f for the bound."""

    score: Tensor
    laplacian: Tensor | None
    hessian_norm: Tensor | None


def finite_difference_step(x: Tensor) -> Tensor:
    """Forward-difference step per particle, h = √(machine ε)·max(1, |x_i|_∞): it balances
    the difference's O(h) truncation against its O(ε_mach/h) rounding.

    Shapes:
        x: ``[..., D]`` → ``[..., 1]``.
    """
    eps = torch.finfo(x.dtype).eps ** 0.5
    return eps * x.detach().abs().amax(-1, keepdim=True).clamp_min(1.0)


def finite_difference_hvp(score_fn: ScoreFn, x: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """∇f(x) and ∇²f(x)v ≈ (∇f(x + hv) - ∇f(x))/h, from one call of ``score_fn`` on the two
    points stacked (h: :func:`finite_difference_step`).

    A :data:`ScoreHvpFn` for a smooth f, at twice the cost of the score alone. No
    second-order autograd runs, so it also works through compiled kernels, which cannot
    differentiate twice; gradients through it are first order in ``score_fn``. A forward
    difference rather than a central one: one point fewer, and its smaller step crosses
    fewer kinks of an ELU network's second derivative (on a trained Hopper critic, float32:
    median error 0.1 % of |Δf|, against rare spikes of the central difference). Not for an
    f with kinks in its gradient (a minimum over critics): a difference across one is a
    spike, see :meth:`s2ac_lit.actor.QEnergy.score_and_hvp`.

    Shapes:
        x, v: ``[..., M, D]`` → ``[..., M, D]`` twice.
    """
    h = finite_difference_step(x)
    score = score_fn(torch.stack([x, x + h * v]))
    return score[0], (score[1] - score[0]) / h


def _score_and_laplacian(
    log_prob: LogProb,
    x: Tensor,
    *,
    create_graph: bool,
    self_term: SelfTerm,
    generator: torch.Generator | None,
    score_fn: ScoreFn | None = None,
    score_hvp_fn: ScoreHvpFn | None = None,
) -> _Derivatives:
    """∇f(x) and, if asked, Δf(x) (exact, D backward passes, or Hutchinson's estimate).

    ∇f comes from ``score_fn`` when given (no autograd at all unless ``create_graph`` or a
    Laplacian needs it), otherwise from autograd through ``log_prob``. Hutchinson's probe
    vᵀ∇²f v takes ∇f and ∇²f v from ``score_hvp_fn`` when given (e.g. a forward difference of
    an explicit score: no second-order autograd, so compiled kernels work), otherwise from
    autograd's Hessian-vector product. The Hessian norm (detached, ``[..., M]``) is the
    Frobenius norm ‖∇²f‖_F ≥ ‖∇²f‖₂: exact, or Hutchinson's ‖∇²f v‖ (E‖Hv‖² = ‖H‖²_F).
    """
    if self_term == "hutchinson" and score_hvp_fn is not None:
        v = _rademacher(x, generator)
        with nullcontext() if create_graph else torch.no_grad():
            score, hv = score_hvp_fn(x, v)
            if score.shape != x.shape or hv.shape != x.shape:
                raise RuntimeError(
                    f"score_hvp_fn must map particles {tuple(x.shape)} to two tensors of that "
                    f"shape, got {tuple(score.shape)} and {tuple(hv.shape)}"
                )
            laplacian = (hv * v).sum(-1)
        return _Derivatives(score, laplacian, hv.detach().norm(dim=-1))
    if score_fn is not None and self_term == "none":
        with nullcontext() if create_graph else torch.no_grad():
            score = score_fn(x)
        if score.shape != x.shape:
            raise RuntimeError(
                f"score_fn must map particles {tuple(x.shape)} to the same shape, "
                f"got {tuple(score.shape)}"
            )
        return _Derivatives(score, None, None)
    needs_hessian = self_term != "none"
    hessian_norm = None
    with torch.enable_grad():
        xg = x if x.requires_grad else x.detach().requires_grad_(True)
        if score_fn is not None:
            score = score_fn(xg)
        else:
            log_p = log_prob(xg)
            if log_p.shape != x.shape[:-1]:
                raise RuntimeError(
                    f"log_prob must map particles {tuple(x.shape)} to {tuple(x.shape[:-1])}, "
                    f"got {tuple(log_p.shape)}"
                )
            if not log_p.requires_grad:  # a flat target: no driving force, only repulsion
                flat = x.new_zeros(x.shape[:-1]) if needs_hessian else None
                return _Derivatives(torch.zeros_like(x), flat, flat)
            (score,) = torch.autograd.grad(
                log_p.sum(), xg, create_graph=create_graph or needs_hessian, materialize_grads=True
            )
        laplacian = None
        if self_term == "exact":
            # Each backward pass gives one row of every particle's Hessian (f is per particle).
            rows = [
                torch.autograd.grad(
                    score[..., k].sum(),
                    xg,
                    create_graph=create_graph,
                    retain_graph=True,
                    materialize_grads=True,
                )[0]
                for k in range(x.shape[-1])
            ]
            laplacian = sum(row[..., k] for k, row in enumerate(rows))
            hessian_norm = torch.stack([row.detach() for row in rows], -2).flatten(-2).norm(dim=-1)
        elif self_term == "hutchinson":
            v = _rademacher(x, generator)
            (hv,) = torch.autograd.grad(
                (score * v).sum(), xg, create_graph=create_graph, materialize_grads=True
            )
            laplacian = (hv * v).sum(-1)
            hessian_norm = hv.detach().norm(dim=-1)
    if not create_graph:
        score = score.detach()
        laplacian = None if laplacian is None else laplacian.detach()
    return _Derivatives(score, laplacian, hessian_norm)


def _rademacher(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """±1 probes: E[vᵀHv] = Tr H with the smallest variance among probes of that kind."""
    v = torch.randint(0, 2, x.shape, generator=generator, device=x.device)
    return v.to(x.dtype).mul_(2).sub_(1)


def exact_step_log_det(log_prob: LogProb, x: Tensor, sigma2: Tensor, step_size: float) -> Tensor:
    """log|det(I + ε ∂φ(x_i)/∂x_i)| by autograd, for validation in small D.

    φ_i depends on x_i twice: as the evaluation point y_i and as the source z_i of its own
    j = i term. Separate leaves for the two give ∂φ_i/∂x_i = ∂φ_i/∂y_i + ∂(self_i)/∂z_i in
    2·D backward passes, without the M·D passes of the joint Jacobian. Detached output.

    Shapes:
        x: ``[..., M, D]``; sigma2: ``[...]`` → ``[..., M]``.
    """
    m, d = x.shape[-2], x.shape[-1]
    s2 = sigma2.detach()[..., None, None]
    with torch.enable_grad():
        y = x.detach().requires_grad_(True)
        z = x.detach().requires_grad_(True)
        log_p = log_prob(z)
        g = (
            torch.autograd.grad(log_p.sum(), z, create_graph=True, materialize_grads=True)[0]
            if log_p.requires_grad
            else torch.zeros_like(z)
        )
        diff = y.unsqueeze(-2) - z.unsqueeze(-3)  # [..., i, j, D] = y_i - z_j
        k = torch.exp(-diff.pow(2).sum(-1) / (2.0 * s2))
        phi = (k @ g + (k.unsqueeze(-1) * diff).sum(-2) / s2) / m
        self_diff = y - z
        k_self = torch.exp(-self_diff.pow(2).sum(-1, keepdim=True) / (2.0 * s2))
        phi_self = (k_self * g + k_self * self_diff / s2) / m
        rows = [
            torch.autograd.grad(phi[..., r].sum(), y, retain_graph=True)[0]
            + torch.autograd.grad(phi_self[..., r].sum(), z, retain_graph=True)[0]
            for r in range(d)
        ]
    jac = torch.stack(rows, dim=-2)  # [..., M, D(out), D(in)]
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    return torch.linalg.slogdet(eye + step_size * jac).logabsdet


def _step_norm_bound(
    score: Tensor,
    kernel: Tensor,
    sq_dists: Tensor,
    sigma2: Tensor,
    step_size: float,
    hessian_norm: Tensor | None = None,
) -> Tensor:
    """Triangle-inequality bound on max_i ε‖∂φ(x_i)/∂x_i‖₂.

    Each j ≠ i term of ∂φ_i/∂x_i is (k_ij/(Mσ²))[-∇f(x_j)(x_i-x_j)ᵀ + I - (x_i-x_j)(x_i-x_j)ᵀ/σ²];
    the first has norm ‖∇f(x_j)‖·|x_i-x_j|, the second max(1, |1 - |x_i-x_j|²/σ²|). The j = i
    term is ∇²f(x_i)/M; ``hessian_norm`` (``[..., M]``, an upper bound of ‖∇²f(x_i)‖₂ or an
    estimate of one) adds it, None leaves it out.
    """
    m = kernel.shape[-1]
    s2 = sigma2[..., None, None]
    eye = torch.eye(m, dtype=kernel.dtype, device=kernel.device)
    per_pair = score.norm(dim=-1).unsqueeze(-2) * sq_dists.sqrt() + torch.clamp(
        (1.0 - sq_dists / s2).abs(), min=1.0
    )
    bound = (kernel * (1.0 - eye) * per_pair).sum(-1) / (m * s2.squeeze(-1))
    if hessian_norm is not None:
        bound = bound + hessian_norm / m
    return step_size * bound.amax(-1)


def _per_group(step: Tensor | float, trailing: int) -> Tensor | float:
    """A per-group step ``[...]`` broadcast over ``trailing`` more dims; floats as they are."""
    return step if isinstance(step, float) else step[(..., *([None] * trailing))]


def _check_inputs(
    x0: Tensor, log_q0: Tensor, options: SVGDOptions, logdet: str, differentiable: bool
) -> None:
    if x0.dim() < 2:
        raise RuntimeError(f"particles must be [..., M, D], got shape {tuple(x0.shape)}")
    if log_q0.shape != x0.shape[:-1]:
        raise RuntimeError(
            f"log_q0 must have shape {tuple(x0.shape[:-1])} for particles {tuple(x0.shape)}, "
            f"got {tuple(log_q0.shape)}"
        )
    if logdet not in LOGDET_MODES:
        raise ValueError(f"logdet={logdet!r} is not allowed; allowed: {LOGDET_MODES}")
    if options.entropy_norm == "m-1" and x0.shape[-2] < 2:
        raise ValueError("entropy_norm 'm-1' needs at least 2 particles")
    if logdet == "exact" and (
        differentiable
        or options.self_term != "none"
        or options.entropy_norm != "m"
        or options.max_step_norm is not None
    ):
        raise ValueError(
            "logdet='exact' is a validation mode: it needs differentiable=False, "
            "self_term='none', entropy_norm='m' and max_step_norm=None (it computes the whole "
            f"log-det itself at the configured step size), got {options}"
        )


def svgd_run(
    log_prob: LogProb,
    x0: Tensor,
    log_q0: Tensor,
    options: SVGDOptions,
    *,
    differentiable: bool = False,
    box: Box | None = None,
    logdet: LogDetMode = "closed_form",
    generator: torch.Generator | None = None,
    score_fn: ScoreFn | None = None,
    score_hvp_fn: ScoreHvpFn | None = None,
    diagnostics: bool = False,
) -> SVGDResult:
    """Move particles with L SVGD steps towards exp(log_prob) and track their log-densities.

    Every leading dimension is an independent group: particles interact only within a group,
    and all groups run in one batched computation (no Python loop over groups or particles,
    no host sync).

    Args:
        log_prob: unnormalised log target f, mapping ``[..., M, D]`` to ``[..., M]``. It is
            called once per step, on all particles at once.
        x0: initial particles.
        log_q0: their log-density under the initial distribution.
        options: the sampler's settings (L, ε, bandwidth, ...), see :class:`SVGDOptions`.
        differentiable: keep the graph through every step, including ∇f (second order), so
            that losses on the outputs reach the parameters behind ``x0``, ``log_q0`` and
            ``log_prob``. When False, outputs are detached and no higher-order graph is built.
        box: ``(low, high)``; every iterate is clamped to it (the paper's ``μ ± tσ``
            constraint). Clamping is not invertible at the box edge, so log q ignores it.
        logdet: ``"closed_form"`` (the paper's first-order estimate) or ``"exact"`` (log|det|
            of the per-particle step Jacobian by autograd; small D, validation only: it needs
            ``differentiable=False`` and the options' defaults for the log-density terms).
        generator: random source for the Hutchinson probe.
        score_fn: ∇f, if known in closed form (e.g. an MLP's explicit input gradient). Then
            no autograd runs for the score, which is much cheaper when not differentiating.
            It must agree with ``log_prob``, which the exact log-det mode still uses.
        score_hvp_fn: (x, v) ↦ (∇f(x), ∇²f(x)v) for Hutchinson's probe (``self_term=
            "hutchinson"``; other settings ignore it), e.g. :func:`finite_difference_hvp`
            of an explicit score: then the probe needs no second-order autograd, which
            compiled kernels cannot do. Without it the probe is autograd's.
        diagnostics: also return the invertibility bound at the configured ε, per step.

    Returns:
        An :class:`SVGDResult` (particles, log-densities, per-step σ², optional diagnostics).

    Shapes:
        x0: ``[..., M, D]``; log_q0: ``[..., M]``.
    """
    _check_inputs(x0, log_q0, options, logdet, differentiable)
    step_size, max_step_norm = options.step_size, options.max_step_norm
    m = x0.shape[-2]
    x, log_q = (x0, log_q0) if differentiable else (x0.detach(), log_q0.detach())
    graph = nullcontext() if differentiable else torch.no_grad()
    sigma2s, norm_bounds = [], []
    for _ in range(options.steps):
        score, laplacian, hessian_norm = _score_and_laplacian(
            log_prob,
            x,
            create_graph=differentiable,
            self_term=options.self_term,
            generator=generator,
            score_fn=score_fn,
            score_hvp_fn=score_hvp_fn,
        )
        with graph:
            sq_dists = pairwise_sq_dists(x)
            sigma2 = kernels.bandwidth(
                sq_dists, options.bandwidth, include_diagonal=options.include_diagonal
            )
            kernel = rbf_kernel(sq_dists, sigma2)
            step: Tensor | float = step_size
            if diagnostics or max_step_norm is not None:
                with torch.no_grad():
                    norm_bound = _step_norm_bound(
                        score.detach(),
                        kernel.detach(),
                        sq_dists.detach(),
                        sigma2,
                        step_size,
                        hessian_norm,
                    )
                norm_bounds.append(norm_bound)
                if max_step_norm is not None:
                    # The bound is linear in ε: scaling ε per group keeps the step map
                    # invertible where the first-order log-det would otherwise be meaningless
                    # (and exploitable by an actor trained through it).
                    step = step_size * (max_step_norm / norm_bound).clamp(max=1.0)
            if logdet == "exact":
                log_det = exact_step_log_det(log_prob, x, sigma2, step_size)
            else:
                trace = stein_trace(
                    x, score, kernel, sq_dists, sigma2, entropy_norm=options.entropy_norm
                )
                if laplacian is not None:
                    trace = trace + laplacian / m
                log_det = _per_group(step, 1) * trace
            log_q = log_q - log_det
            x = x + _per_group(step, 2) * svgd_direction(x, score, kernel, sigma2)
            if box is not None:
                x = torch.clamp(x, min=box[0], max=box[1])
        sigma2s.append(sigma2)
    empty = x.new_zeros((*x.shape[:-2], 0))
    return SVGDResult(
        particles=x,
        log_q=log_q,
        sigma2=torch.stack(sigma2s, -1) if sigma2s else empty,
        step_norm_bound=(torch.stack(norm_bounds, -1) if norm_bounds else empty)
        if diagnostics
        else None,
    )


def svgd_direction_at(
    log_prob: LogProb,
    x: Tensor,
    options: SVGDOptions,
    *,
    score_fn: ScoreFn | None = None,
) -> Tensor:
    """The SVGD direction φ at particles ``x`` for target exp(log_prob), detached.

    Amortised SVGD (Soft Q-Learning, docs/algorithm.md §Amortised sampler) trains a sampler
    network by pushing its outputs along this direction. Of ``options`` only the kernel's
    (``bandwidth``, ``include_diagonal``) are used.

    Shapes:
        x: ``[..., M, D]`` → ``[..., M, D]``.
    """
    x = x.detach()
    score = _score_and_laplacian(
        log_prob, x, create_graph=False, self_term="none", generator=None, score_fn=score_fn
    ).score
    sq_dists = pairwise_sq_dists(x)
    sigma2 = kernels.bandwidth(
        sq_dists, options.bandwidth, include_diagonal=options.include_diagonal
    )
    return svgd_direction(x, score, rbf_kernel(sq_dists, sigma2), sigma2)


def svgd_sample(
    log_prob: LogProb, x0: Tensor, log_q0: Tensor, options: SVGDOptions, **run: Any
) -> tuple[Tensor, Tensor]:
    """Particles after L SVGD steps and their log-densities: :func:`svgd_run` without extras.

    Keyword arguments (``differentiable``, ``box``, ``logdet``, ``generator``, ``score_fn``,
    ``score_hvp_fn``)
    are those of :func:`svgd_run`.

    Returns:
        ``(particles, log_q)``: ``[..., M, D]`` and ``[..., M]``.

    Examples:
        >>> x0 = torch.randn(4, 16, 2)
        >>> log_q0 = torch.distributions.Normal(0.0, 1.0).log_prob(x0).sum(-1)
        >>> x, log_q = svgd_sample(lambda x: -0.5 * x.pow(2).sum(-1), x0, log_q0,
        ...                        SVGDOptions(steps=3, step_size=0.1))
        >>> x.shape, log_q.shape
        (torch.Size([4, 16, 2]), torch.Size([4, 16]))
    """
    result = svgd_run(log_prob, x0, log_q0, options, **run)
    return result.particles, result.log_q
