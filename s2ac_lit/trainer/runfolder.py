"""Safe writes inside a run folder: atomic files, the run lock, leftovers of a killed run.

Every file a run writes goes to a temporary file *in the same folder*, is flushed and
fsynced, then renamed over its target: a kill at any moment leaves either the old or the new
file, never a truncated one (a rename across filesystems would be a copy, which is not atomic).
Temporary names start with ``.`` and contain ``.tmp``, so :func:`remove_leftovers` finds them.

A live run folder holds ``.lock`` (owner pid and host). A second process on the same folder is
refused; a lock whose pid is dead on this host is stale and taken over.

A run folder holds what README's run-folder table lists, no more: each complete checkpoint
(``last.ckpt`` written) removes the checkpoints and replay dumps it supersedes
(:func:`remove_superseded`). A folder written whole (a replay dump) carries a manifest of its
file sizes, so that a copy cut short is recognised (:func:`manifest_mismatch`). A run folder
deleted while its run trains is not recreated: writes stop with :class:`RunFolderGone`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from s2ac_lit.trainer.checkpoints import CheckpointError
from s2ac_lit.trainer.layout import CHECKPOINTS_DIR, LAST_CHECKPOINT, LOCK_NAME, REPLAY_DIR

TMP_MARK = ".tmp"


MANIFEST = "manifest.json"
"""The sizes of the files of a folder written whole, beside them."""


class RunFolderBusy(CheckpointError):
    """Another live process holds the run folder's lock."""


class RunFolderGone(CheckpointError):
    """The run folder was deleted (or moved away) while its run trained."""

    def __init__(self, run_folder: Path) -> None:
        super().__init__(
            f"run folder {str(run_folder)!r} was deleted while the run trained; stopped without "
            "recreating it (start a new run)"
        )


def require_run_folder(run_folder: Path) -> None:
    """Raise :class:`RunFolderGone` if ``run_folder`` no longer exists."""
    if not run_folder.is_dir():
        raise RunFolderGone(run_folder)


class RunTensorBoardLogger(TensorBoardLogger):
    """Lightning's TensorBoard logger under ``RUN/logs/tensorboard``, checking that the run
    folder still exists before it logs: its writer thread would fail on a vanished folder with
    a traceback of its own, past any handler."""

    def __init__(self, run_folder: Path) -> None:
        super().__init__(run_folder, name="logs", version="tensorboard", default_hp_metric=False)
        self.run_folder = Path(run_folder)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        require_run_folder(self.run_folder)
        super().log_metrics(metrics, step)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through ``write(file)``: temp file beside it, fsync, rename, fsync folder."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_MARK}-{os.getpid()}")
    try:
        with open(tmp, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``."""
    atomic_write(path, lambda file: file.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    """Atomically replace ``path`` with ``text`` (UTF-8)."""
    atomic_write_bytes(path, text.encode())


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint writer that saves through :func:`atomic_write` in the target folder.

    Lightning's own writer stages the file where its filesystem layer chooses; a rename from
    another filesystem is a copy, and a kill during it leaves a truncated checkpoint.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        """Write ``RUN/checkpoints/<name>``; once ``last.ckpt`` is written the checkpoint is
        complete, and what it supersedes goes (:func:`remove_superseded`)."""
        path = Path(path)
        run_folder = path.parent.parent
        require_run_folder(run_folder)
        path.parent.mkdir(exist_ok=True)
        atomic_write(path, lambda file: torch.save(checkpoint, file))
        if path.name == LAST_CHECKPOINT:
            remove_superseded(run_folder, checkpoint)


def remove_superseded(run_folder: Path, checkpoint: dict[str, Any]) -> list[Path]:
    """Remove the checkpoints and replay dumps that ``checkpoint`` (just written as
    ``last.ckpt``) supersedes: every ``checkpoints/*.ckpt`` but ``last.ckpt`` and its
    ``step=N.ckpt``, every ``replay/step-*`` but its own dump. What a resume, an interrupted
    checkpoint or a killed run left behind goes with them. Returns what was removed."""
    keep = {LAST_CHECKPOINT, f"step={checkpoint['global_step']}.ckpt"}
    removed = [p for p in (run_folder / CHECKPOINTS_DIR).glob("*.ckpt") if p.name not in keep]
    dumps = (run_folder / REPLAY_DIR).glob("step-*")
    removed += [p for p in dumps if p.name != checkpoint.get("replay_dir")]
    for path in removed:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return removed


def write_manifest(folder: Path) -> None:
    """Record the size of every file under ``folder`` in ``folder/manifest.json`` (write it
    last, before the folder is fsynced and renamed into place)."""
    sizes = {
        str(path.relative_to(folder)): path.stat().st_size
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }
    (folder / MANIFEST).write_text(json.dumps(sizes, indent=1))


def manifest_mismatch(folder: Path) -> str | None:
    """How ``folder`` differs from its manifest (a file missing, or of another size), or None.
    A folder written before manifests existed has none and is taken as it is."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        sizes = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        return f"its {MANIFEST} cannot be read ({error})"
    for name, size in sizes.items():
        file = folder / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != size:
            return f"{name} holds {file.stat().st_size} bytes, {size} were written"
    return None


def fsync_tree(folder: Path) -> None:
    """fsync every file under ``folder`` and the folders themselves (before renaming it)."""
    for root, _, files in os.walk(folder):
        for name in files:
            fd = os.open(Path(root) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(root))


def remove_leftovers(run_folder: Path) -> list[Path]:
    """Delete temporary files and folders a killed run left behind; returns what was removed."""
    removed = []
    for path in sorted(run_folder.rglob(f".*{TMP_MARK}*")):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as error:
        return error.errno == errno.EPERM  # exists, owned by another user
    return True


class RunLock:
    """Exclusive ownership of a run folder while a process writes to it (a context manager).

    ``RUN/.lock`` holds ``pid host``; it is created with ``O_EXCL`` so two starters cannot
    both win. A lock left by a dead process on this host is taken over; one from another host
    cannot be checked and is respected.
    """

    def __init__(self, run_folder: Path) -> None:
        self.path = Path(run_folder) / LOCK_NAME
        self.owner = f"{os.getpid()} {socket.gethostname()}"

    def acquire(self) -> None:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._remove_if_stale():
                    raise self._busy() from None
                continue
            with os.fdopen(fd, "w") as file:
                file.write(self.owner + "\n")
            return
        raise self._busy()

    def _holder(self) -> tuple[int, str] | None:
        try:
            pid, host = self.path.read_text().split()
            return int(pid), host
        except (OSError, ValueError):
            return None  # vanished, or being written right now

    def _remove_if_stale(self) -> bool:
        holder = self._holder()
        if holder is None or holder[1] != socket.gethostname() or _pid_alive(holder[0]):
            return False
        self.path.unlink(missing_ok=True)
        return True

    def _busy(self) -> RunFolderBusy:
        holder = self._holder()
        who = f"process {holder[0]} on {holder[1]}" if holder else "another process"
        return RunFolderBusy(
            f"run folder {str(self.path.parent)!r} is in use by {who} (lock file "
            f"{LOCK_NAME}); wait for it to finish or stop it first"
        )

    def release(self) -> None:
        if self._holder() == (os.getpid(), socket.gethostname()):
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
