"""Evaluation episodes with a deterministic (or any) action selection."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from s2ac_lit.algorithms import Policy


class EvalResult(NamedTuple):
    """Returns of N evaluation episodes."""

    returns: np.ndarray
    lengths: np.ndarray

    @property
    def mean(self) -> float:
        return float(self.returns.mean())

    @property
    def std(self) -> float:
        return float(self.returns.std())


def evaluate_policy(
    env: EnvBase,
    policy: Policy,
    episodes: int,
    *,
    exploration: ExplorationType = ExplorationType.DETERMINISTIC,
    max_steps: int = 100_000,
) -> EvalResult:
    """Run ``episodes`` full episodes and return their undiscounted returns.

    Each episode ends at termination or truncation (the env's time limit); ``max_steps``
    only guards against envs without one.
    """
    returns, lengths = [], []
    with set_exploration_type(exploration), torch.no_grad():
        for _ in range(episodes):
            rollout = env.rollout(max_steps, policy, break_when_any_done=True)
            returns.append(float(rollout["next", "reward"].sum()))
            lengths.append(rollout.numel())
    return EvalResult(np.asarray(returns), np.asarray(lengths))
