"""Sample-only entropy estimates: ground truth for samplers without a tractable log-density.

See docs/algorithm.md §Entropy evaluation.

- :func:`knn_entropy`: the Kozachenko-Leonenko k-nearest-neighbour estimate, consistent for any
  density. It scores samplers without a log-density (SQL's amortised sampler, whose loss
  monitors its entropy with it) and checks the ones with one (S2AC's closed form). The
  distances are computed in blocks of rows, keeping only each block's k + 1 smallest, so
  N = 10⁵ samples need megabytes, not the N² matrix.
- :func:`gaussian_fit_entropy`: the entropy of the Gaussian with the samples' covariance, an
  upper bound on the entropy of any distribution with that covariance (the Gaussian has the
  largest), and equal to it for a Gaussian.
- :func:`calibrated_knn_entropy`: the whitened kNN estimate minus its bias on a Gaussian of the
  same size, with the Gaussian fit beside it; the ground truth of the regime sweep.

In high dimension the kNN estimate is biased at any practical N (its bias falls slowly in N);
measured on Gaussians in docs/algorithm.md §Measurements.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
from torch import Tensor

BLOCK_ELEMENTS = 1 << 24
"""Distances held at once by :func:`knn_entropy` (128 MiB in float64)."""


class KnnEstimate(NamedTuple):
    """:func:`calibrated_knn_entropy`'s result, in nats.

    Attributes:
        entropy: the whitened kNN estimate minus the Gaussian bias.
        whitened: the whitened kNN estimate.
        bias: the kNN estimator's bias on standard-normal samples of the same N and D.
        gaussian_fit: entropy of the Gaussian with the samples' covariance (upper bound).
    """

    entropy: float
    whitened: float
    bias: float
    gaussian_fit: float

    @property
    def bounded(self) -> float:
        """The calibrated estimate, at most the Gaussian-fit upper bound: the sample-only
        truth of the regime sweeps (in D = 17 the calibrated kNN can exceed the bound by a
        few tenths of a nat where the samples are not Gaussian)."""
        return min(self.entropy, self.gaussian_fit)


def _whiten(x: Tensor) -> tuple[Tensor, Tensor]:
    """z = L⁻¹(x - mean) with LLᵀ the sample covariance, and log|det L| = ½ log det Σ̂.

    Shapes:
        x: ``[..., N, A]`` → ``[..., N, A]``, ``[...]``.
    """
    centred = x - x.mean(-2, keepdim=True)
    cov = centred.mT @ centred / (x.shape[-2] - 1)
    chol = torch.linalg.cholesky(cov)
    z = torch.linalg.solve_triangular(chol, centred.mT, upper=False).mT
    return z, torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)


def kth_neighbour_distance(x: Tensor, k: int, *, block_elements: int = BLOCK_ELEMENTS) -> Tensor:
    """Distance from each sample to its k-th nearest other sample, by blocks of rows.

    Each block of B rows holds a ``[..., B, N]`` matrix of squared distances (B·N·batch at
    most ``block_elements``), from one matrix product |x|² + |y|² - 2xᵀy on centred samples,
    and keeps its k + 1 smallest entries (the self-distance, zero up to rounding, among them).

    Shapes:
        x: ``[..., N, A]`` → ``[..., N]``.
    """
    n = x.shape[-2]
    batch = math.prod(x.shape[:-2])
    rows = max(1, block_elements // max(1, n * batch))
    x = x - x.mean(-2, keepdim=True)  # small norms keep the product form's rounding small
    sq_norms = x.pow(2).sum(-1)
    out = []
    for start in range(0, n, rows):
        block = x[..., start : start + rows, :]
        sq = (block @ x.mT).mul_(-2.0)  # in place: one [..., B, N] buffer per block
        sq.add_(sq_norms[..., start : start + rows, None]).add_(sq_norms[..., None, :])
        out.append(sq.topk(k + 1, dim=-1, largest=False, sorted=True).values[..., k])
    return torch.cat(out, -1).clamp_min(0.0).sqrt()


def knn_entropy(
    samples: Tensor, *, k: int = 5, whiten: bool = False, block_elements: int = BLOCK_ELEMENTS
) -> Tensor:
    """Kozachenko-Leonenko k-nearest-neighbour entropy estimate from samples alone.

    H ≈ ψ(N) - ψ(k) + log V_A + (A/N) Σ_i log ε_i, with ε_i the distance from sample i to its
    k-th nearest neighbour and V_A the volume of the unit A-ball. Consistent for any density,
    so it also covers samplers without one (SQL). Ties (ε = 0, e.g. actions saturated at the
    box edge) are clamped to the smallest positive float, which biases H down there.

    ``whiten=True`` estimates the entropy of z = L⁻¹(x - x̄), LLᵀ the sample covariance, and
    adds log|det L| back (H(Az) = H(z) + log|det A|). The estimate stays consistent and its
    finite-sample bias no longer depends on the scales and correlations of the coordinates,
    which helps for anisotropic samples (needs N > A and a full-rank covariance).

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
    log_det = x.new_zeros(x.shape[:-2])
    if whiten:
        x, log_det = _whiten(x)
    eps = kth_neighbour_distance(x, k, block_elements=block_elements)
    eps = eps.clamp_min(torch.finfo(x.dtype).tiny)
    log_unit_ball = 0.5 * dim * math.log(math.pi) - math.lgamma(0.5 * dim + 1)
    digammas = torch.special.digamma(torch.tensor([float(n), float(k)], dtype=x.dtype))
    estimate = digammas[0] - digammas[1] + log_unit_ball + dim * eps.log().mean(-1) + log_det
    return estimate.to(samples.dtype)


def gaussian_fit_entropy(samples: Tensor) -> Tensor:
    """½ log det(2πe Σ̂) of the samples' covariance Σ̂: an upper bound on their entropy.

    Among all distributions with covariance Σ the Gaussian has the largest entropy, so this
    bounds H from above (up to the sampling error of Σ̂), with equality for a Gaussian.

    Shapes:
        samples: ``[..., N, A]`` → ``[...]``.

    Examples:
        >>> x = torch.randn(100_000, 3, generator=torch.Generator().manual_seed(0))
        >>> round(gaussian_fit_entropy(x).item(), 2), round(1.5 * math.log(2 * math.pi * math.e), 2)
        (4.26, 4.26)
    """
    dim = samples.shape[-1]
    _, log_det = _whiten(samples.double())
    return (0.5 * dim * (1.0 + math.log(2.0 * math.pi)) + log_det).to(samples.dtype)


@functools.lru_cache(maxsize=64)
def gaussian_knn_bias(n: int, dim: int, *, k: int = 5, draws: int = 3, seed: int = 0) -> float:
    """Bias of :func:`knn_entropy` on N samples of the standard normal in ``dim`` dimensions.

    The mean over ``draws`` independent draws of the estimate minus the exact ½D ln(2πe).
    Cached: the sweeps ask for the same (N, D) many times.
    """
    generator = torch.Generator().manual_seed(seed)
    exact = 0.5 * dim * (1.0 + math.log(2.0 * math.pi))
    values = [
        knn_entropy(torch.randn(n, dim, generator=generator, dtype=torch.float64), k=k).item()
        for _ in range(draws)
    ]
    return sum(values) / draws - exact


def calibrated_knn_entropy(samples: Tensor, *, k: int = 5, draws: int = 3) -> KnnEstimate:
    """Whitened kNN entropy, minus the bias the same estimator has on a Gaussian.

    After whitening, the samples have the identity covariance, like the standard normal; the
    kNN estimator's finite-sample bias on N standard-normal samples in the same dimension
    (:func:`gaussian_knn_bias`) is subtracted. This removes the bias exactly for Gaussian
    samples and mostly for near-Gaussian ones; for samples far from Gaussian it is a guess,
    which :attr:`KnnEstimate.gaussian_fit` (an upper bound) helps to judge. In low dimension
    the bias is a few hundredths of a nat; in D = 17 it is several tenths at N ≤ 10⁵
    (docs/algorithm.md §Measurements).

    Shapes:
        samples: ``[N, A]``.
    """
    whitened = knn_entropy(samples, k=k, whiten=True).item()
    bias = gaussian_knn_bias(samples.shape[-2], samples.shape[-1], k=k, draws=draws)
    return KnnEstimate(
        entropy=whitened - bias,
        whitened=whitened,
        bias=bias,
        gaussian_fit=gaussian_fit_entropy(samples).item(),
    )
