"""The GPU check in one command: update and acting speeds, the GPU tests, a short graphed fit.

    python tools/gpu_check.py --out gpu_check.json            # on a machine with one CUDA GPU
    python tools/gpu_check.py --out check.json --device cpu --smoke   # rehearsal on a CPU

Three steps, each in its own process with a time limit, so that the whole check fits in about
8 minutes of a lent GPU (docs/performance.md §GPU):

1. ``tools/bench.py --device cuda --modes eager,compiled,graphed --json --skip-trainer``: ms per
   update of S2AC and TorchRL's SAC run each way, their ratios, acting ms per step (eager and
   graphed), peak memory;
2. ``pytest -m gpu``: the tests that need CUDA (graphed update equals eager, mixed precision
   fits checkpoint, resuming across devices);
3. ``tools/fit.py --config conf/walker.yaml`` in ``bf16-mixed`` with ``trainer.cudagraphs=true``,
   stopped after ``--fit-seconds`` with SIGINT (it checkpoints and writes its partial summary):
   frames/s and updates/s after the random phase, which is cut to 1,000 frames.

The report (``--out``) is one JSON object: each step's result, exit status and seconds, and
the goals of issue 25 checked against the figures (S2AC/SAC ≤ 3× compiled and graphed, the
graph ≥ 3× faster than eager S2AC, acting ≤ 2 ms). ``--device cpu --smoke`` runs the same steps
at toy sizes without graphs, to check the script before a GPU is lent.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GOALS = {
    "s2ac_over_sac_graphed": ("<=", 3.0),
    "s2ac_graphed_speedup": (">=", 3.0),
    "s2ac_graphed_act_ms": ("<=", 2.0),
}
"""Issue 25's goals on one GPU, all measured in the same bench run."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="JSON report to write")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--smoke", action="store_true", help="toy sizes (a rehearsal, not figures)")
    p.add_argument("--fit-seconds", type=float, default=120.0, help="length of the fit step")
    p.add_argument("--step-timeout", type=float, default=330.0, help="limit of each step")
    args = p.parse_args(argv)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda but this machine has no CUDA GPU; rehearse with --device cpu")
    if args.out.is_dir():
        p.error(f"--out {str(args.out)!r} is a folder; give a file path for the JSON report")
    return args


def run(command: list[str], timeout: float, *, stop_after: float | None = None) -> dict[str, Any]:
    """Run ``command`` from the repository root; with ``stop_after``, send SIGINT then (the
    trainer's graceful stop) and wait for it to exit."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    child = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        if stop_after is not None:
            try:
                output, _ = child.communicate(timeout=stop_after)
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGINT)
                output, _ = child.communicate(timeout=timeout)
        else:
            output, _ = child.communicate(timeout=timeout)
        status = child.returncode
    except subprocess.TimeoutExpired:
        child.kill()
        output, _ = child.communicate()
        status = "timeout"
    return {
        "command": " ".join(command[1:]),
        "exit": status,
        "seconds": round(time.perf_counter() - start, 1),
        "tail": output.splitlines()[-15:],
    }


def bench_step(args: argparse.Namespace) -> dict[str, Any]:
    modes = "eager,compiled,graphed" if args.device == "cuda" else "eager,compiled"
    command = [sys.executable, "tools/bench.py", "--device", args.device, "--modes", modes]
    command += ["--json", "--skip-trainer"]
    if args.smoke:
        command += ["--hidden", "16", "--batch", "8", "--iters", "1", "--repeats", "1"]
    result = run(command, args.step_timeout)
    last = result["tail"][-1] if result["tail"] else ""
    result["figures"] = json.loads(last) if last.startswith("{") else None
    return result


def tests_step(args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    return run(command, args.step_timeout)


def fit_step(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    overrides = [
        f"run_dir={run_dir}",
        "collector.init_random_frames=1000",
        "trainer.progress_bar=false",
        "trainer.checkpoint_every_updates=1000000",
        "eval.every_frames=0",
        "eval.episodes=1",
        "replay.checkpoint=false",
    ]
    if args.device == "cuda":
        overrides += [
            "trainer.accelerator=gpu",
            "trainer.precision=bf16-mixed",
            "trainer.cudagraphs=true",
        ]
    else:
        overrides += ["trainer.accelerator=cpu"]
    if args.smoke:
        overrides += [
            "collector.total_frames=2000",
            "actor.hidden_sizes=[16]",
            "critic.hidden_sizes=[16]",
        ]
    command = [sys.executable, "tools/fit.py", "--config", "conf/walker.yaml", *overrides]
    result = run(command, args.step_timeout, stop_after=args.fit_seconds)
    summaries = list(run_dir.glob("*/summary.json"))
    if summaries:
        summary = json.loads(summaries[0].read_text())
        wall = summary.get("wall_time_s") or 0
        result["summary"] = {k: summary.get(k) for k in ("frames", "updates", "wall_time_s")}
        if wall:
            result["frames_per_s"] = summary["frames"] / wall
            result["updates_per_s"] = summary["updates"] / wall
    return result


def goals(figures: dict[str, Any] | None) -> dict[str, Any]:
    """Each goal with its measured value and whether it is met (None: not measured)."""
    out = {}
    for key, (op, bound) in GOALS.items():
        value = (figures or {}).get(key)
        met = None if value is None else (value <= bound if op == "<=" else value >= bound)
        out[key] = {"goal": f"{op} {bound}", "measured": value, "met": met}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report: dict[str, Any] = {"device": args.device, "smoke": args.smoke}
    start = time.perf_counter()
    report["bench"] = bench_step(args)
    report["tests"] = tests_step(args)
    with tempfile.TemporaryDirectory() as tmp:
        report["fit"] = fit_step(args, Path(tmp))
    report["goals"] = goals(report["bench"].get("figures"))
    report["seconds"] = round(time.perf_counter() - start, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    failed = [name for name in ("bench", "tests") if report[name]["exit"] not in (0, 5)]
    if report["fit"]["exit"] not in (0, 130):
        failed.append("fit")
    print(f"gpu check: {report['seconds']} s; failed steps: {failed or 'none'}; report {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
