"""The Kozachenko-Leonenko k-nearest-neighbour entropy estimate: ground truth from samples alone.

Consistent for any density, so it scores samplers without a tractable log-density (SQL's
amortised sampler) and checks the ones with one (S2AC's closed form).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def knn_entropy(samples: Tensor, *, k: int = 5) -> Tensor:
    """Kozachenko-Leonenko k-nearest-neighbour entropy estimate from samples alone.

    H ≈ ψ(N) - ψ(k) + log V_A + (A/N) Σ_i log ε_i, with ε_i the distance from sample i to its
    k-th nearest neighbour and V_A the volume of the unit A-ball. Consistent for any density,
    so it also covers samplers without one (SQL). Ties (ε = 0, e.g. actions saturated at the
    box edge) are clamped to the smallest positive float, which biases H down there.

    Shapes:
        samples: ``[..., N, A]`` → ``[...]``.

    Examples:
        >>> x = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0))
        >>> round(knn_entropy(x).item(), 1), round(math.log(2 * math.pi * math.e), 1)
        (2.8, 2.8)
    """
    n, dim = samples.shape[-2], samples.shape[-1]
    if n <= k:
        raise RuntimeError(f"need more than k={k} samples, got shape {tuple(samples.shape)}")
    x = samples.double()
    dists = torch.cdist(x, x)  # [..., N, N]; the zero self-distance is the smallest
    eps = dists.kthvalue(k + 1, dim=-1).values.clamp_min(torch.finfo(x.dtype).tiny)
    log_unit_ball = 0.5 * dim * math.log(math.pi) - math.lgamma(0.5 * dim + 1)
    digammas = torch.special.digamma(torch.tensor([float(n), float(k)], dtype=x.dtype))
    estimate = digammas[0] - digammas[1] + log_unit_ball + dim * eps.log().mean(-1)
    return estimate.to(samples.dtype)
