"""Target distributions with known entropy, for checking entropy estimates.

See docs/algorithm.md §Entropy evaluation.

Every target carries an unnormalised-or-normalised ``log_prob`` over particles ``[..., M, D]``
(the samplers only need its gradient) and a ground-truth differential entropy H = -E_p[log p] in
nats, with its standard error: 0 for analytic values, the Monte-Carlo standard error otherwise.

- :func:`gaussian_target`: any mean and covariance, analytic H = ½d(1 + ln 2π) + ½ ln det Σ.
- :func:`paper_gaussian`: the paper's 2-D toy target (H ≈ 3.41).
- :func:`gmm_circle_target`: K equal-weight isotropic components on a circle. In D > 2 the modes
  sit in the first two coordinates and every component has the same N(0, s²) in the other D-2,
  so those coordinates are independent of the first two and of the component: H is the 2-D
  mixture entropy (Monte Carlo) plus (D-2)·½ ln(2πe s²) (exact).
- :func:`custom_target`: a user's log-density, with H given, estimated by Monte Carlo from a
  sampler, or by quadrature on a grid (D ≤ 2; that also normalises the density).

Shapes:
    ``...``: independent groups, M particles, D dimensions; ``log_prob``: ``[..., M, D]`` →
    ``[..., M]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

LogProb = Callable[[Tensor], Tensor]
Sampler = Callable[[int, torch.Generator], Tensor]

#: The paper's toy Gaussian (docs/algorithm.md §Entropy evaluation).
PAPER_MEAN = (-0.6871, 0.8010)
PAPER_COV = ((5 * 0.2260, 5 * 0.1652), (5 * 0.1652, 5 * 0.6779))
_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True, kw_only=True)
class Target:
    """A distribution p ∝ exp(log_prob) with its entropy.

    Attributes:
        name: short label used in tables.
        dim: D.
        log_prob: maps ``[..., M, D]`` to ``[..., M]``, in the dtype of its input.
        entropy: ground-truth H in nats.
        entropy_se: standard error of ``entropy`` (0 when analytic).
        sample: optional exact sampler ``(n, generator) -> [n, D]`` (float64).
        modes: number of mixture modes (1 for a Gaussian, 0 when unknown).
        trace_cov: tr Cov_p, to compare the particles' spread with (None when unknown).
    """

    name: str
    dim: int
    log_prob: LogProb
    entropy: float
    entropy_se: float = 0.0
    sample: Sampler | None = None
    modes: int = 0
    trace_cov: float | None = None


def gaussian_entropy(cov: Tensor) -> float:
    """Differential entropy of N(μ, Σ): ½d(1 + ln 2π) + ½ ln det Σ.

    Shapes:
        cov: ``[D, D]``.

    Examples:
        >>> round(gaussian_entropy(torch.eye(2)), 6) == round(1 + math.log(2 * math.pi), 6)
        True
    """
    d = cov.shape[-1]
    return 0.5 * d * (1.0 + _LOG_2PI) + 0.5 * torch.linalg.slogdet(cov.double()).logabsdet.item()


def _check_dim(x: Tensor, d: int) -> None:
    if x.dim() < 2 or x.shape[-1] != d:
        raise RuntimeError(f"particles must be [..., M, {d}], got shape {tuple(x.shape)}")


def gaussian_target(
    mean: Sequence[float] | Tensor,
    cov: Sequence[Sequence[float]] | Tensor,
    *,
    name: str = "gaussian",
) -> Target:
    """N(mean, cov) with its analytic entropy.

    Args:
        mean: ``[D]``.
        cov: ``[D, D]``, symmetric positive definite.
        name: label.
    """
    mu = torch.as_tensor(mean, dtype=torch.float64)
    sigma = torch.as_tensor(cov, dtype=torch.float64)
    d = mu.shape[-1]
    if sigma.shape != (d, d):
        raise RuntimeError(f"cov must be [{d}, {d}] for mean [{d}], got {tuple(sigma.shape)}")
    chol = torch.linalg.cholesky(sigma)
    precision = torch.cholesky_inverse(chol)
    log_norm = -0.5 * d * _LOG_2PI - torch.log(torch.diagonal(chol)).sum()

    def log_prob(x: Tensor) -> Tensor:
        _check_dim(x, d)
        diff = x - mu.to(x)
        return -0.5 * ((diff @ precision.to(x)) * diff).sum(-1) + log_norm.to(x)

    def sample(n: int, generator: torch.Generator) -> Tensor:
        return mu + torch.randn(n, d, generator=generator, dtype=torch.float64) @ chol.T

    return Target(
        name=name,
        dim=d,
        log_prob=log_prob,
        entropy=gaussian_entropy(sigma),
        sample=sample,
        modes=1,
        trace_cov=torch.trace(sigma).item(),
    )


def paper_gaussian() -> Target:
    """The paper's toy Gaussian: μ = [-0.6871, 0.8010], Σ = 5·[[.2260, .1652], [.1652, .6779]]."""
    return gaussian_target(PAPER_MEAN, PAPER_COV, name="paper_gaussian")


def monte_carlo_entropy(
    log_prob: LogProb, sample: Sampler, *, n: int = 200_000, seed: int = 0, chunk: int = 50_000
) -> tuple[float, float]:
    """H ≈ -mean log p(x_k), x_k ~ p, and its standard error std(log p)/√n.

    ``log_prob`` must be normalised. Fixed seed, float64, evaluated in chunks.

    Returns:
        ``(entropy, standard_error)``.
    """
    if n < 2:
        raise ValueError(f"Monte Carlo needs n >= 2 samples, got {n}")
    generator = torch.Generator().manual_seed(seed)
    values = []
    for start in range(0, n, chunk):
        x = sample(min(chunk, n - start), generator)
        values.append(log_prob(x.unsqueeze(0)).squeeze(0))
    log_p = torch.cat(values)
    return -log_p.mean().item(), log_p.std().item() / math.sqrt(n)


def grid_entropy(
    log_prob: LogProb, low: Sequence[float], high: Sequence[float], *, n_grid: int = 801
) -> tuple[float, float]:
    """Entropy and normalising constant of exp(log_prob) by the midpoint rule on a box (D ≤ 2).

    The density is normalised on the box, so ``log_prob`` may be unnormalised; mass outside
    the box is ignored, so choose it wide enough.

    Returns:
        ``(entropy, log_normaliser)``: H of the normalised density and ln ∫ exp(log_prob).
    """
    d = len(low)
    if d not in (1, 2) or len(high) != d:
        raise ValueError(f"grid quadrature supports D = 1 or 2, got low={low}, high={high}")
    axes = [
        torch.linspace(lo, hi, n_grid + 1, dtype=torch.float64)
        for lo, hi in zip(low, high, strict=True)
    ]
    mids = [0.5 * (a[1:] + a[:-1]) for a in axes]
    cell = math.prod((hi - lo) / n_grid for lo, hi in zip(low, high, strict=True))
    points = torch.stack(torch.meshgrid(*mids, indexing="ij"), -1).reshape(-1, d)
    f = log_prob(points.unsqueeze(0)).squeeze(0)
    log_z = torch.logsumexp(f, 0) + math.log(cell)
    log_p = f - log_z
    return -(log_p.exp() * log_p).sum().item() * cell, log_z.item()


def gmm_circle_target(
    n_modes: int,
    dim: int = 2,
    *,
    radius: float = 4.0,
    component_std: float = 1.0,
    n_mc: int = 200_000,
    seed: int = 0,
) -> Target:
    """Equal-weight mixture of K isotropic Gaussians N(μ_k, s² I) with μ_k on a circle.

    μ_k = radius·(cos 2πk/K, sin 2πk/K, 0, ..., 0): the modes are in the first two coordinates
    (K = 1 puts the single mode at (radius, 0)). The other D-2 coordinates are N(0, s²) in every
    component, hence independent, so H = H_2D(mixture) + (D-2)·½ ln(2πe s²): the 2-D part by
    Monte Carlo (``n_mc`` samples, fixed ``seed``), the rest exact.

    Args:
        n_modes: K ≥ 1.
        dim: D ≥ 2.
        radius: circle radius (paper: 4).
        component_std: s, the standard deviation of every component in every coordinate.
        n_mc: Monte-Carlo samples for the 2-D entropy.
        seed: Monte-Carlo seed.
    """
    if n_modes < 1 or dim < 2:
        raise ValueError(f"need n_modes >= 1 and dim >= 2, got {n_modes}, {dim}")
    angles = 2.0 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
    centres = radius * torch.stack([angles.cos(), angles.sin()], -1)  # [K, 2]
    var = component_std**2
    comp_norm = -_LOG_2PI - math.log(var) - math.log(n_modes)  # 2-D component, weight 1/K
    rest_norm = -0.5 * (dim - 2) * (_LOG_2PI + math.log(var))

    def log_prob_2d(x: Tensor) -> Tensor:
        sq = (x[..., :2].unsqueeze(-2) - centres.to(x)).pow(2).sum(-1)  # [..., M, K]
        return torch.logsumexp(-0.5 * sq / var, -1) + comp_norm

    def log_prob(x: Tensor) -> Tensor:
        _check_dim(x, dim)
        return log_prob_2d(x) + (-0.5 * x[..., 2:].pow(2).sum(-1) / var + rest_norm)

    def sample_2d(n: int, generator: torch.Generator) -> Tensor:
        k = torch.randint(0, n_modes, (n,), generator=generator)
        noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        return centres[k] + component_std * noise

    def sample(n: int, generator: torch.Generator) -> Tensor:
        head = sample_2d(n, generator)
        tail = component_std * torch.randn(n, dim - 2, generator=generator, dtype=torch.float64)
        return torch.cat([head, tail], -1)

    h_2d, se = monte_carlo_entropy(log_prob_2d, sample_2d, n=n_mc, seed=seed)
    h_rest = 0.5 * (dim - 2) * (1.0 + _LOG_2PI + math.log(var))
    spread = (centres - centres.mean(0)).pow(2).sum(-1).mean().item()
    return Target(
        name=f"gmm{n_modes}_d{dim}",
        dim=dim,
        log_prob=log_prob,
        entropy=h_2d + h_rest,
        entropy_se=se,
        sample=sample,
        modes=n_modes,
        trace_cov=dim * var + spread,
    )


def custom_target(
    log_prob: LogProb,
    dim: int,
    *,
    entropy: float | None = None,
    entropy_se: float = 0.0,
    sample: Sampler | None = None,
    box: tuple[Sequence[float], Sequence[float]] | None = None,
    n_mc: int = 200_000,
    name: str = "custom",
) -> Target:
    """A user-supplied log-density, with its entropy from the first source that applies.

    1. ``entropy`` given: used as is, with ``entropy_se``.
    2. ``sample`` given: Monte Carlo (``log_prob`` must then be normalised).
    3. ``box=(low, high)`` given and D ≤ 2: quadrature on a grid; ``log_prob`` may be
       unnormalised (the samplers only use its gradient).

    Args:
        log_prob: ``[..., M, D]`` → ``[..., M]``.
        dim: D.
        entropy: known H, if any.
        entropy_se: its standard error.
        sample: exact sampler ``(n, generator) -> [n, D]``.
        box: integration box for quadrature.
        n_mc: Monte-Carlo sample count.
        name: label.
    """
    se = entropy_se
    trace_cov = None
    if sample is not None:
        trace_cov = sample(20_000, torch.Generator().manual_seed(0)).var(0).sum().item()
    if entropy is None and sample is not None:
        entropy, se = monte_carlo_entropy(log_prob, sample, n=n_mc)
    elif entropy is None and box is not None:
        if len(box[0]) != dim:
            raise ValueError(f"box has {len(box[0])} coordinates for a {dim}-D target")
        entropy, _ = grid_entropy(log_prob, box[0], box[1])
    elif entropy is None:
        raise ValueError("custom_target needs one of entropy, sample or box (D <= 2)")
    return Target(
        name=name,
        dim=dim,
        log_prob=log_prob,
        entropy=float(entropy),
        entropy_se=se,
        sample=sample,
        trace_cov=trace_cov,
    )
