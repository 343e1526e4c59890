"""Multigoal evaluation: goal-hit metrics, test rollouts and pictures.

See docs/algorithm.md §Multigoal.

The paper judges a MaxEnt policy on the multigoal maps by how many distinct goals its test
episodes reach, how often each goal is hit, the return, the wall hits on the obstacle maps, and
the policy entropy at :data:`PROBE_STATES`. The metrics here are pure functions of per-episode
arrays; :func:`rollout_episodes` produces those arrays from any gymnasium multigoal env.

Shapes:
    N episodes, T steps (the longest episode), G goals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import gymnasium
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from s2ac_lit.envs.multigoal import (
    EPISODE_STEPS,
    GOAL_RADIUS,
    STATE_BOUND,
    Layout,
    goal_sq_distances,
)

PROBE_STATES: tuple[tuple[float, float], ...] = (
    (-3.5, -2.5),
    (-2.5, 0.5),
    (-1.0, 0.0),
    (0.0, 0.0),
    (1.0, 0.0),
    (4.0, 0.0),
)
"""States where the paper estimates the policy entropy (docs/algorithm.md §Multigoal)."""

PolicyFn = Callable[[np.ndarray], np.ndarray]


def goal_hit_rates(goal_per_episode: np.ndarray, n_goals: int) -> np.ndarray:
    """Fraction of episodes that ended at each goal; episodes that reached none count as misses.

    Raises:
        RuntimeError: if an index is below -1 or at least ``n_goals``.

    Shapes:
        goal_per_episode: ``[N]`` (int, -1 for none) → ``[G]``.

    Examples:
        >>> goal_hit_rates(np.array([0, 2, 2, -1]), 3).tolist()
        [0.25, 0.0, 0.5]
    """
    goals = np.asarray(goal_per_episode, dtype=np.int64).reshape(-1)
    if goals.size and (goals.min() < -1 or goals.max() >= n_goals):
        raise RuntimeError(f"goal indices must lie in [-1, {n_goals}), got {np.unique(goals)}")
    counts = np.bincount(goals[goals >= 0], minlength=n_goals)
    return counts / max(goals.size, 1)


def distinct_goals_reached(goal_per_episode: np.ndarray) -> int:
    """Number of different goals reached at least once.

    Shapes:
        goal_per_episode: ``[N]`` (int, -1 for none).

    Examples:
        >>> distinct_goals_reached(np.array([1, 1, -1, 0]))
        2
    """
    goals = np.asarray(goal_per_episode).reshape(-1)
    return int(np.unique(goals[goals >= 0]).size)


def summarize_episodes(
    goal_per_episode: np.ndarray,
    returns: np.ndarray,
    wall_hits: np.ndarray,
    n_goals: int,
) -> dict[str, float]:
    """Flat dict of scalar metrics, ready for ``log_dict`` under an ``eval/`` prefix.

    Keys: ``distinct_goals``, ``hit_rate/<g>`` for each goal index g, ``miss_rate`` (no goal),
    ``return_mean``, ``return_std``, ``wall_hits_per_episode``.

    Shapes:
        goal_per_episode, returns, wall_hits: ``[N]``, N ≥ 1.
    """
    rates = goal_hit_rates(goal_per_episode, n_goals)
    summary = {"distinct_goals": float(distinct_goals_reached(goal_per_episode))}
    summary.update({f"hit_rate/{g}": float(rate) for g, rate in enumerate(rates)})
    summary["miss_rate"] = float(1.0 - rates.sum())
    summary["return_mean"] = float(np.mean(returns))
    summary["return_std"] = float(np.std(returns))
    summary["wall_hits_per_episode"] = float(np.mean(wall_hits))
    return summary


def rollout_episodes(
    env: gymnasium.Env,
    policy_fn: PolicyFn,
    n_episodes: int,
    seed: int | None = None,
    *,
    max_steps: int = EPISODE_STEPS,
) -> dict[str, np.ndarray]:
    """Run ``n_episodes`` test episodes of a multigoal env and record them.

    The first reset takes ``seed`` and later resets continue its generator (gymnasium's seeding
    contract). ``max_steps`` caps an episode even when the env has no ``TimeLimit``.

    Args:
        env: a multigoal gymnasium env, e.g. ``gymnasium.make("s2ac_lit/MultiGoalMaxEnt-v0")``.
        policy_fn: maps an observation ``[2]`` to an action ``[2]``; owns its own randomness.
        n_episodes: number of episodes.
        seed: seed of the first reset.
        max_steps: most steps per episode.

    Returns:
        ``positions`` ``[N, T + 1, 2]`` float32, the start then every position, NaN after the
        episode ended (matplotlib breaks lines at NaN); ``lengths`` ``[N]`` steps taken;
        ``returns`` ``[N]``; ``goal`` ``[N]`` goal reached at the end or -1; ``wall_hits`` ``[N]``.
    """
    trajectories, lengths, returns, goals, wall_hits = [], [], [], [], []
    for episode in range(n_episodes):
        obs, _ = env.reset(seed=seed if episode == 0 else None)
        path, total, goal, hits = [obs], 0.0, -1, 0
        for _ in range(max_steps):
            obs, reward, terminated, truncated, info = env.step(policy_fn(obs))
            path.append(obs)
            total += float(reward)
            goal = int(info["goal"])
            hits += int(info["wall_hit"])
            if terminated or truncated:
                break
        trajectories.append(np.asarray(path, dtype=np.float32))
        lengths.append(len(path) - 1)
        returns.append(total)
        goals.append(goal)
        wall_hits.append(hits)
    positions = np.full((n_episodes, max(lengths, default=0) + 1, 2), np.nan, dtype=np.float32)
    for row, path in zip(positions, trajectories, strict=True):
        row[: len(path)] = path
    return {
        "positions": positions,
        "lengths": np.asarray(lengths, dtype=np.int64),
        "returns": np.asarray(returns, dtype=np.float64),
        "goal": np.asarray(goals, dtype=np.int64),
        "wall_hits": np.asarray(wall_hits, dtype=np.int64),
    }


def _layout_of(env_or_layout: gymnasium.Env | Layout) -> Layout:
    if isinstance(env_or_layout, Layout):
        return env_or_layout
    return env_or_layout.unwrapped.layout  # type: ignore[attr-defined]


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # An explicit Agg canvas: no pyplot global state, so this is safe in headless workers.
    FigureCanvasAgg(fig).print_png(path)
    return path


def plot_trajectories(
    env_or_layout: gymnasium.Env | Layout,
    trajectories: np.ndarray | Sequence[np.ndarray],
    path: str | Path,
    title: str | None = None,
    hit_rates: Sequence[float] | None = None,
) -> Path:
    """Draw the map (reward contours with a colour bar, goals, wall) and trajectories, and
    write a PNG.

    The contours show -min_g |s - g|², the distance part of the reward. With ``hit_rates``
    each goal is labelled with its rate and the figure says how many goals the episodes
    reached and how many reached none.

    Args:
        env_or_layout: a multigoal env (wrapped or not) or its :class:`Layout`.
        trajectories: ``[N, T + 1, 2]`` positions (NaN padding allowed), or a sequence of
            ``[T_i + 1, 2]`` arrays.
        path: PNG file to write; parent folders are created.
        title: figure title.
        hit_rates: ``[G]`` fraction of the episodes that ended at each goal.

    Returns:
        The path written.
    """
    layout = _layout_of(env_or_layout)
    fig = Figure(figsize=(6.4, 5.6), dpi=120)
    ax = fig.add_subplot()
    grid = np.linspace(-STATE_BOUND, STATE_BOUND, 141)
    xx, yy = np.meshgrid(grid, grid)
    cost = goal_sq_distances(np.stack([xx, yy], axis=-1), layout.goals).min(-1)
    contours = ax.contour(xx, yy, -cost, levels=15, cmap="viridis", linewidths=0.8)
    ax.clabel(contours, contours.levels[::2], fontsize=8, fmt="%.0f")
    fig.colorbar(
        contours, ax=ax, shrink=0.8, label="−min$_g$ |s − g|²  (distance part of the reward)"
    )
    for index, goal in enumerate(layout.goals):
        ax.add_patch(Circle(tuple(goal), GOAL_RADIUS, color="tab:red", alpha=0.6))
        label = f"G{index + 1}"
        if hit_rates is not None:
            label += f" {hit_rates[index]:.0%}"
        ax.annotate(
            label,
            tuple(goal),
            xytext=(0, 9),
            textcoords="offset points",
            fontsize=9,
            fontweight="bold",
        )
    if layout.wall is not None:
        ax.plot(layout.wall[:, 0], layout.wall[:, 1], color="black", linewidth=4.0)
    for traj in trajectories:
        traj = np.asarray(traj)
        ax.plot(traj[:, 0], traj[:, 1], color="tab:blue", alpha=0.5, linewidth=1.0)
        ax.plot(traj[0, 0], traj[0, 1], "k.", markersize=4)
    ax.set(xlim=(-STATE_BOUND, STATE_BOUND), ylim=(-STATE_BOUND, STATE_BOUND), aspect="equal")
    ax.set_xlabel("position x")
    ax.set_ylabel("position y")
    if hit_rates is not None:
        reached = sum(rate > 0 for rate in hit_rates)
        ax.text(
            0.02,
            0.02,
            f"goals reached: {reached} of {len(hit_rates)}; none: {1 - sum(hit_rates):.0%}",
            transform=ax.transAxes,
            fontsize=9,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "0.7"},
        )
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_goal_hits(
    rates_by_algo: Mapping[str, np.ndarray],
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Bar chart of per-goal hit rates, one group per goal and one bar colour per algorithm.

    Goals are labelled G1, G2, … in index order, as in the paper.

    Shapes:
        each rates array: ``[G]``.

    Returns:
        The path written.
    """
    fig = Figure(figsize=(6.0, 3.5))
    ax = fig.add_subplot()
    n_goals = max((len(r) for r in rates_by_algo.values()), default=0)
    width = 0.8 / max(len(rates_by_algo), 1)
    centres = np.arange(n_goals)
    for i, (algo, rates) in enumerate(rates_by_algo.items()):
        offset = (i - (len(rates_by_algo) - 1) / 2) * width
        ax.bar(centres[: len(rates)] + offset, rates, width=width, label=algo)
    ax.set_xticks(centres, [f"G{g + 1}" for g in centres])
    ax.set(ylim=(0.0, 1.0), ylabel="hit rate")
    if rates_by_algo:
        ax.legend()
    if title:
        ax.set_title(title)
    return _save(fig, path)
