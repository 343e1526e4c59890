"""``tools/benchmark.py``: run a suite (resumable, on Ray) and write its rliable report.

Exit status: 0 when every run finished, 2 for bad input (one ``error:`` line on stderr, the
path every tool takes: :mod:`s2ac_lit.errors`), 128 + the
signal when SIGINT (130) or SIGTERM (143) stopped it, and 100 + the number of failed runs
otherwise (capped at 254).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import signal
import sys
import time
from pathlib import Path

from s2ac_lit.benchmark import report
from s2ac_lit.benchmark.executor import Stopped, execute
from s2ac_lit.benchmark.results import (
    GOALS_CSV,
    RUNS_CSV,
    SOFTWARE_COLUMNS,
    SOFTWARE_CSV,
    Earlier,
    collect,
    goal_rows,
    software_rows,
    write_csv,
    write_goals_csv,
)
from s2ac_lit.benchmark.suite import SuiteError, load_suite, plan, select_algos
from s2ac_lit.errors import UsageError, cli

FAILED_BASE = 100


def _seeds(text: str) -> int | list[int]:
    """``--seeds``: a count N >= 1 (seeds 0..N-1), or seeds >= 0 by list and inclusive range,
    each distinct: ``5,6,7``, ``5-9``, ``3-3`` (seed 3 alone), ``0,4-6``."""
    if text.isdigit() and int(text) >= 1:
        return int(text)
    seeds: list[int] = []
    for part in text.split(","):
        first, dash, last = part.partition("-")
        if not (first.isdigit() and (last.isdigit() if dash else not last)):
            seeds = []
            break
        seeds += range(int(first), int(last if dash else first) + 1)
    if ("," in text or "-" in text) and seeds and len(set(seeds)) == len(seeds):
        return seeds
    raise argparse.ArgumentTypeError(
        f"{text!r} is neither a count >= 1 nor distinct seeds >= 0 by list and range, such as "
        "3,4 or 5-9 (3-3: seed 3 alone)"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="benchmark.py",
        description="Algorithms × tasks × seeds with the Lightning trainer, on a local Ray "
        "instance or a Ray cluster; resumable; aggregated with rliable.",
    )
    p.add_argument("--suite", required=True, help="suite file, e.g. conf/suites/cpu_small.yaml")
    p.add_argument("--out", type=Path, required=True, help="output folder (runs, report)")
    p.add_argument("--algos", help="comma-separated subset of the suite's algorithms")
    p.add_argument("--tasks", help="comma-separated subset of the suite's tasks")
    p.add_argument(
        "--seeds",
        type=_seeds,
        help="N for seeds 0..N-1 (default: each algorithm's, or the suite's), or seeds by list "
        "and range to add or pick some: 5,6,7 or 5-9 or 3-3 (seed 3 alone)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override of every run (repeatable), e.g. --set trainer.threads=2",
    )
    p.add_argument("--workers", type=int, default=1, help="runs at once (default 1)")
    p.add_argument("--ray-address", help="join this Ray cluster (e.g. auto or HOST:6379)")
    p.add_argument(
        "--gpus-per-run",
        type=float,
        default=0.0,
        help="GPUs of a run: a fraction below 1 (runs share a GPU) or a whole number",
    )
    p.add_argument(
        "--stop-timeout",
        type=float,
        default=180.0,
        metavar="SECONDS",
        help="on SIGINT or SIGTERM, how long runs in flight get to checkpoint and exit "
        "(default 180)",
    )
    p.add_argument(
        "--prior",
        type=Path,
        metavar="DIR",
        help="a report folder written earlier for this suite (its runs.csv, goals.csv and "
        "software.csv), e.g. docs/results/<suite> committed from a machine that is gone: its "
        "finished runs are not run again and are reported with those in --out",
    )
    p.add_argument("--reps", type=int, default=2000, help="bootstrap replications")
    p.add_argument("--report-only", action="store_true", help="aggregate without training")
    p.add_argument(
        "--report-dir",
        type=Path,
        help="where runs.csv, goals.csv, software.csv, aggregate.json, report.md and the "
        "figures go (default: --out), e.g. a results folder of the repository",
    )
    p.add_argument(
        "--at-frames",
        type=int,
        help="report at this frame budget: every run that reached it, finished or not",
    )
    return p.parse_args(argv)


@cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_flags(args)
    check_out(args.out, report_only=args.report_only)
    if args.report_dir is not None:
        check_out(args.report_dir, report_only=False, flag="--report-dir")
    if not args.report_only:
        check_gpus(args.gpus_per_run, args.ray_address)
    suite = load_suite(args.suite)
    algos = select_algos(suite, args.algos.split(",") if args.algos else None)
    tasks = args.tasks.split(",") if args.tasks else None
    specs = plan(suite, algos=algos, seeds=args.seeds, extra=args.overrides, tasks=tasks)
    earlier = Earlier.read(args.prior) if args.prior is not None else None
    threads = max(1, max(_threads(s.config_yaml) for s in specs))
    if not args.report_only and importlib.util.find_spec("ray") is None:
        raise UsageError("running a suite needs Ray: pip install -e '.[ray]'")
    start = time.perf_counter()
    if not args.report_only:
        args.out.mkdir(parents=True, exist_ok=True)
        # While Ray is up, SIGINT and SIGTERM stop the runs gracefully (executor); before that,
        # SIGTERM (a scheduler's stop, kill) unwinds like Ctrl-C.
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        try:
            execute(
                specs,
                args.out,
                workers=args.workers,
                threads=threads,
                gpus_per_run=args.gpus_per_run,
                address=args.ray_address,
                stop_timeout=args.stop_timeout,
                finished_earlier=earlier.finished(specs) if earlier else frozenset(),
            )
        except Stopped as stop:
            print(stop, file=sys.stderr)
            return stop.exit_code
        finally:
            signal.signal(signal.SIGTERM, previous)
    rows, missing, from_earlier = collect(
        specs, args.out, at_frames=args.at_frames, earlier=earlier
    )
    if args.report_only and not rows and all(m.state == "not run" for m in missing):
        prior = "" if earlier is None else f" and --prior {str(args.prior)!r} no finished one"
        raise UsageError(
            f"--report-only: {str(args.out / 'runs')!r} holds no run of this suite{prior}; "
            "nothing to report (run the suite first, without --report-only)"
        )
    report_dir = args.report_dir or args.out
    report_dir.mkdir(parents=True, exist_ok=True)
    write_csv(rows, report_dir / RUNS_CSV)
    goals = goal_rows(specs, args.out, earlier)
    if goals:
        write_goals_csv(goals, report_dir / GOALS_CSV)
    software = software_rows(specs, args.out, rows, earlier, from_earlier)
    write_csv(software, report_dir / SOFTWARE_CSV, SOFTWARE_COLUMNS)
    report.write(
        rows,
        suite,
        algos,
        missing,
        report_dir,
        reps=args.reps,
        at_frames=args.at_frames,
        tasks=sorted({s.task for s in specs}, key=list(suite.tasks).index),
        goals=goals,
        from_earlier=from_earlier,
        software=software,
    )
    failed = [m for m in missing if m.state != "not run"]
    print(
        f"{len(specs) - len(missing)}/{len(specs)} runs finished, {len(failed)} failed or "
        f"interrupted; {time.perf_counter() - start:.0f} s; report in {report_dir / 'report.md'}"
    )
    if missing:
        return min(FAILED_BASE + len(missing), 254)
    return 0


def check_flags(args: argparse.Namespace) -> None:
    """Raise :class:`SuiteError` naming a numeric flag out of its range."""
    counts = {"--workers": args.workers, "--reps": args.reps, "--at-frames": args.at_frames}
    for flag, value in counts.items():
        if value is not None and value < 1:
            raise SuiteError(f"{flag}={value} must be >= 1")
    for flag, value, unit in (
        ("--gpus-per-run", args.gpus_per_run, ""),
        ("--stop-timeout", args.stop_timeout, " seconds"),
    ):
        if not (0 <= value < math.inf):
            raise SuiteError(f"{flag}={value} must be >= 0{unit} (a finite number)")


def check_out(out: Path, *, report_only: bool, flag: str = "--out") -> None:
    """Raise :class:`SuiteError` unless ``out`` is (or can become) a writable folder (with
    ``report_only``: an existing suite folder to read)."""
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise SuiteError(f"{flag} {str(out)!r}: {str(existing)!r} is a file, not a folder")
    if report_only and not out.is_dir():
        raise SuiteError(f"{flag} {str(out)!r} does not exist: --report-only reads a suite's runs")
    if not report_only and not os.access(existing, os.W_OK | os.X_OK):
        raise SuiteError(f"{flag} {str(out)!r}: folder {str(existing)!r} is not writable")


def check_gpus(gpus_per_run: float, ray_address: str | None) -> None:
    """Raise :class:`SuiteError` for a GPU request Ray could never schedule: more than 1 must
    be whole, and on this machine (no ``--ray-address``) at most its GPUs; otherwise every
    run would wait for resources forever. A cluster's nodes are not known before Ray joins it."""
    if gpus_per_run > 1 and not gpus_per_run.is_integer():
        raise SuiteError(
            f"--gpus-per-run={gpus_per_run:g}: above 1 Ray takes whole GPUs; allowed: a "
            "fraction below 1 or a whole number"
        )
    if ray_address is None and gpus_per_run > 0:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if gpus_per_run > gpus:
            raise SuiteError(
                f"--gpus-per-run={gpus_per_run:g} but this machine has {gpus} GPUs; no run "
                "could start (allowed: 0"
                + (f" to {gpus})" if gpus else ", or give --ray-address of a cluster with GPUs)")
            )


def _threads(config_yaml: str) -> int:
    """``trainer.threads`` of a resolved config: the CPUs a run asks Ray for, so it must be a
    number (``auto`` would take every CPU of whichever machine the run lands on)."""
    from omegaconf import OmegaConf

    threads = OmegaConf.create(config_yaml).trainer.threads
    if threads == "auto":
        raise SuiteError(
            "trainer.threads='auto' cannot be scheduled: each run reserves trainer.threads CPUs "
            "on Ray; give a number in the suite or with --set trainer.threads=N"
        )
    return int(threads)
