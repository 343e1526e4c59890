"""Multigoal point-mass environments, the paper's maximum-entropy test.

See docs/algorithm.md §Multigoal.

A point mass moves in the box [-7, 7]² by steps a ∈ [-1, 1]² from the origin. The reward

    r(s, a, s') = -(30·|a|² + min_g |s' - g|²) + 10·[s' within 0.5 of a goal]

pulls it towards the nearest goal, and reaching a goal ends the episode. Two goal layouts exist:
the paper's max-entropy layout (three goals, two of them on the left) and the classic four-goal
layout of the SQL paper. Test-time obstacle variants add a wall segment; a move whose segment
crosses the wall is refused.

The dynamics and reward are pure, batched functions (:func:`move`, :func:`multigoal_reward`,
:func:`segment_crosses`) so that a vectorised version can reuse them; :class:`MultiGoalEnv` is a
thin ``gymnasium.Env`` around them.

Shapes:
    ``...``: any batch dims; G goals. Positions and actions are ``[..., 2]``, goals ``[G, 2]``,
    a wall ``[2, 2]`` (its two end points).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, TypeVar

import gymnasium
import numpy as np
from gymnasium import spaces

STATE_BOUND = 7.0
ACTION_BOUND = 1.0
ACTION_COST = 30.0
GOAL_REWARD = 10.0
GOAL_RADIUS = 0.5
EPISODE_STEPS = 30

Point = tuple[float, float]

MAXENT_GOALS: tuple[Point, ...] = ((5.0, 0.0), (-4.0, 3.0), (-4.0, -3.0))
CLASSIC_GOALS: tuple[Point, ...] = ((5.0, 0.0), (-5.0, 0.0), (0.0, 5.0), (0.0, -5.0))
MAXENT_WALL: tuple[Point, Point] = ((-2.0, 0.0), (0.0, 2.0))
CLASSIC_WALL: tuple[Point, Point] = ((-1.5, 3.0), (1.5, 3.0))

# Works on floats, numpy arrays and torch tensors alike: only arithmetic and comparisons.
ArrayT = TypeVar("ArrayT")


class Layout(NamedTuple):
    """Goals and optional wall of one multigoal map.

    Shapes:
        goals: ``[G, 2]``; wall: ``[2, 2]`` or ``None``.
    """

    goals: np.ndarray
    wall: np.ndarray | None


class Move(NamedTuple):
    """Outcome of :func:`move`.

    Shapes:
        position: ``[..., 2]``; wall_hit: ``[...]`` (bool).
    """

    position: np.ndarray
    wall_hit: np.ndarray


class Reward(NamedTuple):
    """Outcome of :func:`multigoal_reward`.

    Shapes:
        reward: ``[...]`` (float64); goal: ``[...]`` (int64, index of the goal reached or -1).
    """

    reward: np.ndarray
    goal: np.ndarray


def make_layout(
    goals: Sequence[Sequence[float]] | np.ndarray,
    wall: Sequence[Sequence[float]] | np.ndarray | None = None,
) -> Layout:
    """Validated float64 :class:`Layout` from goal and wall coordinates.

    Raises:
        RuntimeError: if goals are not ``[G, 2]`` with G ≥ 1 or the wall is not ``[2, 2]``.
    """
    goals_arr = np.asarray(goals, dtype=np.float64)
    if goals_arr.ndim != 2 or goals_arr.shape[1] != 2 or len(goals_arr) == 0:
        raise RuntimeError(f"goals must have shape [G, 2] with G >= 1, got {goals_arr.shape}")
    wall_arr = None
    if wall is not None:
        wall_arr = np.asarray(wall, dtype=np.float64)
        if wall_arr.shape != (2, 2):
            raise RuntimeError(f"wall must have shape [2, 2], got {wall_arr.shape}")
    return Layout(goals_arr, wall_arr)


def _cross(o: ArrayT, p: ArrayT, q: ArrayT) -> ArrayT:
    """z-component of (p - o) × (q - o): > 0 if q is left of o→p, 0 if collinear."""
    return (p[..., 0] - o[..., 0]) * (q[..., 1] - o[..., 1]) - (p[..., 1] - o[..., 1]) * (
        q[..., 0] - o[..., 0]
    )


def _within(a: ArrayT, b: ArrayT, r: ArrayT) -> ArrayT:
    """For r collinear with segment ab: whether r lies on it, i.e. (r - a)·(r - b) ≤ 0."""
    return (r[..., 0] - a[..., 0]) * (r[..., 0] - b[..., 0]) + (r[..., 1] - a[..., 1]) * (
        r[..., 1] - b[..., 1]
    ) <= 0


def segment_crosses(p: ArrayT, q: ArrayT, a: ArrayT, b: ArrayT) -> ArrayT:
    """Whether the closed segments pq (the move) and ab (the wall) share a point.

    Touching counts as crossing: a move may not end on the wall, so the agent is always strictly
    on one side of it, and no later move can slip through by starting on the wall. A collinear
    move counts only if it overlaps the wall. Written with arithmetic and comparisons alone, so it
    runs unchanged on numpy arrays and torch tensors.

    Shapes:
        p, q, a, b: ``[..., 2]`` (broadcastable) → ``[...]`` (bool).

    Examples:
        >>> o, x = np.array([0.0, 0.0]), np.array([1.0, 1.0])
        >>> bool(segment_crosses(o, x, np.array([0.0, 1.0]), np.array([1.0, 0.0])))
        True
        >>> bool(segment_crosses(o, x, np.array([1.0, 0.0]), np.array([2.0, 1.0])))
        False
    """
    d1, d2 = _cross(a, b, p), _cross(a, b, q)
    d3, d4 = _cross(p, q, a), _cross(p, q, b)
    proper = (d1 * d2 < 0) & (d3 * d4 < 0)
    touch = (
        ((d1 == 0) & _within(a, b, p))
        | ((d2 == 0) & _within(a, b, q))
        | ((d3 == 0) & _within(p, q, a))
        | ((d4 == 0) & _within(p, q, b))
    )
    return proper | touch


def move(position: np.ndarray, action: np.ndarray, wall: np.ndarray | None = None) -> Move:
    """One step of the dynamics: s' = clip(s + clip(a)), refused if s→s' crosses the wall.

    Shapes:
        position, action: ``[..., 2]``; wall: ``[2, 2]`` → ``Move([..., 2], [...])``.
    """
    target = (position + action.clip(-ACTION_BOUND, ACTION_BOUND)).clip(-STATE_BOUND, STATE_BOUND)
    if wall is None:
        return Move(target, np.zeros(target.shape[:-1], dtype=bool))
    hit = np.asarray(segment_crosses(position, target, wall[0], wall[1]))
    return Move(np.where(hit[..., None], position, target), hit)


def goal_sq_distances(position: np.ndarray, goals: np.ndarray) -> np.ndarray:
    """Squared distances from each position to each goal.

    Shapes:
        position: ``[..., 2]``; goals: ``[G, 2]`` → ``[..., G]``.
    """
    return ((position[..., None, :] - goals) ** 2).sum(-1)


def multigoal_reward(next_position: np.ndarray, action: np.ndarray, goals: np.ndarray) -> Reward:
    """Reward -(30·|a|² + min_g |s' - g|²), +10 within 0.5 of a goal, and the goal reached.

    ``action`` must already be clipped to the action box: the cost is that of the move made.
    A goal counts as reached at distance strictly below 0.5 (SQL's threshold).

    Shapes:
        next_position, action: ``[..., 2]``; goals: ``[G, 2]`` → ``Reward([...], [...])``.

    Examples:
        >>> goals = np.array(MAXENT_GOALS)
        >>> float(multigoal_reward(np.array([5.0, 0.0]), np.array([1.0, 0.0]), goals).reward)
        -20.0
    """
    sq = goal_sq_distances(next_position, goals)
    min_sq = sq.min(-1)
    reached = min_sq < GOAL_RADIUS**2
    reward = -(ACTION_COST * (action * action).sum(-1) + min_sq) + GOAL_REWARD * reached
    return Reward(reward, np.where(reached, sq.argmin(-1), -1))


class MultiGoalEnv(gymnasium.Env[np.ndarray, np.ndarray]):
    """Multigoal point mass as a ``gymnasium.Env``, one class for every layout.

    The episode terminates on reaching a goal; the 30-step limit is gymnasium's ``TimeLimit``,
    added by the registered ids (``s2ac_lit.envs``), so this class alone never truncates.
    ``info`` always holds ``goal`` (index reached this step, or -1) and ``wall_hit`` (bool).
    ``reset(options={"position": (x, y)})`` starts elsewhere than the origin (tests, probes).

    Args:
        goals: goal centres, ``[G, 2]``.
        wall: end points of a wall segment, ``[2, 2]``, or ``None`` for no wall.

    Examples:
        >>> env = MultiGoalEnv(MAXENT_GOALS)
        >>> obs, info = env.reset(seed=0)
        >>> obs.tolist(), info
        ([0.0, 0.0], {'goal': -1, 'wall_hit': False})
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's class attribute)

    def __init__(
        self,
        goals: Sequence[Sequence[float]] | np.ndarray = MAXENT_GOALS,
        wall: Sequence[Sequence[float]] | np.ndarray | None = None,
    ) -> None:
        self.layout = make_layout(goals, wall)
        self.observation_space = spaces.Box(-STATE_BOUND, STATE_BOUND, (2,), np.float32)
        self.action_space = spaces.Box(-ACTION_BOUND, ACTION_BOUND, (2,), np.float32)
        self._position = np.zeros(2)

    @property
    def position(self) -> np.ndarray:
        """Current position (float64 copy), ``[2]``."""
        return self._position.copy()

    def state_dict(self) -> dict[str, Any]:
        """The position (the whole state of the point mass; the step count is ``TimeLimit``'s),
        for exact resume (``s2ac_lit.envs.state``)."""
        return {"position": self._position.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        self._position = np.asarray(state["position"], dtype=np.float64)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        start = (options or {}).get("position", (0.0, 0.0))
        self._position = np.clip(np.asarray(start, dtype=np.float64), -STATE_BOUND, STATE_BOUND)
        return self._position.astype(np.float32), {"goal": -1, "wall_hit": False}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        # Clipped here too: the action cost is that of the move actually made.
        action = np.asarray(action, dtype=np.float64).reshape(2).clip(-ACTION_BOUND, ACTION_BOUND)
        self._position, hit = move(self._position, action, self.layout.wall)
        reward, goal = multigoal_reward(self._position, action, self.layout.goals)
        goal = int(goal)
        info = {"goal": goal, "wall_hit": bool(hit)}
        return self._position.astype(np.float32), float(reward), goal >= 0, False, info
