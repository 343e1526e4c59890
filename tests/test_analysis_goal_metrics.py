"""Multigoal metrics, test rollouts and pictures, on hand-built episodes.

See docs/algorithm.md §Multigoal.
"""

from __future__ import annotations

from collections.abc import Iterator

import gymnasium
import numpy as np
import pytest

import s2ac_lit.envs  # also registers the ids
from s2ac_lit.analysis.goal_metrics import (
    PROBE_STATES,
    distinct_goals_reached,
    goal_hit_rates,
    plot_goal_hits,
    plot_trajectories,
    rollout_episodes,
    summarize_episodes,
)
from s2ac_lit.envs.multigoal import CLASSIC_GOALS, CLASSIC_WALL, make_layout

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_goal_hit_rates_and_distinct() -> None:
    goals = np.array([0, 0, 1, -1, 2, 0, -1, 1])
    np.testing.assert_allclose(goal_hit_rates(goals, 3), [3 / 8, 2 / 8, 1 / 8])
    assert distinct_goals_reached(goals) == 3
    # A collapsed policy: one goal, the rest misses; unreached goals get exact zeros.
    collapsed = np.array([3, 3, -1, 3])
    np.testing.assert_array_equal(goal_hit_rates(collapsed, 4), [0.0, 0.0, 0.0, 0.75])
    assert distinct_goals_reached(collapsed) == 1
    assert distinct_goals_reached(np.array([-1, -1])) == 0


@pytest.mark.parametrize("bad", [[0, 3], [-2, 0]])
def test_goal_hit_rates_rejects_bad_indices(bad: list[int]) -> None:
    with pytest.raises(RuntimeError, match="goal indices"):
        goal_hit_rates(np.array(bad), 3)


def test_summarize_episodes() -> None:
    summary = summarize_episodes(
        goal_per_episode=np.array([1, 2, 1, -1]),
        returns=np.array([-10.0, -20.0, -30.0, -40.0]),
        wall_hits=np.array([0, 2, 1, 5]),
        n_goals=3,
    )
    assert summary == pytest.approx(
        {
            "distinct_goals": 2.0,
            "hit_rate/0": 0.0,
            "hit_rate/1": 0.5,
            "hit_rate/2": 0.25,
            "miss_rate": 0.25,
            "return_mean": -25.0,
            "return_std": np.sqrt(125.0),  # deviations ±5, ±15: (25 + 225) · 2 / 4
            "wall_hits_per_episode": 2.0,
        }
    )


def _scripted(actions: list[tuple[float, float]]):
    stream: Iterator[tuple[float, float]] = iter(actions)
    return lambda obs: np.array(next(stream), dtype=np.float32)


def test_rollout_episodes_records_by_hand() -> None:
    env = gymnasium.make("s2ac_lit/MultiGoalMaxEnt-v0")
    # Episode 0: five unit steps right reach G1 = (5, 0). Episode 1: stands still for 30 steps.
    out = rollout_episodes(env, _scripted([(1.0, 0.0)] * 5 + [(0.0, 0.0)] * 30), 2, seed=0)
    np.testing.assert_array_equal(out["lengths"], [5, 30])
    np.testing.assert_array_equal(out["goal"], [0, -1])
    np.testing.assert_array_equal(out["wall_hits"], [0, 0])
    # Episode 0: cost 30 per step plus (5 - k)² at x = k: -(46 + 39 + 34 + 31 + 30) + 10 = -170.
    # Episode 1: 30 steps at the origin, each -25 (every goal 25 away squared) → -750.
    np.testing.assert_allclose(out["returns"], [-170.0, -750.0])
    positions = out["positions"]
    assert positions.shape == (2, 31, 2) and positions.dtype == np.float32
    np.testing.assert_array_equal(positions[0, :6, 0], [0, 1, 2, 3, 4, 5])
    assert np.isnan(positions[0, 6:]).all()
    np.testing.assert_array_equal(positions[1], np.zeros((31, 2)))


def test_rollout_episodes_counts_wall_hits() -> None:
    env = gymnasium.make("s2ac_lit/MultiGoalMaxEntObstacle-v0")
    out = rollout_episodes(env, lambda obs: np.array([-1.0, 1.0], np.float32), 1, seed=0)
    # (0,0) → (-1,1) ends on the wall: refused all 30 steps, each -(30·2 + 25) = -85.
    np.testing.assert_array_equal(out["wall_hits"], [30])
    np.testing.assert_allclose(out["returns"], [-2550.0])


def test_rollout_max_steps_caps_an_env_without_time_limit() -> None:
    env = s2ac_lit.envs.MultiGoalEnv()
    out = rollout_episodes(env, lambda obs: np.zeros(2, np.float32), 1, seed=0, max_steps=4)
    np.testing.assert_array_equal(out["lengths"], [4])


def test_probe_states() -> None:
    assert PROBE_STATES == ((-3.5, -2.5), (-2.5, 0.5), (-1, 0), (0, 0), (1, 0), (4, 0))


def _assert_png(path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_plot_trajectories_from_env_and_layout(tmp_path) -> None:
    env = gymnasium.make("s2ac_lit/MultiGoalMaxEntObstacle-v0")
    out = rollout_episodes(env, lambda obs: np.array([0.3, -0.2], np.float32), 2, seed=0)
    _assert_png(plot_trajectories(env, out["positions"], tmp_path / "a" / "map.png", "S2AC"))
    layout = make_layout(CLASSIC_GOALS, CLASSIC_WALL)
    ragged = [np.array([[0.0, 0.0], [0.0, 1.0]]), np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 1.0]])]
    _assert_png(plot_trajectories(layout, ragged, tmp_path / "classic.png"))


def test_plot_goal_hits(tmp_path) -> None:
    rates = {"S2AC": np.array([0.2, 0.4, 0.4]), "SAC": np.array([1.0, 0.0, 0.0])}
    _assert_png(plot_goal_hits(rates, tmp_path / "hits.png", title="goal hits"))


def test_the_trajectory_map_says_what_it_shows(tmp_path, monkeypatch) -> None:
    """Axis labels, a colour bar for the contours, contour labels that can be read, and each
    goal's hit rate on the figure with how many goals were reached."""
    import s2ac_lit.analysis.goal_metrics as goal_metrics

    drawn = []
    save = goal_metrics._save
    monkeypatch.setattr(
        goal_metrics, "_save", lambda fig, path: drawn.append(fig) or save(fig, path)
    )
    env = gymnasium.make("s2ac_lit/MultiGoalMaxEnt-v0")
    out = rollout_episodes(env, lambda obs: np.array([0.3, -0.2], np.float32), 2, seed=0)
    rates = [0.5, 0.0, 0.25]
    _assert_png(plot_trajectories(env, out["positions"], tmp_path / "map.png", "t", rates))
    (fig,) = drawn
    ax, colour_bar = fig.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("position x", "position y")
    assert "reward" in colour_bar.get_ylabel()
    texts = [t.get_text() for t in ax.texts]
    assert {"G1 50%", "G2 0%", "G3 25%"} <= set(texts)
    assert "goals reached: 2 of 3; none: 25%" in texts
    contour_labels = [t for t in ax.texts if t.get_text().lstrip("-").isdigit()]
    assert contour_labels and min(t.get_fontsize() for t in contour_labels) >= 8
