"""Lightning callbacks: checkpoints (model, replay buffer, log position), periodic evaluation,
a graceful stop on SIGINT/SIGTERM, and the run summary."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.apply_func import convert_tensors_to_scalars
from lightning.pytorch.callbacks import ModelCheckpoint

from s2ac_lit.config import Config
from s2ac_lit.envs import env_state, load_env_state, make_env
from s2ac_lit.trainer.checkpoints import CheckpointError
from s2ac_lit.trainer.csvlog import ContinuingCSVLogger
from s2ac_lit.trainer.evaluation import evaluate_policy
from s2ac_lit.trainer.layout import REPLAY_DIR, SUMMARY_FILE
from s2ac_lit.trainer.runfolder import (
    atomic_write_bytes,
    atomic_write_text,
    fsync_tree,
    manifest_mismatch,
    require_run_folder,
    write_manifest,
)

EVAL_SEED_OFFSET = 10_000  # evaluation episodes never share seeds with training


def _feeder(trainer: L.Trainer):
    return trainer.datamodule.feeder


class TrainingProgress(L.Callback):
    """Logs the data side's progress at the log interval: ``train/frames``, ``time/ups``
    (updates per second since the previous log) and ``train/ep_return`` (mean of the last 20
    training episodes), also on the progress bar. Listed before the checkpoint callback, so
    that a checkpoint's log row includes them (:class:`LogCheckpoint`)."""

    def __init__(self, log_every_updates: int) -> None:
        self.every = log_every_updates
        self._last = (time.perf_counter(), 0)

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        updates = trainer.global_step
        if updates % self.every:
            return
        feeder = _feeder(trainer)
        now = time.perf_counter()
        elapsed, self._last = now - self._last[0], (now, updates)
        progress = {"frames": float(feeder.frames)}
        if elapsed > 0 and updates:
            progress["ups"] = self.every / elapsed
        recent = feeder.recent_return()
        if recent is not None:
            progress["ep_return"] = recent
        logged = {f"time/{k}" if k == "ups" else f"train/{k}": v for k, v in progress.items()}
        pl_module.log_dict(logged, on_step=True, on_epoch=False, batch_size=1)
        pl_module.log_dict(progress, prog_bar=True, logger=False, on_step=True, batch_size=1)


class RunCheckpoint(ModelCheckpoint):
    """Checkpoints every ``every_n_train_steps`` updates and once more when training ends.

    Lightning's step and epoch triggers exclude each other; a run here is one epoch, so its
    end is the final checkpoint (``last.ckpt`` then always holds the finished state).
    """

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self.save_now(trainer)

    def save_now(self, trainer: L.Trainer) -> None:
        """Checkpoint the current update (``step=N.ckpt`` and ``last.ckpt``) unless done."""
        if self._last_global_step_saved != trainer.global_step:
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)


class LogCheckpoint(L.Callback):
    """Flush the CSV log with every checkpoint and record how many rows it then holds.

    A resumed run keeps exactly those rows (:class:`s2ac_lit.trainer.csvlog.ContinuingCSVLogger`).
    Lightning logs an update's training metrics only after the ``on_train_batch_end`` hooks,
    where checkpoints are written; that row is written here first (Lightning's own copy of it
    follows and is dropped as a repeat), so that it belongs to the checkpoint.
    """

    def __init__(self) -> None:
        self._row_pending = False  # between on_train_batch_end and Lightning's logging

    def on_train_batch_start(self, *args) -> None:
        self._row_pending = False

    def on_train_batch_end(self, *args) -> None:
        self._row_pending = True

    def on_train_epoch_end(self, *args) -> None:
        self._row_pending = False

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, ContinuingCSVLogger)]
        if not loggers or not trainer.is_global_zero:
            return
        (logger,) = loggers
        connector = trainer._logger_connector
        if self._row_pending and connector.should_update_logs:
            metrics = convert_tensors_to_scalars(connector.metrics["log"])
            if metrics:  # the same row Lightning's logger connector writes next
                metrics.setdefault("epoch", trainer.current_epoch)
                logger.log_metrics(metrics, step=trainer.fit_loop.epoch_loop._batches_that_stepped)
        logger.save()
        checkpoint["csv_rows"] = logger.experiment.rows


class RunInterrupted(Exception):
    """Training stopped on a signal after checkpointing; ``exit_code`` is 128 + signal."""

    def __init__(self, signum: int, run_folder: Path, step: int) -> None:
        name = signal.Signals(signum).name
        super().__init__(
            f"{name}: stopped after update {step} with a checkpoint; resume with: "
            f"python tools/fit.py --resume {run_folder}"
        )
        self.exit_code = 128 + signum


class GracefulStop(L.Callback):
    """On SIGINT or SIGTERM, finish the current update, checkpoint it, raise RunInterrupted.

    The signal handlers only note the signal (a write in progress is never cut); the update
    under way completes, then :meth:`on_train_batch_end` writes the checkpoint and the replay
    dump. Every DDP rank installs them, and the ranks agree at each update's end (one
    all-reduce), so that a signal to any of them stops all at the same update, each writing
    its part of the checkpoint. A second SIGINT interrupts at once (Python's default
    KeyboardInterrupt).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, run_folder: Path, checkpoint: RunCheckpoint) -> None:
        self.run_folder = run_folder
        self.checkpoint = checkpoint
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        self._trainer: L.Trainer | None = None

    def _note(self, signum: int, frame) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        if self._trainer is not None:
            # Lightning's own SIGTERM handler runs just before this one and makes the loop
            # exit with status 0 (SIGTERMException, without this checkpoint or a summary) when
            # the signal lands after on_train_batch_end below, e.g. during the periodic
            # checkpoint, which Lightning runs after the other callbacks: the stop is ours.
            self._trainer._signal_connector.received_sigterm = False

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trainer = trainer

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._trainer = None

    def install(self) -> None:
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._note)

    def on_train_start(self, trainer, pl_module) -> None:
        # Lightning registered its own SIGTERM handler as the fit started (before this hook),
        # ahead of ours: under DDP it forwards the signal to the ranks it started and runs a
        # collective inside the handler, which desynchronises the ranks' collectives. Only
        # ours runs from here on (Lightning restores the one it found, ours, at its teardown).
        if self._previous:
            for signum in self.SIGNALS:
                signal.signal(signum, self._note)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        signum = self.signum or 0
        if trainer.world_size > 1:  # every rank stops at this update if any got a signal
            noted = torch.tensor([signum], device=pl_module.device)
            torch.distributed.all_reduce(noted, op=torch.distributed.ReduceOp.MAX)
            signum = int(noted.item())
        if signum:
            self.checkpoint.save_now(trainer)
            raise RunInterrupted(signum, self.run_folder, trainer.global_step)


class ReplayCheckpoint(L.Callback):
    """Dump each rank's replay buffer beside every checkpoint, and load it on resume.

    Layout: ``RUN/replay/step-N/rank-R``. A dump goes to a temporary folder beside it with a
    manifest of its file sizes, is fsynced and renamed into place, and the checkpoint records
    which folder belongs to it, so a kill during either write leaves the previous checkpoint and
    its buffer intact; the complete checkpoint then removes the older dumps
    (:func:`s2ac_lit.trainer.runfolder.remove_superseded`). A dump that does not match its
    manifest (a copy cut short) stops the resume: the run cannot go on as it was.
    """

    def __init__(self, run_folder: Path) -> None:
        self.root = run_folder / REPLAY_DIR
        self._dumped: int | None = None  # the step dumped by this process (step=N and last)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        step_dir = self.root / f"step-{trainer.global_step}"
        if self._dumped != trainer.global_step:
            # A dump of this step left by a killed run holds that run's buffer: replace it.
            target = step_dir / f"rank-{trainer.global_rank}"
            tmp = step_dir / f".rank-{trainer.global_rank}.tmp"
            require_run_folder(self.root.parent)
            step_dir.mkdir(parents=True, exist_ok=True)  # replay/ is inside the live folder
            shutil.rmtree(tmp, ignore_errors=True)
            _feeder(trainer).buffer.dumps(tmp)
            write_manifest(tmp)
            fsync_tree(tmp)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
            self._dumped = trainer.global_step
        checkpoint["replay_dir"] = step_dir.name
        trainer.strategy.barrier("replay_dump")

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        name = checkpoint.get("replay_dir")
        path = self.root / str(name) / f"rank-{trainer.global_rank}"
        if name is None:
            warnings.warn(
                "the checkpoint has no replay buffer dump (replay.checkpoint was false): "
                "resuming with an empty buffer (frames already collected are not replayed)",
                stacklevel=2,
            )
            return
        check_replay_dump(path)
        _feeder(trainer).buffer.loads(path)
        self._dumped = checkpoint["global_step"]  # a save at this step keeps this dump


def check_replay_dump(path: Path) -> None:
    """Raise :class:`CheckpointError` unless the replay dump at ``path`` is there and whole."""
    problem = "it is missing" if not path.is_dir() else manifest_mismatch(path)
    if problem is not None:
        raise CheckpointError(
            f"replay buffer dump {str(path)!r} of the checkpoint cannot be resumed: {problem}; "
            "restore the run folder from a whole copy, or start a new run"
        )


class PeriodicEvaluation(L.Callback):
    """Deterministic evaluation episodes every ``every_frames`` frames and at the end.

    Runs on global rank 0 only. Its history (frames, updates, mean, std) is part of the
    checkpoint, so a resumed run keeps its learning curve, and so is its env's whole state
    (its random generators: the next evaluation's resets), so a resumed run evaluates on the
    episodes the uninterrupted one would.
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.history: list[dict[str, float]] = []
        self._env = None
        self._saved_env: dict[str, Any] | None = None  # for the env built at the next evaluation

    def state_dict(self) -> dict[str, Any]:
        env = self._saved_env if self._env is None else env_state(self._env)
        return {"history": self.history, "env": env}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict["history"])
        self._saved_env = state_dict.get("env")

    def _due(self, frames: int) -> bool:
        every = self.cfg.eval.every_frames
        last = self.history[-1]["frames"] if self.history else 0
        return every > 0 and frames // every > last // every

    def _evaluate(self, trainer: L.Trainer, pl_module) -> dict[str, float] | None:
        if not trainer.is_global_zero:
            return None
        if self._env is None:
            self._env = make_env(
                self.cfg.env.id,
                seed=self.cfg.seed + EVAL_SEED_OFFSET,
                device=pl_module.device,
                max_episode_steps=self.cfg.env.max_episode_steps,
            )
            if self._saved_env is not None:
                load_env_state(self._env, self._saved_env)
                self._saved_env = None
        result = evaluate_policy(self._env, pl_module.policy(), self.cfg.eval.episodes)
        feeder = _feeder(trainer)
        record = {
            "frames": feeder.frames,
            "updates": trainer.global_step,
            "return_mean": result.mean,
            "return_std": result.std,
        }
        self.history.append(record)
        metrics = {"eval/return_mean": result.mean, "eval/return_std": result.std}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        return record

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._due(_feeder(trainer).frames):
            self._evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        last = self.history[-1]["updates"] if self.history else -1
        if last != trainer.global_step:
            self._evaluate(trainer, pl_module)
        if self._env is not None:
            self._env.close()


class RankDivergence(RuntimeError):
    """DDP ranks ended a run with different weights (their updates must be identical)."""


def check_ranks_agree(trainer: L.Trainer, pl_module: L.LightningModule) -> None:
    """Raise :class:`RankDivergence` unless every DDP rank holds the same weights.

    DDP keeps the ranks' parameters identical only as long as every rank takes exactly the same
    steps (the update's masked steps included); one sum per rank, gathered once at the end,
    shows a divergence instead of leaving it in the checkpoint of rank 0 alone.
    """
    total = torch.stack([p.detach().double().sum() for p in pl_module.parameters()]).sum()
    sums = trainer.strategy.all_gather(total.to(pl_module.device)).flatten().tolist()
    if any(value != sums[0] for value in sums):
        raise RankDivergence(f"DDP ranks ended with different weights (parameter sums {sums})")


class RunSummary(L.Callback):
    """At the end: ``summary.json``, ``learning_curve.png`` and a per-rank ``ranks/rank-R.json``.

    While the run trains, ``summary.json`` is rewritten after every evaluation with
    ``"finished": false`` and the frames reached, and so is a run stopped by a signal
    (:class:`RunInterrupted`): its evaluations can be read while it runs or before it is
    resumed (``tools/benchmark.py --at-frames``); the finished run overwrites it. With several
    DDP ranks each writes its own counters (every rank collects its own frames), after checking
    that all ranks hold the same weights (:func:`check_ranks_agree`).

    ``"resumes"`` lists the resumes the run's numbers went through (checkpointed, so a resume
    that was itself killed before its next checkpoint is not in it): the update each continued
    from, whether it was bit-exact and, if not, the one-line notice that said why
    (docs/checkpoints.md). An uninterrupted run's is empty.
    """

    def __init__(self, run_folder: Path, evaluation: PeriodicEvaluation) -> None:
        self.run_folder = run_folder
        self.evaluation = evaluation
        self._start = time.perf_counter()
        self.summary: dict[str, Any] = {}
        self._evaluations_written = 0
        self.resumes: list[dict[str, Any]] = []
        self._resuming: tuple[str | None] | None = None

    def expect_resume(self, notice: str | None) -> None:
        """This fit continues a checkpoint; ``notice`` says why it is not bit-exact (None when
        it is). Recorded once the checkpoint is loaded, with the update it continues from."""
        self._resuming = (notice,)

    def state_dict(self) -> dict[str, Any]:
        return {"resumes": self.resumes}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.resumes = list(state_dict["resumes"])

    def on_train_start(self, trainer, pl_module) -> None:
        if self._resuming is not None:
            (notice,) = self._resuming
            self.resumes.append(
                {"updates": trainer.global_step, "exact": notice is None, "notice": notice}
            )
            self._resuming = None

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if len(self.evaluation.history) != self._evaluations_written:
            self._write_summary(trainer, pl_module, finished=False)

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.world_size > 1:
            check_ranks_agree(trainer, pl_module)
            feeder = _feeder(trainer)
            rank_info = {
                "rank": trainer.global_rank,
                "frames": feeder.frames,
                "updates": trainer.global_step,
                "episodes": feeder.episodes,
            }
            ranks = self.run_folder / "ranks"
            ranks.mkdir(parents=True, exist_ok=True)
            rank_file = ranks / f"rank-{trainer.global_rank}.json"
            atomic_write_text(rank_file, json.dumps(rank_info, indent=2))
        self._write_summary(trainer, pl_module, finished=True)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, RunInterrupted):
            self._write_summary(trainer, pl_module, finished=False)

    def _write_summary(self, trainer, pl_module, *, finished: bool) -> None:
        if not trainer.is_global_zero:
            return
        feeder = _feeder(trainer)
        history = self.evaluation.history
        final = history[-1] if history else {}
        self.summary = {
            "algo": pl_module.cfg.algo,
            "env": pl_module.cfg.env.id,
            "finished": finished,
            "frames": feeder.frames,
            "updates": trainer.global_step,
            "episodes": feeder.episodes,
            "wall_time_s": round(time.perf_counter() - self._start, 1),
            "final_eval_return_mean": final.get("return_mean"),
            "final_eval_return_std": final.get("return_std"),
            "eval_history": history,
            "resumes": self.resumes,
        }
        atomic_write_text(self.run_folder / SUMMARY_FILE, json.dumps(self.summary, indent=2))
        self._evaluations_written = len(history)
        plot_learning_curve(history, feeder.return_history, self.run_folder / "learning_curve.png")


def plot_learning_curve(
    eval_history: list[dict[str, float]],
    train_returns: list[tuple[int, float]],
    path: Path,
) -> None:
    """Evaluation return (mean ± std) and training episode returns against frames."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if train_returns:
        frames, returns = zip(*train_returns, strict=True)
        ax.plot(frames, returns, ".", alpha=0.3, markersize=3, label="training episodes")
    if eval_history:
        frames = [h["frames"] for h in eval_history]
        mean = [h["return_mean"] for h in eval_history]
        std = [h["return_std"] for h in eval_history]
        ax.errorbar(frames, mean, yerr=std, marker="o", capsize=3, label="evaluation")
    ax.set_xlabel("environment frames")
    ax.set_ylabel("episode return")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, dpi=120, format="png")
    atomic_write_bytes(path, image.getvalue())
