"""Reading run folders: every evaluation of every run, and the runs that did not finish.

The evaluation history is ``summary.json``'s ``eval_history`` (written by
:class:`s2ac_lit.trainer.callbacks.RunSummary`; it survives a resume because it is checkpointed).
Wall times come from the TensorBoard events of ``eval/return_mean``: seconds since the run's first
logged event (a resumed run's time includes the pause).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from s2ac_lit.benchmark.runner import LOG_FILE, SUMMARY_FILE, RunSpec, log_tail, read_summary

EVAL_TAG = "eval/return_mean"
COLUMNS = (
    "algorithm",
    "task",
    "seed",
    "frames",
    "updates",
    "return_mean",
    "return_std",
    "wall_time_s",
)


@dataclass(frozen=True)
class Missing:
    """A planned run without a complete summary: never started, failed or interrupted."""

    key: str
    state: str
    log_tail: str


def _eval_wall_times(folder: Path) -> dict[int, float]:
    """``updates → seconds since the first event`` of each evaluation (empty if no events)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = folder / "logs" / "tensorboard"
    if not events.is_dir():
        return {}
    acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags().get("scalars", [])
    if EVAL_TAG not in tags:
        return {}
    start = min(e.wall_time for tag in tags for e in acc.Scalars(tag)[:1])
    return {e.step: round(e.wall_time - start, 1) for e in acc.Scalars(EVAL_TAG)}


def _history_until(folder: Path, frames: int) -> list[dict] | None:
    """Evaluations at or before ``frames`` of a run that has reached ``frames``, else ``None``.

    Unfinished runs count too: a run stopped by a signal writes its summary (with the frames it
    reached) before it exits, and only its evaluations up to ``frames`` are used.
    """
    summary = read_summary(folder, frames)
    if summary is None:
        return None
    return [e for e in summary["eval_history"] if e["frames"] <= frames]


def collect(
    specs: list[RunSpec], out: Path, *, at_frames: int | None = None
) -> tuple[list[dict], list[Missing]]:
    """Rows of ``runs.csv`` (one per evaluation) and the planned runs that have no result.

    Args:
        at_frames: compare at this budget instead of each task's own: every run that has
            reached it (finished or not) contributes its evaluations up to it, so a long suite
            can be read while it runs or after it was stopped.
    """
    rows, missing = [], []
    for spec in specs:
        folder = spec.folder(out)
        if at_frames is None:
            summary = read_summary(folder, spec.frames)
            history = None if summary is None else summary["eval_history"]
        else:
            history = _history_until(folder, at_frames)
        if history is None:
            if not folder.is_dir():
                missing.append(Missing(spec.key, "not run", ""))
            else:
                state = "failed" if (folder / LOG_FILE).is_file() else "interrupted"
                if at_frames is not None and (folder / SUMMARY_FILE).is_file():
                    state = f"short of {at_frames} frames"
                missing.append(Missing(spec.key, state, log_tail(folder)))
            continue
        walls = _eval_wall_times(folder)
        for record in history:
            rows.append(
                {
                    "algorithm": spec.algo,
                    "task": spec.task,
                    "seed": spec.seed,
                    "frames": record["frames"],
                    "updates": record["updates"],
                    "return_mean": record["return_mean"],
                    "return_std": record["return_std"],
                    "wall_time_s": walls.get(record["updates"], ""),
                }
            )
    return rows, missing


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
