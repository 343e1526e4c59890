"""Training: ``python tools/fit.py --config conf/walker.yaml [key=value ...]``.

The command line is parsed in :mod:`s2ac_lit.trainer.cli` (before torch is imported), which
calls :func:`run`: it checks everything first (:func:`s2ac_lit.trainer.preflight.resolve`),
then ``train(cfg)`` builds the run folder, the module, the data module, the callbacks and the
Lightning ``Trainer``, fits, and returns the run summary.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.profilers import AdvancedProfiler, Profiler, SimpleProfiler
from lightning_utilities.core.rank_zero import rank_zero_only as utils_rank_zero_only

from s2ac_lit.algorithms import check_config
from s2ac_lit.config import (
    Config,
    ConfigError,
    TrainerConfig,
    to_yaml,
)
from s2ac_lit.envs import env_dims, make_env, run_output
from s2ac_lit.errors import report
from s2ac_lit.trainer.allocator import keep_freed_host_memory
from s2ac_lit.trainer.callbacks import (
    GracefulStop,
    LogCheckpoint,
    PeriodicEvaluation,
    ReplayCheckpoint,
    RunCheckpoint,
    RunSummary,
    TrainingProgress,
)
from s2ac_lit.trainer.checkpoints import (
    CheckpointError,
    check_compatible,
    find_checkpoint,
    finished_frames,
    machine_record,
    read_checkpoint,
    resume_notice,
    run_folder_of,
)
from s2ac_lit.trainer.cli import main  # noqa: F401  (its earlier home: runner, scripts)
from s2ac_lit.trainer.console import quiet_third_party
from s2ac_lit.trainer.csvlog import ContinuingCSVLogger
from s2ac_lit.trainer.data import ReplayDataModule, check_replay, planned_updates
from s2ac_lit.trainer.interrupts import (
    RunInterrupted,
    StopNow,
    StopSignals,
    display_path,
    resume_command,
)
from s2ac_lit.trainer.layout import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    FIXED_RUN_FOLDER_ENV,
    LAST_CHECKPOINT,
    RUN_FOLDER_ENV,
)
from s2ac_lit.trainer.module import RLModule
from s2ac_lit.trainer.preflight import resolve
from s2ac_lit.trainer.progress import RunProgressBar
from s2ac_lit.trainer.runfolder import (
    AtomicCheckpointIO,
    RunLock,
    RunTensorBoardLogger,
    atomic_write_text,
    remove_leftovers,
    require_run_folder,
)
from s2ac_lit.update import NonFiniteError

NON_FINITE_EXIT = 3
"""Exit code of a run stopped by a NaN or infinite loss or gradient."""


def new_run_folder(cfg: Config) -> Path:
    """``run_dir/[name-]YYYYmmdd-HHMMSS-<config hash>``, or the folder the environment names
    (:data:`RUN_FOLDER_ENV`, :data:`FIXED_RUN_FOLDER_ENV`), created (empty)."""
    requested = requested_run_folder()
    if requested is not None:
        if requested.exists() and not requested.is_dir():
            raise ConfigError(
                f"run folder {_requesting_variable()}={str(requested)!r} is a file, not a folder"
            )
        if any((requested / CHECKPOINTS_DIR).glob("*.ckpt")):
            raise CheckpointError(
                f"run folder {_requesting_variable()}={str(requested)!r} already holds a run; "
                f"continue it with: python tools/fit.py --resume {requested}, or name an "
                "empty folder"
            )
        requested.mkdir(parents=True, exist_ok=True)
        return requested
    digest = hashlib.sha1(to_yaml(cfg).encode()).hexdigest()[:6]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    prefix = f"{cfg.name}-" if cfg.name else ""
    folder = Path(cfg.run_dir) / f"{prefix}{stamp}-{digest}"
    folder.mkdir(parents=True)
    return folder


def requested_run_folder() -> Path | None:
    """The run folder named by :data:`RUN_FOLDER_ENV` (a DDP run's, on every node) or by
    :data:`FIXED_RUN_FOLDER_ENV` (the benchmark harness's), if either is set."""
    variable = _requesting_variable()
    return Path(os.environ[variable]) if variable else None


def _requesting_variable() -> str | None:
    return next((v for v in (RUN_FOLDER_ENV, FIXED_RUN_FOLDER_ENV) if os.environ.get(v)), None)


def global_rank(t: TrainerConfig) -> int:
    """This process's global rank in the run, numbered as Lightning's strategy numbers it.

    Lightning's cluster environments tell the processes of a run apart: its own reads
    ``NODE_RANK`` (set by the user on each node) and ``LOCAL_RANK`` (set by its launcher for
    the ranks it starts), torchrun's and SLURM's read theirs. A Trainer built from the
    config's devices, nodes and strategy (not fitted) reads them; a single process is rank 0.
    """
    lightning_logs = [
        logging.getLogger(f"lightning.{part}.utilities.rank_zero") for part in ("pytorch", "fabric")
    ]
    levels = [log.level for log in lightning_logs]
    # The Trainer numbers the ranks as it is built; its device lines and the rank that
    # Lightning's rank-zero utilities read are the real Trainer's to print and to set.
    ranks = rank_zero_only.rank, utils_rank_zero_only.rank
    for log in lightning_logs:
        log.setLevel(logging.WARNING)
    try:
        return L.Trainer(
            accelerator=t.accelerator,
            devices=t.devices,
            num_nodes=t.num_nodes,
            strategy=t.strategy,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        ).global_rank
    finally:
        for log, level in zip(lightning_logs, levels, strict=True):
            log.setLevel(level)
        rank_zero_only.rank, utils_rank_zero_only.rank = ranks


def build_trainer(
    cfg: Config,
    run_folder: Path,
    evaluation: PeriodicEvaluation,
    signals: StopSignals,
    *,
    csv_rows: int = 0,
) -> L.Trainer:
    """The Lightning Trainer with checkpoints, replay dumps, evaluation, loggers, the progress
    bar and a graceful stop on SIGINT/SIGTERM (``signals``, installed). ``csv_rows``: rows of
    an existing ``metrics.csv`` to continue."""
    t = cfg.trainer
    checkpoint = RunCheckpoint(
        dirpath=run_folder / "checkpoints",
        filename="{step}",
        every_n_train_steps=t.checkpoint_every_updates,
        save_last=True,
    )
    callbacks: list[L.Callback] = [
        TrainingProgress(t.log_every_updates),
        checkpoint,
        LogCheckpoint(),
        evaluation,
        RunSummary(run_folder, evaluation),
    ]
    if cfg.replay.checkpoint:
        callbacks.append(ReplayCheckpoint(run_folder))
    if t.progress_bar:
        bar = RunProgressBar(
            cfg.collector.total_frames, t.log_every_updates, evaluation.latest_return
        )
        callbacks.append(bar)
    # Last: evaluation due at this update is logged before an interruption's checkpoint.
    callbacks.append(GracefulStop(run_folder, checkpoint, signals))
    loggers = [
        RunTensorBoardLogger(run_folder),
        ContinuingCSVLogger(run_folder, name="logs", version="csv", keep_rows=csv_rows),
    ]
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
        max_epochs=1,  # the feeder ends the single epoch at collector.total_frames
        callbacks=callbacks,
        logger=loggers,
        log_every_n_steps=t.log_every_updates,
        enable_progress_bar=t.progress_bar,
        enable_model_summary=False,
        default_root_dir=run_folder,
        # Warn-only: an op without a deterministic kernel (some GPU ops) warns, naming itself,
        # and the run goes on; exactness then holds no longer (docs/checkpoints.md).
        deterministic="warn" if deterministic(t) else False,
        use_distributed_sampler=False,
        plugins=[AtomicCheckpointIO()],
        profiler=_profiler(t.profiler, run_folder),
    )


def _profiler(kind: str | None, run_folder: Path) -> Profiler | None:
    if kind is None:
        return None
    profiler = SimpleProfiler if kind == "simple" else AdvancedProfiler
    return profiler(dirpath=run_folder, filename="profile")


def computes_on_cpu(trainer: TrainerConfig) -> bool:
    """Whether the run's accelerator is the CPU (for 'auto': no CUDA GPU and no Apple GPU)."""
    if trainer.accelerator == "auto":
        return not torch.cuda.is_available() and not torch.backends.mps.is_available()
    return trainer.accelerator == "cpu"


def deterministic(trainer: TrainerConfig) -> bool:
    """Whether the run uses deterministic kernels: ``trainer.deterministic``; 'auto' is true
    on the CPU (where it costs under 5 % per update, docs/checkpoints.md) and false on a GPU."""
    if trainer.deterministic == "auto":
        return computes_on_cpu(trainer)
    return bool(trainer.deterministic)


def cpu_threads(trainer: TrainerConfig) -> int:
    """torch CPU threads per process for ``trainer.threads`` (an int, or 'auto').

    'auto' takes ``OMP_NUM_THREADS`` when it is set (the usual way to pin a process's
    threads); otherwise it divides the CPUs this process may run on (``os.sched_getaffinity``,
    which honours taskset, cgroups' cpusets and Ray's CPU pinning) among this node's
    processes: one per device for DDP on CPU, otherwise one. At least 1.
    """
    if trainer.threads != "auto":
        return int(trainer.threads)
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    on_cpu = computes_on_cpu(trainer)
    local = int(trainer.devices) if on_cpu and str(trainer.devices).isdigit() else 1
    return max(1, len(os.sched_getaffinity(0)) // max(local, 1))


def train(
    cfg: Config, *, resume_from: Path | None = None, signals: StopSignals | None = None
) -> dict[str, Any]:
    """Fit ``cfg`` (or continue the run of checkpoint ``resume_from``); returns the summary.

    Global rank 0 (:func:`global_rank`) owns the run folder: it creates it (fresh runs) with
    ``config.yaml``, locks it while training (:class:`s2ac_lit.trainer.runfolder.RunLock`) and
    writes the summary. The other ranks of a DDP run train in the folder of
    :data:`RUN_FOLDER_ENV`, which rank 0 sets for the ranks Lightning starts on its node and the
    user sets, the same, on every other node.

    Raises :class:`RunInterrupted` when SIGINT or SIGTERM stops the run: after checkpointing
    while it trains (at any rank: all stop at the same update), and at once before the first
    update, when a new run's folder is removed (:mod:`s2ac_lit.trainer.interrupts`).
    ``signals``: the process's handlers, installed (by the command line); without them, this
    call installs its own for its duration.
    """
    if signals is not None:
        return _train_as_rank(cfg, resume_from, signals)
    signals = StopSignals().install()
    try:
        return _train_as_rank(cfg, resume_from, signals)
    finally:
        signals.restore()


def _train_as_rank(cfg: Config, resume_from: Path | None, signals: StopSignals) -> dict[str, Any]:
    check_config(cfg)  # before a run folder exists
    check_replay(cfg.replay)
    torch.set_num_threads(cpu_threads(cfg.trainer))
    if cfg.trainer.keep_freed_memory:
        keep_freed_host_memory()
    quiet_third_party()
    rank = global_rank(cfg.trainer)
    requested = requested_run_folder()
    if resume_from is not None and requested and requested.resolve() != run_folder_of(resume_from):
        raise CheckpointError(
            f"{_requesting_variable()}={str(requested)!r} but the run to resume is "
            f"{str(run_folder_of(resume_from))!r}; they must be the same folder"
        )
    if rank > 0:
        shared = os.environ.get(RUN_FOLDER_ENV)
        if not shared:
            raise ConfigError(
                f"this process is rank {rank} of a run over trainer.num_nodes="
                f"{cfg.trainer.num_nodes} nodes: set {RUN_FOLDER_ENV} to the run folder, the "
                "same folder (on a shared file system) on every node"
            )
        try:
            return _train(cfg, Path(shared), resume_from, signals)
        except StopNow as stop:  # rank 0 tidies the folder and says how to go on
            raise RunInterrupted(stop.signum, f"rank {rank} stopped at once") from None
    fresh = resume_from is None
    run_folder = None if fresh else run_folder_of(resume_from)
    # What a requested folder held before this run: a stop before the first checkpoint
    # removes only what the run added (the benchmark harness keeps its own files there).
    held = set(os.listdir(requested)) if fresh and requested and requested.is_dir() else None
    try:
        if fresh:
            run_folder = new_run_folder(cfg)
        # Before config.yaml: a second rank 0 must not overwrite it.
        with RunLock(run_folder):
            if fresh:
                atomic_write_text(run_folder / CONFIG_FILE, to_yaml(cfg))
            else:
                remove_leftovers(run_folder)  # temporary files of a killed run
            try:
                return _train(cfg, run_folder, resume_from, signals)
            except StopNow as stop:
                raise stopped_at_once(stop.signum, run_folder, fresh, held) from None
            except RunInterrupted:
                raise
            except Exception:
                if signals.signum is None:
                    raise
                # A failure that follows a signal is the signal's: the terminal's SIGINT also
                # kills the compiler's child processes, and their compile error may come first.
                raise stopped_at_once(signals.signum, run_folder, fresh, held) from None
    except StopNow as stop:  # while the folder is created and locked
        if run_folder is None or not run_folder.exists():
            raise
        raise stopped_at_once(stop.signum, run_folder, fresh, held) from None


def stopped_at_once(
    signum: int, run_folder: Path, fresh: bool, held: set[str] | None
) -> RunInterrupted:
    """The one line of a run that a signal cut at once, after tidying its folder: a new run
    without a checkpoint leaves nothing (only what it added, in a folder that existed before:
    ``held``); a run with a checkpoint resumes from it (temporary files of a cut write go)."""
    if any((run_folder / CHECKPOINTS_DIR).glob("*.ckpt")):
        remove_leftovers(run_folder)
        return RunInterrupted(
            signum,
            "stopped at once; the run goes on from its newest checkpoint with: "
            + resume_command(run_folder),
        )
    if not fresh:
        return RunInterrupted(
            signum, f"stopped at once; {display_path(run_folder)} has no checkpoint"
        )
    if held is None:
        shutil.rmtree(run_folder, ignore_errors=True)
        done = f"removed the run folder {display_path(run_folder)}"
    else:
        for name in set(os.listdir(run_folder)) - held:
            path = run_folder / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        done = f"removed what the run wrote in {display_path(run_folder)}"
    return RunInterrupted(signum, f"stopped before the run's first checkpoint; {done}")


def _train(
    cfg: Config, run_folder: Path, resume_from: Path | None, signals: StopSignals
) -> dict[str, Any]:
    L.seed_everything(cfg.seed, workers=False, verbose=False)
    probe = make_env(cfg.env.id, max_episode_steps=cfg.env.max_episode_steps)
    dims = env_dims(probe)
    probe.close()
    module = RLModule(
        cfg, dims.observation_dim, dims.action_low.tolist(), dims.action_high.tolist()
    )
    csv_rows = 0
    resumed_at = None
    if resume_from is not None:
        checkpoint = read_checkpoint(resume_from)
        check_compatible(checkpoint, module, resume_from)
        frames = finished_frames(checkpoint)
        if frames is not None and cfg.collector.total_frames <= frames:
            raise CheckpointError(
                f"run {str(run_folder)!r} finished at {frames} frames: nothing to resume; to "
                f"train it on, raise collector.total_frames (now {cfg.collector.total_frames}), "
                f"e.g. python tools/fit.py --resume {run_folder} "
                f"collector.total_frames={2 * frames}"
            )
        csv_rows = checkpoint.get("csv_rows", 0)
        resumed_at = checkpoint["global_step"]

    evaluation = PeriodicEvaluation(cfg, signals)
    trainer = build_trainer(cfg, run_folder, evaluation, signals, csv_rows=csv_rows)
    if trainer.is_global_zero:
        print(start_line(cfg, run_folder, trainer, resumed_at), flush=True)
        if resume_from is not None:
            notice = resume_notice(
                checkpoint,
                deterministic=deterministic(cfg.trainer),
                world_size=trainer.world_size,
                replay_loaded=cfg.replay.checkpoint and "replay_dir" in checkpoint,
                machine=machine_record(trainer.strategy.root_device),
            )
            if notice is not None:
                print(notice, file=sys.stderr)
            summary = next(c for c in trainer.callbacks if isinstance(c, RunSummary))
            summary.expect_resume(notice)
    inherited = os.environ.get(RUN_FOLDER_ENV)
    os.environ[RUN_FOLDER_ENV] = str(run_folder)  # for the ranks Lightning starts
    try:
        trainer.fit(module, datamodule=ReplayDataModule(cfg), ckpt_path=resume_from)
    except Exception:
        # A run folder deleted while training fails a writer's I/O (which Lightning may wrap);
        # the checkpoint and replay writers and the TensorBoard logger check it first.
        require_run_folder(run_folder)
        raise
    finally:
        signals.cut = True  # the run is saved: what follows (its outputs) may stop at once
        if inherited is None:
            os.environ.pop(RUN_FOLDER_ENV, None)
        else:
            os.environ[RUN_FOLDER_ENV] = inherited
    summary = next(c for c in trainer.callbacks if isinstance(c, RunSummary)).summary
    return {"run_folder": str(run_folder), **summary}


def start_line(cfg: Config, run_folder: Path, trainer: L.Trainer, resumed_at: int | None) -> str:
    """What the run is about to do, in one line: the run folder (resumed from which update),
    the algorithm, env and budget, and the devices."""
    what = f"run {display_path(run_folder)}"
    if resumed_at is not None:
        what = f"resuming {display_path(run_folder)} from update {resumed_at}"
    device = trainer.strategy.root_device.type
    processes = trainer.world_size
    where = f"{processes} × {device}" if processes > 1 else device
    if device == "cpu":
        threads = torch.get_num_threads()
        where += f", {threads} thread{'s' if threads > 1 else ''} per process"
    return (
        f"{what}: {cfg.algo} on {cfg.env.id}, {cfg.collector.total_frames} frames, "
        f"{planned_updates(cfg.collector)} updates, on {where}"
    )


def run(args: argparse.Namespace, signals: StopSignals) -> int:
    """What ``tools/fit.py`` does once its command line is parsed (:mod:`s2ac_lit.trainer.cli`):
    check everything, then print the config or train; returns the exit code. The final lines
    name the run folder as every message of the run does (:func:`display_path`)."""
    cfg, checkpoint = resolve(args)
    if args.print_config:
        print(to_yaml(cfg), end="")
        return 0
    try:
        summary = train(cfg, resume_from=checkpoint, signals=signals)
    except NonFiniteError as error:
        report(error)
        return NON_FINITE_EXIT
    if summary.get("frames") is None:
        return 0
    run_folder = Path(summary["run_folder"])
    print(summary_line(summary))
    output = run_output(cfg.env.id)
    if output is not None:
        try:
            module = RLModule.load(find_checkpoint(run_folder / CHECKPOINTS_DIR / LAST_CHECKPOINT))
            shown = Path(display_path(run_folder))  # the output names it as the lines above
            print(output(shown, cfg.env.id, module.eval().policy()))
        except StopNow as stop:
            raise RunInterrupted(
                stop.signum,
                f"stopped while drawing the run's outputs; the run itself is finished and "
                f"saved in {display_path(run_folder)}",
            ) from None
    return 0


def summary_line(summary: dict[str, Any]) -> str:
    """``run runs/<run>: F frames, U updates, E episodes in T s (...); final evaluation ...``,
    the time over all attempts of the run, with each attempt's beside it after a resume."""
    attempts = summary["attempt_wall_times_s"]
    time_taken = f"{summary['wall_time_s']} s"
    if len(attempts) > 1:
        time_taken += f" ({len(attempts)} attempts: {' + '.join(f'{a} s' for a in attempts)})"
    return (
        f"run {display_path(summary['run_folder'])}: {summary['frames']} frames, "
        f"{summary['updates']} updates, {summary['episodes']} episodes in {time_taken}; final "
        f"evaluation return {summary['final_eval_return_mean']:.2f} "
        f"± {summary['final_eval_return_std']:.2f}"
    )
