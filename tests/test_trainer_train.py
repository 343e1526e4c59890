"""End-to-end training: a tiny fit, kill-and-resume, bad checkpoints, DDP on CPU, evaluation.

Runs use the multigoal env and tiny networks (``conftest.TINY``), whose update schedule makes
the number of updates a known function of the frames (``conftest.expected_updates``).
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, expected_updates, run_fit, tiny, wait_for
from tensordict import TensorDict

import s2ac_lit
from s2ac_lit.algorithms import without_unread
from s2ac_lit.config import ConfigError, load_config
from s2ac_lit.trainer.checkpoints import find_checkpoint
from s2ac_lit.trainer.train import main, train


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("fit")
    cfg = load_config(
        overrides=tiny(
            tmp_path,
            "collector.total_frames=400",
            "trainer.checkpoint_every_updates=20",
            "eval.every_frames=200",
            "trainer.profiler=simple",
        )
    )
    summary = train(cfg)
    return Path(summary["run_folder"])


def test_profiler_times_every_stage_of_the_loop(finished_run: Path) -> None:
    """Lightning's profile counts each stage as often as the schedule runs it: 8 collections
    of 50 frames, 70 replay samples and 70 optimiser steps (conftest.expected_updates)."""
    calls = {}
    for line in (finished_run / "fit-profile.txt").read_text().splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 3 and cells[3].isdigit():
            calls[cells[1]] = int(cells[3])
    assert calls["collect"] == 400 // 50
    assert calls["replay_sample"] == expected_updates(400)
    assert calls["optimizer_step"] == expected_updates(400)


def test_fit_writes_everything_and_counts_exactly(finished_run: Path) -> None:
    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["frames"] == 400
    assert summary["updates"] == expected_updates(400) == 70
    # Every 200 frames (right after the first update that follows them); in the last round,
    # once, after its last update: the final policy (one evaluation per frame count).
    assert [h["frames"] for h in summary["eval_history"]] == [200, 400]
    assert summary["eval_history"][-1]["updates"] == 70
    for name in ("config.yaml", "learning_curve.png", "checkpoints/last.ckpt"):
        assert (finished_run / name).is_file(), name
    assert not (finished_run / "ranks").exists()  # per-rank counters only with several ranks
    assert (finished_run / "logs" / "csv" / "metrics.csv").read_text().count("train/loss_qvalue")
    assert list((finished_run / "logs" / "tensorboard").glob("events.*"))
    checkpoint = torch.load(finished_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 70
    dump = finished_run / "replay" / checkpoint["replay_dir"] / "rank-0"
    assert dump.is_dir()
    assert torch.get_num_threads() == 1
    # The dump holds the 400 transitions collected, not replay.capacity=5000 rows.
    storage = TensorDict.load_memmap(dump / "storage")
    assert storage.shape == (400,)
    files = sum(f.stat().st_size for f in dump.rglob("*") if f.is_file())
    # The data and small metadata files; a whole-capacity dump would be 5000/400 = 12.5 times
    # the data.
    assert files < 2 * storage.bytes(), (files, storage.bytes())
    assert summary["wall_time_s"] == sum(summary["attempt_wall_times_s"])
    assert len(summary["attempt_wall_times_s"]) == 1
    # What ran it: the packages imported here and, from this checkout, its commit.
    assert summary["machine"]["torch"] == torch.__version__ and summary["machine"]["gpu"] is None
    head = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    assert summary["code"] == {
        "s2ac_lit": s2ac_lit.__version__,
        "commit": head,
        "dirty": None if head is None else bool(dirty),
    }


def test_the_code_recorded_is_the_code_at_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit made in the checkout while a run trains (here: every later read of the record
    sees another commit) does not change the code its summary names, at any of its writes."""
    import s2ac_lit.trainer.callbacks as callbacks

    commits = iter(range(100))
    monkeypatch.setattr(callbacks, "code_record", lambda: {"commit": f"commit {next(commits)}"})
    overrides = tiny(tmp_path, "collector.total_frames=200", "eval.every_frames=100")
    summary = train(load_config(overrides=overrides))
    assert summary["code"] == {"commit": "commit 0"}
    written = json.loads((Path(summary["run_folder"]) / "summary.json").read_text())
    assert len(written["eval_history"]) == 2 and written["code"] == {"commit": "commit 0"}


def _git(*args: str) -> str | None:
    """This checkout's ``git`` output (``None`` where the tests run from no checkout)."""
    if not (ROOT / ".git").exists():
        return None
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_evaluate_tool_reports_a_return(finished_run: Path, capsys) -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import evaluate
    finally:
        sys.path.pop(0)
    assert (
        evaluate.main([str(finished_run), "--episodes", "2", "--selection", "max", "--json"]) == 0
    )
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["episodes"] == 2 and report["selection"] == "max"
    assert -3000 < report["return_mean"] < 20


def test_corrupt_checkpoint_is_a_clear_error(finished_run: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    for checkpoint in (run / "checkpoints").glob("*.ckpt"):
        checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # a truncated write
    assert main(["--resume", str(run)]) == 2
    assert "is corrupt or not a checkpoint" in capsys.readouterr().err


def test_mismatched_checkpoint_is_a_clear_error(finished_run: Path, capsys) -> None:
    assert main(["--resume", str(finished_run), "critic.hidden_sizes=[8]"]) == 2
    err = capsys.readouterr().err
    assert "does not match the configured networks" in err and "qvalue_network" in err


def test_missing_run_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["--resume", str(tmp_path / "nothing")]) == 2
    assert "neither a checkpoint file nor a run folder" in capsys.readouterr().err
    assert main(["--resume", "auto", f"run_dir={tmp_path}"]) == 2
    assert "no run with a checkpoint" in capsys.readouterr().err


def test_prioritized_replay_without_the_extension_stops_before_a_run_folder(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """Where TorchRL's C++ extension does not load (simulated: it loads on some machines), the
    command line and ``train`` refuse ``replay.prioritized=true`` before any folder exists,
    and ``--print-config`` refuses it as a run would."""
    import s2ac_lit.trainer.data as data

    monkeypatch.setattr(data, "prioritized_replay_unavailable", lambda: "undefined symbol: x")
    overrides = tiny(tmp_path, "replay.prioritized=true")
    for argv in (overrides, [*overrides, "--print-config"]):
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        (line,) = captured.err.splitlines()
        assert line.startswith("error: replay.prioritized=true needs TorchRL's C++ extension")
        assert "undefined symbol: x" in line and "replay.prioritized=false" in line
    with pytest.raises(ConfigError, match=r"replay\.prioritized=true needs"):
        train(load_config(overrides=overrides))
    assert not (tmp_path / "runs").exists()


# Slow: the default suite's SIGKILL test (tests/test_trainer_train_resume.py, three kills at
# random moments, bit-identical to the uninterrupted run) checks this and more.
@pytest.mark.slow
def test_killed_run_resumes_without_losing_or_repeating_work(tmp_path: Path) -> None:
    """SIGKILL right after the first periodic checkpoint; the resumed run must end with the
    same frames and exactly the scheduled number of updates (a repeated or lost round would
    change the count by 10)."""
    frames = 2000
    args = tiny(
        tmp_path,
        f"collector.total_frames={frames}",
        "trainer.checkpoint_every_updates=20",
        "eval.every_frames=1000",
    )
    process = run_fit(*args)
    runs = tmp_path / "runs"
    wait_for(lambda: list(runs.glob("*/checkpoints/step=*.ckpt")), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    (run,) = runs.iterdir()
    assert not (run / "summary.json").exists(), "the run finished before it was killed"
    checkpoint = find_checkpoint(run)  # the newest: last.ckpt may not exist yet
    killed_at = torch.load(checkpoint, weights_only=True)["global_step"]
    assert 0 < killed_at < expected_updates(frames)

    resumed = run_fit("--resume", "auto", f"run_dir={runs}")
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["frames"] == frames
    assert summary["updates"] == expected_updates(frames)
    history_updates = [h["updates"] for h in summary["eval_history"]]
    assert history_updates == sorted(set(history_updates))


def test_a_running_run_keeps_its_summary_current_after_every_evaluation(tmp_path: Path) -> None:
    """summary.json is rewritten (``"finished": false``) after each evaluation, so a run killed
    without warning still shows the evaluations it made (``tools/benchmark.py --at-frames``)."""
    args = tiny(tmp_path, "collector.total_frames=2000", "eval.every_frames=200")
    process = run_fit(*args)
    runs = tmp_path / "runs"
    wait_for(lambda: list(runs.glob("*/summary.json")), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    (summary_path,) = runs.glob("*/summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["finished"] is False
    assert summary["eval_history"][0]["frames"] == 200
    assert summary["frames"] < 2000


def test_ddp_on_two_cpu_processes(tmp_path: Path) -> None:
    """Gloo DDP: both ranks take every update and collected different data; the run checks
    at its end that both hold the same weights (``check_ranks_agree``), so it exits 0."""
    process = run_fit(
        *tiny(
            tmp_path,
            "collector.total_frames=300",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.strategy=ddp",
            "eval.every_frames=0",
            "trainer.checkpoint_every_updates=1000",
        )
    )
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    # No third-party noise: DDP's gradient-layout warning, the deprecation inside Lightning's
    # all_gather, Lightning's banner (the start line names the processes).
    for noise in ("Warning", "deprecated", "distributed_backend="):
        assert noise not in output, output
    (run,) = (tmp_path / "runs").iterdir()
    ranks = [json.loads((run / "ranks" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["updates"] == ranks[1]["updates"] == expected_updates(300)
    assert ranks[0]["frames"] == ranks[1]["frames"] == 300
    (dump,) = (run / "replay").iterdir()  # the final checkpoint's dump, one folder per rank
    observations = [(dump / f"rank-{r}" / "storage" / "observation.memmap") for r in (0, 1)]
    assert observations[0].read_bytes() != observations[1].read_bytes()


def test_bf16_mixed_precision_on_cpu(tmp_path: Path) -> None:
    cfg = load_config(
        overrides=tiny(
            tmp_path,
            "collector.total_frames=150",
            "trainer.precision=bf16-mixed",
            "eval.every_frames=0",
            "replay.checkpoint=false",
        )
    )
    summary = train(cfg)
    assert summary["updates"] == expected_updates(150)
    assert math.isfinite(summary["final_eval_return_mean"])


@pytest.mark.parametrize("algo", ["sac", "sql"])
def test_baselines_train_through_the_same_trainer(tmp_path: Path, algo: str) -> None:
    # The tiny settings are S2AC's too; those the baseline does not read go back to defaults.
    cfg = without_unread(
        load_config(
            overrides=tiny(
                tmp_path,
                f"algo={algo}",
                "collector.total_frames=150",
                "eval.every_frames=0",
                "replay.checkpoint=false",
            )
        )
    )
    summary = train(cfg)
    assert summary["algo"] == algo and summary["updates"] == expected_updates(150)
