"""RBF kernel and bandwidth rules for SVGD (docs/algorithm.md §Sampler).

The kernel is k(x, y) = exp(-|x - y|² / (2σ²)); σ² is the *kernel variance*. Bandwidth rules
compute σ² per group of particles from their detached pairwise squared distances, on the device,
without a host sync.

Shapes:
    ``...``: independent groups (e.g. states), M particles, D particle dimensions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, get_args

import torch
from torch import Tensor

BandwidthRule = Literal["median", "mean_half", "trace"]
BANDWIDTH_RULES: tuple[BandwidthRule, ...] = get_args(BandwidthRule)


def pairwise_sq_dists(x: Tensor) -> Tensor:
    """Squared Euclidean distances between the particles of each group.

    The difference form (not ``|x|² + |y|² - 2xᵀy``) keeps the diagonal exactly zero and the
    gradient exact, which the log-density tests need.

    Shapes:
        x: ``[..., M, D]`` → ``[..., M, M]``.
    """
    diff = x.unsqueeze(-2) - x.unsqueeze(-3)
    return diff.pow(2).sum(-1)


def rbf_kernel(sq_dists: Tensor, sigma2: Tensor | float) -> Tensor:
    """RBF kernel matrix exp(-D / (2σ²)).

    Shapes:
        sq_dists: ``[..., M, M]``; sigma2: float or ``[...]`` → ``[..., M, M]``.
    """
    if isinstance(sigma2, Tensor):
        sigma2 = sigma2[..., None, None]
    return torch.exp(-sq_dists / (2.0 * sigma2))


def _median_heuristic(values: Tensor, m: int) -> Tensor:
    return torch.quantile(values, 0.5, dim=-1) / (2.0 * math.log(m + 1))


def _mean_half_heuristic(values: Tensor, m: int) -> Tensor:
    return values.mean(-1) / 2.0 / (2.0 * math.log(m + 1))


def _trace_heuristic(values: Tensor, m: int) -> Tensor:
    return values.mean(-1) / 2.0


_RULES: dict[BandwidthRule, Callable[[Tensor, int], Tensor]] = {
    "median": _median_heuristic,
    "mean_half": _mean_half_heuristic,
    "trace": _trace_heuristic,
}


def bandwidth(
    sq_dists: Tensor,
    rule: BandwidthRule | float,
    *,
    include_diagonal: bool = False,
) -> Tensor:
    """Kernel variance σ² per group.

    Rules (docs/algorithm.md §Sampler), with D_ij the pairwise squared distances:
        ``"median"``: median(D) / (2 ln(M+1));
        ``"mean_half"`` (authors' default): (mean(D) / 2) / (2 ln(M+1));
        ``"trace"``: mean(D) / 2, the particles' total variance tr Cov (E|x-y|² = 2 tr Cov),
        with no shrinkage in M. On the paper's 2-D Gaussian with M = 200 it estimates the
        entropy within 2% where both rules above are 27-30% low (``tools/entropy_eval.py``);
        it overshoots by 3-9% on well-separated mixtures.
        a float: that σ², for every group.

    By default the statistics use the off-diagonal entries i ≠ j only. ``include_diagonal=True``
    takes them over all M² entries, zeros included, as the authors' code does (it shrinks σ²).
    The result is detached and floored at the dtype's machine epsilon, so coincident particles
    never divide by zero.

    Shapes:
        sq_dists: ``[..., M, M]`` → ``[...]``.

    Examples:
        >>> d = pairwise_sq_dists(torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64))
        >>> float(bandwidth(d, "median")) == 4.0 / (2 * math.log(4))
        True
    """
    batch_shape, m = sq_dists.shape[:-2], sq_dists.shape[-1]
    if not isinstance(rule, str):
        if rule <= 0:
            raise ValueError(f"a fixed bandwidth must be a positive kernel variance, got {rule}")
        return torch.full(batch_shape, float(rule), dtype=sq_dists.dtype, device=sq_dists.device)
    if rule not in _RULES:
        raise ValueError(f"unknown bandwidth rule {rule!r}; allowed: {BANDWIDTH_RULES} or a float")
    if m < 2:
        raise ValueError(f"adaptive bandwidth {rule!r} needs at least 2 particles, got {m}")
    d = sq_dists.detach()
    if include_diagonal:
        values = d.flatten(-2)
    else:
        rows, cols = torch.triu_indices(m, m, offset=1, device=d.device)
        values = d[..., rows, cols]  # each unordered pair once: same median and mean as i ≠ j
    sigma2 = _RULES[rule](values, m)
    return sigma2.clamp_min(torch.finfo(sigma2.dtype).eps)
