"""Scheduling runs on Ray: a local instance by default, or an existing cluster.

Each run is a Ray task (``num_cpus`` = the run's torch threads, ``num_gpus`` = a fraction of
a GPU) that starts one ``tools/fit.py`` process (:mod:`s2ac_lit.benchmark.runner`). The driver
keeps at most ``workers`` tasks in flight, prints a line per finished run and an overall bar
(runs done / total, elapsed, ETA). Ray is imported here only, so aggregation works without it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tqdm import tqdm

from s2ac_lit.benchmark.runner import RunResult, RunSpec, read_summary, run
from s2ac_lit.console import quiet_third_party


def _describe(result: RunResult) -> str:
    if result.status == "failed":
        first = result.log_tail.splitlines()[0] if result.log_tail else ""
        return f"FAILED {result.key} after {result.wall_s:.0f} s ({first}; see its run.log)"
    summary = result.summary or {}
    ret = summary.get("final_eval_return_mean")
    ret_text = "n/a" if ret is None else f"{ret:.1f}"
    return (
        f"{result.status} {result.key}: return {ret_text}, {summary.get('frames')} frames, "
        f"{result.wall_s:.0f} s"
    )


def _ray_results(
    specs: list[RunSpec],
    out: Path,
    *,
    workers: int,
    threads: int,
    gpus_per_run: float,
    address: str | None,
) -> Iterator[RunResult]:
    """Results in completion order; Ray is started here and shut down when the loop ends."""
    import ray

    quiet_third_party()
    if address is None:
        ray.init(
            num_cpus=workers * threads,
            object_store_memory=80 * 1024**2,  # results are tiny; keep Ray's shared memory small
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,  # run output goes to each run.log, not to our console
        )
    else:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    try:
        remote = ray.remote(run).options(
            num_cpus=threads, num_gpus=gpus_per_run, max_retries=0, name="benchmark-run"
        )
        pending = list(specs)
        in_flight: dict = {}  # object ref → (spec, start time)
        while pending or in_flight:
            while pending and len(in_flight) < workers:
                spec = pending.pop(0)
                in_flight[remote.remote(spec, out)] = (spec, time.perf_counter())
            (done,), _ = ray.wait(list(in_flight), num_returns=1)
            spec, start = in_flight.pop(done)
            try:
                yield ray.get(done)
            except ray.exceptions.RayError as error:
                # Ray lost the task itself (its memory monitor killed the worker, the node died):
                # that run failed, the others go on; a rerun resumes it from its checkpoint.
                first = str(error).strip().splitlines()[0] if str(error).strip() else ""
                wall = time.perf_counter() - start
                yield RunResult(spec.key, "failed", wall, None, f"{type(error).__name__}: {first}")
    finally:
        ray.shutdown()


def execute(
    specs: list[RunSpec],
    out: Path,
    *,
    workers: int,
    threads: int,
    gpus_per_run: float = 0.0,
    address: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> list[RunResult]:
    """Run every spec not finished yet; returns the results of the runs started here."""
    todo = [s for s in specs if read_summary(s.folder(out), s.frames) is None]
    skipped = len(specs) - len(todo)
    bar = tqdm(total=len(specs), initial=skipped, unit="run", dynamic_ncols=True, smoothing=0)
    write = echo or bar.write
    write(
        f"{len(specs)} runs: {skipped} already finished, {len(todo)} to run "
        f"({workers} at once, {threads} thread(s) each)"
    )
    results = []
    try:
        if todo:
            stream = _ray_results(
                todo,
                out,
                workers=workers,
                threads=threads,
                gpus_per_run=gpus_per_run,
                address=address,
            )
            for result in stream:
                results.append(result)
                write(_describe(result))
                bar.update(1)
    finally:
        bar.close()
    return results
