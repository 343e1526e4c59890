"""One entropy-estimation run: a sampler configuration on a target, against the truth.

:func:`evaluate` returns an :class:`EntropyRecord` (estimate, truth, relative error,
invertibility bound, wall time) for SVGD (closed form or exact log-det), Langevin or HMC.

Shapes:
    ``...``: independent groups, M particles (chains), D dimensions, L steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from s2ac_lit.analysis.entropy.samplers import HMCEstimate, hmc_run, langevin_run
from s2ac_lit.analysis.entropy.targets import Target
from s2ac_lit.kernels import BandwidthRule
from s2ac_lit.svgd import EntropyNorm, LogDetMode, SelfTerm, SVGDOptions, svgd_run

SamplerName = Literal["svgd", "langevin", "hmc"]


@dataclass(frozen=True, kw_only=True)
class SamplerConfig:
    """One sampler configuration (keys equal the sampler functions' arguments).

    Attributes:
        sampler: ``"svgd"``, ``"langevin"`` or ``"hmc"``.
        particles: M.
        steps: L.
        step_size: ε (SVGD step, ULA step or leapfrog step).
        bandwidth: SVGD kernel variance σ², a rule of ``kernels.BANDWIDTH_RULES`` or a
            float.
        entropy_norm: SVGD closed-form normalisation, ``"m"`` or ``"m-1"``.
        self_term: SVGD self (Hessian) term, ``"none"``, ``"exact"`` or ``"hutchinson"``.
        logdet: SVGD ``"closed_form"`` (paper) or ``"exact"`` (autograd, small D).
        init_mean: every coordinate of the initial mean (N(0, 6I): 0; N(4, 0.2I): 4).
        init_var: initial variance per coordinate.
        leapfrog_steps: HMC leapfrog steps per iteration.
        metropolis: HMC accept/reject step.
        hmc_estimate: ``"position"`` or ``"joint"``, see :func:`hmc_run`.
    """

    sampler: SamplerName = "svgd"
    particles: int = 200
    steps: int = 200
    step_size: float = 0.5
    bandwidth: BandwidthRule | float = 5.0
    entropy_norm: EntropyNorm = "m"
    self_term: SelfTerm = "none"
    logdet: LogDetMode = "closed_form"
    init_mean: float = 0.0
    init_var: float = 6.0
    leapfrog_steps: int = 5
    metropolis: bool = True
    hmc_estimate: HMCEstimate = "position"

    @property
    def method(self) -> str:
        """Short label: ``svgd``, ``svgd_exact_logdet``, ``langevin``, ``hmc_position``, ..."""
        if self.sampler == "svgd":
            return "svgd" if self.logdet == "closed_form" else "svgd_exact_logdet"
        return self.sampler if self.sampler == "langevin" else f"hmc_{self.hmc_estimate}"


@dataclass(frozen=True, kw_only=True)
class EntropyRecord:
    """One run: configuration, estimate -mean_i log q_L(x_i), truth and diagnostics.

    ``bound_max`` is the largest per-step invertibility bound (SVGD: ε‖∂φ/∂x‖ without the
    self term; ULA/HMC: ε‖∇²f‖₂); ``sigma2`` the SVGD kernel variance at the last step (NaN
    otherwise); ``spread_ratio`` tr Cov(particles) / tr Cov(p), 1 when the spread matches.
    """

    target: str
    dim: int
    modes: int
    method: str
    particles: int
    steps: int
    step_size: float
    bandwidth: str
    entropy_norm: str
    self_term: str
    init: str
    seed: int
    estimate: float
    truth: float
    truth_se: float
    rel_error: float
    bound_max: float
    sigma2: float
    spread_ratio: float
    wall_s: float


def initial_particles(
    config: SamplerConfig, dim: int, generator: torch.Generator, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """x⁰ ~ N(init_mean·1, init_var·I) and log q⁰(x⁰). Shapes: → ``[M, D]``, ``[M]``."""
    std = math.sqrt(config.init_var)
    x0 = config.init_mean + std * torch.randn(
        config.particles, dim, generator=generator, dtype=dtype
    )
    z = (x0 - config.init_mean) / std
    log_q0 = (-0.5 * z.pow(2) - math.log(std) - 0.5 * math.log(2.0 * math.pi)).sum(-1)
    return x0, log_q0


def _run_svgd(
    target: Target, config: SamplerConfig, x0: Tensor, log_q0: Tensor, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    options = SVGDOptions(
        steps=config.steps,
        step_size=config.step_size,
        bandwidth=config.bandwidth,
        entropy_norm=config.entropy_norm,
        self_term=config.self_term,
    )
    run = svgd_run(
        target.log_prob,
        x0,
        log_q0,
        options,
        logdet=config.logdet,
        generator=generator,
        diagnostics=True,
    )
    return run.particles, run.log_q, run.step_norm_bound, run.sigma2


def evaluate(
    target: Target, config: SamplerConfig, *, seed: int = 0, dtype: torch.dtype = torch.float64
) -> EntropyRecord:
    """Run one sampler configuration on one target with one seed; compare with the truth.

    The seed fixes x⁰ and every random draw of the run. One group of M particles.

    Returns:
        An :class:`EntropyRecord`.
    """
    generator = torch.Generator().manual_seed(seed)
    x0, log_q0 = initial_particles(config, target.dim, generator, dtype)
    start = time.perf_counter()
    sigma2 = float("nan")
    if config.sampler == "svgd":
        x, log_q, bound, sigma2s = _run_svgd(target, config, x0, log_q0, generator)
        sigma2 = float(sigma2s[-1]) if sigma2s.numel() else sigma2
    elif config.sampler == "langevin":
        x, log_q, bound, _ = langevin_run(
            target.log_prob,
            x0,
            log_q0,
            steps=config.steps,
            step_size=config.step_size,
            generator=generator,
        )
    elif config.sampler == "hmc":
        x, log_q, bound, _ = hmc_run(
            target.log_prob,
            x0,
            log_q0,
            steps=config.steps,
            step_size=config.step_size,
            leapfrog_steps=config.leapfrog_steps,
            metropolis=config.metropolis,
            estimate=config.hmc_estimate,
            generator=generator,
        )
    else:
        raise ValueError(f"unknown sampler {config.sampler!r}; allowed: svgd, langevin, hmc")
    wall = time.perf_counter() - start
    estimate = -float(log_q.mean())
    spread = float(x.var(0).sum()) / target.trace_cov if target.trace_cov else float("nan")
    return EntropyRecord(
        target=target.name,
        dim=target.dim,
        modes=target.modes,
        method=config.method,
        particles=config.particles,
        steps=config.steps,
        step_size=config.step_size,
        bandwidth=str(config.bandwidth),
        entropy_norm=config.entropy_norm,
        self_term=config.self_term,
        init=f"N({config.init_mean:g},{config.init_var:g}I)",
        seed=seed,
        estimate=estimate,
        truth=target.entropy,
        truth_se=target.entropy_se,
        rel_error=(estimate - target.entropy) / abs(target.entropy),
        bound_max=float(bound.max()) if bound.numel() else 0.0,
        sigma2=sigma2,
        spread_ratio=spread,
        wall_s=wall,
    )


_T_975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of its 95% Student-t confidence interval (NaN for one value).

    Examples:
        >>> mean, half = mean_ci([1.0, 2.0, 3.0])
        >>> mean, round(half, 3)
        (2.0, 2.484)
    """
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    t = _T_975[n - 2] if n - 2 < len(_T_975) else 1.96
    return mean, t * sd / math.sqrt(n)
