"""One benchmark run: a ``tools/fit.py`` process in a fixed run folder, resumable.

The run is a child process (the same ``s2ac_lit.trainer.train.main`` that ``tools/fit.py`` calls),
not a call inside the Ray worker: a crash, an out-of-memory kill or a CUDA fault ends that process
only, its whole output lands in ``run.log``, and the worker survives to take the next run.

Run folder states, decided from the files alone (so a killed harness loses nothing):

- finished: ``summary.json`` reports the full frame budget → skipped;
- interrupted: a checkpoint exists → continued with ``--resume <folder>``;
- new (or killed before its first checkpoint): started afresh in an emptied folder.

Every start is appended to ``attempts.jsonl`` (mode ``fresh`` or ``resume``), which is how the
tests check that no run was started twice from scratch.

A ``KeyboardInterrupt`` while the fit process runs (``ray.cancel`` raises one in the task) stops
the run gracefully: the process gets SIGINT, checkpoints its current update, writes a partial
``summary.json`` (``s2ac_lit.trainer.callbacks.GracefulStop``) and exits; the run is then
``stopped``. (SIGINT, as a user's Ctrl-C; SIGTERM stops it the same way.)
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from s2ac_lit.trainer.layout import (
    CONFIG_FILE,
    FIXED_RUN_FOLDER_ENV,
    LOCK_NAME,
    SUMMARY_FILE,
)

LOG_FILE = "run.log"
ATTEMPTS_FILE = "attempts.jsonl"
LOG_TAIL_LINES = 20
POLL_S = 0.2  # how soon a KeyboardInterrupt reaches the wait for the fit process
# The child runs exactly what tools/fit.py runs.
FIT = "import sys; from s2ac_lit.trainer.cli import main; sys.exit(main(sys.argv[1:]))"

Status = Literal["finished", "skipped", "failed", "stopped"]


def run_key(task: str, algo: str, seed: int) -> str:
    """A run's name in the report and its folder under ``runs/``: ``task/algo/seed-N``."""
    return f"{task}/{algo}/seed-{seed}"


@dataclass(frozen=True)
class RunSpec:
    """One (algorithm, task, seed): its resolved config (YAML) and its frame budget."""

    algo: str
    task: str
    seed: int
    frames: int
    config_yaml: str

    @property
    def key(self) -> str:
        return run_key(self.task, self.algo, self.seed)

    def folder(self, out: Path) -> Path:
        return out / "runs" / self.key


@dataclass(frozen=True)
class RunResult:
    """A run's outcome. ``summary``: the complete summary of a finished or skipped run, the
    partial one of a run stopped with a new checkpoint, else ``None``."""

    key: str
    status: Status
    wall_s: float
    summary: dict[str, Any] | None
    log_tail: str = ""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_summary(folder: Path, frames: int) -> dict[str, Any] | None:
    """The run's summary if it is complete (the whole frame budget), else ``None``."""
    summary = _read_json(folder / SUMMARY_FILE)
    done = isinstance(summary, dict) and (summary.get("frames") or 0) >= frames
    return summary if done else None


def has_checkpoint(folder: Path) -> bool:
    return any((folder / "checkpoints").glob("*.ckpt"))


def log_tail(folder: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join((folder / LOG_FILE).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _child_setup() -> None:
    """In the fit process before it starts: SIGINT (the graceful stop) is unblocked, as Ray's
    workers block it and the mask is inherited; on Linux the process gets SIGKILL when the
    worker that started it dies (no orphan runs)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _wait(child: subprocess.Popen) -> tuple[int, bool]:
    """The fit process's exit status, and whether it was asked to stop.

    A KeyboardInterrupt forwards SIGINT to it, once (a second SIGINT would stop it at once),
    and the wait goes on until it has checkpointed and exited. The wait polls: Ray raises the
    interrupt between two bytecodes of this thread (``_thread.interrupt_main``, no real
    signal), which a blocking ``waitpid`` would not see.
    """
    # Ray's interrupt acts only where SIGINT has a Python handler; a worker inherits SIG_IGN
    # from a harness started in the background of a script (``&``), so it is set here.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    stopped = False
    try:
        while True:
            try:
                while child.poll() is None:
                    time.sleep(POLL_S)
                return child.returncode, stopped
            except KeyboardInterrupt:
                if not stopped:
                    child.send_signal(signal.SIGINT)  # no-op once it has exited
                stopped = True
    finally:
        signal.signal(signal.SIGINT, previous)


def run(spec: RunSpec, out: Path) -> RunResult:
    """Run (or skip, or resume) one benchmark run; never raises for a failing run.

    A KeyboardInterrupt during the run stops it gracefully (module docstring): the result is
    ``stopped``, with the partial summary when the fit process checkpointed (exit status
    128 + SIGINT, ``s2ac_lit.trainer.callbacks.RunInterrupted``).
    """
    start = time.perf_counter()
    folder = spec.folder(out)
    summary = read_summary(folder, spec.frames)
    if summary is not None:
        return RunResult(spec.key, "skipped", 0.0, summary)
    if has_checkpoint(folder):
        mode, args = "resume", ["--resume", str(folder)]
        # The harness owns its run folders (a fresh start empties them): a lock left by an
        # attempt that was killed, maybe on another node where it cannot be checked, is stale.
        (folder / LOCK_NAME).unlink(missing_ok=True)
    else:
        mode = "fresh"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        (folder / CONFIG_FILE).write_text(spec.config_yaml)
        args = ["--config", str(folder / CONFIG_FILE)]
    attempt = {"mode": mode, "time": time.time(), "host": socket.gethostname(), "pid": os.getpid()}
    with (folder / ATTEMPTS_FILE).open("a") as f:
        f.write(json.dumps(attempt) + "\n")
    env = {**os.environ, FIXED_RUN_FOLDER_ENV: str(folder), "OMP_WAIT_POLICY": "PASSIVE"}
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    with (folder / LOG_FILE).open("a") as log:
        log.write(f"--- {mode} attempt on {attempt['host']} ---\n")
        log.flush()
        child = subprocess.Popen(
            [sys.executable, "-c", FIT, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_child_setup if os.name == "posix" else None,
        )
        code, stopped = _wait(child)
    wall = time.perf_counter() - start
    summary = read_summary(folder, spec.frames)
    if code == 0 and summary is not None:
        return RunResult(spec.key, "finished", wall, summary)
    tail = log_tail(folder)
    if stopped:
        partial = _read_json(folder / SUMMARY_FILE) if code == 128 + signal.SIGINT else None
        return RunResult(spec.key, "stopped", wall, partial, f"exit status {code}\n{tail}")
    return RunResult(spec.key, "failed", wall, None, f"exit status {code}\n{tail}")
