"""Multigoal MaxEnt experiment pieces: trained policies as numpy policies, episodes, seeds.

See docs/algorithm.md §Multigoal.

The paper judges S2AC, SAC and SQL on the multigoal maps by *sampling* their stochastic
policies. This module connects a trained agent to :mod:`s2ac_lit.analysis.goal_metrics`:

- :func:`numpy_policy` turns a TorchRL policy (``observation`` → ``action``) into the numpy
  ``policy_fn(obs) -> action`` that :func:`~s2ac_lit.analysis.goal_metrics.rollout_episodes`
  runs.
- :func:`evaluate_episodes` and :func:`aggregate_over_seeds` produce and summarise result rows.

The entropy of each algorithm's policy at probe states comes from the registry
(``ALGORITHMS[algo].probe_entropy``, next to each loss in ``s2ac_lit.objectives``); the
density-free :func:`s2ac_lit.knn.knn_entropy` puts all algorithms on one scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import gymnasium
import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from s2ac_lit.analysis.goal_metrics import PolicyFn, rollout_episodes, summarize_episodes

OBSERVATION_KEY = "observation"
ACTION_KEY = "action"

TorchPolicy = Callable[[TensorDictBase], TensorDictBase]


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


def evaluate_episodes(
    env_id: str, policy_fn: PolicyFn, n_episodes: int, seed: int
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Run ``n_episodes`` test episodes on a multigoal id and summarise them.

    Returns:
        ``(summary, rollout)``: :func:`~s2ac_lit.analysis.goal_metrics.summarize_episodes`
        plus ``episode_length_mean``, and the raw
        :func:`~s2ac_lit.analysis.goal_metrics.rollout_episodes` arrays (``positions`` for the
        pictures).
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
