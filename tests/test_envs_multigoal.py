"""Multigoal environments: dynamics, reward, termination, walls and registration.

See docs/algorithm.md §Multigoal.

Expected numbers are worked out by hand in the comments, not by calling the module's formulas.
"""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from s2ac_lit.envs import MULTIGOAL_IDS, register_envs
from s2ac_lit.envs.multigoal import (
    CLASSIC_GOALS,
    CLASSIC_WALL,
    MAXENT_GOALS,
    MAXENT_WALL,
    MultiGoalEnv,
    move,
    multigoal_reward,
    segment_crosses,
)

MAXENT_ID = "s2ac_lit/MultiGoalMaxEnt-v0"


def _env(goals=MAXENT_GOALS, wall=None, start=(0.0, 0.0)) -> MultiGoalEnv:
    env = MultiGoalEnv(goals, wall)
    env.reset(seed=0, options={"position": start})
    return env


def test_spaces_and_reset() -> None:
    env = MultiGoalEnv(MAXENT_GOALS)
    obs, info = env.reset(seed=3)
    assert obs.dtype == np.float32 and obs.shape == (2,)
    np.testing.assert_array_equal(obs, [0.0, 0.0])
    assert info == {"goal": -1, "wall_hit": False}
    assert env.observation_space == gymnasium.spaces.Box(-7.0, 7.0, (2,), np.float32)
    assert env.action_space == gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)
    check_env(gymnasium.make(MAXENT_ID).unwrapped)  # via make, so the checker sees a spec


def test_position_clipped_to_box() -> None:
    env = _env(start=(6.5, 0.0))
    obs, *_ = env.step(np.array([1.0, 0.0]))
    np.testing.assert_array_equal(obs, [7.0, 0.0])  # 6.5 + 1 = 7.5 → 7
    obs, *_ = env.step(np.array([0.5, -0.25]))
    np.testing.assert_array_equal(obs, [7.0, -0.25])


def test_action_clipped_to_box_and_charged_clipped() -> None:
    env = _env()
    obs, reward, *_ = env.step(np.array([2.0, -3.0]))
    np.testing.assert_array_equal(obs, [1.0, -1.0])
    # a = (1, -1): 30·|a|² = 60. s' = (1, -1): |s'-G1|² = 16 + 1 = 17,
    # |s'-G2|² = 25 + 16 = 41, |s'-G3|² = 25 + 4 = 29 → min 17. r = -(60 + 17).
    assert reward == pytest.approx(-77.0, abs=1e-12)


def test_reward_by_hand() -> None:
    env = _env()
    obs, reward, terminated, truncated, info = env.step(np.array([0.5, -0.2]))
    np.testing.assert_allclose(obs, [0.5, -0.2], rtol=1e-7)
    # |a|² = 0.25 + 0.04 = 0.29 → 30·0.29 = 8.7. s' = (0.5, -0.2):
    # G1 (5,0): 4.5² + 0.2² = 20.29; G2 (-4,3): 4.5² + 3.2² = 30.49;
    # G3 (-4,-3): 4.5² + 2.8² = 28.09.
    # r = -(8.7 + 20.29) = -28.99.
    assert reward == pytest.approx(-28.99, abs=1e-9)
    assert (terminated, truncated, info) == (False, False, {"goal": -1, "wall_hit": False})


def test_pure_reward_batched() -> None:
    goals = np.array(CLASSIC_GOALS)
    pos = np.array([[0.0, 4.8], [1.0, 1.0]])
    act = np.array([[0.0, 0.1], [0.0, 0.0]])
    reward, goal = multigoal_reward(pos, act, goals)
    # Row 0: 30·0.01 = 0.3, nearest (0,5) at 0.2² = 0.04 < 0.25 → -(0.34) + 10 = 9.66, goal 2.
    # Row 1: no action cost, every goal at 4² + 1² = 17 → -17, no goal.
    np.testing.assert_allclose(reward, [9.66, -17.0], atol=1e-12)
    np.testing.assert_array_equal(goal, [2, -1])


def test_goal_reached_terminates_with_bonus() -> None:
    env = _env(start=(4.0, 0.0))
    _, reward, terminated, truncated, info = env.step(np.array([0.6, 0.0]))
    # s' = (4.6, 0), 0.4 from G1. r = -(30·0.36 + 0.16) + 10 = -(10.8 + 0.16) + 10 = -0.96.
    assert reward == pytest.approx(-0.96, abs=1e-9)
    assert (terminated, truncated, info["goal"]) == (True, False, 0)


def test_no_termination_just_outside_goal() -> None:
    env = _env(start=(4.0, 0.0))
    _, reward, terminated, _, info = env.step(np.array([0.49, 0.0]))
    # s' = (4.49, 0), 0.51 from G1. r = -(30·0.2401 + 0.2601) = -(7.203 + 0.2601) = -7.4631.
    assert reward == pytest.approx(-7.4631, abs=1e-9)
    assert not terminated and info["goal"] == -1


@pytest.mark.parametrize(
    ("env_id", "goals"),
    [
        ("s2ac_lit/MultiGoalMaxEnt-v0", [(5, 0), (-4, 3), (-4, -3)]),
        ("s2ac_lit/MultiGoal-v0", [(5, 0), (-5, 0), (0, 5), (0, -5)]),
    ],
)
def test_every_goal_reachable_from_origin(env_id: str, goals: list[tuple[int, int]]) -> None:
    env = gymnasium.make(env_id)
    for index, goal in enumerate(goals):
        env.reset(seed=0)
        # Unit steps, x first then y (at most 7 steps, inside the 30-step limit).
        steps = [(np.sign(goal[0]), 0.0)] * abs(goal[0]) + [(0.0, np.sign(goal[1]))] * abs(goal[1])
        for k, step in enumerate(steps):
            _, reward, terminated, truncated, info = env.step(np.array(step, dtype=np.float32))
            assert terminated == (k == len(steps) - 1)
        # Last step lands on the goal: cost 30·1 + 0, bonus 10 → -20.
        assert reward == pytest.approx(-20.0)
        assert info["goal"] == index and not truncated


def test_truncation_at_30_steps() -> None:
    env = gymnasium.make(MAXENT_ID)
    env.reset(seed=0)
    for step in range(1, 31):
        _, reward, terminated, truncated, _ = env.step(np.zeros(2, dtype=np.float32))
        # Standing at the origin: every goal at squared distance 25 (25, 16 + 9, 16 + 9).
        assert reward == pytest.approx(-25.0)
        assert not terminated
        assert truncated == (step == 30)


@pytest.mark.parametrize(
    ("start", "action", "refused"),
    [
        ((-1.5, 0.0), (0.0, 1.0), True),  # wall at x=-1.5 is y=0.5: crosses it
        ((-1.5, 0.0), (0.0, 0.5), True),  # ends exactly on the wall: touching counts
        ((-1.5, 0.0), (0.0, 0.49), False),  # ends 0.01 short of it
        ((-1.5, 0.0), (0.5, 0.5), False),  # parallel to the wall, 0.5 below it
        ((-1.5, 0.0), (1.0, 0.0), False),  # moves away
        ((-2.5, 0.0), (0.0, 1.0), False),  # passes left of the end point (-2, 0)
        ((-3.0, -1.0), (0.5, 0.5), False),  # along the wall's line, stops short of (-2, 0)
        ((-3.0, -1.0), (1.0, 1.0), True),  # along the wall's line, reaches its end (-2, 0)
        ((-1.0, 2.0), (0.0, -1.0), True),  # from above: crosses at (-1, 1)
    ],
)
def test_maxent_wall(start, action, refused: bool) -> None:
    env = _env(MAXENT_GOALS, MAXENT_WALL, start)
    obs, _, _, _, info = env.step(np.array(action))
    expected = start if refused else np.add(start, action)
    np.testing.assert_allclose(obs, expected, rtol=1e-7)
    assert info["wall_hit"] is refused


def test_refused_move_still_pays_action_cost() -> None:
    env = _env(MAXENT_GOALS, MAXENT_WALL, (-1.5, 0.0))
    _, reward, *_ = env.step(np.array([0.0, 1.0]))
    # Stays at (-1.5, 0): G2 and G3 at 2.5² + 3² = 15.25, G1 at 6.5² = 42.25. r = -(30 + 15.25).
    assert reward == pytest.approx(-45.25)


def test_classic_wall() -> None:
    env = _env(CLASSIC_GOALS, CLASSIC_WALL, (0.0, 2.5))
    obs, _, _, _, info = env.step(np.array([0.0, 1.0]))  # through y = 3 at x = 0
    np.testing.assert_array_equal(obs, [0.0, 2.5])
    assert info["wall_hit"]
    env = _env(CLASSIC_GOALS, CLASSIC_WALL, (2.0, 2.5))
    obs, _, _, _, info = env.step(np.array([0.0, 1.0]))  # right of the end (1.5, 3)
    np.testing.assert_array_equal(obs, [2.0, 3.5])
    assert not info["wall_hit"]


def test_segment_crosses_cases_batched() -> None:
    a, b = np.array([0.0, 0.0]), np.array([2.0, 0.0])
    p = np.array([[1.0, -1.0], [1.0, 1.0], [0.0, 1.0], [3.0, 0.0], [1.0, 0.0], [0.5, 0.0]])
    q = np.array([[1.0, 1.0], [1.0, 0.5], [2.0, 1.0], [4.0, 0.0], [3.0, 0.0], [0.5, 0.0]])
    # X crossing; stops above; parallel; collinear disjoint; collinear overlap; a point on it.
    expected = [True, False, False, False, True, True]
    np.testing.assert_array_equal(segment_crosses(p, q, a, b), expected)
    as_torch = segment_crosses(*(torch.as_tensor(x) for x in (p, q, a, b)))
    assert as_torch.tolist() == expected


def test_move_batched() -> None:
    wall = np.array(MAXENT_WALL)
    pos = np.array([[-1.5, 0.0], [6.5, 0.0]])
    new, hit = move(pos, np.array([[0.0, 1.0], [3.0, 0.0]]), wall)
    np.testing.assert_array_equal(new, [[-1.5, 0.0], [7.0, 0.0]])
    np.testing.assert_array_equal(hit, [True, False])


def test_wall_hits_counted_per_step() -> None:
    env = gymnasium.make("s2ac_lit/MultiGoalMaxEntObstacle-v0")
    env.reset(seed=0)
    # From the origin, (-1, 1) would end on the wall point (-1, 1): refused every time.
    hits = [env.step(np.array([-1.0, 1.0], np.float32))[4]["wall_hit"] for _ in range(3)]
    assert hits == [True, True, True]


def test_register_is_idempotent_and_complete() -> None:
    register_envs()
    register_envs()
    assert set(MULTIGOAL_IDS) <= set(gymnasium.registry)
    for env_id in MULTIGOAL_IDS:
        assert gymnasium.spec(env_id).max_episode_steps == 30
    walls = {i: gymnasium.make(i).unwrapped.layout.wall for i in MULTIGOAL_IDS}
    assert walls["s2ac_lit/MultiGoal-v0"] is None
    np.testing.assert_array_equal(walls["s2ac_lit/MultiGoalObstacle-v0"], [[-1.5, 3], [1.5, 3]])


def test_torchrl_gym_env_rollout() -> None:
    from torchrl.envs import GymEnv

    env = GymEnv(MAXENT_ID)
    env.set_seed(0)
    td = env.rollout(5)
    assert td["observation"].shape == (5, 2)
    assert td["next", "reward"].shape == (5, 1)
    # Seeded uniform actions: reaching a goal 5 away in 5 steps would need near-extreme draws.
    assert not td["next", "done"].any()
    torch.testing.assert_close(td["next", "observation"][:-1], td["observation"][1:])
