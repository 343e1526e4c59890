"""Multigoal MaxEnt experiment pieces: trained policies as numpy policies, probe entropies.

See docs/algorithm.md §Multigoal.

The paper judges S2AC, SAC and SQL on the multigoal maps by *sampling* their stochastic
policies. This module connects a trained agent to :mod:`s2ac_lit.envs.metrics`:

- :func:`numpy_policy` turns a TorchRL policy (``observation`` → ``action``) into the numpy
  ``policy_fn(obs) -> action`` that :func:`~s2ac_lit.envs.metrics.rollout_episodes` runs.
- The entropy estimators give H(π(·|s)) at probe states from the policy's own density:
  S2AC's closed-form SVGD log-density of its particles (:func:`s2ac_entropy`), SAC's tanh-Normal
  log-density (:func:`sac_entropy`); SQL's amortised sampler has no density, so its estimate is
  NaN (:func:`sql_samples`). The registry picks the one that fits an agent
  (``ALGORITHMS[algo].probe_entropy`` in :mod:`s2ac_lit.algorithms`). Every estimator also
  returns the sampled actions, so that the density-free :func:`knn_entropy` can put all
  algorithms on one scale.
- :func:`evaluate_episodes` and :func:`aggregate_over_seeds` produce and summarise result rows.

Entropies are of the action a ∈ [-1, 1]² (tanh squash included), in nats.

Shapes:
    P probe states, N samples per state, M particles per SVGD chain, A action dim.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import gymnasium
import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torch import Tensor
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import ProbabilisticActor

from s2ac_lit.envs.metrics import PolicyFn, rollout_episodes, summarize_episodes
from s2ac_lit.objectives import S2ACLoss, SQLLoss

OBSERVATION_KEY = "observation"
ACTION_KEY = "action"

TorchPolicy = Callable[[TensorDictBase], TensorDictBase]


class EntropyEstimate(NamedTuple):
    """Entropy of π(·|s) at each probe state and the actions it was estimated from.

    Attributes:
        entropy: ``[P]`` -mean log π(a|s) over the samples; NaN where π has no density.
        actions: ``[P, N, A]`` the samples (for :func:`knn_entropy`).
    """

    entropy: Tensor
    actions: Tensor


def numpy_policy(
    policy: TorchPolicy,
    *,
    exploration: ExplorationType = ExplorationType.RANDOM,
    observation_key: str = OBSERVATION_KEY,
    action_key: str = ACTION_KEY,
) -> PolicyFn:
    """Wrap a TorchRL policy as ``policy_fn(obs: np.ndarray[O]) -> np.ndarray[A]``.

    Each call builds an unbatched TensorDict, runs the policy under ``exploration`` (``RANDOM``:
    sample the stochastic policy, the MaxEnt policy; ``DETERMINISTIC``: its deterministic
    mode) and ``torch.no_grad()``, and returns the action as float64. Randomness comes from
    torch's global generator: seed it (``torch.manual_seed``) for reproducible rollouts.

    Examples:
        >>> from tensordict.nn import TensorDictModule
        >>> double = TensorDictModule(lambda x: 2 * x, ["observation"], ["action"])
        >>> numpy_policy(double)(np.array([0.5, -1.0], dtype=np.float32)).tolist()
        [1.0, -2.0]
    """

    def policy_fn(observation: np.ndarray) -> np.ndarray:
        obs = torch.as_tensor(np.asarray(observation), dtype=torch.float32)
        td = TensorDict({observation_key: obs}, batch_size=[])
        with set_exploration_type(exploration), torch.no_grad():
            action = policy(td).get(action_key)
        return action.detach().cpu().numpy().astype(np.float64)

    return policy_fn


def _check_observations(observations: Tensor) -> None:
    if observations.dim() != 2:
        raise RuntimeError(
            f"expected probe observations of shape [P, O], got {tuple(observations.shape)}"
        )


def s2ac_entropy(
    loss: S2ACLoss, observations: Tensor, *, num_samples: int = 1000
) -> EntropyEstimate:
    """-mean log π of S2AC's particles: the SVGD chain's closed-form log-density.

    See docs/algorithm.md §Sampler and §Multigoal.

    The policy is the M-particle chain the agent was trained with; a chain with more particles
    would be another distribution (the kernel couples them). So each probe state is repeated
    ⌈N/M⌉ times and every copy runs an independent M-particle chain: N ≈ ⌈N/M⌉·M samples of
    the trained policy, each with its log π (squash correction included). The log π is the
    sampler's own estimate (first order in ε, with the agent's ``self_term`` setting), so it
    may differ from :func:`knn_entropy` of the same actions.

    Shapes:
        observations: ``[P, O]`` → entropy ``[P]``, actions ``[P, ⌈N/M⌉·M, A]``.
    """
    _check_observations(observations)
    actor = loss.actor_network
    copies = max(1, math.ceil(num_samples / actor.num_particles))
    obs = observations.unsqueeze(-2).expand(-1, copies, -1)
    with loss.bind(loss.qvalue_network_params.detach()):
        sample = actor.sample(obs, loss.qvalue_network, loss.sampler_temperature())
    log_prob = sample.log_prob.detach().flatten(-2)  # [P, copies, M] → [P, N]
    actions = sample.action.detach().flatten(-3, -2)  # [P, copies, M, A] → [P, N, A]
    return EntropyEstimate(-log_prob.mean(-1), actions)


def sac_entropy(
    actor: ProbabilisticActor,
    observations: Tensor,
    *,
    num_samples: int = 1000,
    observation_key: str = OBSERVATION_KEY,
) -> EntropyEstimate:
    """-mean log π of samples of a ``ProbabilisticActor`` (SAC's tanh-Normal).

    Samples and log-densities come from the same ``actor.get_dist`` distribution; the tanh
    transform caches each sample's pre-image, so log π is exact even where tanh saturates.

    Shapes:
        observations: ``[P, O]`` → entropy ``[P]``, actions ``[P, N, A]``.
    """
    _check_observations(observations)
    td = TensorDict({observation_key: observations}, batch_size=observations.shape[:1])
    with torch.no_grad():
        dist = actor.get_dist(td)
        actions = dist.sample((num_samples,))  # [N, P, A]
        log_prob = dist.log_prob(actions)  # [N, P]
    return EntropyEstimate(-log_prob.mean(0), actions.transpose(0, 1))


def sql_samples(loss: SQLLoss, observations: Tensor, *, num_samples: int = 1000) -> EntropyEstimate:
    """Samples of SQL's amortised sampler; the entropy is NaN.

    a = squash(g_ψ(s, ξ)) is a neural map of noise with no tractable density (g_ψ is not
    invertible in general), so SQL has no log π; use :func:`knn_entropy` on the actions.

    Shapes:
        observations: ``[P, O]`` → entropy ``[P]`` (NaN), actions ``[P, N, A]``.
    """
    _check_observations(observations)
    actor = loss.actor_network
    with torch.no_grad(), loss.bind():
        actions = actor.squash(actor.sample_amortized(observations, num_samples))
    nan = torch.full(observations.shape[:1], math.nan, dtype=actions.dtype)
    return EntropyEstimate(nan, actions)


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


def evaluate_episodes(
    env_id: str, policy_fn: PolicyFn, n_episodes: int, seed: int
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Run ``n_episodes`` test episodes on a multigoal id and summarise them.

    Returns:
        ``(summary, rollout)``: :func:`~s2ac_lit.envs.metrics.summarize_episodes` plus
        ``episode_length_mean``, and the raw :func:`~s2ac_lit.envs.metrics.rollout_episodes`
        arrays (``positions`` for the pictures).
    """
    env = gymnasium.make(env_id)
    try:
        rollout = rollout_episodes(env, policy_fn, n_episodes, seed)
        n_goals = len(env.unwrapped.layout.goals)  # type: ignore[attr-defined]
    finally:
        env.close()
    summary = summarize_episodes(rollout["goal"], rollout["returns"], rollout["wall_hits"], n_goals)
    summary["episode_length_mean"] = float(rollout["lengths"].mean())
    return summary, rollout


def aggregate_over_seeds(
    rows: Iterable[Mapping[str, Any]],
    group_by: Sequence[str],
    metrics: Sequence[str],
) -> list[dict[str, Any]]:
    """Mean and (population) std over seeds of each metric, one record per group.

    Missing or NaN values are ignored; a metric with no finite value gets NaN. Groups keep the
    order of their first row.

    Returns:
        Records with the ``group_by`` keys, ``n_seeds``, and ``<metric>`` → ``{"mean", "std"}``.

    Examples:
        >>> rows = [{"algo": "sac", "x": 1.0}, {"algo": "sac", "x": 3.0}]
        >>> aggregate_over_seeds(rows, ["algo"], ["x"])
        [{'algo': 'sac', 'n_seeds': 2, 'x': {'mean': 2.0, 'std': 1.0}}]
    """
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[key] for key in group_by), []).append(row)
    records = []
    for key, members in groups.items():
        record: dict[str, Any] = dict(zip(group_by, key, strict=True))
        record["n_seeds"] = len(members)
        for metric in metrics:
            values = np.asarray([float(r.get(metric, math.nan)) for r in members])
            finite = values[np.isfinite(values)]
            mean = float(finite.mean()) if finite.size else math.nan
            std = float(finite.std()) if finite.size else math.nan
            record[metric] = {"mean": mean, "std": std}
        records.append(record)
    return records
