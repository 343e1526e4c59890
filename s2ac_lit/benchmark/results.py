"""Reading run folders: every evaluation of every run, and the runs that did not finish.

Runs finished on another machine come from the report folder it wrote (:class:`Earlier`,
``tools/benchmark.py --prior``): its ``runs.csv`` holds every evaluation, so a study whose
output folder is gone with its machine goes on elsewhere from what was committed.

The evaluation history is ``summary.json``'s ``eval_history`` (written by
:class:`s2ac_lit.trainer.callbacks.RunSummary`; it survives a resume because it is checkpointed).
Wall times come from the TensorBoard events of ``eval/return_mean``: training seconds since the
run's first logged event, summed over its attempts, so a run resumed in a later session does not
count the time it lay stopped (:func:`training_seconds`).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s2ac_lit.benchmark.runner import (
    LOG_FILE,
    SUMMARY_FILE,
    RunSpec,
    log_tail,
    read_summary,
    run_key,
)
from s2ac_lit.errors import UsageError
from s2ac_lit.trainer.interrupts import STOPPED_LINE
from s2ac_lit.trainer.layout import GOAL_MAP_JSON, LOCK_NAME, MACHINE_PACKAGES

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


RUNS_CSV = "runs.csv"
GOALS_CSV = "goals.csv"
SOFTWARE_CSV = "software.csv"


@dataclass(frozen=True)
class Missing:
    """A planned run without a complete summary: never started, failed or interrupted."""

    key: str
    state: str
    log_tail: str


def unfinished_state(folder: Path, tail: str) -> str:
    """What became of a started run without a finished summary, from its folder and the tail
    of its log: ``running`` (a fit process holds the folder), ``stopped by SIGINT at update
    N`` (its last attempt ended with the graceful stop's line: rerunning the suite resumes it),
    ``failed`` (its log ends otherwise) or ``interrupted`` (no log: killed before it wrote
    one)."""
    if (folder / LOCK_NAME).is_file():
        return "running"
    if not (folder / LOG_FILE).is_file():
        return "interrupted"
    last = next((line for line in reversed(tail.splitlines()) if line.strip()), "")
    stopped = STOPPED_LINE.match(last)
    if stopped is None:
        return "failed"
    signal_name, updates = stopped.groups()
    return f"stopped by {signal_name} at update {updates}; rerunning the suite resumes it"


def _attempt_scalars(events_file: Path) -> tuple[float, float, dict[int, float]] | None:
    """One attempt's TensorBoard file: its first and last scalar's wall time and the wall time
    of each evaluation by update (``None`` if it logged no scalar)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events_file), size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags().get("scalars", [])
    times = [e.wall_time for tag in tags for e in acc.Scalars(tag)]
    if not times:
        return None
    evaluations = {e.step: e.wall_time for e in acc.Scalars(EVAL_TAG)} if EVAL_TAG in tags else {}
    return min(times), max(times), evaluations


def training_seconds(attempts: list[tuple[float, float, dict[int, float]]]) -> dict[int, float]:
    """``update → training seconds`` at each evaluation, from each attempt's ``(first, last,
    {update: time})``: the seconds from its attempt's first scalar plus the whole span of every
    earlier attempt, so the time a run spent stopped between attempts is not counted.
    An evaluation logged again by a later attempt (it resumed from a checkpoint before it)
    takes the later attempt's time.

    Examples:
        >>> training_seconds([(5000.0, 5040.0, {20: 5030.0}), (1000.0, 1020.0, {10: 1010.0})])
        {10: 10.0, 20: 50.0}
    """
    seconds, before = {}, 0.0
    for first, last, evaluations in sorted(attempts, key=lambda attempt: attempt[0]):
        seconds.update({step: round(before + t - first, 1) for step, t in evaluations.items()})
        before += last - first
    return seconds


def _eval_wall_times(folder: Path) -> dict[int, float]:
    """``update → training seconds`` at each evaluation (empty if no events). Every attempt
    (the first run and each resume) writes its own events file; see :func:`training_seconds`."""
    files = sorted((folder / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    return training_seconds([a for a in map(_attempt_scalars, files) if a is not None])


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
    specs: list[RunSpec],
    out: Path,
    *,
    at_frames: int | None = None,
    earlier: Earlier | None = None,
) -> tuple[list[dict], list[Missing], list[str]]:
    """Rows of ``runs.csv`` (one per evaluation), the planned runs that have no result, and
    the keys of the runs whose rows came from ``earlier``.

    Args:
        at_frames: compare at this budget instead of each task's own: every run that has
            reached it (finished or not) contributes its evaluations up to it, so a long suite
            can be read while it runs or after it was stopped.
        earlier: runs finished elsewhere; a run without a result in ``out`` takes its rows
            from there (a run in both keeps ``out``'s).
    """
    rows, missing, from_earlier = [], [], []
    for spec in specs:
        folder = spec.folder(out)
        if at_frames is None:
            summary = read_summary(folder, spec.frames)
            history = None if summary is None else summary["eval_history"]
        else:
            history = _history_until(folder, at_frames)
        if history is None and earlier is not None:
            copied = earlier.rows(spec, at_frames)
            if copied is not None:
                rows += copied
                from_earlier.append(spec.key)
                continue
        if history is None:
            if not folder.is_dir():
                missing.append(Missing(spec.key, "not run", ""))
            else:
                tail = log_tail(folder)
                state = unfinished_state(folder, tail)
                if at_frames is not None and (folder / SUMMARY_FILE).is_file():
                    state = f"short of {at_frames} frames"
                missing.append(Missing(spec.key, state, tail))
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
    return rows, missing, from_earlier


def write_csv(rows: list[dict], path: Path, columns: tuple[str, ...] = COLUMNS) -> None:
    """A CSV of ``rows`` with ``columns`` (default: ``runs.csv``'s; ``None`` as an empty
    cell)."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


GOAL_COLUMNS = (
    "algorithm",
    "task",
    "seed",
    "episodes",
    "goals",
    "goals_reached",
    "hit_entropy",
    "miss_rate",
)


def hit_entropy(rates: list[float]) -> float:
    """Entropy (nats) of the distribution of hits over goals: how evenly the episodes that
    reached a goal spread over the goals (0: one goal; ln G: all G equally); NaN without hits.

    Examples:
        >>> round(hit_entropy([0.5, 0.5, 0.0]), 4), round(math.log(2), 4)
        (0.6931, 0.6931)
    """
    total = sum(rates)
    if total <= 0:
        return math.nan
    return -sum(r / total * math.log(r / total) for r in rates if r > 0)


def goal_rows(specs: list[RunSpec], out: Path, earlier: Earlier | None = None) -> list[dict]:
    """One row per run with a goal map (multigoal runs, written when the run ends): the hit
    rate of each goal (``G1``, ...), the goals reached, the entropy of the hits, the misses.
    A run without a goal map in ``out`` takes its row from ``earlier`` where it has one."""
    rows = []
    for spec in specs:
        path = spec.folder(out) / GOAL_MAP_JSON
        try:
            goal_map = json.loads(path.read_text())
        except (OSError, ValueError):
            if earlier is not None and spec.key in earlier.goals:
                rows.append(earlier.goals[spec.key])
            continue
        rates = {k: float(v) for k, v in goal_map.items() if k.startswith("G")}
        values = list(rates.values())
        rows.append(
            {
                "algorithm": spec.algo,
                "task": spec.task,
                "seed": spec.seed,
                "episodes": goal_map.get("episodes"),
                "goals": len(rates),
                "goals_reached": sum(v > 0 for v in values),
                "hit_entropy": hit_entropy(values),
                "miss_rate": 1.0 - sum(values),
                **rates,
            }
        )
    return rows


def write_goals_csv(rows: list[dict], path: Path) -> None:
    """``goals.csv``: :func:`goal_rows`, the hit rate columns after the fixed ones."""
    hits = sorted({k for row in rows for k in row if k not in GOAL_COLUMNS})
    write_csv(rows, path, (*GOAL_COLUMNS, *hits))


SOFTWARE_COLUMNS = (
    "algorithm",
    "task",
    "seed",
    "s2ac_lit",
    "commit",
    "dirty",
    "python",
    *MACHINE_PACKAGES,
    "machine",
    "cpu",
    "gpu",
    "threads",
)


def software_rows(
    specs: list[RunSpec],
    out: Path,
    rows: list[dict],
    earlier: Earlier | None = None,
    from_earlier: Collection[str] = (),
) -> list[dict]:
    """One row per run that has rows: the code, package versions and machine that ran it
    (``summary.json``'s ``code`` and ``machine``), from where its rows came: ``earlier`` for
    the runs of ``from_earlier`` (:func:`collect`), else its run folder in ``out``. A run whose
    summary predates that record has no row."""
    reported = {run_key(r["task"], r["algorithm"], r["seed"]) for r in rows}
    table = []
    for spec in specs:
        if spec.key not in reported:
            continue
        if spec.key in from_earlier:
            if earlier is not None and spec.key in earlier.software:
                table.append(earlier.software[spec.key])
            continue
        summary = read_summary(spec.folder(out), 0) or {}
        if "machine" in summary:
            record = {**summary["code"], **summary["machine"]}
            row = {"algorithm": spec.algo, "task": spec.task, "seed": spec.seed}
            table.append(row | {c: record.get(c) for c in SOFTWARE_COLUMNS[3:]})
    return table


# ---------------------------------------------------------------------------- earlier results
RUN_TYPES = {"seed": int, "frames": int, "updates": int, "return_mean": float}
RUN_TYPES |= {"return_std": float, "wall_time_s": float}
GOAL_TYPES = {"seed": int, "episodes": int, "goals": int, "goals_reached": int}
GOAL_TYPES |= {"hit_entropy": float, "miss_rate": float}
MAY_BE_EMPTY = {"wall_time_s", "episodes"}  # written as "" where a run had no value
HIT_RATE_PREFIX = "G"  # goals.csv's extra columns: G1, G2, ... (goal_rows)


def _flag(text: str) -> bool:
    """A bool as ``csv`` writes it (``dirty``)."""
    if text not in ("True", "False"):
        raise ValueError(text)
    return text == "True"


SOFTWARE_TYPES = {"seed": int, "dirty": _flag, "threads": int}
EXPECTED = {int: "a number (int)", float: "a number (float)", _flag: "True or False"}


def _read_table(
    path: Path,
    columns: tuple[str, ...],
    types: dict[str, Callable[[str], Any]],
    empty_is_none: bool = False,
) -> list[dict]:
    """The rows of a CSV this module wrote (:func:`write_csv`, :func:`write_goals_csv`),
    each cell back to the type it was written from; ``columns`` then, for ``goals.csv``, hit
    rate columns ``G1``, ... An empty cell stays ``""`` in ``MAY_BE_EMPTY``'s columns, or is
    ``None`` everywhere with ``empty_is_none`` (``software.csv``, written from ``None``).
    Raises :class:`UsageError` naming the file, line and value."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        extra = header[len(columns) :]
        hit_rates = columns == GOAL_COLUMNS and all(c.startswith(HIT_RATE_PREFIX) for c in extra)
        if header[: len(columns)] != list(columns) or (extra and not hit_rates):
            raise UsageError(
                f"{str(path)!r}: columns {header} are not those the harness writes "
                f"({', '.join(columns)}{', G1, ...' if columns == GOAL_COLUMNS else ''})"
            )
        rows = []
        for line, raw in enumerate(reader, start=2):
            if None in raw or None in raw.values():
                raise UsageError(f"{str(path)!r} line {line}: {len(header)} cells expected")
            row: dict = {}
            for name, text in raw.items():
                kind = types.get(name, float if name in extra else str)
                if text == "" and empty_is_none:
                    row[name] = None
                    continue
                if kind is str or (text == "" and name in MAY_BE_EMPTY):
                    row[name] = text
                    continue
                try:
                    row[name] = kind(text)
                except ValueError:
                    raise UsageError(
                        f"{str(path)!r} line {line}: {name}={text!r} is not {EXPECTED[kind]}"
                    ) from None
            rows.append(row)
    return rows


@dataclass(frozen=True)
class Earlier:
    """Runs of a report folder written earlier (``--prior``), e.g. a study's results committed
    to the repository from a machine that is gone: its ``runs.csv`` (every evaluation, with
    the training seconds it was measured at), ``goals.csv`` (multigoal runs) and
    ``software.csv`` (what ran each run), by run key.

    A run of it counts as finished for a budget when its last evaluation reached that budget
    (a ``runs.csv`` written with ``--at-frames`` also holds runs cut short)."""

    folder: Path
    history: dict[str, list[dict]]
    goals: dict[str, dict]
    software: dict[str, dict]

    @classmethod
    def read(cls, folder: Path) -> Earlier:
        """Raises :class:`UsageError` when ``folder`` holds no ``runs.csv`` or a bad one."""
        runs = folder / RUNS_CSV
        if not runs.is_file():
            raise UsageError(
                f"--prior {str(folder)!r} has no {RUNS_CSV}: give a folder a report was "
                "written to (--out, or --report-dir such as docs/results/<suite>)"
            )
        history: dict[str, list[dict]] = {}
        for row in _read_table(runs, COLUMNS, RUN_TYPES):
            key = run_key(row["task"], row["algorithm"], row["seed"])
            history.setdefault(key, []).append(row)
        by_run = {}
        for name, columns, types, empty_is_none in (
            (GOALS_CSV, GOAL_COLUMNS, GOAL_TYPES, False),
            (SOFTWARE_CSV, SOFTWARE_COLUMNS, SOFTWARE_TYPES, True),
        ):
            path = folder / name
            rows = _read_table(path, columns, types, empty_is_none) if path.is_file() else []
            by_run[name] = {run_key(r["task"], r["algorithm"], r["seed"]): r for r in rows}
        return cls(folder, history, by_run[GOALS_CSV], by_run[SOFTWARE_CSV])

    def rows(self, spec: RunSpec, at_frames: int | None = None) -> list[dict] | None:
        """The run's evaluations up to its budget (``at_frames``, else the task's), or
        ``None`` if it is not here or stopped short of that budget."""
        budget = spec.frames if at_frames is None else at_frames
        history = self.history.get(spec.key, [])
        if not history or max(row["frames"] for row in history) < budget:
            return None
        return [row for row in history if row["frames"] <= budget]

    def finished(self, specs: list[RunSpec]) -> set[str]:
        """Keys of the runs of ``specs`` finished here: not to be run again."""
        return {spec.key for spec in specs if self.rows(spec) is not None}
