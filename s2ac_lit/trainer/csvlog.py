"""Lightning's CSV logger, made to continue a run's ``metrics.csv`` instead of deleting it.

Lightning's writer deletes an existing ``metrics.csv`` when it starts. Here a resumed run keeps
the first ``keep_rows`` rows (the rows flushed before its checkpoint, which the checkpoint
records, see :class:`s2ac_lit.trainer.callbacks.LogCheckpoint`) and appends after them: rows written
after the checkpoint by the killed process are replaced, never duplicated.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from s2ac_lit.trainer.runfolder import atomic_write_text


class _ContinuingWriter(ExperimentWriter):
    def __init__(self, log_dir: str, keep_rows: int) -> None:
        self.keep_rows = keep_rows
        self.rows = 0
        self._last_row: dict[str, float] | None = None
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        """Called by Lightning at start (where it would delete the file): truncate instead."""
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        with open(path, newline="") as file:
            reader = csv.DictReader(file)
            fields = list(reader.fieldnames or [])
            rows = [row for _, row in zip(range(self.keep_rows), reader, strict=False)]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, out.getvalue())
        self.metrics_keys = fields
        self.rows = len(rows)

    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        """Record a row, unless it repeats the previous one (see LogCheckpoint)."""
        before = len(self.metrics)
        super().log_metrics(metrics_dict, step)
        row = self.metrics[-1]
        if row == self._last_row:
            del self.metrics[before:]
        self._last_row = row

    def save(self) -> None:
        self.rows += len(self.metrics)
        super().save()


class ContinuingCSVLogger(CSVLogger):
    """``CSVLogger`` that keeps the first ``keep_rows`` rows of an existing ``metrics.csv``.

    ``experiment.rows`` counts the rows on disk after each :meth:`save`.
    """

    def __init__(self, *args, keep_rows: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.keep_rows = keep_rows

    @property
    @rank_zero_experiment
    def experiment(self) -> _ContinuingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(self.log_dir, self.keep_rows)
        return self._experiment
