"""A stop signal wherever it lands (s2ac_lit/trainer/interrupts.py): one line, exit 128 + signal,
and a run folder that is either resumable or gone.

The moments: the imports and checks before a run folder exists, the first update (where
``trainer.compile`` compiles, and the terminal's SIGINT also kills the compiler's workers), the
first evaluation, a checkpoint write, and the start of a resumed run. Runs reuse the tiny
multigoal fit of ``tests/conftest.py``; signals are sent to this process at the moment a hook
is reached, so each moment is hit exactly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, expected_updates, tiny

import s2ac_lit.trainer.callbacks as callbacks
import s2ac_lit.trainer.module as module
from s2ac_lit.config import load_config
from s2ac_lit.trainer import cli
from s2ac_lit.trainer.callbacks import PeriodicEvaluation, RunCheckpoint
from s2ac_lit.trainer.interrupts import RunInterrupted, StopNow, StopSignals
from s2ac_lit.trainer.runfolder import LOCK_NAME
from s2ac_lit.trainer.train import train

BUDGET = ["trainer.checkpoint_every_updates=20", "eval.every_frames=200"]


def leftovers(run: Path) -> list[Path]:
    return [p for p in run.rglob("*") if ".tmp" in p.name or p.name == LOCK_NAME]


def signal_caught(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (the SigCgt mask of /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def test_a_signal_during_the_imports_writes_nothing(tmp_path: Path) -> None:
    """The handlers come before torch, Lightning and TorchRL are imported (seconds): a signal
    then is one line and nothing on disk, no KeyboardInterrupt traceback."""
    runs = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tools" / "fit.py"), *tiny(tmp_path)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 30
        # Python catches SIGINT itself from its start; SIGTERM only once ours is installed.
        while not signal_caught(process.pid, signal.SIGTERM):
            assert process.poll() is None and time.time() < deadline
            time.sleep(0.005)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGINT, output
    assert output == "SIGINT: stopped before the run started; nothing was written\n"
    assert not runs.exists()


def test_the_command_line_reports_a_cut_in_one_line(monkeypatch, capsys) -> None:
    """:func:`cli.main` turns a cut during the checks (before any folder) into its line."""

    def interrupted_run(args, signals: StopSignals) -> int:
        signal.raise_signal(signal.SIGTERM)
        raise AssertionError("the handler cuts at once")

    import s2ac_lit.trainer.train as train_module

    monkeypatch.setattr(train_module, "run", interrupted_run)
    previous = signal.getsignal(signal.SIGTERM)
    assert cli.main(["--config", "conf/quickstart.yaml"]) == 128 + signal.SIGTERM
    assert capsys.readouterr().err == (
        "SIGTERM: stopped before the run started; nothing was written\n"
    )
    assert signal.getsignal(signal.SIGTERM) is previous  # the handlers are given back


def test_a_signal_during_the_first_compiled_update_removes_the_new_run(
    tmp_path: Path, monkeypatch
) -> None:
    """Ctrl-C while ``torch.compile`` builds the update: the compiler's workers die too and
    their failure surfaces as a compile error. The run has nothing to save: it stops at once,
    one line, and the new run's folder is removed."""
    compiled = []

    def compile_cut_by_ctrl_c(function):
        compiled.append(function)

        def first_call(*args, **kwargs):
            try:
                signal.raise_signal(signal.SIGINT)
            except StopNow:  # what torch's compiler makes of a worker killed by the signal
                raise RuntimeError("InductorError: CppCompileError: C++ compile error") from None
            raise AssertionError("the handler cuts at once")

        return first_call

    monkeypatch.setattr(module.torch, "compile", compile_cut_by_ctrl_c)
    cfg = load_config(
        overrides=tiny(tmp_path, "collector.total_frames=400", "trainer.compile=true", *BUDGET)
    )
    with pytest.raises(RunInterrupted) as stop:
        train(cfg)
    assert compiled  # the cut came from the compiled update
    assert stop.value.exit_code == 128 + signal.SIGINT
    message = str(stop.value)
    assert message.startswith("SIGINT: stopped before the run's first checkpoint; removed ")
    assert "\n" not in message
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_signal_during_the_first_evaluation_checkpoints_and_resumes_to_the_same_run(
    tmp_path: Path, monkeypatch
) -> None:
    """The evaluation is cut (episodes can take minutes), its update checkpointed; the resumed
    run evaluates before its first update, so the learning curve has the evaluations of an
    uninterrupted run: at 200 frames and after the last update."""
    evaluate = callbacks.evaluate_policy
    cut = []

    def evaluation_cut_by_sigint(env, policy, episodes):
        if not cut:
            cut.append(True)
            signal.raise_signal(signal.SIGINT)
        return evaluate(env, policy, episodes)

    monkeypatch.setattr(callbacks, "evaluate_policy", evaluation_cut_by_sigint)
    cfg = load_config(overrides=tiny(tmp_path, "collector.total_frames=400", *BUDGET))
    with pytest.raises(RunInterrupted) as stop:
        train(cfg)
    (run,) = (tmp_path / "runs").iterdir()
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    # Due after the first update at 200 frames: updates 1-10 ran at 100 frames, 11-20 at 150.
    assert last["global_step"] == expected_updates(150) + 1 == 21
    assert str(stop.value).startswith(
        f"SIGINT: stopped after update {last['global_step']} with a checkpoint; resume with: "
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["eval_history"] == []
    assert not leftovers(run)

    summary = train(cfg, resume_from=run / "checkpoints" / "last.ckpt")
    assert summary["updates"] == expected_updates(400)
    history = summary["eval_history"]
    assert (history[0]["frames"], history[0]["updates"]) == (200, last["global_step"])
    assert [h["frames"] for h in history] == [200, 400]
    assert len(summary["attempt_wall_times_s"]) == 2


def test_a_signal_during_a_checkpoint_write_finishes_it_and_stops_at_the_next_update(
    tmp_path: Path, monkeypatch
) -> None:
    """A signal in the middle of a checkpoint write (here: before the write has begun) never
    cuts it: the write completes, the next update is checkpointed and the run stops there."""
    save = RunCheckpoint._save_checkpoint
    signalled = []

    def signal_then_save(self, trainer, filepath: str) -> None:
        if trainer.global_step == 20 and not signalled:  # once: a second Ctrl-C cuts at once
            signalled.append(filepath)
            signal.raise_signal(signal.SIGINT)
        save(self, trainer, filepath)

    monkeypatch.setattr(RunCheckpoint, "_save_checkpoint", signal_then_save)
    cfg = load_config(overrides=tiny(tmp_path, "collector.total_frames=1000", *BUDGET))
    with pytest.raises(RunInterrupted) as stop:
        train(cfg)
    assert stop.value.exit_code == 128 + signal.SIGINT
    (run,) = (tmp_path / "runs").iterdir()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "last.ckpt",
        "step=21.ckpt",
    ]
    assert torch.load(run / "checkpoints" / "step=21.ckpt", weights_only=False)["global_step"] == 21
    assert not leftovers(run)


def test_a_signal_while_a_resumed_run_starts_keeps_its_checkpoint(
    tmp_path: Path, monkeypatch, capfd
) -> None:
    """Restoring a checkpoint and starting again saves nothing new: a signal then stops at
    once, and the run still resumes from the checkpoint it had. Lightning's own SIGTERM
    handler, which sees the signal first at this moment, says nothing on the console."""
    cfg = load_config(overrides=tiny(tmp_path, "collector.total_frames=300", *BUDGET))
    first = train(cfg)
    run = Path(first["run_folder"])

    def files() -> set[str]:
        return {str(p.relative_to(run)) for p in run.rglob("*")}

    before = files()
    cfg = load_config(overrides=tiny(tmp_path, "collector.total_frames=400", *BUDGET))

    def start_cut_by_sigterm(self, trainer, pl_module) -> None:
        signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(PeriodicEvaluation, "on_train_start", start_cut_by_sigterm)
    with pytest.raises(RunInterrupted) as stop:
        train(cfg, resume_from=run / "checkpoints" / "last.ckpt")
    assert stop.value.exit_code == 128 + signal.SIGTERM
    assert str(stop.value) == (
        "SIGTERM: stopped at once; the run goes on from its newest checkpoint with: "
        f"python tools/fit.py --resume {run}"
    )
    added = files() - before
    assert before <= files()
    assert all(name.startswith("logs/tensorboard/events.") for name in added), added
    assert "Received SIGTERM" not in capfd.readouterr().err


def test_messages_name_a_run_folder_in_one_form(tmp_path: Path, monkeypatch) -> None:
    """Relative to the working directory inside it, absolute outside it, however the folder
    was given (a new run's is absolute, a resumed run's as typed)."""
    from s2ac_lit.trainer.interrupts import display_path, resume_command

    monkeypatch.chdir(tmp_path)
    assert display_path(tmp_path / "runs" / "r") == "runs/r"
    assert display_path("runs/r") == "runs/r"
    assert display_path(tmp_path.parent) == str(tmp_path.parent)
    assert resume_command("runs/r/") == "python tools/fit.py --resume runs/r"
