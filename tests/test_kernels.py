"""Kernel and bandwidth rules against explicit hand computations."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from s2ac_lit.kernels import bandwidth, pairwise_sq_dists, rbf_kernel


def test_pairwise_sq_dists_matches_explicit_loop() -> None:
    x = torch.randn(3, 5, 4, dtype=torch.float64)
    d = pairwise_sq_dists(x)
    for b in range(3):
        for i in range(5):
            for j in range(5):
                expected = float(((x[b, i] - x[b, j]) ** 2).sum())
                assert d[b, i, j].item() == pytest.approx(expected, rel=1e-12, abs=1e-14)
    assert torch.all(d.diagonal(dim1=-2, dim2=-1) == 0)


def test_rbf_kernel_values_and_group_bandwidths() -> None:
    d = torch.tensor([[[0.0, 2.0], [2.0, 0.0]], [[0.0, 8.0], [8.0, 0.0]]], dtype=torch.float64)
    k = rbf_kernel(d, torch.tensor([1.0, 4.0], dtype=torch.float64))
    assert k[0, 0, 1].item() == pytest.approx(math.exp(-1.0))
    assert k[1, 0, 1].item() == pytest.approx(math.exp(-1.0))
    assert torch.all(k.diagonal(dim1=-2, dim2=-1) == 1)


def _off_diagonal(x: list[float]) -> list[float]:
    return [(a - b) ** 2 for i, a in enumerate(x) for j, b in enumerate(x) if i != j]


def test_median_and_mean_half_by_hand() -> None:
    points = [0.0, 1.0, 3.0, 7.0]
    x = torch.tensor(points, dtype=torch.float64).unsqueeze(-1)
    d = pairwise_sq_dists(x)
    off = _off_diagonal(points)
    log_term = 2 * math.log(len(points) + 1)
    assert bandwidth(d, "median").item() == pytest.approx(statistics.median(off) / log_term)
    assert bandwidth(d, "mean_half").item() == pytest.approx(statistics.mean(off) / 2 / log_term)
    all_entries = off + [0.0] * len(points)
    assert bandwidth(d, "median", include_diagonal=True).item() == pytest.approx(
        statistics.median(all_entries) / log_term
    )
    assert bandwidth(d, "mean_half", include_diagonal=True).item() == pytest.approx(
        statistics.mean(all_entries) / 2 / log_term
    )


def test_bandwidth_is_per_group_detached_and_floored() -> None:
    x = torch.randn(2, 3, 6, 2, requires_grad=True)
    s2 = bandwidth(pairwise_sq_dists(x), "median")
    assert s2.shape == (2, 3)
    assert not s2.requires_grad
    single = bandwidth(pairwise_sq_dists(x[1, 2]), "median")
    assert s2[1, 2].item() == pytest.approx(single.item())
    same = torch.zeros(4, 2)
    assert bandwidth(pairwise_sq_dists(same), "mean_half").item() > 0


def test_fixed_bandwidth_and_bad_values() -> None:
    d = pairwise_sq_dists(torch.randn(3, 5, 2))
    assert torch.all(bandwidth(d, 5.0) == 5.0)
    with pytest.raises(ValueError, match="unknown bandwidth rule 'mean'"):
        bandwidth(d, "mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive kernel variance, got -1"):
        bandwidth(d, -1.0)
    with pytest.raises(ValueError, match="at least 2 particles"):
        bandwidth(pairwise_sq_dists(torch.randn(1, 2)), "median")


def test_trace_rule_is_the_total_variance() -> None:
    """E|x_i - x_j|² = 2 tr Cov, so the 'trace' rule estimates tr Cov of the particles."""
    g = torch.Generator().manual_seed(0)
    scale = torch.tensor([0.5, 2.0], dtype=torch.float64)
    x = torch.randn(4000, 2, generator=g, dtype=torch.float64) * scale
    sigma2 = bandwidth(pairwise_sq_dists(x), "trace").item()
    # tr Cov = 4.25; the pairwise mean uses the unbiased covariance, so only sampling error
    # (relative SE ≈ sqrt(2/n)) remains.
    assert sigma2 == pytest.approx(4.25, rel=5 * math.sqrt(2 / 4000))
    assert sigma2 == pytest.approx(x.var(0).sum().item(), rel=1e-9)
