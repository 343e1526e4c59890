"""Resume loses nothing: the CSV log, Ctrl-C/SIGTERM, the run lock, damaged checkpoints,
atomic writes, and a run SIGKILLed at random moments; and it changes nothing: a run stopped
and resumed ends bit-identical to the uninterrupted run (docs/checkpoints.md), or says in one
line why it cannot.

Runs reuse test_train's tiny multigoal setup (and Hopper-v5 with the same tiny networks), whose
update count is a known function of the frame budget (``expected_updates``).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import assert_bit_identical, expected_updates, read_csv, run_fit, tiny, wait_for

from s2ac_lit.config import load_config
from s2ac_lit.trainer.callbacks import GracefulStop, RunCheckpoint, RunInterrupted
from s2ac_lit.trainer.checkpoints import find_checkpoint
from s2ac_lit.trainer.runfolder import (
    LOCK_NAME,
    AtomicCheckpointIO,
    atomic_write_text,
    remove_leftovers,
)
from s2ac_lit.trainer.train import main, train

FRAMES = 400
BUDGET = [
    "trainer.checkpoint_every_updates=20",
    "eval.every_frames=200",
]
MULTIGOAL = "s2ac_lit/MultiGoalMaxEnt-v0"
EXACT_FRAMES = 600
EXACT = [
    f"collector.total_frames={EXACT_FRAMES}",
    "trainer.checkpoint_every_updates=10",
    "eval.every_frames=200",
    "trainer.threads=1",
]
"""The runs compared bit for bit: 110 updates, a checkpoint every 10, three evaluations, one
torch thread (another thread count sums in another order)."""


def logged_steps(run: Path, key: str) -> list[int]:
    return [
        int(row["step"]) for row in read_csv(run / "logs" / "csv" / "metrics.csv") if row.get(key)
    ]


def temporary_files(run: Path) -> list[Path]:
    return [p for p in run.rglob("*") if ".tmp" in p.name or p.name == LOCK_NAME]


def assert_holds_only_the_newest_checkpoint(run: Path) -> None:
    """README's run-folder table: ``last.ckpt`` and its ``step=N.ckpt``, and the replay dump
    of that checkpoint (every rank's), nothing older."""
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    step = last["global_step"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "last.ckpt",
        f"step={step}.ckpt",
    ]
    assert [p.name for p in (run / "replay").iterdir()] == [last["replay_dir"]] == [f"step-{step}"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run of FRAMES frames."""
    tmp_path = tmp_path_factory.mktemp("reference")
    cfg = load_config(overrides=tiny(tmp_path, f"collector.total_frames={FRAMES}", *BUDGET))
    return Path(train(cfg)["run_folder"])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Callable[[str], Path]:
    """The uninterrupted run of the ``EXACT`` budget on an env id (each run once)."""
    runs: dict[str, Path] = {}

    def run(env_id: str) -> Path:
        if env_id not in runs:
            tmp_path = tmp_path_factory.mktemp("uninterrupted")
            cfg = load_config(overrides=tiny(tmp_path, *EXACT, f"env.id={env_id}"))
            runs[env_id] = Path(train(cfg)["run_folder"])
        return runs[env_id]

    return run


def test_resume_keeps_the_whole_csv_log(reference: Path, tmp_path: Path, monkeypatch) -> None:
    """Stop after update 37 (as SIGINT does), resume: the CSV equals the uninterrupted run's."""
    stop_at_batch_end = GracefulStop.on_train_batch_end

    def interrupt_at_37(self, trainer, *args) -> None:
        if trainer.global_step == 37:
            self.signals.signum = signal.SIGINT
        stop_at_batch_end(self, trainer, *args)

    monkeypatch.setattr(GracefulStop, "on_train_batch_end", interrupt_at_37)
    cfg = load_config(overrides=tiny(tmp_path, f"collector.total_frames={FRAMES}", *BUDGET))
    with pytest.raises(RunInterrupted):
        train(cfg)
    monkeypatch.undo()
    (run,) = (tmp_path / "runs").iterdir()
    assert logged_steps(run, "train/loss_qvalue")[-1] == 34
    stopped = json.loads((run / "summary.json").read_text())  # readable before the resume
    assert not stopped["finished"] and stopped["updates"] == 37
    assert stopped["frames"] < FRAMES and [h["frames"] for h in stopped["eval_history"]] == [200]
    assert_holds_only_the_newest_checkpoint(run)  # the periodic step=20 is superseded
    assert main(["--resume", str(run)]) == 0
    assert_holds_only_the_newest_checkpoint(run)  # and so is the interrupted step=37
    for key in ("train/loss_qvalue", "eval/return_mean", "train/frames"):
        assert logged_steps(run, key) == logged_steps(reference, key), key
    summary = json.loads((run / "summary.json").read_text())
    assert [h["frames"] for h in summary["eval_history"]] == [200, 400]
    assert summary["updates"] == expected_updates(FRAMES)
    assert not temporary_files(run)
    assert_bit_identical(run, reference)


def test_a_finished_run_trains_on_to_a_raised_budget(
    reference: Path, tmp_path: Path, capsys
) -> None:
    """Resuming a finished run with a larger collector.total_frames continues it (Lightning
    would otherwise return at once from the finished epoch); the same budget is refused with a
    message saying how to train on. Ground truth: the uninterrupted run of the larger budget
    logs the same steps and makes the same number of updates."""
    half = FRAMES // 2
    cfg = load_config(overrides=tiny(tmp_path, f"collector.total_frames={half}", *BUDGET))
    run = Path(train(cfg)["run_folder"])
    assert main(["--resume", str(run)]) == 2
    error = capsys.readouterr().err
    assert f"finished at {half} frames" in error and "collector.total_frames" in error
    assert main(["--resume", str(run), f"collector.total_frames={FRAMES}"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and summary["frames"] == FRAMES
    assert summary["updates"] == expected_updates(FRAMES)
    for key in ("train/loss_qvalue", "train/frames"):
        assert logged_steps(run, key) == logged_steps(reference, key), key


def test_damaged_newest_checkpoint_falls_back(reference: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "copy"
    shutil.copytree(reference, run)
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # a truncated write
    os.utime(last, (time.time() + 10, time.time() + 10))  # make sure it is the newest
    (older,) = (run / "checkpoints").glob("step=*.ckpt")
    assert find_checkpoint(run) == older
    err = capsys.readouterr().err
    assert "skipping a damaged checkpoint" in err and "last.ckpt" in err and "corrupt" in err
    older.write_bytes(b"not a checkpoint")
    assert main(["--resume", str(run)]) == 2
    assert "none of its 2 checkpoints loads" in capsys.readouterr().err


def folder_state(run: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in run.rglob("*")}


def test_a_replay_dump_cut_short_stops_the_resume(reference: Path, tmp_path: Path, capsys) -> None:
    """The dump's manifest records its files' sizes; a copy that lost the end of one (or a
    file) is named and the resume stops (README §Resume) before anything is written."""
    run = tmp_path / "copy"
    shutil.copytree(reference, run)
    (dump,) = (run / "replay").glob("step-*/rank-0")
    stored = max((p for p in dump.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    stored.write_bytes(stored.read_bytes()[: stored.stat().st_size // 2])
    before = folder_state(run)
    more = f"collector.total_frames={2 * FRAMES}"
    assert main(["--resume", str(run), more]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and stored.name in err and "bytes" in err and "rank-0" in err
    assert folder_state(run) == before
    stored.unlink()
    assert main(["--resume", str(run), more]) == 2
    assert f"{stored.relative_to(dump)} is missing" in capsys.readouterr().err


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("during", ["on_train_batch_start", "on_train_batch_end"])
def test_a_run_folder_deleted_while_training_is_not_recreated(
    tmp_path: Path, monkeypatch, capsys, during: str
) -> None:
    """Deleting the run folder stops the run with one line, at the end of the update (before
    its metrics are logged), or, deleted after that check, at the write that fails; nothing
    writes the folder again (the checkpoint writer and the replay dump made it anew)."""
    hook = getattr(GracefulStop, during)

    def delete_at_25(self, trainer, *args) -> None:
        if trainer.global_step == 25 and self.run_folder.exists():
            shutil.rmtree(self.run_folder)
        hook(self, trainer, *args)

    monkeypatch.setattr(GracefulStop, during, delete_at_25)
    args = tiny(tmp_path, f"collector.total_frames={FRAMES}", *BUDGET)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 1, err
    assert "was deleted while the run trained" in err
    assert list((tmp_path / "runs").iterdir()) == []


def test_locked_run_folder_is_refused_and_untouched(
    reference: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "copy"
    shutil.copytree(reference, run)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / LOCK_NAME).write_text(f"{holder.pid} {os.uname().nodename}\n")
        before = folder_state(run)
        assert main(["--resume", str(run)]) == 2
        err = capsys.readouterr().err
        assert f"is in use by process {holder.pid}" in err and err.count("\n") == 1
        assert folder_state(run) == before
    finally:
        holder.kill()
        holder.wait()
    # The holder is dead now: its lock is stale and taken over. The run is finished, so the
    # resume gets as far as saying so (past the lock) and releases the lock.
    assert main(["--resume", str(run)]) == 2
    assert "finished at" in capsys.readouterr().err
    assert not (run / LOCK_NAME).exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_checkpoints_and_prints_the_resume_command(
    tmp_path: Path, signum: int, capsys
) -> None:
    """A real child: a second process is refused while it runs; the signal then stops it with
    a checkpoint of the update it was doing, exit 128 + signal and the resume command."""
    runs = tmp_path / "runs"
    process = run_fit(*tiny(tmp_path, "collector.total_frames=5000", *BUDGET))
    try:
        wait_for(lambda: list(runs.glob("*/checkpoints/step=*.ckpt")), process)
        (run,) = runs.iterdir()
        assert main(["--resume", str(run)]) == 2
        assert "is in use by process" in capsys.readouterr().err
        process.send_signal(signum)
        output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signum, output
    assert "Traceback" not in output
    # Wherever it lands (also inside the evaluation's policy, whose bound parameters once
    # turned the signal into a tensordict error and a stop "at once"): the graceful stop.
    assert f"resume with: python tools/fit.py --resume {run}" in output, output
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert f"stopped after update {last['global_step']} " in output, output
    assert last["global_step"] % 20 != 0 or last["global_step"] > 20  # not only the periodic one
    assert (run / "replay" / last["replay_dir"] / "rank-0").is_dir()
    assert not temporary_files(run)


def test_sigterm_during_the_periodic_checkpoint_still_stops_gracefully(
    tmp_path: Path, monkeypatch
) -> None:
    """Lightning checks for SIGTERM after every callback, the periodic checkpoint last: a
    signal landing there must still end in our checkpoint, partial summary and exit code, not
    in Lightning's SIGTERMException (a SystemExit with status 0)."""
    save = RunCheckpoint._save_checkpoint

    def save_then_signal(self, trainer, filepath: str) -> None:
        save(self, trainer, filepath)
        if trainer.global_step == 20:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(RunCheckpoint, "_save_checkpoint", save_then_signal)
    cfg = load_config(overrides=tiny(tmp_path, "collector.total_frames=1000", *BUDGET))
    with pytest.raises(RunInterrupted) as stop:
        train(cfg)
    assert stop.value.exit_code == 128 + signal.SIGTERM
    (run,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert summary["finished"] is False
    assert summary["updates"] == last["global_step"] == 21  # the update after the signal


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    atomic_write_text(target, "old")

    def fail(_: object) -> None:
        raise KeyboardInterrupt

    from s2ac_lit.trainer import runfolder

    with pytest.raises(KeyboardInterrupt):
        runfolder.atomic_write(target, lambda file: (file.write(b"half"), fail(file)))
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["summary.json"]


def test_checkpoint_temp_file_is_in_the_target_folder(tmp_path: Path, monkeypatch) -> None:
    renames = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renames.append((a, b)), real_replace(a, b)))
    path = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 3}, path)
    ((source, target),) = renames
    assert Path(source).parent == path.parent and Path(target) == path
    assert torch.load(path, weights_only=True) == {"global_step": 3}


def test_leftovers_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    (tmp_path / "replay" / "step-20" / ".rank-0.tmp").mkdir(parents=True)
    (tmp_path / "replay" / "step-20" / ".rank-0.tmp" / "storage").write_text("x")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".last.ckpt.tmp-123").write_text("x")
    (tmp_path / "checkpoints" / "last.ckpt").write_text("x")
    removed = remove_leftovers(tmp_path)
    assert len(removed) == 2 and not temporary_files(tmp_path)
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()


def holds_lock(runs: Path, pid: int) -> bool:
    try:
        return any(p.read_text().split()[0] == str(pid) for p in runs.glob(f"*/{LOCK_NAME}"))
    except (OSError, IndexError):
        return False  # being written


def kill_and_resume(tmp_path: Path, kills: int, seed: int, env_id: str = MULTIGOAL) -> Path:
    """SIGKILL a run ``kills`` times at random moments (seeded) after its first checkpoint,
    resuming with ``--resume auto`` each time; it must end like an uninterrupted run: frames,
    updates, CSV rows, only its newest checkpoint. Returns its run folder."""
    args = tiny(tmp_path, *EXACT, f"env.id={env_id}")
    runs = tmp_path / "runs"
    rng = random.Random(seed)
    resume = ["--resume", "auto", f"run_dir={runs}"]
    for kill in range(kills):
        process = run_fit(*(args if kill == 0 else resume))
        # Start counting once this process holds the run (the first kill also needs a
        # checkpoint, or there is nothing to resume).
        wait_for(lambda pid=process.pid: holds_lock(runs, pid), process)
        if kill == 0:
            wait_for(lambda: list(runs.glob("*/checkpoints/*.ckpt")), process)
        time.sleep(rng.uniform(0.0, 2.0))
        if process.poll() is not None:
            break  # finished before the kill: nothing left to interrupt
        process.kill()
        process.wait()
    else:
        process = run_fit(*resume)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    assert "resume is not bit-exact" not in output, output
    (run,) = runs.iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumes"] and all(r["exact"] for r in summary["resumes"]), summary["resumes"]
    assert summary["frames"] == EXACT_FRAMES
    assert summary["updates"] == expected_updates(EXACT_FRAMES)
    train_steps = logged_steps(run, "train/loss_qvalue")
    assert train_steps == list(range(4, expected_updates(EXACT_FRAMES), 5))
    assert not temporary_files(run)
    assert_holds_only_the_newest_checkpoint(run)  # whatever the kills left behind
    return run


@pytest.mark.parametrize("env_id", [MULTIGOAL, pytest.param("Hopper-v5", marks=pytest.mark.slow)])
def test_sigkill_at_random_moments_three_times_changes_nothing(
    tmp_path: Path, uninterrupted, env_id: str
) -> None:
    run = kill_and_resume(tmp_path, kills=3, seed=0, env_id=env_id)
    assert_bit_identical(run, uninterrupted(env_id))


@pytest.mark.slow
def test_sigkill_at_random_moments_ten_times(tmp_path: Path, uninterrupted) -> None:
    run = kill_and_resume(tmp_path, kills=10, seed=1)
    assert_bit_identical(run, uninterrupted(MULTIGOAL))


@pytest.mark.parametrize("env_id", [MULTIGOAL, pytest.param("Hopper-v5", marks=pytest.mark.slow)])
def test_sigterm_and_resume_changes_nothing(tmp_path: Path, uninterrupted, env_id: str) -> None:
    """A real child stopped by SIGTERM at a random moment after its first checkpoint (a
    cluster's preemption), resumed: bit-identical to the uninterrupted run."""
    runs = tmp_path / "runs"
    process = run_fit(*tiny(tmp_path, *EXACT, f"env.id={env_id}"))
    try:
        wait_for(lambda: list(runs.glob("*/checkpoints/*.ckpt")), process)
        time.sleep(random.Random(2).uniform(0.0, 1.0))
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM, output
    (run,) = runs.iterdir()
    assert main(["--resume", str(run)]) == 0
    assert_bit_identical(run, uninterrupted(env_id))
    (resume,) = json.loads((run / "summary.json").read_text())["resumes"]
    assert resume["exact"] and 10 <= resume["updates"] < expected_updates(EXACT_FRAMES)


@pytest.mark.parametrize("env_id", [MULTIGOAL, "Hopper-v5"])
def test_a_resume_changes_nothing(tmp_path: Path, uninterrupted, env_id: str, capsys) -> None:
    """Stopped (as Ctrl-C stops it) at an update drawn at random, mid-round or where the next
    step collects, and resumed without overrides: bit-identical, and no notice."""
    stop_at = random.Random(env_id).randrange(11, expected_updates(EXACT_FRAMES))
    run = stopped_at(tmp_path, stop_at, f"env.id={env_id}")
    capsys.readouterr()
    assert main(["--resume", str(run)]) == 0
    assert "resume is not bit-exact" not in capsys.readouterr().err
    assert_bit_identical(run, uninterrupted(env_id))
    resumes = json.loads((run / "summary.json").read_text())["resumes"]
    assert resumes == [{"updates": stop_at, "exact": True, "notice": None}]
    assert json.loads((uninterrupted(env_id) / "summary.json").read_text())["resumes"] == []


def test_a_run_folder_moved_elsewhere_resumes_as_where_it_was_trained(
    tmp_path: Path, uninterrupted, recwarn
) -> None:
    """A stopped run moved to another folder (Lightning's checkpoint state holds absolute
    paths) resumes bit-identically, without Lightning's "dirpath has changed" warning, and its
    folder ends up holding only the newest checkpoint, as an unmoved one does."""
    run = stopped_at(tmp_path / "trained", 45, f"env.id={MULTIGOAL}")
    moved = tmp_path / "moved" / run.name
    shutil.move(run, moved)
    assert main(["--resume", str(moved)]) == 0
    assert not [w for w in recwarn if "dirpath" in str(w.message)], [
        str(w.message) for w in recwarn
    ]
    assert_holds_only_the_newest_checkpoint(moved)
    assert_bit_identical(moved, uninterrupted(MULTIGOAL))


def stopped_at(tmp_path: Path, update: int, *overrides: str) -> Path:
    """A run of the ``EXACT`` budget (then ``overrides``) stopped after ``update`` as SIGINT
    stops it; its folder."""
    stop_at_batch_end = GracefulStop.on_train_batch_end

    def interrupt(self, trainer, *args) -> None:
        if trainer.global_step == update:
            self.signals.signum = signal.SIGINT
        stop_at_batch_end(self, trainer, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(GracefulStop, "on_train_batch_end", interrupt)
        with pytest.raises(RunInterrupted):
            train(load_config(overrides=tiny(tmp_path, *EXACT, *overrides)))
    (run,) = (tmp_path / "runs").iterdir()
    return run


def test_an_env_without_a_state_api_resumes_statistically_with_a_notice(
    tmp_path: Path, capsys
) -> None:
    """Pendulum-v1 has no state API: the resume says so in one line and goes on from a reset;
    the counts still match an uninterrupted run's."""
    frames = 300  # shorter than EXACT: only the counts are compared
    run = stopped_at(tmp_path, 12, "env.id=Pendulum-v1", f"collector.total_frames={frames}")
    capsys.readouterr()
    assert main(["--resume", str(run)]) == 0
    notices = [line for line in capsys.readouterr().err.splitlines() if "bit-exact" in line]
    assert notices == [
        "resume is not bit-exact: the env's state cannot be saved: PendulumEnv (Pendulum-v1) "
        "has no state API (state_dict()/load_state_dict(), or MuJoCo's); the run continues "
        "statistically"
    ]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["frames"] == frames and summary["updates"] == expected_updates(frames)
    assert [h["frames"] for h in summary["eval_history"]] == [200, 300]
    assert summary["resumes"] == [{"updates": 12, "exact": False, "notice": notices[0]}]
    assert logged_steps(run, "train/loss_qvalue") == list(range(4, expected_updates(frames), 5))
