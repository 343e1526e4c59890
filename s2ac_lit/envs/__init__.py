"""Environments: the multigoal point mass registered with gymnasium (docs/algorithm.md §Multigoal).

Importing this package registers the ids in :data:`MULTIGOAL_IDS`, each wrapped in gymnasium's
``TimeLimit`` of 30 steps, so ``gymnasium.make`` and ``torchrl.envs.GymEnv`` find them, and their
run output, the goal map (``s2ac_lit.envs.outputs``).
"""

from __future__ import annotations

import gymnasium

from s2ac_lit.envs.multigoal import (
    CLASSIC_GOALS,
    CLASSIC_WALL,
    EPISODE_STEPS,
    MAXENT_GOALS,
    MAXENT_WALL,
    MultiGoalEnv,
)
from s2ac_lit.envs.outputs import register_run_output, run_output

MULTIGOAL_IDS: dict[str, dict[str, object]] = {
    "s2ac_lit/MultiGoalMaxEnt-v0": {"goals": MAXENT_GOALS, "wall": None},
    "s2ac_lit/MultiGoal-v0": {"goals": CLASSIC_GOALS, "wall": None},
    "s2ac_lit/MultiGoalMaxEntObstacle-v0": {"goals": MAXENT_GOALS, "wall": MAXENT_WALL},
    "s2ac_lit/MultiGoalObstacle-v0": {"goals": CLASSIC_GOALS, "wall": CLASSIC_WALL},
}


GOAL_MAP = "s2ac_lit.analysis.goal_map:write_goal_map"
"""The multigoal ids' run output: the goal map (``s2ac_lit.envs.outputs``)."""


def register_envs() -> None:
    """Register the multigoal ids with gymnasium (ids already registered are left alone) and
    their run output, the goal map."""
    for env_id, kwargs in MULTIGOAL_IDS.items():
        register_run_output(env_id, GOAL_MAP)
        if env_id not in gymnasium.registry:
            gymnasium.register(
                env_id,
                entry_point="s2ac_lit.envs.multigoal:MultiGoalEnv",
                max_episode_steps=EPISODE_STEPS,
                kwargs=kwargs,
            )


register_envs()

__all__ = ["MULTIGOAL_IDS", "MultiGoalEnv", "register_envs", "run_output"]

from s2ac_lit.envs.factory import (  # noqa: E402
    EnvDims,
    EnvError,
    check_env_id,
    check_env_spaces,
    env_dims,
    make_env,
)

__all__ += ["EnvDims", "EnvError", "check_env_id", "check_env_spaces", "env_dims", "make_env"]

from s2ac_lit.envs.state import env_state, load_env_state, unreadable_reason  # noqa: E402

__all__ += ["env_state", "load_env_state", "unreadable_reason"]
