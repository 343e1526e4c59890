"""Lightning callbacks: checkpoints (model, replay buffer, log position), periodic evaluation,
a graceful stop on SIGINT/SIGTERM, and the run summary."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.fabric.utilities.apply_func import convert_tensors_to_scalars
from lightning.pytorch.callbacks import ModelCheckpoint
from tensordict import TensorDict
from torchrl.data import ReplayBuffer
from torchrl.data.replay_buffers.checkpointers import TensorStorageCheckpointer
from tqdm import tqdm

from s2ac_lit.algorithms import ALGORITHMS
from s2ac_lit.config import Config
from s2ac_lit.envs import env_state, load_env_state, make_env
from s2ac_lit.trainer.checkpoints import (
    CheckpointError,
    code_record,
    machine_record,
    replace_feeder_state,
)
from s2ac_lit.trainer.csvlog import ContinuingCSVLogger
from s2ac_lit.trainer.data import planned_updates
from s2ac_lit.trainer.evaluation import evaluate_policy
from s2ac_lit.trainer.interrupts import (
    RunInterrupted,
    StopNow,
    StopSignals,
    stopped_with_checkpoint,
)
from s2ac_lit.trainer.layout import RANK_STATE_FILE, REPLAY_DIR, SUMMARY_FILE
from s2ac_lit.trainer.module import compiles
from s2ac_lit.trainer.runfolder import (
    atomic_write_bytes,
    atomic_write_text,
    fsync_tree,
    manifest_mismatch,
    require_run_folder,
    write_manifest,
)

EVAL_SEED_OFFSET = 10_000  # evaluation episodes never share seeds with training


if TYPE_CHECKING:
    from matplotlib.figure import Figure  # imported when a curve is drawn


def _feeder(trainer: L.Trainer):
    return trainer.datamodule.feeder


class TrainingProgress(L.Callback):
    """Logs the data side's progress at the log interval: ``train/frames``, ``time/ups``
    (updates per second since the previous log) and ``train/ep_return`` (mean of the last 20
    training episodes); the last two also for the progress bar
    (:class:`s2ac_lit.trainer.progress.RunProgressBar`, which counts the frames itself). Listed
    before the checkpoint callback, so that a checkpoint's log row includes them
    (:class:`LogCheckpoint`). A run that compiles its update says so as the compilation starts
    (the first update of each attempt): minutes on a CPU, without a bar moving."""

    def __init__(self, log_every_updates: int) -> None:
        self.every = log_every_updates
        self._last = (time.perf_counter(), 0)
        self._first = True

    def on_train_batch_start(self, trainer, pl_module, *args) -> None:
        if self._first and trainer.is_global_zero and compiles(pl_module.cfg):
            tqdm.write(
                "compiling the update (minutes on a CPU; Ctrl-C stops the run at once)",
                file=sys.stdout,
            )
        self._first = False

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
        del progress["frames"]
        if progress:
            pl_module.log_dict(progress, prog_bar=True, logger=False, on_step=True, batch_size=1)


class RunCheckpoint(ModelCheckpoint):
    """Checkpoints every ``every_n_train_steps`` updates and once more when training ends.

    Lightning's step and epoch triggers exclude each other; a run here is one epoch, so its
    end is the final checkpoint (``last.ckpt`` then always holds the finished state).
    """

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self.save_now(trainer)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """A run folder moved or copied elsewhere resumes as where it was trained: the paths
        saved in the checkpoint (Lightning's are absolute) are taken to the same files in this
        checkpoint folder. Lightning would otherwise drop them with a warning, write
        ``last-v1.ckpt`` beside a ``last.ckpt`` left behind, and keep the superseded
        ``step=N.ckpt``."""
        saved = state_dict.get("dirpath")
        if saved is not None and self.dirpath is not None and saved != self.dirpath:
            state_dict = _relocated(state_dict, Path(saved), Path(self.dirpath))
        super().load_state_dict(state_dict)

    def save_now(self, trainer: L.Trainer) -> None:
        """Checkpoint the current update (``step=N.ckpt`` and ``last.ckpt``) unless done."""
        if self._last_global_step_saved != trainer.global_step:
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)


_CHECKPOINT_PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")
"""The keys of ``ModelCheckpoint``'s state that hold one file's path each."""


def _relocated(state: dict[str, Any], saved: Path, now: Path) -> dict[str, Any]:
    """``ModelCheckpoint``'s state with every path under ``saved`` moved under ``now``."""

    def move(path: str) -> str:
        if not path or not Path(path).is_relative_to(saved):
            return path  # none yet, or a file the user keeps elsewhere
        return str(now / Path(path).relative_to(saved))

    moved = {key: move(state[key]) for key in _CHECKPOINT_PATH_KEYS if key in state}
    if "best_k_models" in state:
        moved["best_k_models"] = {move(k): v for k, v in state["best_k_models"].items()}
    return {**state, **moved, "dirpath": str(now)}


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


class GracefulStop(L.Callback):
    """A stop signal while training: finish the update, checkpoint it, raise RunInterrupted.

    The process's :class:`~s2ac_lit.trainer.interrupts.StopSignals` cut at once until the
    first update of this process has ended (nothing to save before: the module docstring of
    :mod:`s2ac_lit.trainer.interrupts`); from then on a signal is only noted, the update under
    way completes, and :meth:`on_train_batch_end` writes the checkpoint and the replay dump.
    Every DDP rank takes the signals, and the ranks agree at each update's end (one all-reduce),
    so that a signal to any of them stops all at the same update, each writing its part of the
    checkpoint; with several ranks signals are noted from the start, since one rank cut alone
    would leave the others waiting in a collective.
    """

    def __init__(self, run_folder: Path, checkpoint: RunCheckpoint, signals: StopSignals) -> None:
        self.run_folder = run_folder
        self.checkpoint = checkpoint
        self.signals = signals
        self._trainer: L.Trainer | None = None

    def _forget_lightning_sigterm(self) -> None:
        if self._trainer is not None:
            # Lightning's own SIGTERM handler runs just before ours and makes the loop exit
            # with status 0 (SIGTERMException, without this checkpoint or a summary) when the
            # signal lands after on_train_batch_end below, e.g. during the periodic checkpoint,
            # which Lightning runs after the other callbacks: the stop is ours.
            self._trainer._signal_connector.received_sigterm = False

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trainer = trainer
        self.signals.after_signal = self._forget_lightning_sigterm
        if trainer.world_size > 1:
            self.signals.cut = False

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._trainer = None
        self.signals.after_signal = None

    def on_train_start(self, trainer, pl_module) -> None:
        # Lightning registered its own SIGTERM handler as the fit started (before this hook),
        # ahead of ours: under DDP it forwards the signal to the ranks it started and runs a
        # collective inside the handler, which desynchronises the ranks' collectives. Only
        # ours runs from here on (Lightning restores the one it found, ours, at its teardown).
        self.signals.install()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.signals.cut = False  # an update is done: from here on a signal checkpoints
        signum = self.signals.signum or 0
        if trainer.world_size > 1:  # every rank stops at this update if any got a signal
            noted = torch.tensor([signum], device=pl_module.device)
            torch.distributed.all_reduce(noted, op=torch.distributed.ReduceOp.MAX)
            signum = int(noted.item())
        if signum:
            self.checkpoint.save_now(trainer)
            raise RunInterrupted(
                signum, stopped_with_checkpoint(trainer.global_step, self.run_folder)
            )


class FilledStorageCheckpointer(TensorStorageCheckpointer):
    """Writes only the filled part of a TensorDict storage, and reads it back into the front.

    TorchRL's own checkpointer writes the whole preallocated storage: a 1,500-frame Walker run
    with ``replay.capacity=1e6`` dumped 193 MB per checkpoint. A buffer that has not wrapped
    holds its transitions at indices ``[0, len)`` (the round-robin writer's cursor, saved by
    the writer, says where the next one goes); a full one is written whole. Dumps of TorchRL's
    checkpointer (the whole capacity) load too.
    """

    def dumps(self, storage, path) -> None:
        if not storage.initialized:
            raise RuntimeError("Cannot save a non-initialized storage.")
        path = Path(path)
        path.mkdir(exist_ok=True)
        storage._storage[: len(storage)].memmap(path, copy_existing=True)
        metadata = {"metadata": {}, "is_pytree": False, "len": storage._len}
        (path / "storage_metadata.json").write_text(json.dumps(metadata))

    def loads(self, storage, path) -> None:
        path = Path(path)
        metadata = json.loads((path / "storage_metadata.json").read_text())
        saved = TensorDict.load_memmap(path)  # mapped: read as it is copied
        if not storage.initialized:
            storage._init(saved[0])
        storage._storage[: saved.shape[0]].update_(saved)
        storage._len = metadata["len"]


class ReplayCheckpoint(L.Callback):
    """Dump each rank's replay buffer beside every checkpoint, and load it on resume.

    Layout: ``RUN/replay/step-N/rank-R``. Lightning's checkpoint holds rank 0's replay feeder
    state (its env, collector and random streams); each other DDP rank writes its own into its
    dump (:data:`RANK_STATE_FILE`) and restores it on resume, so every rank continues where it
    stopped. A dump goes to a temporary folder beside it with a
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
            feeder = _feeder(trainer)
            feeder.buffer.storage.checkpointer = FilledStorageCheckpointer()
            feeder.buffer.dumps(tmp)
            if trainer.global_rank > 0:
                torch.save(feeder.state_dict(), tmp / RANK_STATE_FILE)
            write_manifest(tmp)
            fsync_tree(tmp)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
            self._dumped = trainer.global_step
        checkpoint["replay_dir"] = step_dir.name
        trainer.strategy.barrier("replay_dump")

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        name = checkpoint.get("replay_dir")
        if name is None:  # the resume's notice says the buffer starts empty
            return
        path = self.root / str(name) / f"rank-{trainer.global_rank}"
        check_replay_dump(path)
        load_replay_dump(_feeder(trainer).buffer, path)
        if (path / RANK_STATE_FILE).is_file():
            replace_feeder_state(checkpoint, torch.load(path / RANK_STATE_FILE, weights_only=True))
        self._dumped = checkpoint["global_step"]  # a save at this step keeps this dump


def load_replay_dump(buffer: ReplayBuffer, path: Path) -> None:
    """Load a replay dump of :class:`ReplayCheckpoint` (a buffer that had not wrapped holds
    only its transitions) or of TorchRL's checkpointer (the whole capacity) into ``buffer``."""
    buffer.storage.checkpointer = FilledStorageCheckpointer()
    buffer.loads(path)


def check_replay_dump(path: Path) -> None:
    """Raise :class:`CheckpointError` unless the replay dump at ``path`` is there and whole."""
    problem = "it is missing" if not path.is_dir() else manifest_mismatch(path)
    if problem is not None:
        raise CheckpointError(
            f"replay buffer dump {str(path)!r} of the checkpoint cannot be resumed: {problem}; "
            "restore the run folder from a whole copy, or start a new run"
        )


class PeriodicEvaluation(L.Callback):
    """Deterministic evaluation episodes every ``every_frames`` frames and after the last update.

    Runs on global rank 0 only; each evaluation prints one line (above the progress bar). One
    evaluation per frame count: the periodic one due in the run's last round of updates (whose
    frames are the run's total) waits for the round's last update, the final evaluation. Its
    history (frames, updates, mean, std) is part of the checkpoint, so a resumed run keeps its
    learning curve, and so is its env's whole state (its random generators: the next
    evaluation's resets), so a resumed run evaluates on the episodes the uninterrupted one
    would. A stop signal cuts an evaluation short (``signals``); the env and the random
    generators go back to where the evaluation began, the update is checkpointed without it,
    and the resumed run evaluates before its first update, as the uninterrupted one did.
    """

    def __init__(self, cfg: Config, signals: StopSignals | None = None) -> None:
        self.cfg = cfg
        self.signals = signals or StopSignals()  # not installed: never cut
        self.history: list[dict[str, float]] = []
        self._env = None
        self._saved_env: dict[str, Any] | None = None  # for the env built at the next evaluation

    def state_dict(self) -> dict[str, Any]:
        env = self._saved_env if self._env is None else env_state(self._env)
        return {"history": self.history, "env": env}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict["history"])
        self._saved_env = state_dict.get("env")

    def _due(self, trainer: L.Trainer) -> bool:
        frames = _feeder(trainer).frames
        last = self.history[-1]["frames"] if self.history else 0
        if frames >= self.cfg.collector.total_frames:  # the last round: once, at its end
            return last < frames and trainer.global_step >= planned_updates(self.cfg.collector)
        every = self.cfg.eval.every_frames
        return every > 0 and frames // every > last // every

    def latest_return(self) -> float | None:
        """The latest evaluation's mean return, None before the first."""
        return self.history[-1]["return_mean"] if self.history else None

    def describe(self) -> str:
        """``10 episodes, selection softmax``: what each evaluation runs."""
        selection = ALGORITHMS[self.cfg.algo].default_selection(self.cfg) or "the mean action"
        return f"{self.cfg.eval.episodes} episodes, selection {selection}"

    def _evaluate(self, trainer: L.Trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
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
        env_before, rng_before = env_state(self._env), torch.random.get_rng_state()
        try:
            with self.signals.cutting():
                result = evaluate_policy(self._env, pl_module.policy(), self.cfg.eval.episodes)
        except StopNow as stop:
            if stop.repeated:
                raise
            # Undo the cut evaluation's draws: the resumed run repeats it from the same start.
            if env_before is not None:
                load_env_state(self._env, env_before)
            torch.random.set_rng_state(rng_before)
            return  # the signal stays noted: GracefulStop checkpoints this update
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
        tqdm.write(
            f"evaluation at {feeder.frames} frames (update {trainer.global_step}): return "
            f"{result.mean:.2f} ± {result.std:.2f} over {self.cfg.eval.episodes} episodes",
            file=sys.stdout,
        )

    def on_train_start(self, trainer, pl_module) -> None:
        if self._due(trainer):  # a resumed run whose last evaluation a signal cut short
            self._evaluate(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._due(trainer):
            self._evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        # A run that made no update in its last round (updates_per_batch=0) ends here.
        if not self.history or self.history[-1]["frames"] < _feeder(trainer).frames:
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

    ``wall_time_s`` is the run's training time over all its attempts (a resumed run's included),
    ``attempt_wall_times_s`` each attempt's, from its trainer's start to its last checkpoint
    (the attempt under way: to now); the checkpoint keeps the earlier attempts'.

    ``"code"`` and ``"machine"`` say what ran it (:func:`~s2ac_lit.trainer.checkpoints.code_record`,
    read as the attempt starts, and :func:`~s2ac_lit.trainer.checkpoints.machine_record`): the
    report of a suite tables them.

    ``"resumes"`` lists the resumes the run's numbers went through (checkpointed, so a resume
    that was itself killed before its next checkpoint is not in it): the update each continued
    from, whether it was bit-exact and, if not, the one-line notice that said why
    (docs/checkpoints.md). An uninterrupted run's is empty.
    """

    def __init__(self, run_folder: Path, evaluation: PeriodicEvaluation) -> None:
        self.run_folder = run_folder
        self.evaluation = evaluation
        self._start = time.perf_counter()
        self._earlier_attempts: list[float] = []
        self.summary: dict[str, Any] = {}
        self._evaluations_written = 0
        self.resumes: list[dict[str, Any]] = []
        self._resuming: tuple[str | None] | None = None
        # Read once, as the attempt starts: the summary is rewritten for hours, and a commit
        # made meanwhile in the checkout must not be recorded as the code that ran.
        self._code = code_record()

    def expect_resume(self, notice: str | None) -> None:
        """This fit continues a checkpoint; ``notice`` says why it is not bit-exact (None when
        it is). Recorded once the checkpoint is loaded, with the update it continues from."""
        self._resuming = (notice,)

    def on_train_start(self, trainer, pl_module) -> None:
        if self._resuming is not None:
            (notice,) = self._resuming
            self.resumes.append(
                {"updates": trainer.global_step, "exact": notice is None, "notice": notice}
            )
            self._resuming = None

    def attempt_times(self) -> list[float]:
        """Wall seconds of every attempt of the run, this one (so far) last."""
        return [*self._earlier_attempts, round(time.perf_counter() - self._start, 1)]

    def state_dict(self) -> dict[str, Any]:
        return {"attempt_wall_times_s": self.attempt_times(), "resumes": self.resumes}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # .get: a checkpoint written before a key existed resumes with it empty
        self._earlier_attempts = list(state_dict.get("attempt_wall_times_s", []))
        self.resumes = list(state_dict.get("resumes", []))

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
        cfg = pl_module.cfg
        history = self.evaluation.history
        final = history[-1] if history else {}
        attempts = self.attempt_times()
        self.summary = {
            "algo": cfg.algo,
            "env": cfg.env.id,
            "finished": finished,
            "frames": feeder.frames,
            "updates": trainer.global_step,
            "episodes": feeder.episodes,
            "wall_time_s": round(sum(attempts), 1),
            "attempt_wall_times_s": attempts,
            "final_eval_return_mean": final.get("return_mean"),
            "final_eval_return_std": final.get("return_std"),
            "eval_history": history,
            "resumes": self.resumes,
            # what the numbers depend on besides the config (the last attempt's, should a
            # resume have moved machines: "resumes" then says so)
            "code": self._code,
            "machine": machine_record(feeder.policy_device),
        }
        atomic_write_text(self.run_folder / SUMMARY_FILE, json.dumps(self.summary, indent=2))
        self._evaluations_written = len(history)
        plot_learning_curve(
            history,
            feeder.return_history,
            self.run_folder / "learning_curve.png",
            title=f"{cfg.algo.upper()} on {cfg.env.id}\nrun {self.run_folder.name}",
            evaluation=self.evaluation.describe(),
            random_frames=min(cfg.collector.init_random_frames, cfg.collector.total_frames),
        )


def plot_learning_curve(
    eval_history: list[dict[str, float]],
    train_returns: list[tuple[int, float]],
    path: Path,
    **labels: Any,
) -> None:
    """Write :func:`learning_curve_figure` (``labels``: its keywords) to the PNG ``path``."""
    fig = learning_curve_figure(eval_history, train_returns, **labels)
    image = io.BytesIO()
    fig.savefig(image, dpi=120, format="png")
    atomic_write_bytes(path, image.getvalue())


def learning_curve_figure(
    eval_history: list[dict[str, float]],
    train_returns: list[tuple[int, float]],
    *,
    title: str = "",
    evaluation: str = "",
    random_frames: int = 0,
) -> Figure:
    """Evaluation return (mean ± std) and training episode returns against frames.

    ``title``: what ran (algorithm, env, run); ``evaluation``: what an evaluation is (episodes,
    action selection), in its legend entry; ``random_frames``: the first frames, acted at
    random, shaded. One evaluation point per frame count (the latest, should a history hold
    two).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if random_frames > 0:
        ax.axvspan(0, random_frames, color="0.85", zorder=0, label="random actions")
    if train_returns:
        frames, returns = zip(*train_returns, strict=True)
        ax.plot(frames, returns, ".", alpha=0.3, markersize=3, label="training episodes")
    latest = {h["frames"]: h for h in eval_history}  # one point per frame count
    if latest:
        points = [latest[f] for f in sorted(latest)]
        ax.errorbar(
            [h["frames"] for h in points],
            [h["return_mean"] for h in points],
            yerr=[h["return_std"] for h in points],
            marker="o",
            capsize=3,
            label=f"evaluation ({evaluation}), mean ± std" if evaluation else "evaluation",
        )
    if title:
        ax.set_title(title, fontsize=10)
    ax.set_xlabel("environment frames")
    ax.set_ylabel("episode return")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
