"""The benchmark report: ``aggregate.json``, ``report.md`` and figures from ``runs.csv`` rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from s2ac_lit.benchmark import aggregate
from s2ac_lit.benchmark.results import Missing
from s2ac_lit.benchmark.runner import run_key
from s2ac_lit.benchmark.suite import Suite
from s2ac_lit.trainer.layout import MACHINE_PACKAGES

TAUS = np.linspace(-0.25, 1.5, 36)


def _latest(rows: list[dict], key: Callable[[dict], tuple], order: str) -> dict[tuple, dict]:
    """Per ``key(row)``, the row with the largest ``row[order]``; on a tie the later row (a
    run's final evaluation comes after the periodic one at the same frames)."""
    latest: dict[tuple, dict] = {}
    for row in rows:
        k = key(row)
        if k not in latest or row[order] >= latest[k][order]:
            latest[k] = row
    return latest


def _finals(
    rows: list[dict], goals: list[dict], suite: Suite, algo: str
) -> dict[tuple[str, int], float]:
    """``(task, seed) → final score`` of one algorithm: the normalised return of the last
    evaluation, or for a task scored by goals the fraction of goals its goal map reached."""
    mine = [row for row in rows if row["algorithm"] == algo]
    last = _latest(mine, lambda row: (row["task"], row["seed"]), "frames")
    finals = {
        key: float(
            aggregate.normalise(
                row["return_mean"],
                suite.tasks[key[0]].random_score,
                suite.tasks[key[0]].reference_score,
            )
        )
        for key, row in last.items()
        if suite.tasks[key[0]].score == "return"
    }
    for row in goals:
        if row["algorithm"] == algo and suite.tasks[row["task"]].score == "goals":
            finals[(row["task"], row["seed"])] = row["goals_reached"] / row["goals"]
    return finals


def _goal_table(goals: list[dict], rows: list[dict], algos: list[str], task: str) -> dict:
    """Per algorithm, over its runs' goal maps: goals reached, hit rate of each goal, entropy
    of the hits and misses (mean and std), with the final evaluation return beside."""
    table = {}
    for algo in algos:
        mine = [g for g in goals if g["algorithm"] == algo and g["task"] == task]
        if not mine:
            continue
        final = _latest(
            [r for r in rows if r["algorithm"] == algo and r["task"] == task],
            lambda row: (row["seed"],),
            "frames",
        )
        names = sorted(k for k in mine[0] if k.startswith("G"))
        stats = {}
        for key in ("goals_reached", "hit_entropy", "miss_rate", *names):
            values = np.array([g[key] for g in mine], dtype=float)
            stats[key] = {"mean": float(np.nanmean(values)), "std": float(np.nanstd(values))}
        returns = np.array([r["return_mean"] for r in final.values()], dtype=float)
        stats["return"] = {
            "mean": float(returns.mean()) if returns.size else None,
            "std": float(returns.std()) if returns.size else None,
        }
        table[algo] = {"runs": len(mine), "goals": mine[0]["goals"], "hits": names, **stats}
    return table


def _curves(rows: list[dict], suite: Suite, algo: str, task: str) -> tuple[list[int], np.ndarray]:
    """Evaluation frames of ``task`` and the ``[R, 1, P]`` normalised scores at those frames.

    Each run's history is interpolated onto the union of evaluation frames (runs evaluate at
    the same frames unless a resumed run shifted one).
    """
    spec = suite.tasks[task]
    by_seed: dict[int, list[dict]] = {}
    for row in rows:
        if row["algorithm"] == algo and row["task"] == task:
            by_seed.setdefault(row["seed"], []).append(row)
    frames = sorted({r["frames"] for runs in by_seed.values() for r in runs})
    curves = []
    for runs in by_seed.values():
        runs = sorted(runs, key=lambda r: r["frames"])
        x = [r["frames"] for r in runs]
        y = aggregate.normalise(
            [r["return_mean"] for r in runs], spec.random_score, spec.reference_score
        )
        curves.append(np.interp(frames, x, y))
    return frames, np.array(curves).reshape(len(curves), 1, len(frames))


def _returns(rows: list[dict], algos: list[str], task: str) -> dict[str, list[dict]]:
    """Raw returns of ``task`` per algorithm and evaluation point: mean and std over seeds of
    each run's mean evaluation return, and the number of runs. A run evaluated twice at the same
    frames (the final evaluation after the last updates) counts with its later evaluation."""
    table: dict[str, list[dict]] = {}
    for algo in algos:
        mine = [row for row in rows if row["algorithm"] == algo and row["task"] == task]
        latest = _latest(mine, lambda row: (row["seed"], row["frames"]), "updates")
        by_frames: dict[int, list[float]] = {}
        for (_, frames), row in latest.items():
            by_frames.setdefault(frames, []).append(row["return_mean"])
        table[algo] = [
            {"frames": f, "mean": float(np.mean(v)), "std": float(np.std(v)), "runs": len(v)}
            for f, v in sorted(by_frames.items())
        ]
    return table


def _final_returns(rows: list[dict], algos: list[str], task: str) -> dict[str, dict[str, float]]:
    """``algorithm → seed → return`` of each run's final evaluation on ``task`` (seeds as
    strings, JSON's keys); an algorithm without runs on the task is left out."""
    table: dict[str, dict[str, float]] = {}
    for algo in algos:
        mine = [row for row in rows if row["algorithm"] == algo and row["task"] == task]
        last = _latest(mine, lambda row: (row["seed"],), "frames")
        if last:
            table[algo] = {str(seed): last[(seed,)]["return_mean"] for (seed,) in sorted(last)}
    return table


def _run_speeds(rows: list[dict]) -> list[dict]:
    """Per run: frames, updates and wall time at its last evaluation, and updates per second."""
    last = _latest(rows, lambda row: (row["task"], row["algorithm"], row["seed"]), "frames")
    speeds = []
    for (task, algo, seed), row in sorted(last.items()):
        wall = row["wall_time_s"]
        speeds.append(
            {
                "run": run_key(task, algo, seed),
                "task": task,
                "algorithm": algo,
                "seed": seed,
                "frames": row["frames"],
                "updates": row["updates"],
                "wall_time_s": wall if wall != "" else None,
                "updates_per_s": round(row["updates"] / wall, 2) if wall not in ("", 0) else None,
            }
        )
    return speeds


def _software(software: list[dict], speeds: list[dict]) -> dict[str, Any]:
    """The distinct code and package versions that ran the runs, each with its runs and the
    CPUs and GPUs they ran on, and the runs without a record (their code predates it)."""
    packages = ("python", *MACHINE_PACKAGES)
    groups: dict[str, dict[str, Any]] = {}
    for row in software:
        code = {"s2ac_lit": row["s2ac_lit"], "commit": row["commit"], "dirty": bool(row["dirty"])}
        versions = {p: row[p] for p in packages}
        group = groups.setdefault(
            json.dumps([code, versions]),
            {"code": code, "packages": versions, "cpus": [], "gpus": [], "runs": []},
        )
        group["runs"].append(run_key(row["task"], row["algorithm"], row["seed"]))
        for field, value in (("cpus", row["cpu"]), ("gpus", row["gpu"])):
            if value and value not in group[field]:
                group[field].append(value)
    recorded = {run for group in groups.values() for run in group["runs"]}
    return {
        "versions": list(groups.values()),
        "unrecorded": [s["run"] for s in speeds if s["run"] not in recorded],
    }


def _algorithm_speeds(speeds: list[dict], algos: list[str]) -> dict[str, dict[str, dict]]:
    """``task → algorithm → {median, min, max, runs}`` of the runs' updates per second, the
    algorithms in the order of ``algos``."""
    by_pair: dict[tuple[str, str], list[float]] = {}
    for speed in speeds:
        if speed["updates_per_s"] is not None:
            by_pair.setdefault((speed["task"], speed["algorithm"]), []).append(
                speed["updates_per_s"]
            )
    table: dict[str, dict[str, dict]] = {}
    for task in sorted({task for task, _ in by_pair}):
        for algo in algos:
            values = by_pair.get((task, algo))
            if values:
                table.setdefault(task, {})[algo] = {
                    "median": round(float(np.median(values)), 2),
                    "min": min(values),
                    "max": max(values),
                    "runs": len(values),
                }
    return table


def build(
    rows: list[dict],
    suite: Suite,
    algos: list[str],
    *,
    reps: int,
    tasks: list[str] | None = None,
    goals: list[dict] | None = None,
    software: list[dict] | None = None,
) -> dict[str, Any]:
    """Every statistic of the report as plain JSON-able data (``tasks``: default all;
    ``goals``: the runs' goal maps, :func:`s2ac_lit.benchmark.results.goal_rows`;
    ``software``: what ran each run, :func:`s2ac_lit.benchmark.results.software_rows`)."""
    tasks = tasks or list(suite.tasks)
    goals = goals or []
    finals = {a: _finals(rows, goals, suite, a) for a in algos}
    overall = {a: aggregate.score_matrix(finals[a], tasks) for a in algos}
    by_task = {t: {a: aggregate.score_matrix(finals[a], [t]) for a in algos} for t in tasks}
    per_task = {t: aggregate.aggregate_metrics(by_task[t], reps=reps) for t in tasks}
    curves = {}
    for t in tasks:
        points = {a: _curves(rows, suite, a, t) for a in algos}
        frames = max((p[0] for p in points.values()), key=len)
        usable = {a: c for a, (f, c) in points.items() if f == frames}
        curves[t] = {"frames": frames, "algos": aggregate.iqm_curves(usable, reps=reps)}
    profiles, profile_cis = aggregate.performance_profiles(overall, TAUS, reps=reps)
    speeds = _run_speeds(rows)
    return {
        "suite": suite.name,
        "normalisation": {
            t: {
                "random": s.random_score,
                "random_source": s.random_source,
                "reference": s.reference_score,
                "reference_source": s.reference_source,
            }
            for t, s in suite.tasks.items()
            if t in tasks
        },
        "runs": {a: {t: int(by_task[t][a].shape[0]) for t in tasks} for a in algos},
        "runs_all_tasks": {a: int(overall[a].shape[0]) for a in algos},
        "overall": aggregate.aggregate_metrics(overall, reps=reps),
        "per_task": per_task,
        "probability_of_improvement": {
            "baseline": suite.baseline,
            "algos": aggregate.improvement_probability(overall, suite.baseline, reps=reps),
            "per_task": {
                t: aggregate.improvement_probability(by_task[t], suite.baseline, reps=reps)
                for t in tasks
            },
        },
        "sample_efficiency": curves,
        "returns": {t: _returns(rows, algos, t) for t in tasks},
        "final_returns": {t: _final_returns(rows, algos, t) for t in tasks},
        "scores": {t: suite.tasks[t].score for t in tasks},
        "goals": {
            t: _goal_table(goals, rows, algos, t) for t in tasks if suite.tasks[t].score == "goals"
        },
        "run_speeds": speeds,
        "algorithm_speeds": _algorithm_speeds(speeds, algos),
        "software": _software(software or [], speeds),
        "performance_profile": {
            "taus": TAUS.tolist(),
            "algos": {
                a: {
                    "fraction": profiles[a].tolist(),
                    "low": profile_cis[a][0].tolist(),
                    "high": profile_cis[a][1].tolist(),
                }
                for a in profiles
            },
        },
    }


def _cell(stat: dict | None) -> str:
    if stat is None:
        return "n/a"
    low, high = stat["ci"]
    return f"{stat['value']:.3f} [{low:.3f}, {high:.3f}]"


def _metric_table(stats: dict[str, dict], labels: dict[str, str]) -> list[str]:
    names = list(aggregate.METRICS)
    lines = ["| algorithm | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for algo, by_metric in stats.items():
        cells = [_cell(by_metric.get(n)) for n in names]
        lines.append(f"| {labels.get(algo, algo)} | " + " | ".join(cells) + " |")
    return lines


def _returns_table(returns: dict[str, list[dict]], labels: dict[str, str]) -> list[str]:
    """Raw return, mean ± std over runs (number of runs), at every evaluation point; an
    algorithm without runs on the task has no row."""
    frames = sorted({p["frames"] for points in returns.values() for p in points})
    if not frames:
        return []
    lines = ["Return (not normalised), mean ± std over runs (runs):", ""]
    lines += ["| algorithm | " + " | ".join(str(f) for f in frames) + " |"]
    lines += ["|---" * (len(frames) + 1) + "|"]
    for algo, points in returns.items():
        if not points:
            continue
        at = {p["frames"]: p for p in points}
        cells = [
            f"{at[f]['mean']:.1f} ± {at[f]['std']:.1f} ({at[f]['runs']})" if f in at else ""
            for f in frames
        ]
        lines.append(f"| {labels.get(algo, algo)} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _final_returns_table(finals: dict[str, dict[str, float]], labels: dict[str, str]) -> list[str]:
    """The final evaluation return of every run, one row per algorithm, one column per seed."""
    seeds = sorted({int(seed) for runs in finals.values() for seed in runs})
    if not seeds:
        return []
    lines = ["Final return of each run (its last evaluation), by seed:", ""]
    lines += ["| algorithm | " + " | ".join(f"seed {seed}" for seed in seeds) + " |"]
    lines += ["|---" * (len(seeds) + 1) + "|"]
    for algo, runs in finals.items():
        cells = [f"{runs[str(seed)]:.1f}" if str(seed) in runs else "" for seed in seeds]
        lines.append(f"| {labels.get(algo, algo)} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _improvement_table(algos: dict[str, dict], baseline: str, labels: dict[str, str]) -> list[str]:
    """P(a run of X beats a run of the baseline), one row per algorithm (none: no lines)."""
    if not algos:
        return []
    out = [f"Probability of improvement over {labels.get(baseline, baseline)}:", ""]
    out += ["| algorithm | P(X > baseline) |", "|---|---|"]
    return [*out, *(f"| {labels.get(a, a)} | {_cell(s)} |" for a, s in algos.items()), ""]


def _speed_table(speeds: dict[str, dict[str, dict]], labels: dict[str, str]) -> list[str]:
    """Updates/s per task and algorithm: median over its runs, [min, max]."""
    if not speeds:
        return []
    out = [
        "## Speed",
        "",
        "Updates per second of training time, median over the runs [min, max] (runs). Runs "
        "that shared their cores with other work are slower: the spread is mostly the "
        "machine's load, and only runs measured side by side compare algorithms.",
        "",
        "| task | algorithm | updates/s |",
        "|---|---|---|",
    ]
    for task, algos in speeds.items():
        for algo, s in algos.items():
            cell = f"{s['median']} [{s['min']}, {s['max']}] ({s['runs']})"
            out.append(f"| {task} | {labels.get(algo, algo)} | {cell} |")
    return [*out, ""]


def _software_table(software: dict[str, Any]) -> list[str]:
    """What ran the runs: code, package versions, CPUs and GPUs, and the number of runs."""
    out = ["## Software", ""]
    if software["versions"]:
        out += ["| code | packages | CPU / GPU | runs |", "|---|---|---|---|"]
    for group in software["versions"]:
        code = group["code"]
        where = f" at {code['commit'][:10]}" if code["commit"] else " (not a git checkout)"
        dirty = " with uncommitted changes" if code["dirty"] else ""
        packages = ", ".join(f"{p} {v}" for p, v in group["packages"].items())
        devices = "; ".join(group["cpus"] + group["gpus"])
        out.append(
            f"| s2ac_lit {code['s2ac_lit']}{where}{dirty} | {packages} | {devices} | "
            f"{len(group['runs'])} |"
        )
    if software["unrecorded"]:
        out += [
            *([""] if software["versions"] else []),
            f"{len(software['unrecorded'])} runs have no record (their code predates the "
            "record in `summary.json`).",
        ]
    return [*out, ""]


def _goals_markdown(table: dict[str, dict], labels: dict[str, str]) -> list[str]:
    """Goals reached, hit rate per goal, entropy of the hits, misses and return, mean ± std."""
    if not table:
        return []
    hits = next(iter(table.values()))["hits"]
    head = ["algorithm", "runs", "goals reached", *hits, "miss", "hit entropy (nats)", "return"]
    lines = ["Goal maps of the final policies, mean ± std over runs:", ""]
    lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]

    def pm(stat: dict, digits: int = 2) -> str:
        if stat["mean"] is None:
            return "n/a"
        return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"

    for algo, t in table.items():
        cells = [
            labels.get(algo, algo),
            str(t["runs"]),
            f"{pm(t['goals_reached'])} of {t['goals']}",
        ]
        cells += [pm(t[h]) for h in hits] + [pm(t["miss_rate"]), pm(t["hit_entropy"])]
        cells.append(pm(t["return"], 1))
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def markdown(
    data: dict[str, Any], suite: Suite, labels: dict[str, str], missing: list[Missing]
) -> str:
    """``report.md``: normalisation, aggregate tables, improvement, failures, figures."""
    out = [f"# Benchmark: {suite.name}", "", suite.description.strip(), ""]
    out += ["Final normalised scores, point estimate [95 % stratified-bootstrap CI] (rliable).", ""]
    if data.get("at_frames") is not None:
        out += [
            f"Compared at {data['at_frames']} frames: every run that reached this budget, finished"
            " or not, with its evaluations up to it (`--at-frames`).",
            "",
        ]
    if data.get("from_earlier"):
        out += [
            f"{len(data['from_earlier'])} runs (marked † under Runs) come from the `runs.csv` of "
            "an earlier report (`--prior`): finished on another machine, whose run folders "
            "are not here.",
            "",
        ]
    out += ["## Normalisation", "", "| task | random | source | reference | source |"]
    out += ["|---|---|---|---|---|"]
    for task, n in data["normalisation"].items():
        out.append(
            f"| {task} | {n['random']:g} | {n['random_source']} | {n['reference']:g} | "
            f"{n['reference_source']} |"
        )
    out += ["", "## All tasks", "", "Runs per algorithm (seeds finished on every task): "]
    tasks = list(data["per_task"])
    counts = []
    for algo, n in data["runs_all_tasks"].items():
        own = [t for t in tasks if t in (suite.algos[algo].tasks or tasks)]
        counts.append(
            f"{labels.get(algo, algo)} {n}"
            if own == tasks
            else f"{labels.get(algo, algo)} runs only on {', '.join(own)} (not compared here)"
        )
    out[-1] += ", ".join(counts)
    out += ["", *_metric_table(data["overall"], labels), ""]
    poi = data["probability_of_improvement"]
    out += _improvement_table(poi["algos"], poi["baseline"], labels)
    for task, stats in data["per_task"].items():
        out += [f"## {task}", ""]
        if data["scores"][task] == "goals":
            out += [
                "Scored by goals reached: the fraction of the map's goals that the final "
                "policy's goal map (sampled episodes of the stochastic policy) reaches.",
                "",
            ]
        out += [*_metric_table(stats, labels), ""]
        out += _improvement_table(poi["per_task"][task], poi["baseline"], labels)
        if task in data["goals"]:
            out += _goals_markdown(data["goals"][task], labels)
        out += _returns_table(data["returns"][task], labels)
        out += _final_returns_table(data["final_returns"][task], labels)
    out += _speed_table(data["algorithm_speeds"], labels)
    out += ["## Runs", "", "| run | frames | updates | wall time (s) | updates/s |"]
    out += ["|---|---|---|---|---|"]
    earlier = set(data.get("from_earlier", []))
    for r in data["run_speeds"]:
        mark = " †" if r["run"] in earlier else ""
        out.append(
            f"| {r['run']}{mark} | {r['frames']} | {r['updates']} | {r['wall_time_s'] or 'n/a'} | "
            f"{r['updates_per_s'] or 'n/a'} |"
        )
    out.append("")
    out += _software_table(data["software"])
    if missing:
        out += ["## Runs without a result", ""]
        for m in missing:
            out += [f"### {m.key} ({m.state})", ""]
            if m.log_tail:
                out += ["```", m.log_tail, "```", ""]
    out += ["## Figures", ""]
    if data["overall"]:  # no run finished every task: no aggregate, no figure (figures())
        out += ["![aggregates](aggregates.png)", ""]
    out += ["![sample efficiency](sample_efficiency.png)", ""]
    out += ["![performance profile](performance_profile.png)", ""]
    return "\n".join(out)


def figures(data: dict[str, Any], labels: dict[str, str], out: Path) -> None:
    """``aggregates.png``, ``sample_efficiency.png``, ``performance_profile.png``."""
    import seaborn as sns  # rliable's own palette library
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from rliable import plot_utils

    # One colour per algorithm in every figure and panel (rliable colours each call's
    # algorithms in turn, so an algorithm missing from one task recoloured the others).
    colors = dict(zip(labels.values(), sns.color_palette("colorblind", len(labels)), strict=True))
    overall = data["overall"]
    if overall:
        names = list(aggregate.METRICS)
        points = {labels[a]: np.array([s[n]["value"] for n in names]) for a, s in overall.items()}
        cis = {labels[a]: np.array([s[n]["ci"] for n in names]).T for a, s in overall.items()}
        fig, _ = plot_utils.plot_interval_estimates(
            points,
            cis,
            metric_names=names,
            algorithms=list(points),
            colors=colors,
            xlabel="normalised score",
            row_height=0.6,  # rliable's default squeezes a figure of two or three algorithms
            xlabel_y_coordinate=-0.3,
        )
        fig.savefig(out / "aggregates.png", dpi=120, bbox_inches="tight")
        import matplotlib.pyplot as plt  # rliable draws this one with pyplot

        plt.close(fig)

    tasks = list(data["sample_efficiency"])
    fig = Figure(figsize=(5 * len(tasks), 4))
    FigureCanvasAgg(fig)
    for i, task in enumerate(tasks):
        ax = fig.add_subplot(1, len(tasks), i + 1)
        curve = data["sample_efficiency"][task]
        algos = curve["algos"]
        if algos:
            plot_utils.plot_sample_efficiency_curve(
                np.array(curve["frames"]),
                {labels[a]: np.array(c["iqm"]) for a, c in algos.items()},
                {labels[a]: np.array([c["low"], c["high"]]) for a, c in algos.items()},
                algorithms=[labels[a] for a in algos],
                colors=colors,
                xlabel="frames",
                ylabel="IQM normalised score",
                ax=ax,
                labelsize="medium",
                ticklabelsize="small",
            )
            ax.legend(fontsize="small")
        ax.set_title(task)
    fig.tight_layout()
    fig.savefig(out / "sample_efficiency.png", dpi=120)

    profile = data["performance_profile"]
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if profile["algos"]:
        plot_utils.plot_performance_profiles(
            {labels[a]: np.array(p["fraction"]) for a, p in profile["algos"].items()},
            np.array(profile["taus"]),
            performance_profile_cis={
                labels[a]: np.array([p["low"], p["high"]]) for a, p in profile["algos"].items()
            },
            ax=ax,
            colors=colors,
            xlabel="normalised score τ",
            ylabel="fraction of runs > τ",
        )
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out / "performance_profile.png", dpi=120)


def write(
    rows: list[dict],
    suite: Suite,
    algos: list[str],
    missing: list[Missing],
    out: Path,
    *,
    reps: int,
    at_frames: int | None = None,
    tasks: list[str] | None = None,
    goals: list[dict] | None = None,
    from_earlier: list[str] | None = None,
    software: list[dict] | None = None,
) -> dict[str, Any]:
    """Write ``aggregate.json``, ``report.md`` and the figures; returns the aggregate data.
    ``from_earlier``: keys of the runs read from an earlier report's ``runs.csv``;
    ``software``: what ran each run (:func:`s2ac_lit.benchmark.results.software_rows`)."""
    labels = {a: suite.algos[a].label or a for a in algos}
    data = build(rows, suite, algos, reps=reps, tasks=tasks, goals=goals, software=software)
    data["at_frames"] = at_frames
    data["from_earlier"] = from_earlier or []
    data["missing"] = [{"run": m.key, "state": m.state, "log_tail": m.log_tail} for m in missing]
    (out / "aggregate.json").write_text(json.dumps(data, indent=2))
    (out / "report.md").write_text(markdown(data, suite, labels, missing))
    figures(data, labels, out)
    return data
