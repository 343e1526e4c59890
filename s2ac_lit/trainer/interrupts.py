"""What a stop signal (Ctrl-C's SIGINT, a scheduler's SIGTERM) does to a run, wherever it lands.

The promise (README §Resume): the run ends with one line and exit status 128 + signal, and its
folder is either resumable or gone.

- Before the run folder exists (imports, the config's checks): nothing was written.
- While nothing of the run can be saved yet (start-up, restoring a checkpoint, the random-action
  phase, the first update and its compilation): the work is cut at once. A new run's folder is
  removed; a resumed run keeps its newest checkpoint. Cutting at once matters for the
  compilation: the terminal's SIGINT also reaches the compiler's child processes, so the compile
  could only fail.
- While training: the update under way finishes and is checkpointed
  (:class:`s2ac_lit.trainer.callbacks.GracefulStop`).
- During an evaluation: the evaluation is cut and its update checkpointed; the resumed run
  evaluates before its first update, where the uninterrupted run did.
- A second SIGINT cuts whatever runs; the newest complete checkpoint stays (writes are atomic).

This module imports no torch: ``tools/fit.py`` installs the handlers before it imports anything
heavy.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def display_path(path: str | Path) -> str:
    """How a run's messages name a folder: relative to the working directory when inside it
    (``runs/<run>``), absolute otherwise, whether the run is new or resumed."""
    absolute = Path(path).resolve()
    try:
        return str(absolute.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(absolute)


def resume_command(run_folder: str | Path) -> str:
    return f"python tools/fit.py --resume {display_path(run_folder)}"


def stopped_with_checkpoint(updates: int, run_folder: str | Path) -> str:
    """The message of a run that a signal stopped once update ``updates`` was checkpointed."""
    return (
        f"stopped after update {updates} with a checkpoint; resume with: "
        f"{resume_command(run_folder)}"
    )


STOPPED_LINE = re.compile(r"^(SIG[A-Z0-9]+): stopped after update (\d+) with a checkpoint; ")
"""The last line a run stopped by a signal prints (:class:`RunInterrupted` with
:func:`stopped_with_checkpoint`): signal name and update. The benchmark report tells such a run,
which resumes, from a failed one by it."""


class StopNow(BaseException):
    """A stop signal cut the work under way.

    A ``BaseException``: no ``except Exception`` on its way (torch's compiler wraps the errors of
    its workers, Lightning's loops handle failures) turns it into another error.
    """

    def __init__(self, signum: int, *, repeated: bool = False) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum
        self.repeated = repeated
        """A second SIGINT: cut everything, even work that otherwise absorbs a cut."""


class RunInterrupted(Exception):
    """The run stopped on a signal; the message is the one line to print, ``exit_code`` is
    128 + signal."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(f"{signal_name(signum)}: {message}")
        self.signum = signum
        self.exit_code = 128 + signum


class StopSignals:
    """The process's SIGINT and SIGTERM handlers while a run starts, trains and ends.

    In *cut* mode (the default) a signal raises :class:`StopNow` at once; otherwise it is only
    noted (``signum``) and the trainer stops at the end of the update. A second SIGINT always
    cuts. ``after_signal`` runs after a signal is noted (the trainer clears Lightning's own
    SIGTERM flag there).
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.cut = True
        self.after_signal: Callable[[], None] | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> StopSignals:
        """Take SIGINT and SIGTERM (again, over a handler registered since: Lightning's)."""
        for signum in STOP_SIGNALS:
            previous = signal.signal(signum, self._handle)
            self._previous.setdefault(signum, previous)
        return self

    def restore(self) -> None:
        """Give the handlers found by the first :meth:`install` back."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        repeated = self.signum == signal.SIGINT and signum == signal.SIGINT
        if self.signum is None:
            self.signum = signum
        if self.after_signal is not None:
            self.after_signal()
        if self.cut or repeated:
            raise StopNow(signum, repeated=repeated)

    @contextmanager
    def cutting(self) -> Iterator[None]:
        """Work that a signal cuts at once (nothing of it is saved): an evaluation. A signal
        noted before it starts cuts it before it begins."""
        previous, self.cut = self.cut, True
        try:
            if self.signum is not None:
                raise StopNow(self.signum)
            yield
        finally:
            self.cut = previous
