"""Benchmark harness: rliable aggregates on synthetic scores with known answers, the report
from run folders, bad input, and a real local-Ray suite (2 workers) killed and resumed with one
broken run, and stopped gracefully (SIGTERM) and resumed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT

from s2ac_lit.benchmark import aggregate, report
from s2ac_lit.benchmark.cli import FAILED_BASE, main
from s2ac_lit.benchmark.results import (
    EVAL_TAG,
    SOFTWARE_COLUMNS,
    Earlier,
    collect,
    hit_entropy,
)
from s2ac_lit.benchmark.runner import ATTEMPTS_FILE, LOG_FILE, SUMMARY_FILE
from s2ac_lit.benchmark.suite import load_suite, plan
from s2ac_lit.trainer.layout import GOAL_MAP_JSON

SMOKE = ROOT / "conf" / "suites" / "smoke.yaml"
REPS = 1000


# ---------------------------------------------------------------------------- statistics
def test_normalise_maps_random_to_zero_and_reference_to_one() -> None:
    np.testing.assert_allclose(aggregate.normalise([-50.0, 150.0, 50.0], -50.0, 150.0), [0, 1, 0.5])


def test_score_matrix_keeps_seeds_finished_on_every_task() -> None:
    finals = {("a", 0): 1.0, ("b", 0): 2.0, ("a", 1): 3.0, ("a", 2): 5.0, ("b", 2): 6.0}
    np.testing.assert_array_equal(aggregate.score_matrix(finals, ["a", "b"]), [[1, 2], [5, 6]])
    assert aggregate.score_matrix({}, ["a"]).shape == (0, 1)


def test_metrics_match_hand_computed_values() -> None:
    # 8 runs on one task: IQM is the mean of the middle four, 0.3..0.6 → 0.45; the mean of
    # 0.1..0.8 is 0.45 too, the median (0.4 + 0.5) / 2, and the optimality gap E[1 - x] = 0.55.
    scores = np.arange(1, 9, dtype=float).reshape(8, 1) / 10
    stats = aggregate.aggregate_metrics({"x": scores}, reps=REPS)["x"]
    assert stats["IQM"]["value"] == pytest.approx(0.45)
    assert stats["mean"]["value"] == pytest.approx(0.45)
    assert stats["median"]["value"] == pytest.approx(0.45)
    assert stats["optimality gap"]["value"] == pytest.approx(0.55)
    # An outlier moves the mean by 10/8 but leaves the IQM (it is trimmed) where it was.
    outlier = np.vstack([scores[:-1], [[10.0]]])
    stats = aggregate.aggregate_metrics({"x": outlier}, reps=REPS)["x"]
    assert stats["IQM"]["value"] == pytest.approx(0.45)
    assert stats["mean"]["value"] == pytest.approx((2.8 + 10.0) / 8)


def test_confidence_intervals_contain_the_true_value() -> None:
    # 30 runs × 3 tasks from N(0.6, 0.2²): IQM, mean and median are all 0.6 (symmetric law).
    rng = np.random.default_rng(0)
    scores = {"x": rng.normal(0.6, 0.2, size=(30, 3))}
    stats = aggregate.aggregate_metrics(scores, reps=REPS)["x"]
    for name in ("IQM", "mean", "median"):
        low, high = stats[name]["ci"]
        assert low < 0.6 < high, (name, low, high)
        assert high - low < 0.2  # the CI of a mean over 90 draws is about ±0.04 wide
    low, high = stats["optimality gap"]["ci"]
    assert low < 0.4 < high  # E[max(1 - x, 0)] ≈ 0.4 (P(x > 1) ≈ 2 %)


def test_intervals_are_the_same_for_a_seed_and_leave_numpy_as_it_was() -> None:
    """rliable resamples with numpy's global generator whatever random state it is given: each
    interval (metrics, improvement, curves, profiles) must still be a function of the seed,
    so a regenerated report is the same report, and the caller's numpy stream is untouched."""
    rng = np.random.default_rng(2)
    scores = {"x": rng.normal(0.6, 0.2, size=(7, 2)), "sac": rng.normal(0.5, 0.2, size=(5, 2))}
    curves = {"x": rng.normal(size=(7, 2, 3))}
    taus = np.linspace(0.0, 1.0, 5)

    def intervals(seed: int) -> list:
        return [
            aggregate.aggregate_metrics(scores, reps=50, seed=seed),
            aggregate.improvement_probability(scores, "sac", reps=50, seed=seed),
            aggregate.iqm_curves(curves, reps=50, seed=seed),
            {
                a: ci.tolist()
                for a, ci in aggregate.performance_profiles(scores, taus, reps=50, seed=seed)[
                    1
                ].items()
            },
        ]

    np.random.seed(123)
    expected_draw = np.random.rand()
    np.random.seed(123)
    first = intervals(0)
    assert np.random.rand() == expected_draw
    assert intervals(0) == first
    assert intervals(1) != first
    # Each algorithm is bootstrapped on its own: a seed added to one algorithm, or an algorithm
    # added, leaves the intervals of those after it as they were (one shared stream moved them).
    scores["x"] = np.vstack([scores["x"], rng.normal(0.6, 0.2, size=(1, 2))])
    curves = {"y": rng.normal(size=(3, 2, 3)), **curves}
    again = intervals(0)
    assert again[0]["sac"] == first[0]["sac"]
    assert again[2]["x"] == first[2]["x"]
    assert again[3]["sac"] == first[3]["sac"]


def test_probability_of_improvement_of_identical_distributions_is_one_half() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(60, 2)), rng.normal(size=(60, 2))
    result = aggregate.improvement_probability({"x": x, "sac": y}, "sac", reps=300)["x"]
    # Mann-Whitney under H0: sd = sqrt((n + m + 1) / (12 n m)) = 0.053 per task, 0.037 for
    # the mean of two tasks; 4 sd = 0.15.
    assert result["value"] == pytest.approx(0.5, abs=0.15)
    low, high = result["ci"]
    assert low < 0.5 < high
    # The same runs against themselves: every comparison is a tie, counted as 1/2.
    same = aggregate.improvement_probability({"x": y, "sac": y}, "sac", reps=100)["x"]
    assert same["value"] == pytest.approx(0.5)
    # A shifted copy always wins.
    better = aggregate.improvement_probability({"x": y + 100, "sac": y}, "sac", reps=100)["x"]
    assert better["value"] == 1.0


def test_iqm_curves_and_profiles_have_one_value_per_point() -> None:
    curves = {"x": np.linspace(0, 1, 5)[None, None, :].repeat(4, 0).repeat(2, 1)}
    out = aggregate.iqm_curves(curves, reps=REPS)["x"]
    np.testing.assert_allclose(out["iqm"], np.linspace(0, 1, 5))
    taus = np.array([-0.5, 0.5, 2.0])
    profiles, cis = aggregate.performance_profiles({"x": np.full((4, 2), 1.0)}, taus, reps=REPS)
    np.testing.assert_allclose(profiles["x"], [1.0, 1.0, 0.0])
    assert cis["x"].shape == (2, 3)


# ---------------------------------------------------------------------------- report only
def _fake_run(folder: Path, returns: list[float], frames: int, every: int) -> None:
    history = [
        {"frames": f, "updates": f, "return_mean": r, "return_std": 1.0}
        for f, r in zip(range(every, frames + 1, every), returns, strict=True)
    ]
    folder.mkdir(parents=True)
    summary = {"frames": frames, "final_eval_return_mean": returns[-1], "eval_history": history}
    (folder / SUMMARY_FILE).write_text(json.dumps(summary))


def _events(folder: Path, suffix: str, scalars: list[tuple[str, int, float]]) -> None:
    """One attempt's TensorBoard file in a run folder: ``(tag, update, wall time)`` scalars."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(folder / "logs" / "tensorboard", filename_suffix=suffix)
    for tag, step, wall in scalars:
        writer.add_scalar(tag, 0.0, step, walltime=wall)
    writer.close()


def test_wall_times_leave_out_the_time_a_run_lay_stopped_between_attempts(tmp_path: Path) -> None:
    """A run stopped after update 110 and resumed from its checkpoint at 100 a day later: each
    attempt's events file counts from its own first scalar, the evaluation at 100 that the
    resume logs again takes the second attempt's time, and updates/s uses training time only."""
    spec = next(
        s for s in plan(load_suite(SMOKE), algos=["s2ac"], seeds=1) if s.task == "multigoal"
    )
    folder = spec.folder(tmp_path)
    _fake_run(folder, [-900.0, -800.0, -700.0], 150, 50)
    attempts = {  # suffix: [(tag, update, wall time)]
        ".first": [
            ("train/loss", 1, 1000.0),
            (EVAL_TAG, 50, 1010.0),
            (EVAL_TAG, 100, 1020.0),
            ("train/loss", 110, 1025.0),
        ],
        ".resumed": [
            ("train/loss", 101, 90000.0),
            (EVAL_TAG, 100, 90004.0),
            (EVAL_TAG, 150, 90030.0),
        ],
    }
    for suffix, scalars in attempts.items():
        _events(folder, suffix, scalars)

    rows, missing, _ = collect([spec], tmp_path)
    assert missing == []
    # the first attempt spans 25 s; 100 is the resumed attempt's (25 + 4), 150 is 25 + 30
    assert [(r["updates"], r["wall_time_s"]) for r in rows] == [
        (50, 10.0),
        (100, 29.0),
        (150, 55.0),
    ]
    (speed,) = report._run_speeds(rows)
    assert speed["updates_per_s"] == round(150 / 55.0, 2)


def test_the_report_gives_each_task_its_own_probability_of_improvement(tmp_path: Path) -> None:
    """S2AC beats SAC on every pair of runs of one task and loses every pair on the other:
    P(S2AC > SAC) is 1 and 0 per task, their mean 0.5 across tasks."""
    import yaml

    data = yaml.safe_load(SMOKE.read_text())
    data["tasks"]["multigoal_b"] = data["tasks"]["multigoal"]
    suite_file = tmp_path / "two_tasks.yaml"
    suite_file.write_text(yaml.safe_dump(data))
    suite = load_suite(suite_file)
    rows = []
    for task, winner in (("multigoal", "s2ac"), ("multigoal_b", "sac")):
        spec = suite.tasks[task]
        for algo, seed in [(a, s) for a in ("s2ac", "sac") for s in range(3)]:
            score = spec.reference_score if algo == winner else spec.random_score
            row = {"algorithm": algo, "task": task, "seed": seed, "frames": 150, "updates": 150}
            rows.append({**row, "return_mean": score - seed, "return_std": 0.0, "wall_time_s": ""})
    built = report.build(rows, suite, ["s2ac", "sac"], reps=200)
    poi = built["probability_of_improvement"]
    assert poi["per_task"]["multigoal"]["s2ac"]["value"] == 1.0
    assert poi["per_task"]["multigoal_b"]["s2ac"]["value"] == 0.0
    assert poi["algos"]["s2ac"]["value"] == pytest.approx(0.5)
    lines = report.markdown(built, suite, {"s2ac": "S2AC", "sac": "SAC"}, []).splitlines()
    assert lines.count("| S2AC | 1.000 [1.000, 1.000] |") == 1  # multigoal's P(S2AC > SAC)
    assert lines.count("| S2AC | 0.000 [0.000, 0.000] |") == 1  # multigoal_b's


def test_algorithm_speeds_are_the_median_and_range_over_runs() -> None:
    speeds = [
        {"task": "hopper", "algorithm": "s2ac", "updates_per_s": 1.0},
        {"task": "hopper", "algorithm": "s2ac", "updates_per_s": 3.0},
        {"task": "hopper", "algorithm": "s2ac", "updates_per_s": 2.0},
        {"task": "hopper", "algorithm": "s2ac", "updates_per_s": None},  # no wall time: left out
        {"task": "hopper", "algorithm": "sac", "updates_per_s": 30.0},
    ]
    table = report._algorithm_speeds(speeds, ["sac", "s2ac"])
    assert list(table["hopper"]) == ["sac", "s2ac"]  # the suite's order
    assert table == {
        "hopper": {
            "s2ac": {"median": 2.0, "min": 1.0, "max": 3.0, "runs": 3},
            "sac": {"median": 30.0, "min": 30.0, "max": 30.0, "runs": 1},
        }
    }


def test_the_returns_table_has_no_row_for_an_algorithm_without_runs() -> None:
    point = {"frames": 50, "mean": -180.0, "std": 2.0, "runs": 2}
    lines = report._returns_table({"s2ac": [point], "sac": []}, {"s2ac": "S2AC", "sac": "SAC"})
    assert [line for line in lines if line.startswith("| S")] == ["| S2AC | -180.0 ± 2.0 (2) |"]


def test_final_returns_are_each_runs_last_evaluation_by_seed() -> None:
    """A run's final evaluation after its last updates comes after the periodic one at the same
    frames and is the one shown; seeds an algorithm lacks are empty cells."""

    def row(algo: str, seed: int, frames: int, updates: int, ret: float) -> dict:
        run = {"algorithm": algo, "task": "t", "seed": seed}
        return run | {"frames": frames, "updates": updates, "return_mean": ret}

    rows = [
        row("s2ac", 0, 50, 40, -190.0),
        row("s2ac", 0, 100, 90, -180.0),
        row("s2ac", 0, 100, 95, -175.0),  # the final evaluation
        row("s2ac", 2, 100, 95, -170.0),
        row("sac", 1, 100, 95, -160.0),
    ]
    finals = report._final_returns(rows, ["sac", "s2ac", "sql"], "t")
    assert finals == {"sac": {"1": -160.0}, "s2ac": {"0": -175.0, "2": -170.0}}
    lines = report._final_returns_table(finals, {"s2ac": "S2AC"})
    assert lines[2:] == [
        "| algorithm | seed 0 | seed 1 | seed 2 |",
        "|---|---|---|---|",
        "| sac |  | -160.0 |  |",
        "| S2AC | -175.0 |  | -170.0 |",
        "",
    ]


def test_report_only_reads_run_folders_and_lists_failures(tmp_path: Path) -> None:
    suite = load_suite(SMOKE)
    specs = plan(suite, algos=list(suite.algos), seeds=2)
    task = suite.tasks["multigoal"]
    for spec in specs:
        if spec.key == "multigoal/sac/seed-1":  # a crashed run: a log, no summary
            spec.folder(tmp_path).mkdir(parents=True)
            (spec.folder(tmp_path) / LOG_FILE).write_text("Traceback\nRuntimeError: boom\n")
            continue
        final = task.reference_score if spec.algo == "s2ac" else task.random_score
        _fake_run(spec.folder(tmp_path), [task.random_score, final, final], 150, 50)
    argv = ["--suite", str(SMOKE), "--out", str(tmp_path), "--report-only", "--reps", "200"]
    assert main(argv) == FAILED_BASE + 1

    lines = (tmp_path / "runs.csv").read_text().splitlines()
    assert lines[0] == "algorithm,task,seed,frames,updates,return_mean,return_std,wall_time_s"
    assert len(lines) == 1 + 3 * 3  # three finished runs, three evaluations each
    data = json.loads((tmp_path / "aggregate.json").read_text())
    assert data["overall"]["s2ac"]["IQM"]["value"] == pytest.approx(1.0)
    assert data["overall"]["sac"]["IQM"]["value"] == pytest.approx(0.0)
    assert data["runs_all_tasks"] == {"s2ac": 2, "sac": 1}
    assert data["probability_of_improvement"]["algos"]["s2ac"]["value"] == 1.0
    curve = data["sample_efficiency"]["multigoal"]
    assert curve["frames"] == [50, 100, 150]
    np.testing.assert_allclose(curve["algos"]["s2ac"]["iqm"], [0.0, 1.0, 1.0])
    report = (tmp_path / "report.md").read_text()
    assert "### multigoal/sac/seed-1 (failed)" in report and "RuntimeError: boom" in report
    assert "| S2AC | 1.000 [1.000, 1.000] |" in report
    for name in ("aggregates.png", "sample_efficiency.png", "performance_profile.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    published = tmp_path / "published"  # e.g. a results folder of the repository
    assert main([*argv, "--report-dir", str(published)]) == FAILED_BASE + 1
    assert (published / "runs.csv").read_text() == (tmp_path / "runs.csv").read_text()
    assert {p.name for p in published.iterdir()} >= {"report.md", "aggregate.json"}


def test_a_suite_stopped_before_any_seed_finished_every_task_links_only_its_figures(
    tmp_path: Path,
) -> None:
    """No seed has every task: no overall aggregate and no aggregates figure, and the report
    links only the figures it wrote (a study committed part-way, docs/results/)."""
    from omegaconf import OmegaConf

    data = OmegaConf.load(SMOKE)
    data.tasks["second"] = data.tasks["multigoal"]
    path = tmp_path / "suite.yaml"
    OmegaConf.save(data, path)
    suite = load_suite(path)
    task = suite.tasks["multigoal"]
    final = [task.random_score, task.reference_score, task.reference_score]
    for spec in plan(suite, algos=list(suite.algos)):
        if spec.task == "multigoal":
            _fake_run(spec.folder(tmp_path), final, 150, 50)
    argv = ["--suite", str(path), "--out", str(tmp_path), "--report-only", "--reps", "50"]
    assert main(argv) == FAILED_BASE + 4  # the second task's four runs have no result
    assert json.loads((tmp_path / "aggregate.json").read_text())["overall"] == {}
    report = (tmp_path / "report.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert linked and "aggregates.png" not in linked
    for name in linked:
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def _goal_suite(tmp_path: Path) -> Path:
    """The smoke suite with its multigoal task scored by goals reached."""
    text = SMOKE.read_text().replace(
        "    eval_every: 50\n", "    eval_every: 50\n    score: goals\n"
    )
    path = tmp_path / "goal_suite.yaml"
    path.write_text(text)
    return path


HITS = {"s2ac": {"G1": 0.3, "G2": 0.35, "G3": 0.35}, "sac": {"G1": 1.0, "G2": 0.0, "G3": 0.0}}


def _goal_map(folder: Path, algo: str) -> None:
    """A finished multigoal run's goal map: S2AC spreads over three goals, SAC takes one."""
    (folder / GOAL_MAP_JSON).write_text(json.dumps({"episodes": 20, **HITS[algo]}))


def test_an_algorithm_on_some_tasks_is_named_but_not_counted_across_tasks(
    tmp_path: Path,
) -> None:
    """``algos.X.tasks`` limits X to some tasks: the across-task line says so instead of
    counting X's runs finished on every task (none, by design)."""
    from omegaconf import OmegaConf

    data = OmegaConf.load(SMOKE)
    data.tasks["second"] = data.tasks["multigoal"]
    data.algos["s2ac"].tasks = ["second"]
    path = tmp_path / "suite.yaml"
    OmegaConf.save(data, path)
    suite = load_suite(path)
    for spec in plan(suite, algos=list(suite.algos)):
        _fake_run(spec.folder(tmp_path), [-200.0, -180.0, -170.0], 150, 50)
    argv = ["--suite", str(path), "--out", str(tmp_path), "--report-only", "--reps", "50"]
    assert main(argv) == 0
    report = (tmp_path / "report.md").read_text()
    assert (
        "Runs per algorithm (seeds finished on every task): S2AC runs only on second (not "
        "compared here), SAC 2\n" in report
    )


def test_a_multigoal_task_is_scored_by_the_goals_its_runs_reach(tmp_path: Path) -> None:
    """A deterministic SAC that drives straight to one goal has the better return, but a task
    with ``score: goals`` ranks by goals reached (return beside): S2AC reaches all three."""
    path = _goal_suite(tmp_path)
    suite = load_suite(path)
    out = tmp_path / "out"
    for spec in plan(suite, algos=list(suite.algos), seeds=2):
        task = suite.tasks[spec.task]
        final = task.reference_score if spec.algo == "sac" else task.random_score
        _fake_run(spec.folder(out), [task.random_score, final, final], 150, 50)
        _goal_map(spec.folder(out), spec.algo)
    argv = ["--suite", str(path), "--out", str(out), "--report-only", "--reps", "200"]
    assert main(argv) == 0
    data = json.loads((out / "aggregate.json").read_text())
    assert data["overall"]["s2ac"]["IQM"]["value"] == pytest.approx(1.0)  # 3 of 3 goals
    assert data["overall"]["sac"]["IQM"]["value"] == pytest.approx(1 / 3)
    table = data["goals"]["multigoal"]
    assert table["s2ac"]["hit_entropy"]["mean"] == pytest.approx(hit_entropy([0.3, 0.35, 0.35]))
    assert table["sac"]["hit_entropy"]["mean"] == 0.0
    assert table["sac"]["return"]["mean"] > table["s2ac"]["return"]["mean"]
    report = (out / "report.md").read_text()
    assert "Scored by goals reached" in report and "3.00 ± 0.00 of 3" in report
    assert (
        (out / "goals.csv")
        .read_text()
        .splitlines()[0]
        .startswith("algorithm,task,seed,episodes,goals,goals_reached,hit_entropy,miss_rate,G1")
    )


def test_hit_entropy_is_the_entropy_of_the_hits_over_goals() -> None:
    assert hit_entropy([1.0, 0.0, 0.0]) == 0.0
    assert hit_entropy([0.2, 0.2, 0.2]) == pytest.approx(np.log(3))  # misses do not count
    assert np.isnan(hit_entropy([0.0, 0.0]))


def test_report_at_frames_reads_unfinished_runs_up_to_that_budget(tmp_path: Path) -> None:
    suite = load_suite(SMOKE)
    specs = plan(suite, algos=list(suite.algos), seeds=2)
    # Stopped runs: summaries of 100 of the task's 150 frames; one run stopped at 50 frames.
    for spec in specs:
        reached = 50 if spec.key == "multigoal/sac/seed-1" else 100
        returns = [-900.0 + 100 * spec.seed, -500.0 + 100 * spec.seed][: reached // 50]
        _fake_run(spec.folder(tmp_path), returns, reached, 50)
    # A final evaluation after the last updates, at the same frames: only it counts.
    summary_path = specs[0].folder(tmp_path) / SUMMARY_FILE
    summary = json.loads(summary_path.read_text())
    summary["eval_history"].append({**summary["eval_history"][-1], "updates": 120})
    summary["eval_history"][-2]["return_mean"] = 1e6  # superseded, must not count
    summary_path.write_text(json.dumps(summary))
    argv = ["--suite", str(SMOKE), "--out", str(tmp_path), "--report-only", "--reps", "200"]
    assert main(argv) == FAILED_BASE + 4  # without --at-frames no run is finished

    assert main([*argv, "--at-frames", "100"]) == FAILED_BASE + 1
    rows = (tmp_path / "runs.csv").read_text().splitlines()[1:]
    assert len(rows) == 3 * 2 + 1  # three runs reached 100 frames, two evaluations each + 1
    data = json.loads((tmp_path / "aggregate.json").read_text())
    assert data["at_frames"] == 100
    assert data["missing"][0]["run"] == "multigoal/sac/seed-1"
    assert data["missing"][0]["state"] == "short of 100 frames"
    # Raw returns at each point: S2AC seeds 0 and 1 give -500 and -400 at 100 frames.
    s2ac = {p["frames"]: p for p in data["returns"]["multigoal"]["s2ac"]}
    assert s2ac[100] == {"frames": 100, "mean": -450.0, "std": 50.0, "runs": 2}
    assert s2ac[50]["mean"] == -850.0
    report = (tmp_path / "report.md").read_text()
    assert "Compared at 100 frames" in report
    assert "| S2AC | -850.0 ± 50.0 (2) | -450.0 ± 50.0 (2) |" in report, report
    assert [r["run"] for r in data["run_speeds"]] == [
        "multigoal/s2ac/seed-0",
        "multigoal/s2ac/seed-1",
        "multigoal/sac/seed-0",
    ]


# ---------------------------------------------------------------------------- --prior
def _first_machine(tmp_path: Path) -> tuple[Path, list]:
    """A finished goal-scored suite on a machine that is gone: its run folders (summaries,
    goal maps, TensorBoard wall times) and the report published from them."""
    suite_path = _goal_suite(tmp_path)
    specs = plan(load_suite(suite_path), algos=["s2ac", "sac"], seeds=2)
    gone = tmp_path / "gone"
    for i, spec in enumerate(specs):
        folder = spec.folder(gone)
        _fake_run(folder, [-200.0 + i, -185.0 - 3.3 * i, -171.7 + i / 7], 150, 50)
        _goal_map(folder, spec.algo)
        _events(folder, "", [(EVAL_TAG, u, 1000.0 + u * (i + 1) / 3) for u in (1, 50, 100, 150)])
        if i:  # the first run ran before runs recorded what ran them
            summary = json.loads((folder / SUMMARY_FILE).read_text())
            summary |= {"code": CODE, "machine": {**MACHINE, "cpu": f"CPU {i % 2}"}}
            (folder / SUMMARY_FILE).write_text(json.dumps(summary))
    return suite_path, specs


CODE = {"s2ac_lit": "0.1.0", "commit": "c0ffee" * 6 + "c0fe", "dirty": False}
MACHINE = {"python": "3.11.7", "torch": "2.13.0+cpu", "numpy": "2.4.6", "mujoco": None}
MACHINE |= {"machine": "x86_64", "gpu": None, "threads": 1}


def _report(suite: Path, out: Path, *extra: str) -> int:
    return main(["--suite", str(suite), "--out", str(out), "--report-only", "--reps", "50", *extra])


def test_prior_runs_report_exactly_as_their_lost_run_folders_did(tmp_path: Path) -> None:
    """A study moved to a new machine: its committed report folder (``--prior``) stands for
    the run folders it was written from. Each of its runs, its wall times and goal maps come
    back exactly (the same runs.csv and goals.csv, the same statistics); a run finished in
    ``--out`` as well keeps ``--out``'s result; runs are marked as coming from ``--prior``."""
    suite, specs = _first_machine(tmp_path)
    published = tmp_path / "published"
    assert _report(suite, tmp_path / "gone", "--report-dir", str(published)) == 0
    new = tmp_path / "new"
    new.mkdir()
    again = tmp_path / "again"
    assert _report(suite, new, "--prior", str(published), "--report-dir", str(again)) == 0
    for name in ("runs.csv", "goals.csv", "software.csv"):
        assert (again / name).read_text() == (published / name).read_text(), name
    before = json.loads((published / "aggregate.json").read_text())
    after = json.loads((again / "aggregate.json").read_text())
    assert before.pop("from_earlier") == [] and after.pop("from_earlier") == [s.key for s in specs]
    assert after == before
    assert all(r["wall_time_s"] for r in after["run_speeds"])  # the times came along
    (versions,) = after["software"]["versions"]  # one commit and set of packages, two CPUs
    assert versions["code"] == CODE and versions["cpus"] == ["CPU 1", "CPU 0"]
    assert versions["packages"]["torch"] == "2.13.0+cpu" and versions["packages"]["mujoco"] is None
    assert versions["runs"] == [s.key for s in specs[1:]]
    assert after["software"]["unrecorded"] == [specs[0].key]
    record = Earlier.read(published).software[specs[1].key]  # summary.json's types again
    run = {"algorithm": specs[1].algo, "task": specs[1].task, "seed": specs[1].seed}
    assert record == dict.fromkeys(SOFTWARE_COLUMNS) | run | CODE | MACHINE | {"cpu": "CPU 1"}
    report = (again / "report.md").read_text()
    assert f"{len(specs)} runs (marked †" in report
    assert (
        f"| s2ac_lit 0.1.0 at {CODE['commit'][:10]} | python 3.11.7, torch 2.13.0+cpu, " in report
    )
    assert "1 runs have no record" in report

    # One run finished on the new machine too, with another result: --out's counts. Another
    # stopped there short of its budget: --prior's finished run counts, with its record.
    redone, started = specs[0], specs[1]
    _fake_run(redone.folder(new), [-200.0, -170.0, -170.0], 150, 50)
    _fake_run(started.folder(new), [-200.0, -170.0], 100, 50)
    summary = json.loads((started.folder(new) / SUMMARY_FILE).read_text())
    summary |= {"code": CODE, "machine": {**MACHINE, "cpu": "new CPU"}}
    (started.folder(new) / SUMMARY_FILE).write_text(json.dumps(summary))
    assert _report(suite, new, "--prior", str(published)) == 0
    data = json.loads((new / "aggregate.json").read_text())
    assert data["from_earlier"] == [s.key for s in specs[1:]]
    rows = [r for r in (new / "runs.csv").read_text().splitlines() if r.startswith("s2ac,")]
    assert rows[2].startswith("s2ac,multigoal,0,150,150,-170.0,1.0,")
    assert "new CPU" not in (new / "software.csv").read_text()


def test_a_prior_run_short_of_its_budget_is_neither_reported_nor_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A prior runs.csv written with --at-frames holds runs stopped short of the budget: they
    are not finished, so the suite would run them; the finished ones are not run again (with
    every run finished in --prior, the harness has nothing to start and no Ray to bring up)."""
    suite, specs = _first_machine(tmp_path)
    published = tmp_path / "published"
    assert _report(suite, tmp_path / "gone", "--report-dir", str(published)) == 0
    argv = ["--suite", str(suite), "--out", str(tmp_path / "new"), "--reps", "50"]
    assert main([*argv, "--prior", str(published)]) == 0
    assert not (tmp_path / "new" / "runs").exists()  # nothing ran
    out = capsys.readouterr()
    assert f"{len(specs)} runs: {len(specs)} already finished ({len(specs)} in --prior" in (
        out.out + out.err
    )

    short = tmp_path / "short"
    assert _report(suite, tmp_path / "gone", "--at-frames", "100", "--report-dir", str(short)) == 0
    capsys.readouterr()
    assert _report(suite, tmp_path / "new", "--prior", str(short)) == 2
    assert f"and --prior {str(short)!r} no finished one" in capsys.readouterr().err
    assert _report(suite, tmp_path / "new", "--prior", str(short), "--at-frames", "100") == 0
    data = json.loads((tmp_path / "new" / "aggregate.json").read_text())
    assert data["from_earlier"] == [s.key for s in specs]
    assert {r["frames"] for r in data["run_speeds"]} == {100}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (None, "has no runs.csv: give a folder a report was written to"),
        (("s2ac,multigoal,0,", "s2ac,multigoal,one,"), "line 2: seed='one' is not a number (int)"),
        (("algorithm,task", "algo,task"), "columns ['algo', 'task'"),
        ((",150,150,", ",150,"), "line 4: 8 cells expected"),
        ((",False,", ",no,", "software.csv"), "line 2: dirty='no' is not True or False"),
        (("CPU 1,,1", "CPU 1,,one", "software.csv"), "threads='one' is not a number (int)"),
    ],
)
def test_a_bad_prior_folder_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: tuple | None, message: str
) -> None:
    suite, _ = _first_machine(tmp_path)
    published = tmp_path / "published"
    assert _report(suite, tmp_path / "gone", "--report-dir", str(published)) == 0
    if edit is None:
        (published / "runs.csv").unlink()
    else:
        old, new, *name = edit
        table = published / (name[0] if name else "runs.csv")
        assert old in table.read_text()
        table.write_text(table.read_text().replace(old, new, 1))
    capsys.readouterr()
    assert _report(suite, tmp_path / "gone", "--prior", str(published)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err


# ---------------------------------------------------------------------------- suites
@pytest.mark.parametrize("path", sorted((ROOT / "conf" / "suites").glob("*.yaml")), ids=str)
def test_every_suite_plans_valid_runs(path: Path) -> None:
    suite = load_suite(path)
    specs = plan(suite, algos=list(suite.algos), seeds=1)  # validates every run's config
    cells = sum(len(a.tasks) if a.tasks else len(suite.tasks) for a in suite.algos.values())
    assert len(specs) == cells
    assert suite.baseline in suite.algos
    for task in suite.tasks.values():
        assert task.random_score < task.reference_score
        assert task.random_source and task.reference_source


def test_seeds_are_a_count_or_a_list_that_adds_seeds() -> None:
    import argparse

    from s2ac_lit.benchmark.cli import _seeds

    suite = load_suite(SMOKE)
    assert [s.seed for s in plan(suite, algos=["sac"], seeds=_seeds("3"))] == [0, 1, 2]
    added = plan(suite, algos=["sac"], seeds=_seeds("5,7"))
    assert [(s.seed, s.key) for s in added] == [
        (5, "multigoal/sac/seed-5"),
        (7, "multigoal/sac/seed-7"),
    ]
    assert "seed: 7" in added[1].config_yaml
    assert _seeds("3-3") == [3] and _seeds("5-7") == [5, 6, 7] and _seeds("0,4-5") == [0, 4, 5]
    for bad in ("0", "-1", "1,1", "2,-3", "x", "1,y", "5-3", "1-", "-", "1,,2", "0,0-1", "3-4-5"):
        with pytest.raises(argparse.ArgumentTypeError, match=repr(bad)):
            _seeds(bad)


def test_an_algorithm_runs_only_its_tasks_with_its_seeds(tmp_path: Path) -> None:
    """``algos.X.tasks``: X is planned on those tasks only; the others run everywhere."""
    from omegaconf import OmegaConf

    data = OmegaConf.load(ROOT / "conf" / "suites" / "cpu_mujoco.yaml")
    data.algos["sac"].tasks = ["hopper"]
    data.algos["sac"].seeds = 2
    path = tmp_path / "suite.yaml"
    OmegaConf.save(data, path)
    specs = plan(load_suite(path), algos=["s2ac", "sac"])
    assert sorted(s.key for s in specs if s.algo == "sac") == [
        "hopper/sac/seed-0",
        "hopper/sac/seed-1",
    ]
    assert {s.task for s in specs if s.algo == "s2ac"} == {"hopper", "inverted_double_pendulum"}


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("edit", "extra", "message"),
    [
        ({"taskz": {}}, [], "bad suite key 'taskz'"),
        ({"algos": {"sac": {"tasks": ["hoper"]}}}, [], "algos.sac.tasks=['hoper'] must name"),
        ({"tasks": {"multigoal": {"preset": "conf/nope.yaml"}}}, [], "preset 'conf/nope.yaml'"),
        ({}, ["--algos", "s2ac,sacc"], "unknown algorithm 'sacc' (did you mean 'sac'?)"),
        ({}, ["--tasks", "multigoals"], "unknown task 'multigoals' (did you mean 'multigoal'?)"),
        ({}, ["--set", "svgd.stepz=3"], "unknown config key 'svgd.stepz'"),
        ({}, ["--set", "trainer.threads=auto"], "trainer.threads='auto' cannot be scheduled"),
        ({}, ["--stop-timeout", "-1"], "--stop-timeout=-1.0 must be >= 0 seconds"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: dict, extra: list, message: str
) -> None:
    from omegaconf import OmegaConf

    suite = OmegaConf.merge(OmegaConf.load(SMOKE), edit)
    path = tmp_path / "suite.yaml"
    path.write_text(OmegaConf.to_yaml(suite))
    assert main(["--suite", str(path), "--out", str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err


# ---------------------------------------------------------------------------- Ray, end to end
def _harness(
    suite: Path, out: Path, workers: int = 2, extra: list[str] | None = None
) -> subprocess.Popen:
    cmd = [sys.executable, str(ROOT / "tools" / "benchmark.py"), "--suite", str(suite)]
    cmd += ["--out", str(out), "--workers", str(workers), "--reps", "200", *(extra or [])]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _suite_with_broken_algo(tmp_path: Path, algos: list[str]) -> Path:
    """Smoke suite, one seed, plus ``broken``: a valid config whose runs crash when the trainer
    starts (it asks for Apple's MPS accelerator, absent here)."""
    from omegaconf import OmegaConf

    suite = OmegaConf.load(SMOKE)
    suite.seeds = 1
    suite.algos = {a: suite.algos[a] for a in algos}
    suite.algos["broken"] = {"overrides": ["algo=sac", "trainer.accelerator=mps"]}
    path = tmp_path / "suite.yaml"
    path.write_text(OmegaConf.to_yaml(suite))
    return path


def _result_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith(("finished ", "FAILED "))]


def test_ray_two_workers_isolate_a_failing_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    harness = _harness(_suite_with_broken_algo(tmp_path, ["sac"]), out)
    log = harness.communicate(timeout=600)[0].decode()
    assert harness.returncode == FAILED_BASE + 1, log
    assert "2 runs: 0 already finished, 2 to run (2 at once" in log
    assert " WARNING " not in log, (
        log
    )  # Ray's log lines stay off the console (s2ac_lit.trainer.console)
    assert len(_result_lines(log)) == 2
    assert any(line.startswith("FAILED multigoal/broken/seed-0") for line in _result_lines(log))
    summary = json.loads((out / "runs/multigoal/sac/seed-0" / SUMMARY_FILE).read_text())
    assert summary["frames"] >= 150 and len(summary["eval_history"]) == 3
    report = (out / "report.md").read_text()
    assert "### multigoal/broken/seed-0 (failed)" in report, report
    assert "mps" in report.lower(), report  # the failed run's log tail names the accelerator
    rows = (out / "runs.csv").read_text().splitlines()[1:]
    assert [r.split(",")[:4] for r in rows] == [
        ["sac", "multigoal", "0", str(f)] for f in (50, 100, 150)
    ]
    software = (out / "software.csv").read_text().splitlines()
    assert len(software) == 2 and software[1].startswith("sac,multigoal,0,")
    assert f",{torch.__version__}," in software[1]

    # On a new machine with that folder as --prior: the finished run is not run again, the
    # failed one is; the report has both, the first with its rows and record from --prior.
    new = tmp_path / "new"
    harness = _harness(_suite_with_broken_algo(tmp_path, ["sac"]), new, extra=["--prior", str(out)])
    log = harness.communicate(timeout=600)[0].decode()
    assert harness.returncode == FAILED_BASE + 1, log
    assert "2 runs: 1 already finished (1 in --prior's runs.csv), 1 to run" in log, log
    assert [line.split(" after")[0] for line in _result_lines(log)] == [
        "FAILED multigoal/broken/seed-0"
    ]
    assert not (new / "runs" / "multigoal" / "sac").exists()
    for name in ("runs.csv", "software.csv"):
        assert (new / name).read_text() == (out / name).read_text(), name


@pytest.mark.slow
def test_ray_suite_killed_and_rerun_finishes_every_run_once(tmp_path: Path) -> None:
    path = _suite_with_broken_algo(tmp_path, ["s2ac", "sac"])
    out = tmp_path / "out"
    good = ["multigoal/s2ac/seed-0", "multigoal/sac/seed-0"]

    # Kill the harness (SIGKILL: no clean-up) as soon as the first run has finished.
    first = _harness(path, out)
    deadline = time.monotonic() + 300
    while not list(out.glob(f"runs/*/*/seed-0/{SUMMARY_FILE}")) and first.poll() is None:
        assert time.monotonic() < deadline, "no run finished in 5 minutes"
        time.sleep(0.5)
    first.send_signal(signal.SIGKILL)
    first.wait()
    time.sleep(2)  # a run that ends right now may still write its summary
    finished_before = {p.parent for p in out.glob(f"runs/*/*/seed-0/{SUMMARY_FILE}")}
    mtimes = {p: (p / SUMMARY_FILE).stat().st_mtime for p in finished_before}

    second = _harness(path, out)
    log = second.communicate(timeout=600)[0].decode()
    assert second.returncode == FAILED_BASE + 1, log
    skipped = len(finished_before)
    assert f"3 runs: {skipped} already finished, {3 - skipped} to run" in log
    assert len(_result_lines(log)) == 3 - skipped  # counters exact: each run reported once
    assert "FAILED multigoal/broken/seed-0" in log
    for p, mtime in mtimes.items():  # finished runs are never run again
        assert (p / SUMMARY_FILE).stat().st_mtime == mtime
    for key in good:  # every good run finished, started from scratch exactly once
        folder = out / "runs" / key
        assert json.loads((folder / SUMMARY_FILE).read_text())["frames"] >= 150
        attempts = [json.loads(line) for line in (folder / ATTEMPTS_FILE).read_text().splitlines()]
        assert [a["mode"] for a in attempts].count("fresh") == 1, attempts
    rows = (out / "runs.csv").read_text().splitlines()[1:]
    assert sorted({tuple(r.split(",")[:3]) for r in rows}) == [
        ("s2ac", "multigoal", "0"),
        ("sac", "multigoal", "0"),
    ]


def _one_long_run(tmp_path: Path) -> Path:
    """The smoke suite's S2AC seed 0 alone, long enough to be stopped mid-run: ~96 updates
    (one per 10 frames), a periodic checkpoint every 10."""
    from omegaconf import OmegaConf

    suite = OmegaConf.load(SMOKE)
    suite.seeds = 1
    suite.algos = {"s2ac": suite.algos["s2ac"]}
    suite.baseline = "s2ac"  # a suite's baseline is one of its algorithms
    suite.overrides += ["collector.frames_per_batch=10", "trainer.checkpoint_every_updates=10"]
    suite.tasks.multigoal.frames = 1000
    suite.tasks.multigoal.eval_every = 500
    path = tmp_path / "suite.yaml"
    path.write_text(OmegaConf.to_yaml(suite))
    return path


def _sigterm_after_update_10(harness: subprocess.Popen, folder: Path) -> str:
    """Send SIGTERM to the harness once the run has checkpointed update 10; its console."""
    try:
        # Ray's and the fit process's start-up take ~30 s on two loaded cores.
        deadline = time.monotonic() + 300
        while not (folder / "checkpoints" / "step=10.ckpt").exists():
            assert harness.poll() is None, harness.communicate()[0].decode()
            assert time.monotonic() < deadline, "no checkpoint at update 10 in 5 minutes"
            time.sleep(0.1)
        harness.send_signal(signal.SIGTERM)
        # The run stops at its next update; the rest is Ray's shutdown (~5 s).
        return harness.communicate(timeout=120)[0].decode()
    finally:
        harness.kill()


def _assert_stopped_with_a_checkpoint(
    harness: subprocess.Popen, log: str, suite: Path, out: Path
) -> None:
    """The harness stopped its one run with a checkpoint, and the report says it resumes."""
    folder = out / "runs" / "multigoal" / "s2ac" / "seed-0"
    assert harness.returncode == 128 + signal.SIGTERM, log
    assert "SIGTERM: stopping 1 run(s) gracefully" in log, log
    assert "1 run(s) stopped in " in log and "1 with a new checkpoint" in log, log
    assert "stopped by SIGTERM; run the same command again" in log, log
    partial = json.loads((folder / SUMMARY_FILE).read_text())
    # A whole run makes (1000 - 50) / 10 + 1 = 96 updates (the first after 50 random frames).
    assert partial["finished"] is False and 10 < partial["updates"] < 96, partial
    last = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == partial["updates"]  # nothing trained is lost
    argv = ["--suite", str(suite), "--out", str(out), "--report-only", "--reps", "50"]
    assert main(argv) == FAILED_BASE + 1
    # The harness stops its runs with SIGINT, whichever signal stopped the harness.
    state = f"stopped by SIGINT at update {partial['updates']}; rerunning the suite resumes it"
    assert f"### multigoal/s2ac/seed-0 ({state})" in (out / "report.md").read_text()


def test_sigterm_stops_the_run_in_flight_with_a_checkpoint_and_a_rerun_resumes_it(
    tmp_path: Path,
) -> None:
    """SIGTERM to the harness: the run in flight checkpoints the update it is at and exits,
    the harness exits 143; the same command then resumes the run from that checkpoint."""
    path, out = _one_long_run(tmp_path), tmp_path / "out"
    folder = out / "runs" / "multigoal" / "s2ac" / "seed-0"
    first = _harness(path, out, workers=1)
    log = _sigterm_after_update_10(first, folder)
    _assert_stopped_with_a_checkpoint(first, log, path, out)

    second = _harness(path, out, workers=1)
    log = second.communicate(timeout=600)[0].decode()
    assert second.returncode == 0, log
    assert "1 runs: 0 already finished, 1 to run" in log
    assert [line.split(":")[0] for line in _result_lines(log)] == ["finished multigoal/s2ac/seed-0"]
    attempts = [json.loads(line) for line in (folder / ATTEMPTS_FILE).read_text().splitlines()]
    assert [a["mode"] for a in attempts] == ["fresh", "resume"]
    summary = json.loads((folder / SUMMARY_FILE).read_text())
    assert summary["finished"] is True and summary["frames"] >= 1000


def _fit_process_gone(folder: Path, timeout: float = 120) -> None:
    """Wait until no process holds the run folder's lock (a killed harness's fit process dies
    with its Ray worker, PR_SET_PDEATHSIG)."""
    from s2ac_lit.trainer.layout import LOCK_NAME

    deadline = time.monotonic() + timeout
    while True:
        try:
            pid = int((folder / LOCK_NAME).read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return  # no lock, a lock being written or one of a dead process
        assert time.monotonic() < deadline, f"process {pid} still holds {folder}"
        time.sleep(0.2)


def _rows_but_wall_time(out: Path) -> list[list[str]]:
    rows = (out / "runs.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert header[-1] == "wall_time_s", header
    return [row.split(",")[:-1] for row in rows]


@pytest.mark.slow
def test_a_suite_killed_mid_run_and_rerun_writes_the_rows_of_an_uninterrupted_one(
    tmp_path: Path,
) -> None:
    """Exact resume (docs/checkpoints.md): the harness SIGKILLed once its run has checkpointed
    update 10, then rerun, writes the runs.csv rows of the same suite run without interruption,
    every value the same but the wall times."""
    path = _one_long_run(tmp_path)
    whole = _harness(path, tmp_path / "whole", workers=1)
    log = whole.communicate(timeout=600)[0].decode()
    assert whole.returncode == 0, log

    out = tmp_path / "out"
    folder = out / "runs" / "multigoal" / "s2ac" / "seed-0"
    first = _harness(path, out, workers=1)
    try:
        deadline = time.monotonic() + 300
        while not (folder / "checkpoints" / "step=10.ckpt").exists():
            assert first.poll() is None, first.communicate()[0].decode()
            assert time.monotonic() < deadline, "no checkpoint at update 10 in 5 minutes"
            time.sleep(0.1)
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        first.kill()
    _fit_process_gone(folder)

    second = _harness(path, out, workers=1)
    log = second.communicate(timeout=600)[0].decode()
    assert second.returncode == 0, log
    attempts = [json.loads(line) for line in (folder / ATTEMPTS_FILE).read_text().splitlines()]
    assert [a["mode"] for a in attempts] == ["fresh", "resume"]
    assert "resume is not bit-exact" not in (folder / LOG_FILE).read_text()
    rows = _rows_but_wall_time(out)
    assert len(rows) == 1 + 2  # the header, the evaluations at 500 and 1000 frames
    assert rows == _rows_but_wall_time(tmp_path / "whole")


@pytest.mark.slow
def test_sigterm_stops_a_run_on_another_node_of_a_cluster(tmp_path: Path, monkeypatch) -> None:
    """With --ray-address the stop reaches the run on another node: a two-node cluster on
    this machine (Ray's own test cluster), whose head has no CPU for the run."""
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the nodes' workers import this tree
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        cluster.add_node(num_cpus=1)
        path, out = _one_long_run(tmp_path), tmp_path / "out"
        folder = out / "runs" / "multigoal" / "s2ac" / "seed-0"
        harness = _harness(path, out, workers=1, extra=["--ray-address", cluster.address])
        log = _sigterm_after_update_10(harness, folder)
        _assert_stopped_with_a_checkpoint(harness, log, path, out)
    finally:
        cluster.shutdown()


def _crash_worker_of_seed_one(spec, out):  # a Ray task: seed 1's worker process dies
    from s2ac_lit.benchmark.runner import RunResult

    if spec.seed == 1:
        os._exit(1)
    return RunResult(spec.key, "finished", 0.0, {"frames": spec.frames})


def test_a_run_whose_ray_worker_dies_fails_alone(tmp_path: Path, monkeypatch) -> None:
    """Ray itself can lose a task (its memory monitor kills the worker, a node dies): that run
    is reported failed and the others still finish (found when an OOM kill stopped a suite)."""
    import ray.cloudpickle

    from s2ac_lit.benchmark import executor

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(executor, "run", _crash_worker_of_seed_one)
    suite = load_suite(SMOKE)
    specs = plan(suite, algos=["sac"], seeds=3)
    lines: list[str] = []
    results = executor.execute(specs, tmp_path, workers=2, threads=1, echo=lines.append)
    status = {r.key: r.status for r in results}
    assert status == {
        "multigoal/sac/seed-0": "finished",
        "multigoal/sac/seed-1": "failed",
        "multigoal/sac/seed-2": "finished",
    }
    failed = next(r for r in results if r.status == "failed")
    assert "Error" in failed.log_tail.split(":")[0], failed.log_tail  # Ray's exception type
    assert sum(line.startswith("FAILED multigoal/sac/seed-1") for line in lines) == 1
