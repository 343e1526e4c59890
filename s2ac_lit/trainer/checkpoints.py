"""Finding, checking and describing run folders and checkpoints.

A run folder holds ``config.yaml``, ``checkpoints/`` (Lightning ``.ckpt`` files, written
atomically by :class:`s2ac_lit.trainer.runfolder.AtomicCheckpointIO`), ``replay/`` (buffer dumps,
one folder per checkpointed step and rank) and the logs. Everything that reads a checkpoint goes
through :func:`read_checkpoint`, which turns unreadable or foreign files into a
:class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from s2ac_lit import __version__
from s2ac_lit.errors import UsageError
from s2ac_lit.trainer.layout import MACHINE_PACKAGES

REQUIRED_KEYS = ("state_dict", "hyper_parameters", "global_step")


class CheckpointError(UsageError, RuntimeError):
    """A checkpoint or run folder is missing, corrupt or does not match the run."""


def run_folder_of(checkpoint: Path) -> Path:
    """``RUN/checkpoints/x.ckpt`` → ``RUN``."""
    return checkpoint.resolve().parent.parent


def _newest(paths: list[Path]) -> Path | None:
    return max(paths, key=lambda p: p.stat().st_mtime, default=None)


def latest_run(run_dir: Path) -> Path:
    """The run folder under ``run_dir`` whose newest checkpoint is newest."""
    newest = _newest(list(run_dir.glob("*/checkpoints/*.ckpt")))
    if newest is None:
        raise CheckpointError(f"no run with a checkpoint under {str(run_dir)!r} to resume")
    return run_folder_of(newest)


def find_checkpoint(target: str | Path) -> Path:
    """A checkpoint file from a ``.ckpt`` path or a run folder (its newest loadable checkpoint).

    In a run folder, checkpoints are tried newest first (by modification time); one that does
    not load (damaged disk, a file copied in by hand) is skipped with a line on stderr naming
    it and why, and the next one is used.
    """
    path = Path(target)
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"{str(path)!r} is neither a checkpoint file nor a run folder")
    candidates = sorted(
        (path / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    if not candidates:
        raise CheckpointError(f"run folder {str(path)!r} has no checkpoints/*.ckpt")
    for candidate in candidates:
        try:
            read_checkpoint(candidate)
        except CheckpointError as error:
            print(f"skipping a damaged checkpoint: {error}", file=sys.stderr)
            continue
        return candidate
    raise CheckpointError(
        f"run folder {str(path)!r}: none of its {len(candidates)} checkpoints loads (see above)"
    )


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint on the CPU, or raise :class:`CheckpointError` saying why not."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt or not a checkpoint ({type(error).__name__}: "
            f"{error})"
        ) from None
    if not isinstance(checkpoint, dict) or any(k not in checkpoint for k in REQUIRED_KEYS):
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not an s2ac-lit checkpoint (needs keys {REQUIRED_KEYS})"
        )
    return checkpoint


def check_compatible(checkpoint: dict[str, Any], module: torch.nn.Module, path: Path) -> None:
    """Raise :class:`CheckpointError` if the weights do not fit ``module``'s shapes."""
    expected = module.state_dict()
    found = checkpoint["state_dict"]
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(
        key
        for key in set(expected) & set(found)
        if tuple(expected[key].shape) != tuple(found[key].shape)
    )
    if missing or unexpected or wrong:
        details = []
        if wrong:
            key = wrong[0]
            details.append(
                f"{len(wrong)} tensors of other shapes, e.g. {key}: checkpoint "
                f"{tuple(found[key].shape)} vs config {tuple(expected[key].shape)}"
            )
        if missing:
            details.append(f"{len(missing)} missing, e.g. {missing[0]}")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
        changed = _changed_keys(checkpoint, module)
        cause = f" (the config changed {', '.join(changed)})" if changed else ""
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not match the configured networks{cause}: "
            + "; ".join(details)
        )


def _changed_keys(checkpoint: dict[str, Any], module: torch.nn.Module) -> list[str]:
    """``key: saved → now`` for the config keys that differ between the checkpoint's run and
    ``module``'s config (its ``cfg``), the algorithm first; empty if either is unknown."""
    saved = checkpoint.get("hyper_parameters", {}).get("config")
    cfg = getattr(module, "cfg", None)
    if not isinstance(saved, dict) or cfg is None:
        return []

    def flat(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(
                flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value}
            )
        return out

    before, now = flat(saved), flat(OmegaConf.to_container(OmegaConf.structured(cfg)))
    keys = ["algo", *sorted(k for k in now if k != "algo" and k.split(".")[0] in NETWORK_SECTIONS)]
    return [f"{k}: {before[k]!r} → {now[k]!r}" for k in keys if k in before and before[k] != now[k]]


NETWORK_SECTIONS = ("actor", "critic", "svgd", "loss")
"""Config sections whose keys can change which tensors a module holds, or their shapes."""


def _fit_loop(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    loops = checkpoint.get("loops")
    return loops.get("fit_loop") if isinstance(loops, dict) else None


def feeder_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The replay feeder's state in ``checkpoint`` (Lightning keeps it as the train
    dataloader's, :meth:`s2ac_lit.trainer.data.ReplayFeeder.state_dict`); empty if none."""
    loop = _fit_loop(checkpoint) or {}
    feeder_states = loop.get("state_dict", {}).get("combined_loader") or [{}]
    return feeder_states[0]


def replace_feeder_state(checkpoint: dict[str, Any], state: dict[str, Any]) -> None:
    """Have ``checkpoint`` restore ``state`` as the replay feeder's (in place): a DDP rank
    other than 0 continues its own env and random streams, not rank 0's."""
    _fit_loop(checkpoint)["state_dict"]["combined_loader"][0] = state


def finished_frames(checkpoint: dict[str, Any]) -> int | None:
    """The frames a finished run collected, if ``checkpoint`` is its final one; else None.

    Lightning marks the last batch of the run's single epoch as seen in the final checkpoint;
    the replay feeder's state holds the frames.
    """
    loop = _fit_loop(checkpoint)
    if loop is None or not loop.get("epoch_loop.batch_progress", {}).get("is_last_batch"):
        return None
    frames = feeder_state(checkpoint).get("frames")
    return int(frames) if frames is not None else None


def machine_record(device: torch.device | str = "cpu") -> dict[str, Any]:
    """What a run's numbers depend on besides its state: library versions, the kind of CPU or
    GPU that computes (``device``), and torch's CPU threads. Saved with the feeder's state; a
    resume elsewhere says so (:func:`resume_notice`)."""
    device = torch.device(device)
    return {
        **_process_record(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(),
    }


@functools.cache
def _process_record() -> dict[str, Any]:
    # Fixed for the process's life; reading the package metadata costs tens of milliseconds,
    # too much for every checkpoint.
    record: dict[str, Any] = {"python": platform.python_version()}
    for package in MACHINE_PACKAGES:
        try:
            record[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            record[package] = None
    record["machine"] = platform.machine()
    record["cpu"] = _cpu_model()
    return record


@functools.cache
def code_record() -> dict[str, Any]:
    """The code a run ran: ``s2ac_lit``'s version and, where it runs from a git checkout (an
    editable install), the commit and whether tracked files differed from it (``dirty``);
    both ``None`` elsewhere (an installed wheel, no git)."""
    record: dict[str, Any] = {"s2ac_lit": __version__, "commit": None, "dirty": None}
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():  # a wheel in site-packages: a repository above is not ours
        return record
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
        )
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        )
    except OSError:  # no git on this machine
        return record
    if head.returncode == 0 and status.returncode == 0:
        record |= {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
    return record


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def resume_notice(
    checkpoint: dict[str, Any],
    *,
    deterministic: bool,
    world_size: int,
    replay_loaded: bool,
    machine: dict[str, Any] | None = None,
) -> str | None:
    """The one line a resume prints when its continuation cannot be bit-identical to the
    uninterrupted run (docs/checkpoints.md §Limits); None when it can.

    Args:
        checkpoint: the checkpoint resumed from.
        deterministic: whether this fit uses deterministic kernels (``trainer.deterministic``).
        world_size: DDP ranks of this fit.
        replay_loaded: whether this fit loads the checkpoint's replay dump (it has one and
            ``replay.checkpoint`` is on); without it the buffer starts empty.
        machine: this machine's :func:`machine_record` (default: measured now, on the CPU).
    """
    state = feeder_state(checkpoint)
    reasons = []
    if "in_flight" not in state:
        reasons.append("the checkpoint was written before runs saved their env and collector")
    elif state.get("env_unreadable"):
        reasons.append(f"the env's state cannot be saved: {state['env_unreadable']}")
    if not deterministic:
        reasons.append("trainer.deterministic=false")
    if not replay_loaded:
        ranks = ", and DDP ranks other than 0 restart their env and random streams"
        reasons.append(
            "no replay buffer dump is loaded (replay.checkpoint=false): the buffer starts "
            f"empty{ranks if world_size > 1 else ''}"
        )
    saved_ranks = state.get("world_size")
    if saved_ranks is None and world_size > 1:
        reasons.append(
            f"{world_size} DDP ranks from a checkpoint written before each rank saved its env "
            "and random state"
        )
    elif saved_ranks is not None and saved_ranks != world_size:
        plural = "s" if saved_ranks != 1 else ""
        reasons.append(f"the run had {saved_ranks} DDP rank{plural}, this fit has {world_size}")
    saved = state.get("machine")
    now = machine if machine is not None else machine_record()
    if saved:
        changed = [f"{k} {saved[k]} → {now[k]}" for k in now if k in saved and saved[k] != now[k]]
        if changed:
            reasons.append(f"resumed on another machine or library version ({', '.join(changed)})")
    if not reasons:
        return None
    return f"resume is not bit-exact: {'; '.join(reasons)}; the run continues statistically"


def reopen_finished_run(checkpoint: dict[str, Any], total_frames: int) -> bool:
    """Let a finished run continue from its final checkpoint to a raised frame budget.

    Fitting from a finished run's final checkpoint returns at once (its single epoch is over).
    When ``total_frames`` exceeds the frames it collected, the epoch is marked as still
    running, in place: the replay feeder, restored with its frames and counters, collects on
    and the updates continue from the same global step. Returns True if it reopened the run.
    """
    frames = finished_frames(checkpoint)
    if frames is None or total_frames <= frames:
        return False
    loop = _fit_loop(checkpoint)
    batches = loop["epoch_loop.batch_progress"]
    batches["is_last_batch"] = False
    # The epoch ended on one more batch than updates: the fetch that found the feeder
    # exhausted. Uncounting it keeps Lightning's logging steps where an unbroken run has them.
    for counts in (batches["total"], batches["current"]):
        for field in counts:
            counts[field] -= 1
    loop["epoch_loop.state_dict"]["_batches_that_stepped"] -= 1
    for counts in loop["epoch_progress"].values():
        counts["processed"] = counts["completed"]
    return True


def fuse_saved_adam(checkpoint: dict[str, Any]) -> None:
    """Have the saved optimiser state load as fused Adam.

    ``Optimizer.load_state_dict`` takes every saved group setting, ``fused`` included, and a
    checkpoint written before the update masked its steps on the device holds
    ``fused=False``; which kernel runs is no state of the run.
    """
    for state in checkpoint.get("optimizer_states", []):
        for group in state.get("param_groups", []):
            if "fused" in group:
                group["fused"], group["foreach"] = True, None
