"""Entropy-evaluation toolkit: check SVGD's closed-form entropy on known targets.

See docs/algorithm.md §Entropy evaluation.

``targets`` holds distributions with known entropy (analytic or Monte Carlo with a standard
error); ``samplers`` holds the Langevin and HMC contrasts; ``evaluation`` holds
:func:`evaluate`, which runs one sampler configuration on one target. The sweeps and plots
live in ``tools/entropy_eval.py``.
"""

from __future__ import annotations

from s2ac_lit.analysis.entropy.samplers import ChainResult, hmc_run, langevin_run, score_and_hessian
from s2ac_lit.analysis.entropy.study import (
    EntropyRecord,
    SamplerConfig,
    evaluate,
    initial_particles,
    mean_ci,
)
from s2ac_lit.analysis.entropy.targets import (
    PAPER_COV,
    PAPER_MEAN,
    Target,
    custom_target,
    gaussian_entropy,
    gaussian_target,
    gmm_circle_target,
    grid_entropy,
    monte_carlo_entropy,
    paper_gaussian,
)

__all__ = [
    "PAPER_COV",
    "PAPER_MEAN",
    "ChainResult",
    "EntropyRecord",
    "SamplerConfig",
    "Target",
    "custom_target",
    "evaluate",
    "gaussian_entropy",
    "gaussian_target",
    "gmm_circle_target",
    "grid_entropy",
    "hmc_run",
    "initial_particles",
    "langevin_run",
    "mean_ci",
    "monte_carlo_entropy",
    "paper_gaussian",
    "score_and_hessian",
]
