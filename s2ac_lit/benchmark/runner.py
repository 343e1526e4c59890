"""One benchmark run: a ``tools/fit.py`` process in a fixed run folder, resumable.

The run is a child process (the same ``s2ac_lit.train.main`` that ``tools/fit.py`` calls), not
a call inside the Ray worker: a crash, an out-of-memory kill or a CUDA fault ends that process
only, its whole output lands in ``run.log``, and the worker survives to take the next run.

Run folder states, decided from the files alone (so a killed harness loses nothing):

- finished: ``summary.json`` reports the full frame budget → skipped;
- interrupted: a checkpoint exists → continued with ``--resume <folder>``;
- new (or killed before its first checkpoint): started afresh in an emptied folder.

Every start is appended to ``attempts.jsonl`` (mode ``fresh`` or ``resume``), which is how the
tests check that no run was started twice from scratch.
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

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
LOG_FILE = "run.log"
ATTEMPTS_FILE = "attempts.jsonl"
RUN_FOLDER_ENV = "S2AC_RUN_FOLDER"  # s2ac_lit.train writes into this folder when it is set
LOG_TAIL_LINES = 20
# The child runs exactly what tools/fit.py runs.
FIT = "import sys; from s2ac_lit.train import main; sys.exit(main(sys.argv[1:]))"

Status = Literal["finished", "skipped", "failed"]


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
        return f"{self.task}/{self.algo}/seed-{self.seed}"

    def folder(self, out: Path) -> Path:
        return out / "runs" / self.task / self.algo / f"seed-{self.seed}"


@dataclass(frozen=True)
class RunResult:
    key: str
    status: Status
    wall_s: float
    summary: dict[str, Any] | None
    log_tail: str = ""


def read_summary(folder: Path, frames: int) -> dict[str, Any] | None:
    """The run's summary if it is complete (the whole frame budget), else ``None``."""
    try:
        summary = json.loads((folder / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return None
    done = isinstance(summary, dict) and (summary.get("frames") or 0) >= frames
    return summary if done else None


def has_checkpoint(folder: Path) -> bool:
    return any((folder / "checkpoints").glob("*.ckpt"))


def log_tail(folder: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join((folder / LOG_FILE).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL when the worker that started it dies (no orphan runs)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run(spec: RunSpec, out: Path) -> RunResult:
    """Run (or skip, or resume) one benchmark run; never raises for a failing run."""
    start = time.perf_counter()
    folder = spec.folder(out)
    summary = read_summary(folder, spec.frames)
    if summary is not None:
        return RunResult(spec.key, "skipped", 0.0, summary)
    if has_checkpoint(folder):
        mode, args = "resume", ["--resume", str(folder)]
    else:
        mode = "fresh"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        (folder / CONFIG_FILE).write_text(spec.config_yaml)
        args = ["--config", str(folder / CONFIG_FILE)]
    attempt = {"mode": mode, "time": time.time(), "host": socket.gethostname(), "pid": os.getpid()}
    with (folder / ATTEMPTS_FILE).open("a") as f:
        f.write(json.dumps(attempt) + "\n")
    env = {**os.environ, RUN_FOLDER_ENV: str(folder), "OMP_WAIT_POLICY": "PASSIVE"}
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    with (folder / LOG_FILE).open("a") as log:
        log.write(f"--- {mode} attempt on {attempt['host']} ---\n")
        log.flush()
        code = subprocess.call(
            [sys.executable, "-c", FIT, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    wall = time.perf_counter() - start
    summary = read_summary(folder, spec.frames)
    if code == 0 and summary is not None:
        return RunResult(spec.key, "finished", wall, summary)
    tail = log_tail(folder)
    return RunResult(spec.key, "failed", wall, None, f"exit status {code}\n{tail}")
