"""The learning curve of a run (s2ac_lit/trainer/callbacks.py): what the figure says.

The callbacks' behaviour in a run (checkpoints, evaluation, the summary) is tested through real
fits in tests/test_trainer_train*.py.
"""

from __future__ import annotations

from pathlib import Path

from s2ac_lit.trainer.callbacks import learning_curve_figure, plot_learning_curve

HISTORY = [
    {"frames": 200, "updates": 21, "return_mean": -150.0, "return_std": 5.0},
    # A resumed run evaluated again at its final frame count: 98 then 395.
    {"frames": 400, "updates": 60, "return_mean": 98.0, "return_std": 1.0},
    {"frames": 400, "updates": 70, "return_mean": 395.0, "return_std": 2.0},
]
TRAIN = [(150, -300.0), (300, -200.0), (400, -100.0)]


def test_the_learning_curve_names_the_run_its_evaluation_and_the_random_phase() -> None:
    fig = learning_curve_figure(
        HISTORY,
        TRAIN,
        title="S2AC on s2ac_lit/MultiGoalMaxEnt-v0\nrun 20261206-x",
        evaluation="10 episodes, selection softmax",
        random_frames=100,
    )
    (ax,) = fig.axes
    assert ax.get_title() == "S2AC on s2ac_lit/MultiGoalMaxEnt-v0\nrun 20261206-x"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "evaluation (10 episodes, selection softmax), mean ± std" in legend
    assert "random actions" in legend
    (shade,) = [p for p in ax.patches if p.get_label() == "random actions"]
    assert (shade.get_x(), shade.get_x() + shade.get_width()) == (0, 100)  # data coordinates


def test_one_evaluation_point_per_frame_count() -> None:
    """Two evaluations at one frame count would draw a vertical segment; the latest stays."""
    fig = learning_curve_figure(HISTORY, TRAIN, evaluation="e")
    (ax,) = fig.axes
    (curve,) = [line for line in ax.lines if line.get_marker() == "o"]
    assert list(curve.get_xdata()) == [200, 400]
    assert list(curve.get_ydata()) == [-150.0, 395.0]


def test_the_curve_is_written_as_a_png(tmp_path: Path) -> None:
    plot_learning_curve(HISTORY, TRAIN, tmp_path / "curve.png", title="t", random_frames=100)
    assert (tmp_path / "curve.png").read_bytes().startswith(b"\x89PNG")
