"""Multigoal MaxEnt experiment: train S2AC(φ), S2AC(φ,θ), SAC, SQL; sample them.

See docs/algorithm.md §Multigoal.

    python tools/multigoal.py --out OUT --seeds 3 --frames 6000 --updates-per-batch 25
    python tools/multigoal.py --out OUT --skip-train   # re-evaluate the runs in OUT
    python tools/multigoal.py --out OUT10 --set loss.alpha_init=10   # another temperature

Training goes through the benchmark harness (``tools/benchmark.py``) with the suite
``conf/suites/multigoal.yaml``: each algorithm with ``conf/multigoal.yaml`` and the same budget
on seeds 0..N-1, as Ray tasks (``--workers``, ``--ray-address``), resumable (runs in
``OUT/runs/multigoal/<algo>/seed-<k>``; a rerun skips finished ones). The harness's rliable
report of evaluation returns goes to ``OUT/benchmark/``. Each agent is then evaluated by
sampling its stochastic policy (``ExplorationType.RANDOM``, the MaxEnt policy) and by its
deterministic mode, on the training map and on its obstacle variant (never seen in training).
Outputs in ``OUT``: ``results.csv`` and ``results.json`` (one row per algo × seed × env × mode,
then ``seed=mean`` and ``seed=std`` aggregate rows), ``trajectories_<algo>.png`` and
``trajectories_<algo>_obstacle.png`` (first seed, sampled), ``goal_hits.png`` and
``goal_hits_obstacle.png`` (sampled, mean over seeds), and a markdown table on stdout.

Deterministic modes: S2AC picks a particle by softmax over Q (``actor.eval_selection``), SAC
acts with the squashed mean, SQL's policy has none and draws one amortised sample, as sampled.

Entropy at the probe states (``entropy_p0..p5``, mean ``entropy``): S2AC -mean log π of its
particles (closed-form SVGD density), SAC the tanh-Normal's -mean log π, SQL NaN (its amortised
sampler has no density); ``entropy_knn`` is a density-free k-NN estimate from the same samples,
for every algorithm.

``--skip-train`` only evaluates the finished runs in ``OUT`` and skips those that are missing.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch
from torchrl.envs.utils import ExplorationType

from s2ac_lit.algorithms import ALGORITHMS
from s2ac_lit.analysis.experiments import aggregate_over_seeds, evaluate_episodes, numpy_policy
from s2ac_lit.analysis.goal_metrics import PROBE_STATES, plot_goal_hits, plot_trajectories
from s2ac_lit.benchmark import report
from s2ac_lit.benchmark.cli import check_out
from s2ac_lit.benchmark.executor import Stopped, execute
from s2ac_lit.benchmark.results import collect, goal_rows
from s2ac_lit.benchmark.runner import RunSpec, read_summary
from s2ac_lit.benchmark.suite import Suite, SuiteError, load_suite, plan, resolve_preset
from s2ac_lit.config import load_config
from s2ac_lit.errors import cli, positive_int
from s2ac_lit.knn import knn_entropy
from s2ac_lit.trainer.checkpoints import find_checkpoint
from s2ac_lit.trainer.module import RLModule

SUITE = Path(__file__).resolve().parents[1] / "conf" / "suites" / "multigoal.yaml"
TASK = "multigoal"
EVAL_SEED = 100_000  # evaluation randomness never shares a seed with training
PLOTTED_EPISODES = 50


LABELS: dict[str, str] = {name: spec.label for name, spec in load_suite(SUITE).algos.items()}
ENVS: dict[str, dict[str, str]] = {
    "maxent": {
        "plain": "s2ac_lit/MultiGoalMaxEnt-v0",
        "obstacle": "s2ac_lit/MultiGoalMaxEntObstacle-v0",
    },
    "classic": {"plain": "s2ac_lit/MultiGoal-v0", "obstacle": "s2ac_lit/MultiGoalObstacle-v0"},
}
MODES: dict[str, ExplorationType] = {
    "sampled": ExplorationType.RANDOM,
    "deterministic": ExplorationType.DETERMINISTIC,
}
# A budget that only checks that everything runs (tests, --quick).
QUICK = (
    "collector.init_random_frames=100",
    "collector.update_after=100",
    "collector.updates_per_batch=2",
    "svgd.steps=2",
    "critic.hidden_sizes=[16,16]",
    "actor.hidden_sizes=[16,16]",
    "eval.every_frames=0",
    "eval.episodes=1",
)
"""Each algorithm gets the keys it reads (SAC reads no ``svgd.*``, and a key an algorithm does
not read is refused)."""
QUICK_FRAMES, QUICK_EPISODES, QUICK_ENTROPY_SAMPLES = 200, 4, 50


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", choices=list(LABELS), default=list(LABELS))
    parser.add_argument("--seeds", type=positive_int, default=3, help="train seeds 0..N-1")
    parser.add_argument(
        "--frames", type=positive_int, help="collector.total_frames (preset: 15000)"
    )
    parser.add_argument(
        "--updates-per-batch", type=positive_int, help="collector.updates_per_batch"
    )
    parser.add_argument(
        "--episodes", type=positive_int, default=100, help="test episodes per env/mode"
    )
    parser.add_argument(
        "--entropy-samples", type=positive_int, default=1000, help="per probe state"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--env", choices=list(ENVS), default="maxent", help="3 or 4 goals")
    parser.add_argument("--quick", action="store_true", help="tiny budget (smoke tests)")
    parser.add_argument(
        "--skip-train", action="store_true", help="re-evaluate the finished runs in --out"
    )
    parser.add_argument("--workers", type=int, default=1, help="runs trained at once (Ray)")
    parser.add_argument("--ray-address", help="train on this Ray cluster (e.g. auto)")
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="extra config overrides for every algorithm, e.g. loss.alpha_init=0.3",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.frames = args.frames or QUICK_FRAMES
        args.episodes = min(args.episodes, QUICK_EPISODES)
        args.entropy_samples = min(args.entropy_samples, QUICK_ENTROPY_SAMPLES)
    return args


def extra_overrides(args: argparse.Namespace) -> list[str]:
    """Config overrides of every training run on top of the suite's (later entries win)."""
    overrides = [f"env.id={ENVS[args.env]['plain']}"]
    if args.updates_per_batch is not None:
        overrides.append(f"collector.updates_per_batch={args.updates_per_batch}")
    return overrides + list(args.overrides)


def registry_name(suite: Suite, name: str) -> str:
    """The registry algorithm of the suite's entry ``name``: ``algo`` after its preset and its
    ``algo=`` override, else the schema's default."""
    entry = suite.algos[name]
    presets = [resolve_preset(entry.preset)] if entry.preset else []
    return load_config(presets, [o for o in entry.overrides if o.startswith("algo=")]).algo


def plan_runs(args: argparse.Namespace) -> tuple[Suite, list[RunSpec]]:
    """The suite (with this command's frame budget) and its runs for ``--algos``, ``--seeds``."""
    suite = load_suite(SUITE)
    if args.frames is not None:
        suite.tasks[TASK].frames = args.frames
    if args.quick:
        task = suite.tasks[TASK]
        for name in args.algos:
            registry = ALGORITHMS[registry_name(suite, name)]
            read = [o for o in QUICK if registry.reads_key(o.split("=", 1)[0])]
            task.for_algo[name] = [*task.for_algo.get(name, []), *read]
    return suite, plan(suite, algos=args.algos, seeds=args.seeds, extra=extra_overrides(args))


def train_runs(args: argparse.Namespace, specs: list[RunSpec]) -> dict[tuple[str, int], Path]:
    """Train the runs not finished yet (unless ``--skip-train``); the finished run folders."""
    if not args.skip_train:
        execute(specs, args.out, workers=args.workers, threads=1, address=args.ray_address)
    runs = {}
    for spec in specs:
        folder = spec.folder(args.out)
        if read_summary(folder, spec.frames) is None:
            print(f"no finished {spec.algo} seed {spec.seed} run in {folder}: skipped")
        else:
            runs[(spec.algo, spec.seed)] = folder
    return runs


def evaluate_run(
    args: argparse.Namespace, algo: str, seed: int, run: Path
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Result rows of one trained agent and its sampled positions per env (for pictures)."""
    module = RLModule.load(find_checkpoint(run)).eval()
    summary = json.loads((run / "summary.json").read_text())
    policy = module.policy()
    probes = torch.tensor(PROBE_STATES, dtype=torch.float32)
    torch.manual_seed(EVAL_SEED + seed)
    probe_entropy = ALGORITHMS[module.cfg.algo].probe_entropy
    estimate = probe_entropy(module.loss_module, policy, probes, args.entropy_samples)
    entropy = {f"entropy_p{i}": float(h) for i, h in enumerate(estimate.entropy)}
    knn = {f"entropy_knn_p{i}": float(h) for i, h in enumerate(knn_entropy(estimate.actions))}
    entropy["entropy"] = float(estimate.entropy.mean())
    entropy["entropy_knn"] = float(np.mean(list(knn.values())))
    entropy.update(knn)
    base = {
        "algo": algo,
        "label": LABELS[algo],
        "seed": seed,
        "alpha": module.cfg.loss.alpha_init,
        "frames": summary["frames"],
        "updates": summary["updates"],
        "train_wall_s": summary["wall_time_s"],
        "run": str(run.relative_to(args.out)),
    }
    rows, positions = [], {}
    for env_name, env_id in ENVS[args.env].items():
        for mode, exploration in MODES.items():
            torch.manual_seed(EVAL_SEED + seed)
            policy_fn = numpy_policy(policy, exploration=exploration)
            start = time.perf_counter()
            metrics, rollout = evaluate_episodes(env_id, policy_fn, args.episodes, EVAL_SEED)
            row = {**base, "env": env_name, "env_id": env_id, "mode": mode}
            row.update({_goal_column(k): v for k, v in metrics.items()})
            row["episodes"] = args.episodes
            row["eval_wall_s"] = round(time.perf_counter() - start, 1)
            # Entropy belongs to the stochastic policy, so only the sampled rows carry it.
            row.update(entropy if mode == "sampled" else dict.fromkeys(entropy, math.nan))
            rows.append(row)
            if mode == "sampled":
                positions[env_name] = rollout["positions"]
    return rows, positions


def _goal_column(metric: str) -> str:
    """``hit_rate/0`` → ``hit_G1`` (goals numbered as in the paper)."""
    if metric.startswith("hit_rate/"):
        return f"hit_G{int(metric.split('/')[1]) + 1}"
    return metric


def metric_columns(rows: list[dict[str, Any]]) -> list[str]:
    """Numeric columns to aggregate: the metrics first, then the budget and timing columns."""
    keys = ("alpha", "frames", "updates", "train_wall_s", "episodes", "eval_wall_s")
    numeric = [
        k for k in rows[0] if isinstance(rows[0][k], int | float) and k not in ("seed", *keys)
    ]
    return [*numeric, *keys]


def aggregate_rows(rows: list[dict[str, Any]]) -> tuple[list[dict], list[dict[str, Any]]]:
    """Aggregate records (mean/std per algo × env × mode) and their ``seed=mean|std`` CSV rows."""
    records = aggregate_over_seeds(
        rows, ["algo", "label", "env", "env_id", "mode"], metric_columns(rows)
    )
    flat = []
    for record in records:
        for stat in ("mean", "std"):
            row = {k: v for k, v in record.items() if not isinstance(v, dict)}
            row["seed"] = stat
            row.update({k: v[stat] for k, v in record.items() if isinstance(v, dict)})
            flat.append(row)
    return records, flat


def write_results(out: Path, rows: list[dict], records: list[dict], flat: list[dict], meta: dict):
    """``results.csv`` (runs, then ``seed=mean|std`` rows) and ``results.json`` (NaN → null)."""
    columns = list(dict.fromkeys(k for row in rows + flat for k in row))
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows + flat)
    payload = {"meta": meta, "runs": rows, "aggregate": records}
    (out / "results.json").write_text(json.dumps(_nan_to_none(payload), indent=2))


def _nan_to_none(value: Any) -> Any:
    """NaN → ``null``: strict JSON has no NaN (SQL's log π entropy, deterministic rows)."""
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def _pm(record: dict, key: str, fmt: str = ".2f") -> str:
    stat = record.get(key)
    if stat is None or not math.isfinite(stat["mean"]):
        return "n/a"
    return f"{stat['mean']:{fmt}} ± {stat['std']:{fmt}}"


def markdown_table(records: list[dict], n_goals: int) -> str:
    """One line per algo × env × mode: mean ± std over seeds."""
    goals = [f"hit_G{g + 1}" for g in range(n_goals)]
    head = ["algo", "env", "mode", "seeds", "goals reached", *goals, "miss", "return"]
    head += ["wall hits/ep", "H log π", "H kNN"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        cells = [r["label"], r["env"], r["mode"], str(r["n_seeds"]), _pm(r, "distinct_goals")]
        cells += [_pm(r, g) for g in goals] + [_pm(r, "miss_rate"), _pm(r, "return_mean", ".0f")]
        cells += [_pm(r, "wall_hits_per_episode"), _pm(r, "entropy"), _pm(r, "entropy_knn")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def runs_table(rows: list[dict[str, Any]], n_goals: int) -> str:
    """Per-seed hit rates of the sampled policies: which goals each run reaches."""
    sampled = [r for r in rows if r["mode"] == "sampled"]
    envs = list(dict.fromkeys(r["env"] for r in sampled))
    head = ["algo", "seed", *(f"{env} G1/G2/.../miss" for env in envs), "H log π", "H kNN"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (label, seed), group in _group(sampled, ("label", "seed")).items():
        by_env = {r["env"]: r for r in group}
        rates = [
            "/".join(f"{by_env[e][f'hit_G{g + 1}']:.2f}" for g in range(n_goals))
            + f"/{by_env[e]['miss_rate']:.2f}"
            for e in envs
        ]
        first = group[0]
        entropy = [
            f"{first[k]:.2f}" if math.isfinite(first[k]) else "n/a"
            for k in ("entropy", "entropy_knn")
        ]
        lines.append("| " + " | ".join([label, str(seed), *rates, *entropy]) + " |")
    return "\n".join(lines)


def _group(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    return groups


def make_plots(args: argparse.Namespace, records: list[dict], positions: dict, n_goals: int):
    """Sampled trajectories of each algorithm's first seed, and mean hit rates per goal."""
    extra = f" {' '.join(args.overrides)}" if args.overrides else ""  # e.g. another α
    for algo, per_seed in positions.items():
        seed = min(per_seed)
        for env_name, env_id in ENVS[args.env].items():
            suffix = "" if env_name == "plain" else f"_{env_name}"
            env = gymnasium.make(env_id)
            title = f"{LABELS[algo]}, seed {seed}, sampled ({env_name}){extra}"
            paths = per_seed[seed][env_name][:PLOTTED_EPISODES]
            plot_trajectories(env, paths, args.out / f"trajectories_{algo}{suffix}.png", title)
            env.close()
    for env_name in ENVS[args.env]:
        rates = {
            r["label"]: np.array([r[f"hit_G{g + 1}"]["mean"] for g in range(n_goals)])
            for r in records
            if r["env"] == env_name and r["mode"] == "sampled"
        }
        suffix = "" if env_name == "plain" else f"_{env_name}"
        title = f"sampled policies, mean over seeds ({env_name}){extra}"
        plot_goal_hits(rates, args.out / f"goal_hits{suffix}.png", title)


@cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    try:  # every run's config is checked before the first one trains
        check_out(args.out, report_only=args.skip_train)
        suite, specs = plan_runs(args)
    except SuiteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        runs = train_runs(args, specs)
    except Stopped as stop:  # SIGINT/SIGTERM: the runs in flight checkpointed
        print(stop, file=sys.stderr)
        return stop.exit_code
    rows: list[dict[str, Any]] = []
    positions: dict[str, dict[int, dict[str, np.ndarray]]] = {}
    for (algo, seed), run in runs.items():
        run_rows, run_positions = evaluate_run(args, algo, seed, run)
        rows += run_rows
        positions.setdefault(algo, {})[seed] = run_positions
        print(f"evaluated {algo} seed {seed} ({run})", flush=True)
    if not rows:
        print(f"error: no finished runs to evaluate under {args.out / 'runs'}", file=sys.stderr)
        return 2
    records, flat = aggregate_rows(rows)
    n_goals = sum(k.startswith("hit_G") for k in rows[0])
    meta = {
        "command": " ".join(["tools/multigoal.py", *(argv if argv is not None else sys.argv[1:])]),
        "env": args.env,
        "algos": args.algos,
        "seeds": args.seeds,
        "episodes": args.episodes,
        "entropy_samples": args.entropy_samples,
        "probe_states": [list(p) for p in PROBE_STATES],
        "overrides": {
            algo: [
                *suite.tasks[TASK].for_algo.get(algo, []),
                *suite.algos[algo].overrides,
                *extra_overrides(args),
            ]
            for algo in args.algos
        },
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    write_results(args.out, rows, records, flat, meta)
    returns, missing, _ = collect(specs, args.out)
    (args.out / "benchmark").mkdir(exist_ok=True)
    goals = goal_rows(specs, args.out)
    report.write(
        returns, suite, args.algos, missing, args.out / "benchmark", reps=2000, goals=goals
    )
    make_plots(args, records, positions, n_goals)
    print(markdown_table(records, n_goals))
    print()
    print(runs_table(rows, n_goals))
    print(f"\nprobe states p0..p5: {PROBE_STATES}; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
