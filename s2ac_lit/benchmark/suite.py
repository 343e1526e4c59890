"""Suite files: the schema of ``conf/suites/*.yaml`` and the plan of runs it implies.

A suite names tasks (preset, frame budget, evaluation interval, normalisation scores with their
sources) and algorithms (config overrides). Every (algorithm, task, seed) is one run in
``OUT/runs/<task>/<algo>/seed-<k>``. The schema is an omegaconf structured config, so unknown
keys and wrong types fail with one line naming the key; :func:`load_suite` then checks the
values (counts, scores, the baseline) before anything runs.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from s2ac_lit.algorithms import check_config
from s2ac_lit.benchmark.runner import RunSpec
from s2ac_lit.config import ConfigError, failing_key, load_config, load_yaml, to_yaml
from s2ac_lit.envs import check_env_id
from s2ac_lit.errors import UsageError

REPO = Path(__file__).resolve().parents[2]
"""Presets are looked up relative to the working directory, then to the repository root."""


SCORES = ("return", "goals")
"""How a task scores a run (``TaskSpec.score``)."""


class SuiteError(UsageError, ValueError):
    """A suite file, algorithm name, override or harness flag is invalid."""


@dataclass
class TaskSpec:
    preset: str = MISSING
    """YAML preset from conf/ (path relative to the repository root)."""
    frames: int = MISSING
    """collector.total_frames of every run of this task."""
    eval_every: int = MISSING
    """eval.every_frames: the points of the sample-efficiency curves."""
    random_score: float = MISSING
    """Return of a uniformly random policy (score 0 after normalisation)."""
    random_source: str = MISSING
    """Where random_score comes from (measured here, or a cited source)."""
    reference_score: float = MISSING
    """Return that normalises to 1 (an expert or published score)."""
    reference_source: str = MISSING
    """Where reference_score comes from."""
    overrides: list[str] = field(default_factory=list)
    """Extra key=value overrides of this task's runs."""
    score: str = "return"
    """What a run's final score is: 'return' (the final evaluation's return, normalised by
    random_score and reference_score) or 'goals' (multigoal maps: the fraction of the goals
    the final policy reaches in its goal map's sampled episodes; the return is shown beside)."""
    for_algo: dict[str, list[str]] = field(default_factory=dict)
    """Overrides of this task's runs of one algorithm (a key of ``algos``), after ``overrides``."""


@dataclass
class AlgoSpec:
    overrides: list[str] = field(default_factory=list)
    """key=value overrides that select the algorithm, e.g. [algo=sac]."""
    preset: str = ""
    """An algorithm preset (conf/algo/), merged after the task's preset, before overrides."""
    label: str = ""
    """Name in tables and figures (default: the key)."""
    seeds: int | None = None
    """Seeds 0..seeds-1 of this algorithm (default: the suite's ``seeds``)."""
    tasks: list[str] | None = None
    """The suite's tasks this algorithm runs (default: all). An algorithm without every task
    has no overall (across-task) aggregate; its per-task statistics stand beside the others'."""


@dataclass
class Suite:
    name: str = MISSING
    """Short name, used in the report title."""
    description: str = ""
    """What the suite measures and how long it takes."""
    seeds: int = 5
    """Seeds 0..seeds-1 of every (algorithm, task)."""
    baseline: str = "sac"
    """Algorithm that probability of improvement compares against."""
    overrides: list[str] = field(default_factory=list)
    """key=value overrides of every run (e.g. trainer.threads=1)."""
    algos: dict[str, AlgoSpec] = field(default_factory=dict)
    tasks: dict[str, TaskSpec] = field(default_factory=dict)


# Every run: the harness prints its own progress lines instead of Lightning's bar, and runs
# one run per CPU (more runs in flight use a machine's cores better than more threads per run;
# a suite or --set may change it, to a number: Ray reserves that many CPUs per run).
RUN_DEFAULTS = ("trainer.progress_bar=false", "trainer.threads=1")


def load_suite(path: str | Path) -> Suite:
    """The typed suite of a YAML file, or :class:`SuiteError` naming the bad key or file."""
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"suite file {str(path)!r} does not exist")
    try:
        data = load_yaml(path, "suite file")
    except ConfigError as error:
        raise SuiteError(str(error)) from None
    schema = OmegaConf.structured(Suite)
    try:
        suite = OmegaConf.to_object(OmegaConf.merge(schema, data))
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or failing_key(schema, data)
        raise SuiteError(f"{path}: bad suite key {key!r}: {str(error).splitlines()[0]}") from None
    assert isinstance(suite, Suite)
    check_suite(suite, path)
    return suite


def check_suite(suite: Suite, path: Path) -> None:
    """Raise :class:`SuiteError` naming the key of a value a suite cannot run or report with."""
    if not suite.algos or not suite.tasks:
        raise SuiteError(f"{path}: a suite needs at least one algorithm and one task")
    if suite.seeds < 1:
        raise SuiteError(f"{path}: seeds={suite.seeds} must be >= 1")
    if suite.baseline not in suite.algos:
        raise SuiteError(
            f"{path}: baseline={suite.baseline!r} is not an algorithm of the suite; allowed: "
            f"{sorted(suite.algos)}"
        )
    for name, algo in suite.algos.items():
        if algo.seeds is not None and algo.seeds < 1:
            raise SuiteError(f"{path}: algos.{name}.seeds={algo.seeds} must be >= 1, or null")
        if algo.tasks is not None:
            unknown = sorted(set(algo.tasks) - set(suite.tasks))
            if unknown or not algo.tasks:
                raise SuiteError(
                    f"{path}: algos.{name}.tasks={algo.tasks} must name tasks of the suite; "
                    f"allowed: {sorted(suite.tasks)}, or null for all"
                )
    for name, task in suite.tasks.items():
        where = f"{path}: tasks.{name}"
        if task.score not in SCORES:
            raise SuiteError(f"{where}.score={task.score!r} is not allowed; allowed: {SCORES}")
        if task.frames < 1:
            raise SuiteError(f"{where}.frames={task.frames} must be >= 1")
        if task.eval_every < 0:
            raise SuiteError(f"{where}.eval_every={task.eval_every} must be >= 0")
        for key in ("random_score", "reference_score"):
            if not math.isfinite(getattr(task, key)):
                raise SuiteError(f"{where}.{key}={getattr(task, key)} must be a finite number")
        if task.reference_score <= task.random_score:
            raise SuiteError(
                f"{where}.reference_score={task.reference_score} must be above "
                f"random_score={task.random_score}: scores are normalised as (return - random) / "
                "(reference - random)"
            )
        unknown = sorted(set(task.for_algo) - set(suite.algos))
        if unknown:
            raise SuiteError(
                f"{where}.for_algo names {unknown}, which are not algorithms of the suite; "
                f"allowed: {sorted(suite.algos)}"
            )


def resolve_preset(preset: str) -> Path:
    """The preset file, relative to the working directory or to the repository root."""
    for candidate in (Path(preset), REPO / preset):
        if candidate.is_file():
            return candidate
    raise SuiteError(f"preset {preset!r} does not exist (looked in . and the repository root)")


def select(names: list[str] | None, allowed: list[str], what: str) -> list[str]:
    """``names`` checked against the suite's ``allowed`` algorithms or tasks, or all of them."""
    if not names:
        return allowed
    for name in names:
        if name not in allowed:
            hint = difflib.get_close_matches(name, allowed, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise SuiteError(f"unknown {what} {name!r}{extra}; allowed: {allowed}")
    return names


def select_algos(suite: Suite, names: list[str] | None) -> list[str]:
    """The algorithms to run: ``names`` (checked against the suite) or all of them."""
    return select(names, list(suite.algos), "algorithm")


def plan(
    suite: Suite,
    *,
    algos: list[str],
    seeds: int | list[int] | None = None,
    extra: list[str] | None = None,
    tasks: list[str] | None = None,
) -> list[RunSpec]:
    """Every (algorithm, task, seed) with its overrides, each config validated now.

    Presets: the task's, then the algorithm's (if any). Override order (later wins): run
    defaults, suite, task budget, task, algorithm, ``extra`` (the command line's ``--set``);
    then the seed: ``seeds`` is a count (seeds 0..N-1) or a list of seeds, e.g. more seeds for
    a finished suite; None takes each algorithm's ``seeds`` (or the suite's). ``tasks``
    (default: all) is checked against the suite. Runs come seed by seed (every task and
    algorithm of seed 0 first), so that a suite stopped early compares all algorithms. A bad
    key or value raises :class:`SuiteError` before anything runs, as does a key the run's
    algorithm does not read (S2AC's ``svgd.*`` for SAC): settings of one algorithm go into
    its ``overrides``, a task's ``for_algo`` or a preset's ``for_algo`` section.
    """
    runs = []
    for task_name in select(tasks, list(suite.tasks), "task"):
        task = suite.tasks[task_name]
        for algo in algos:
            if suite.algos[algo].tasks is not None and task_name not in suite.algos[algo].tasks:
                continue
            presets = [resolve_preset(task.preset)]
            if suite.algos[algo].preset:
                presets.append(resolve_preset(suite.algos[algo].preset))
            overrides = (
                *RUN_DEFAULTS,
                *suite.overrides,
                f"collector.total_frames={task.frames}",
                f"eval.every_frames={task.eval_every}",
                *task.overrides,
                *task.for_algo.get(algo, []),
                *suite.algos[algo].overrides,
                *(extra or []),
            )
            try:
                cfg = check_config(load_config(presets, list(overrides)))
                check_env_id(cfg.env.id)
            except (ConfigError, ValueError) as error:
                raise SuiteError(f"task {task_name!r}, algorithm {algo!r}: {error}") from None
            algo_seeds = seeds if seeds is not None else suite.algos[algo].seeds or suite.seeds
            for seed in range(algo_seeds) if isinstance(algo_seeds, int) else algo_seeds:
                cfg.seed = seed
                cfg.run_dir = str(Path("runs") / task_name / algo)  # informative only
                cfg.name = f"seed-{seed}"
                runs.append(RunSpec(algo, task_name, seed, task.frames, to_yaml(cfg)))
    return sorted(runs, key=lambda run: run.seed)  # stable: tasks and algorithms keep order
