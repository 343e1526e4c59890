"""The goal map of a multigoal run: sampled episodes of the final policy over the reward map.

Registered for the multigoal ids as their run output (``s2ac_lit.envs.outputs``); the trainer
calls it after a multigoal fit. See docs/algorithm.md §Multigoal.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium
import torch
from torchrl.envs.utils import ExplorationType

from s2ac_lit.analysis.experiments import TorchPolicy, evaluate_episodes, numpy_policy
from s2ac_lit.analysis.goal_metrics import plot_trajectories
from s2ac_lit.trainer.layout import GOAL_MAP_JSON

GOAL_MAP_EPISODES = 20
"""Sampled episodes drawn on a multigoal run's goal map (hit rates in steps of 5 %)."""
GOAL_MAP_SEED = 100_000
"""Seed of those episodes; never a training seed (the same offset as tools/multigoal.py)."""


def write_goal_map(
    run_folder: Path, env_id: str, policy: TorchPolicy, episodes: int = GOAL_MAP_EPISODES
) -> str:
    """Draw sampled episodes of ``policy`` over the reward map; returns the line to print.

    Writes ``goal_map.png`` (trajectories over the reward contours, goals with their hit
    rates, wall) and ``goal_map.json`` (hit rate per goal) into ``run_folder``, from
    ``episodes`` episodes of the stochastic (MaxEnt) policy.
    """
    policy_fn = numpy_policy(policy, exploration=ExplorationType.RANDOM)
    torch.manual_seed(GOAL_MAP_SEED)
    metrics, rollout = evaluate_episodes(env_id, policy_fn, episodes, GOAL_MAP_SEED)
    rates = {int(k.split("/")[1]): v for k, v in metrics.items() if k.startswith("hit_rate/")}
    hits = {f"G{g + 1}": rates[g] for g in sorted(rates)}
    env = gymnasium.make(env_id)
    title = f"{env_id}: {episodes} sampled episodes of the final policy\nrun {run_folder.name}"
    path = plot_trajectories(
        env, rollout["positions"], run_folder / "goal_map.png", title, list(hits.values())
    )
    env.close()
    (run_folder / GOAL_MAP_JSON).write_text(json.dumps({"episodes": episodes, **hits}))
    reached = [name for name, rate in hits.items() if rate > 0]
    shown = ", ".join(f"{name} {rate:.0%}" for name, rate in hits.items())
    return (
        f"goals reached: {len(reached)} of {len(hits)} ({shown} of {episodes} sampled "
        f"episodes, {metrics['miss_rate']:.0%} none); map in {path}"
    )
