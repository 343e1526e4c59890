"""Multigoal experiment helpers: policy adapter, episodes, entropy estimators (closed forms) and
aggregates over seeds. The tool built on them is smoke-run in ``test_tools_multigoal.py``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import mock_sampler_loss
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.envs.utils import ExplorationType
from torchrl.modules import ProbabilisticActor, TanhNormal

from s2ac_lit.algorithms import ALGORITHMS
from s2ac_lit.analysis.experiments import aggregate_over_seeds, evaluate_episodes, numpy_policy
from s2ac_lit.analysis.goal_metrics import PROBE_STATES
from s2ac_lit.knn import knn_entropy
from s2ac_lit.objectives import S2ACLoss, SQLLoss, make_sac_loss
from s2ac_lit.objectives.s2ac import s2ac_entropy
from s2ac_lit.objectives.sac import sac_entropy
from s2ac_lit.objectives.sql import sql_samples

PROBES = torch.tensor(PROBE_STATES, dtype=torch.float32)


def tanh_gaussian_entropy(loc: float, scale: float) -> float:
    """H of tanh(X), X ~ N(loc, scale²), one dim: H(X) + E log(1 - tanh²X) by quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(200)  # ∫ f(z) N(z; 0, 1) dz
    x = loc + scale * nodes
    log_jacobian = np.log(4.0) - 2.0 * np.logaddexp(x, -x)  # log(1 - tanh² x), stable
    expected = float((weights * log_jacobian).sum() / math.sqrt(2.0 * math.pi))
    return 0.5 * math.log(2.0 * math.pi * math.e * scale**2) + expected


class ConstantNormalParams(nn.Module):
    """(loc, scale) independent of the observation: a policy with a known distribution."""

    def __init__(self, loc: list[float], scale: list[float]) -> None:
        super().__init__()
        self.register_buffer("loc", torch.tensor(loc))
        self.register_buffer("scale", torch.tensor(scale))

    def forward(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (*observation.shape[:-1], self.loc.numel())
        return self.loc.expand(shape), self.scale.expand(shape)


def tanh_normal_actor(loc: list[float], scale: list[float]) -> ProbabilisticActor:
    module = TensorDictModule(
        ConstantNormalParams(loc, scale), in_keys=["observation"], out_keys=["loc", "scale"]
    )
    return ProbabilisticActor(
        module,
        in_keys=["loc", "scale"],
        out_keys=["action"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -1.0, "high": 1.0, "tanh_loc": False},
    )


# ---------------------------------------------------------------------------- adapter
def test_numpy_policy_maps_arrays_and_follows_the_exploration_type() -> None:
    actor = tanh_normal_actor([0.3, -0.2], [0.5, 0.5])
    obs = np.zeros(2, dtype=np.float32)
    sampled = numpy_policy(actor, exploration=ExplorationType.RANDOM)
    a, b = sampled(obs), sampled(obs)
    assert a.shape == (2,) and a.dtype == np.float64
    assert not np.allclose(a, b)  # a stochastic policy is sampled
    deterministic = numpy_policy(actor, exploration=ExplorationType.DETERMINISTIC)
    np.testing.assert_array_equal(deterministic(obs), deterministic(obs))
    assert np.all(np.abs(deterministic(obs)) < 1.0)


def test_numpy_policy_is_reproducible_under_a_torch_seed() -> None:
    policy = numpy_policy(tanh_normal_actor([0.0, 0.0], [1.0, 1.0]))
    obs = np.array([1.0, 2.0], dtype=np.float32)
    torch.manual_seed(3)
    first = [policy(obs) for _ in range(3)]
    torch.manual_seed(3)
    np.testing.assert_array_equal(first, [policy(obs) for _ in range(3)])


def test_evaluate_episodes_with_a_scripted_policy() -> None:
    # Straight right at full speed: G1 = (5, 0) is reached on step 5 in every episode.
    summary, rollout = evaluate_episodes(
        "s2ac_lit/MultiGoalMaxEnt-v0", lambda obs: np.array([1.0, 0.0]), 3, seed=0
    )
    assert summary["distinct_goals"] == 1.0
    assert summary["hit_rate/0"] == 1.0 and summary["miss_rate"] == 0.0
    assert summary["episode_length_mean"] == 5.0
    expected = -30.0 * 5 - (16 + 9 + 4 + 1 + 0) + 10.0
    assert summary["return_mean"] == pytest.approx(expected)
    assert rollout["positions"].shape == (3, 6, 2)


# ---------------------------------------------------------------------------- entropy
def test_sac_entropy_matches_the_tanh_normal_closed_form() -> None:
    loc, scale = [0.5, -1.0], [0.3, 0.8]
    estimate = sac_entropy(tanh_normal_actor(loc, scale), PROBES[:2], num_samples=40_000)
    truth = sum(tanh_gaussian_entropy(m, s) for m, s in zip(loc, scale, strict=True))
    assert estimate.actions.shape == (2, 40_000, 2)
    # Monte Carlo std of -mean log π is about 0.006 here; a wrong Jacobian is off by > 0.3.
    torch.testing.assert_close(estimate.entropy, torch.full((2,), truth), atol=0.03, rtol=0)


def test_s2ac_entropy_without_svgd_steps_is_the_squashed_initial_gaussian() -> None:
    # L = 0: the S2AC(φ) policy is tanh(u), u ~ N(0, σ₀² I), whatever the critic.
    std = 0.6
    loss = mock_sampler_loss(S2ACLoss, 2, 2, init="fixed", steps=0, init_std=std)
    estimate = s2ac_entropy(loss, PROBES, num_samples=40_000)
    truth = 2 * tanh_gaussian_entropy(0.0, std)
    assert estimate.actions.shape == (len(PROBES), 40_000, 2)
    torch.testing.assert_close(
        estimate.entropy, torch.full((len(PROBES),), truth), atol=0.03, rtol=0
    )


@pytest.mark.parametrize(("num_samples", "expected"), [(25, 30), (10, 10), (3, 10)])
def test_s2ac_entropy_runs_whole_chains_of_the_trained_particle_count(
    num_samples: int, expected: int
) -> None:
    loss = mock_sampler_loss(S2ACLoss, 2, 2, init="learned", steps=2, hidden_sizes=(8,))
    estimate = s2ac_entropy(loss, PROBES, num_samples=num_samples)
    assert loss.actor_network.num_particles == 10
    assert estimate.actions.shape == (len(PROBES), expected, 2)
    assert torch.isfinite(estimate.entropy).all()
    assert estimate.actions.abs().max() <= 1.0


def test_sql_has_samples_but_no_density() -> None:
    loss = mock_sampler_loss(SQLLoss, 2, 2, init="fixed", amortized=True)
    estimate = sql_samples(loss, PROBES, num_samples=64)
    assert torch.isnan(estimate.entropy).all()
    assert estimate.actions.shape == (len(PROBES), 64, 2)
    assert torch.isfinite(knn_entropy(estimate.actions)).all()


def test_registry_picks_the_entropy_estimate_of_each_algorithm() -> None:
    loss, policy = make_sac_loss(2, 2, [-1.0, -1.0], [1.0, 1.0], hidden_sizes=(8,))
    estimate = ALGORITHMS["sac"].probe_entropy(loss, policy, PROBES, 16)
    assert estimate.actions.shape == (6, 16, 2) and torch.isfinite(estimate.entropy).all()
    s2ac = mock_sampler_loss(S2ACLoss, 2, 2, init="fixed", steps=1)
    estimate = ALGORITHMS["s2ac"].probe_entropy(s2ac, s2ac.policy(), PROBES, 20)
    assert estimate.actions.shape[1] == 20 and torch.isfinite(estimate.entropy).all()
    sql = mock_sampler_loss(SQLLoss, 2, 2, init="fixed", amortized=True)
    assert torch.isnan(ALGORITHMS["sql"].probe_entropy(sql, sql.policy(), PROBES, 8).entropy).all()
    with pytest.raises(RuntimeError, match=r"\[P, O\]"):
        sac_entropy(policy, PROBES[0])


def test_knn_entropy_of_gaussians() -> None:
    # Two anisotropic 2-D Gaussians in one batch; bias + noise measured at about 0.01 ± 0.02.
    covs = torch.tensor([[[0.5, 0.2], [0.2, 0.3]], [[0.01, 0.0], [0.0, 0.04]]])
    z = torch.randn(2, 4000, 2)
    x = z @ torch.linalg.cholesky(covs).transpose(-1, -2)
    truth = 0.5 * (2 * math.log(2 * math.pi * math.e) + torch.logdet(covs))
    torch.testing.assert_close(knn_entropy(x), truth, atol=0.08, rtol=0)
    with pytest.raises(RuntimeError, match="more than k"):
        knn_entropy(x[:, :5], k=5)


def test_aggregate_over_seeds_ignores_nan() -> None:
    rows = [
        {"algo": "sac", "env": "plain", "x": 1.0, "h": math.nan},
        {"algo": "sac", "env": "plain", "x": 2.0, "h": 4.0},
        {"algo": "sql", "env": "plain", "x": 5.0, "h": math.nan},
    ]
    out = aggregate_over_seeds(rows, ["algo", "env"], ["x", "h"])
    assert [r["algo"] for r in out] == ["sac", "sql"]
    assert out[0]["n_seeds"] == 2
    assert out[0]["x"] == {"mean": 1.5, "std": 0.5}
    assert out[0]["h"] == {"mean": 4.0, "std": 0.0}
    assert math.isnan(out[1]["h"]["mean"])
