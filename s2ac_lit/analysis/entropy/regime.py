"""The entropy where S2AC trains: SVGD's estimates against the entropy of its own output.

See docs/algorithm.md §Entropy evaluation.

At the MuJoCo settings (M = 10 particles, L = 3 steps, ε = 0.1) the sampler is far from
converged, so the truth to compare an estimate -mean_i log q_L(x_i) with is not the target's
entropy but that of the sampler's output: the marginal q_L of one particle, from a given q⁰.
It is measured from samples (:func:`~s2ac_lit.knn.calibrated_knn_entropy`,
at most the Gaussian-fit upper bound) on the particles of many independent groups run on the
same target, pooled.

The targets are quadratic energies f(x) = -½(x - μ)ᵀP(x - μ) (:func:`quadratic_target`), with
P = R diag(p) Rᵀ, p uniform in [0.5, 4.5] times a curvature factor, and R a random rotation (so
that Hutchinson's probe is not exact, as it would be for a diagonal P). q⁰ = N(0, s²I).

Each case is measured for four estimators of log q_L, on the same x⁰:
``none`` (the paper's closed form), ``exact`` and ``hutchinson`` (the closed form plus the self
term ε·Δf/M) and ``logdet`` (log|det(I + εJ_i)| of the per-particle Jacobian by autograd). With
the step cap (``max_step_norm``) on, the self term enters the cap, so ``none``, ``exact`` and
``hutchinson`` move the particles differently and each gets its own truth; ``logdet`` runs
only without the cap.

Shapes:
    G independent groups (``pool // M``), M particles, D dimensions.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from s2ac_lit.analysis.entropy.targets import Target, gaussian_target, gmm_circle_target
from s2ac_lit.kernels import BandwidthRule
from s2ac_lit.knn import (
    calibrated_knn_entropy,
    gaussian_fit_entropy,
    knn_entropy,
)
from s2ac_lit.svgd import SVGDOptions, SVGDResult, svgd_run

ESTIMATORS = ("none", "exact", "hutchinson", "logdet")
"""The estimators of log q_L compared per case (see the module docstring)."""


def quadratic_target(dim: int, curvature: float, *, seed: int = 0) -> Target:
    """N(μ, P⁻¹) with P = curvature·R diag(p) Rᵀ, p ~ U[0.5, 4.5]^D, μ ~ U[-0.5, 0.5]^D.

    R is a random rotation (QR of a Gaussian matrix). The same ``seed`` gives the same p, R
    and μ at every curvature, so curvature factors compare like with like.
    """
    generator = torch.Generator().manual_seed(seed)
    p = 0.5 + 4.0 * torch.rand(dim, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    rotation = q * torch.sign(torch.diagonal(r))  # Haar-distributed
    mean = torch.rand(dim, generator=generator, dtype=torch.float64) - 0.5
    cov = rotation @ torch.diag(1.0 / (curvature * p)) @ rotation.T
    return gaussian_target(mean, 0.5 * (cov + cov.T), name=f"quad_d{dim}_x{curvature:g}")


@dataclass(frozen=True, kw_only=True)
class RegimeCase:
    """One sampler setting on one quadratic target.

    Attributes:
        dim: D.
        curvature: factor on the precision's eigenvalues (1: p in [0.5, 4.5]).
        init_std: s of q⁰ = N(0, s²I).
        particles: M.
        steps: L.
        step_size: ε.
        bandwidth: kernel rule or fixed σ².
        max_step_norm: the step cap (None: fixed ε).
    """

    dim: int
    curvature: float
    init_std: float
    particles: int = 10
    steps: int = 3
    step_size: float = 0.1
    bandwidth: BandwidthRule | float = "mean_half"
    max_step_norm: float | None = None

    def label(self) -> str:
        """``d=3 ×1 s=0.5 M=10 L=3 mean_half cap=-``."""
        cap = "-" if self.max_step_norm is None else f"{self.max_step_norm:g}"
        return (
            f"d={self.dim} ×{self.curvature:g} s={self.init_std:g} M={self.particles} "
            f"L={self.steps} {self.bandwidth} cap={cap}"
        )


@dataclass(frozen=True, kw_only=True)
class RegimeRecord:
    """One estimator on one case and seed.

    ``truth`` is the calibrated kNN entropy of the pooled output, at most the Gaussian upper
    bound ``gaussian_fit`` (:attr:`~s2ac_lit.knn.KnnEstimate.bounded`;
    ``knn_whitened`` is the kNN estimate before calibration, ``knn_bias`` the calibration);
    ``h0`` the exact entropy of q⁰; ``error`` = ``estimate`` - ``truth``; ``missed`` = -error /
    (truth - h0), the share of the steps' entropy change the estimator misses (0: none, 1:
    all of it, as if it reported H(q⁰)). ``bound_max``: the largest invertibility bound at
    the configured ε (with the self term for ``exact``, ``hutchinson``); ``step_scale``: the
    cap's mean factor on ε (1 without the cap); ``probe_sd``: for ``hutchinson``, the standard
    deviation over groups of its per-group estimate minus ``exact``'s (NaN otherwise).
    """

    label: str
    dim: int
    curvature: float
    init_std: float
    particles: int
    steps: int
    step_size: float
    bandwidth: str
    max_step_norm: float
    seed: int
    pool: int
    estimator: str
    h0: float
    truth: float
    knn_whitened: float
    knn_bias: float
    gaussian_fit: float
    estimate: float
    error: float
    missed: float
    bound_max: float
    step_scale: float
    probe_sd: float
    wall_s: float


def regime_cases(*, quick: bool = False) -> list[RegimeCase]:
    """The sweep's grid: a core of D × curvature × s at the MuJoCo settings, then one axis at
    a time (M, L, bandwidth, cap) on a sub-grid. ``quick``: a smoke-test size."""
    if quick:
        return [
            RegimeCase(dim=3, curvature=1.0, init_std=0.5),
            RegimeCase(dim=3, curvature=10.0, init_std=0.5, max_step_norm=0.5),
        ]
    core = [
        RegimeCase(dim=d, curvature=c, init_std=s)
        for d in (3, 6, 8, 17)
        for c in (1.0, 10.0, 100.0)
        for s in (0.2, 0.5, 1.5)
    ]
    sub = [(d, c) for d in (3, 6, 8, 17) for c in (1.0, 10.0)]
    axes = [
        *(dict(particles=m) for m in (20, 50)),
        dict(steps=10),
        *(dict(bandwidth=b) for b in ("median", "trace")),
    ]
    varied = [RegimeCase(dim=d, curvature=c, init_std=0.5, **a) for a in axes for d, c in sub]
    capped = [
        RegimeCase(dim=d, curvature=c, init_std=s, max_step_norm=0.5)
        for d in (3, 6, 8, 17)
        for c in (1.0, 10.0, 100.0)
        for s in (0.2, 0.5)
    ]
    return core + varied + capped


def _options(case: RegimeCase, self_term: str) -> SVGDOptions:
    return SVGDOptions(
        steps=case.steps,
        step_size=case.step_size,
        bandwidth=case.bandwidth,
        self_term=self_term,
        max_step_norm=case.max_step_norm,
    )


def _step_scale(case: RegimeCase, run: SVGDResult) -> float:
    if case.max_step_norm is None or run.step_norm_bound.numel() == 0:
        return 1.0
    return float((case.max_step_norm / run.step_norm_bound).clamp(max=1.0).mean())


def evaluate_regime(
    case: RegimeCase, *, seed: int = 0, pool: int = 20_000, knn_draws: int = 3
) -> list[RegimeRecord]:
    """Run every estimator of :data:`ESTIMATORS` on one case and compare with the truth.

    ``pool // M`` groups of M particles start from the same x⁰ for every estimator; the
    truth is the bounded, calibrated kNN entropy of the pooled outputs, computed once per distinct
    set of particles. ``seed`` fixes the target, x⁰ and Hutchinson's probes.
    """
    target = quadratic_target(case.dim, case.curvature, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    groups = max(1, pool // case.particles)
    shape = (groups, case.particles, case.dim)
    xi = torch.randn(shape, generator=generator, dtype=torch.float64)
    x0 = case.init_std * xi
    log_q0 = (-0.5 * xi.pow(2) - math.log(case.init_std) - 0.5 * math.log(2 * math.pi)).sum(-1)
    h0 = case.dim * (0.5 * math.log(2 * math.pi * math.e) + math.log(case.init_std))
    runs: dict[str, tuple[SVGDResult, float]] = {}
    for name in ESTIMATORS:
        if name == "logdet" and case.max_step_norm is not None:
            continue  # the validation mode computes the log-det at the configured ε only
        start = time.perf_counter()
        run = svgd_run(
            target.log_prob,
            x0,
            log_q0,
            _options(case, "none" if name == "logdet" else name),
            logdet="exact" if name == "logdet" else "closed_form",
            generator=torch.Generator().manual_seed(seed + 1),
            diagnostics=True,
        )
        runs[name] = (run, time.perf_counter() - start)
    truths: dict[int, tuple] = {}
    records = []
    for name, (run, wall) in runs.items():
        # Without the cap all estimators move the particles alike: one truth for all.
        key = 0 if case.max_step_norm is None else ESTIMATORS.index(name)
        if key not in truths:
            truths[key] = calibrated_knn_entropy(pooled(run.particles), draws=knn_draws)
        truth = truths[key]
        estimate = -float(run.log_q.mean())
        probe_sd = float("nan")
        if name == "hutchinson" and "exact" in runs and case.max_step_norm is None:
            per_group = runs["exact"][0].log_q.mean(-1) - run.log_q.mean(-1)
            probe_sd = float(per_group.std())
        records.append(
            RegimeRecord(
                label=case.label(),
                dim=case.dim,
                curvature=case.curvature,
                init_std=case.init_std,
                particles=case.particles,
                steps=case.steps,
                step_size=case.step_size,
                bandwidth=str(case.bandwidth),
                max_step_norm=float("nan") if case.max_step_norm is None else case.max_step_norm,
                seed=seed,
                pool=groups * case.particles,
                estimator=name,
                h0=h0,
                truth=truth.bounded,
                knn_whitened=truth.whitened,
                knn_bias=truth.bias,
                gaussian_fit=truth.gaussian_fit,
                estimate=estimate,
                error=estimate - truth.bounded,
                missed=(truth.bounded - estimate) / (truth.bounded - h0),
                bound_max=float(run.step_norm_bound.amax()) if case.steps else 0.0,
                step_scale=_step_scale(case, run),
                probe_sd=probe_sd,
                wall_s=wall,
            )
        )
    return records


@dataclass(frozen=True, kw_only=True)
class TruthCheckRecord:
    """The sample-only estimators on samples of a target with known entropy ``truth``.

    ``raw``: :func:`knn_entropy`; ``whitened``: with ``whiten=True``; ``calibrated``: minus
    the Gaussian bias (:func:`calibrated_knn_entropy`, NaN where not computed);
    ``gaussian_fit``: the Gaussian upper bound. Errors are estimate - truth.
    """

    target: str
    dim: int
    n: int
    seed: int
    truth: float
    truth_se: float
    raw: float
    whitened: float
    calibrated: float
    gaussian_fit: float
    wall_s: float


def truth_check_targets(dim: int, *, seed: int = 0) -> list[Target]:
    """The ground-truth check's targets: the regime's rotated anisotropic Gaussian (×1) and a
    4-mode mixture on a circle (far from Gaussian in its first two coordinates)."""
    return [quadratic_target(dim, 1.0, seed=seed), gmm_circle_target(4, dim, component_std=0.5)]


def check_truth(
    target: Target, n: int, *, seed: int = 0, calibrate: bool = True
) -> TruthCheckRecord:
    """How well the sample-only estimators recover ``target.entropy`` from ``n`` samples."""
    if target.sample is None:
        raise ValueError(f"target {target.name!r} has no exact sampler")
    x = target.sample(n, torch.Generator().manual_seed(1000 + seed))
    start = time.perf_counter()
    calibrated = calibrated_knn_entropy(x) if calibrate else None
    return TruthCheckRecord(
        target=target.name,
        dim=target.dim,
        n=n,
        seed=seed,
        truth=target.entropy,
        truth_se=target.entropy_se,
        raw=knn_entropy(x).item(),
        whitened=knn_entropy(x, whiten=True).item() if calibrated is None else calibrated.whitened,
        calibrated=float("nan") if calibrated is None else calibrated.entropy,
        gaussian_fit=gaussian_fit_entropy(x).item(),
        wall_s=time.perf_counter() - start,
    )


def pooled(particles: Tensor) -> Tensor:
    """All groups' particles as one sample. ``[..., M, D]`` → ``[N, D]``."""
    return particles.reshape(-1, particles.shape[-1])
