"""Scheduling runs on Ray: a local instance by default, or an existing cluster.

Each run is a Ray task (``num_cpus`` = the run's torch threads, ``num_gpus`` = a fraction of
a GPU) that starts one ``tools/fit.py`` process (:mod:`s2ac_lit.benchmark.runner`). The driver
keeps at most ``workers`` tasks in flight, prints a line per finished run and an overall bar
(runs done / total, elapsed, ETA). Ray is imported here only, so aggregation works without it.

Stopping (SIGINT or SIGTERM to the harness) is graceful: no new run starts, every run in flight
is cancelled with ``ray.cancel`` (``force=False``), which raises KeyboardInterrupt in its task on
whichever node runs it; the task forwards SIGINT to its fit process, which checkpoints its
current update and exits (:func:`s2ac_lit.benchmark.runner.run`). Ray is the channel because it
reaches the tasks wherever they run (a cluster with ``--ray-address`` included) and because
the cancelled task only completes once its fit process has exited, so waiting on its result is
waiting for the checkpoint. Ray's own shutdown would kill the processes and lose everything
since their last periodic checkpoint. The wait is bounded (``stop_timeout``); a second signal
stops at once.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

from tqdm import tqdm

from s2ac_lit.benchmark.runner import RunResult, RunSpec, read_summary, run
from s2ac_lit.trainer.console import quiet_third_party

POLL_S = 0.5  # how soon the driver notices a stop request


class Stopped(Exception):
    """The harness stopped on a signal; ``exit_code`` is 128 + the signal."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class _StopSignals:
    """SIGINT and SIGTERM handlers while Ray is up: the first signal asks for a graceful stop,
    a second one for a stop at once. They only take note: the driver's loops poll them (an
    exception raised in a handler while Ray's C++ code waits comes out as a SystemError)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self.again = False

    def _note(self, signum: int, frame) -> None:
        if self.signum is None:
            self.signum = signum
        else:
            self.again = True

    def install(self) -> None:
        for signum in self.SIGNALS:
            signal.signal(signum, self._note)


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


def _result(ray, ref, spec: RunSpec, start: float) -> RunResult:
    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:  # stopped before it started: nothing to lose
        return RunResult(spec.key, "stopped", 0.0, None)
    except ray.exceptions.RayError as error:
        # Ray lost the task itself (its memory monitor killed the worker, the node died):
        # that run failed, the others go on; a rerun resumes it from its checkpoint.
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        wall = time.perf_counter() - start
        return RunResult(spec.key, "failed", wall, None, f"{type(error).__name__}: {first}")


def _stop(
    ray, in_flight: dict, stop: _StopSignals, timeout: float, write: Callable[[str], None]
) -> Iterator[RunResult]:
    """Stop the runs in flight gracefully (module docstring), then raise :class:`Stopped`.

    Yields the runs that finished or failed meanwhile; the stopped ones are counted in one line.
    A second signal ends the wait at once (Ray's shutdown then kills the runs left).
    """
    signum = stop.signum
    assert signum is not None
    name = signal.Signals(signum).name
    if in_flight:
        write(
            f"{name}: stopping {len(in_flight)} run(s) gracefully: each checkpoints its current "
            f"update and exits (waiting up to {timeout:.0f} s; {name} again stops at once)"
        )
    start = time.perf_counter()
    for ref in in_flight:
        ray.cancel(ref)
    stopped = checkpointed = 0
    left = len(in_flight)
    while in_flight and not stop.again and (wait := start + timeout - time.perf_counter()) > 0:
        done, _ = ray.wait(list(in_flight), num_returns=1, timeout=min(POLL_S, wait))
        for ref in done:
            result = _result(ray, ref, *in_flight.pop(ref))
            if result.status == "stopped":
                stopped += 1
                checkpointed += result.summary is not None
            else:
                yield result
    if stop.again:
        raise Stopped(
            signum,
            f"{name} again: stopped at once; the runs in flight continue from their newest "
            "checkpoint when the same command is run again",
        )
    if left:
        line = (
            f"{stopped} run(s) stopped in {time.perf_counter() - start:.0f} s, "
            f"{checkpointed} with a new checkpoint"
        )
        if in_flight:
            line += (
                f"; {len(in_flight)} still running after {timeout:.0f} s are killed (they will "
                "resume from their previous checkpoint)"
            )
        write(line)
    raise Stopped(signum, f"stopped by {name}; run the same command again to resume the runs")


def _ray_results(
    specs: list[RunSpec],
    out: Path,
    *,
    workers: int,
    threads: int,
    gpus_per_run: float,
    address: str | None,
    stop_timeout: float,
    write: Callable[[str], None],
) -> Iterator[RunResult]:
    """Results in completion order; Ray is started here and shut down when the loop ends.

    Raises :class:`Stopped` on SIGINT or SIGTERM, after stopping the runs in flight.
    """
    import ray

    # ray.init installs its own SIGTERM handler (it kills the runs); ours replace it while Ray
    # is up, and the caller's come back after.
    previous = {signum: signal.getsignal(signum) for signum in _StopSignals.SIGNALS}
    stop = _StopSignals()
    quiet_third_party()
    try:
        if address is None:
            ray.init(
                # A new instance, even where another one runs on this machine (another
                # harness, a `ray start`): joining it would refuse num_cpus.
                address="local",
                num_cpus=workers * threads,
                # results are tiny; keep Ray's shared memory small
                object_store_memory=80 * 1024**2,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,  # run output goes to each run.log, not to our console
            )
        else:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        stop.install()
        remote = ray.remote(run).options(
            num_cpus=threads, num_gpus=gpus_per_run, max_retries=0, name="benchmark-run"
        )
        pending = list(specs)
        in_flight: dict = {}  # object ref → (spec, start time)
        while (pending or in_flight) and stop.signum is None:
            while pending and len(in_flight) < workers:
                spec = pending.pop(0)
                in_flight[remote.remote(spec, out)] = (spec, time.perf_counter())
            # A timeout, so that a stop request is seen while every run is still going.
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_S)
            for ref in done:
                yield _result(ray, ref, *in_flight.pop(ref))
        if stop.signum is not None:
            yield from _stop(ray, in_flight, stop, stop_timeout, write)
    finally:
        ray.shutdown()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def execute(
    specs: list[RunSpec],
    out: Path,
    *,
    workers: int,
    threads: int,
    gpus_per_run: float = 0.0,
    address: str | None = None,
    stop_timeout: float = 180.0,
    echo: Callable[[str], None] | None = None,
    finished_earlier: Collection[str] = frozenset(),
) -> list[RunResult]:
    """Run every spec not finished yet; returns the results of the runs started here.

    ``finished_earlier``: keys of runs finished elsewhere (``--prior``), not run again.
    Raises :class:`Stopped` when SIGINT or SIGTERM stopped the suite; the runs in flight get up
    to ``stop_timeout`` seconds to checkpoint and exit.
    """
    todo = [
        s
        for s in specs
        if s.key not in finished_earlier and read_summary(s.folder(out), s.frames) is None
    ]
    skipped = len(specs) - len(todo)
    earlier = sum(s.key in finished_earlier for s in specs)
    bar = tqdm(total=len(specs), initial=skipped, unit="run", dynamic_ncols=True, smoothing=0)
    write = echo or bar.write
    write(
        f"{len(specs)} runs: {skipped} already finished"
        + (f" ({earlier} in --prior's runs.csv)" if earlier else "")
        + f", {len(todo)} to run ({workers} at once, {threads} thread(s) each)"
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
                stop_timeout=stop_timeout,
                write=write,
            )
            for result in stream:
                results.append(result)
                write(_describe(result))
                bar.update(1)
    finally:
        bar.close()
    return results
