"""Entropy-evaluation sweeps: SVGD's closed-form entropy against known truths.

See docs/algorithm.md §Entropy evaluation.

Reproduces the paper's study on targets with known entropy (``s2ac_lit.analysis.entropy.targets``):
kernel variance × (particles, steps), initial distribution, dimension, number of modes, the
adaptive bandwidth heuristics against M, and Langevin/HMC change-of-variables estimates for
contrast. Every configuration runs once per seed (seeds 0..N-1); each sweep writes
``<sweep>.csv`` (one row per run), ``<sweep>_summary.csv`` (mean and 95% t-interval over seeds),
``<sweep>.md`` and PNG plots into ``--out``, and prints the markdown table.

Two sweeps measure the regime S2AC trains in instead (``s2ac_lit.analysis.entropy.regime``):
``regime`` compares the closed form, the closed form with the self term (exact and Hutchinson)
and the exact log-det mode at M = 10-50, L = 3-10, ε = 0.1 with the truth measured from the
sampler's pooled output (``--pool`` particles per case); ``knn`` checks that truth, the
sample-only estimators, on targets of known entropy. They write ``<sweep>.csv``, ``<sweep>.md``
and one plot, and run one seed unless ``--seeds`` says otherwise. ``--checkpoint`` (with one
``--replay`` dump each) runs the same comparison on trained S2AC critics at replay states
(``s2ac_lit.analysis.entropy.critic``; ``critic.csv``, ``critic.md``).

Examples:
    python tools/entropy_eval.py --sweep bandwidth heuristics --seeds 5 --out "$TMPDIR/entropy"
    python tools/entropy_eval.py --sweep regime knn --out docs/results/entropy_regime
    python tools/entropy_eval.py --checkpoint RUN/checkpoints/step=5000.ckpt \\
        --replay RUN/replay/step-5000/rank-0 --states 64 --out "$TMPDIR/entropy_critic"
    python tools/entropy_eval.py --sweep all --quick --out "$TMPDIR/entropy_quick"
    python tools/entropy_eval.py --custom my_module:my_target --out "$TMPDIR/entropy_custom"
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib
import math
import os
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

try:
    import s2ac_lit  # noqa: F401
except ModuleNotFoundError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s2ac_lit.analysis.entropy import (
    EntropyRecord,
    SamplerConfig,
    Target,
    evaluate,
    gmm_circle_target,
    mean_ci,
    paper_gaussian,
)
from s2ac_lit.analysis.entropy.critic import (
    CRITIC_ESTIMATORS,
    CriticRecord,
    evaluate_critic,
    replay_observations,
)
from s2ac_lit.analysis.entropy.regime import (
    ESTIMATORS,
    RegimeRecord,
    TruthCheckRecord,
    check_truth,
    evaluate_regime,
    regime_cases,
    truth_check_targets,
)
from s2ac_lit.errors import UsageError, cli, positive_int

SWEEPS = ("bandwidth", "particles", "init", "dims", "modes", "samplers", "heuristics")
REGIME_SWEEPS = ("regime", "knn")
"""Sweeps of the training regime, with sample-only truths (one seed by default)."""
CRITIC_LABELS = {
    "none": "closed form",
    "hutchinson": "+ self, Hutchinson",
    "none_nocap": "closed form, no cap",
    "exact_nocap": "+ self exact, no cap",
    "logdet": "exact log-det, no cap",
}
ESTIMATOR_LABELS = {
    "none": "closed form (paper)",
    "exact": "+ self term, exact",
    "hutchinson": "+ self term, Hutchinson",
    "logdet": "exact log-det mode",
}
PAPER_SIGMA2 = (0.1, 1.0, 3.0, 5.0, 7.0, 10.0, 100.0)
PAPER_SIZES = ((10, 20), (20, 20), (100, 100), (200, 200))
HEURISTICS = ("median", "mean_half", "trace", 5.0)
Key = Callable[[EntropyRecord], str]


@dataclass(frozen=True)
class Sweep:
    """A list of (target, config) runs and how to lay their summary out as a table."""

    name: str
    runs: list[tuple[Target, SamplerConfig]]
    row: Key
    col: Key
    title: str


def _size(r: EntropyRecord) -> str:
    return f"M={r.particles},L={r.steps}"


def _sampler_label(r: EntropyRecord) -> str:
    if r.method.startswith("svgd"):
        return f"{r.method} norm={r.entropy_norm} self={r.self_term}"
    return f"{r.method} ε={r.step_size:g}"


def build_sweep(name: str, *, quick: bool, custom: Target | None = None) -> Sweep:
    """The runs of one sweep; ``quick`` shrinks every axis to a smoke-test size."""
    gauss = paper_gaussian()
    base = SamplerConfig(particles=200, steps=200, step_size=0.5, bandwidth=5.0)
    sigma2s = (1.0, 5.0, 100.0) if quick else PAPER_SIGMA2
    sizes = ((10, 20), (20, 20)) if quick else PAPER_SIZES
    if name in ("bandwidth", "custom"):
        target = custom if name == "custom" else gauss
        rules = ("median",) if quick else HEURISTICS[:4]  # the adaptive rules, for reference
        runs = [
            (target, replace(base, bandwidth=s, particles=m, steps=n))
            for s in (*sigma2s, *rules)
            for m, n in sizes
        ]
        title = f"{target.name} (H = {target.entropy:.4f}): kernel variance × (M, L)"
        return Sweep(name, runs, lambda r: f"σ²={r.bandwidth}", _size, title)
    if name == "particles":
        ms, ls = (
            ((10, 20), (10, 20)) if quick else ((10, 20, 50, 100, 200, 400), (20, 50, 100, 200))
        )
        runs = [(gauss, replace(base, particles=m, steps=n)) for m in ms for n in ls]
        title = f"{gauss.name}, σ² = 5: particles × steps"
        return Sweep(name, runs, lambda r: f"M={r.particles}", lambda r: f"L={r.steps}", title)
    if name == "init":
        small = replace(base, particles=20, steps=20) if quick else base
        runs = [
            (gauss, replace(small, bandwidth=s, init_mean=mu, init_var=var))
            for s in sigma2s
            for mu, var in ((0.0, 6.0), (4.0, 0.2))
        ]
        title = f"{gauss.name}, M = L = {small.particles}: kernel variance × initial dist."
        return Sweep(name, runs, lambda r: f"σ²={r.bandwidth}", lambda r: r.init, title)
    if name == "dims":
        # One mode: in D > 2 every GMM is dominated by its D-2 Gaussian coordinates, and the
        # modes sweep covers K in 2-D.
        dims, modes = ((2, 5), (1,)) if quick else ((2, 5, 10, 20, 50, 100), (1,))
        cfg = replace(base, particles=20, steps=10) if quick else base
        rules = ("mean_half", "trace") if quick else ("mean_half", "median", "trace", 5.0)
        runs = [
            (gmm_circle_target(k, d), replace(cfg, bandwidth=b))
            for k in modes
            for d in dims
            for b in rules
        ]
        title = f"GMM on a radius-4 circle, M = {cfg.particles}, L = {cfg.steps}: dimension"
        return Sweep(name, runs, lambda r: f"K={r.modes},d={r.dim}", lambda r: r.bandwidth, title)
    if name == "modes":
        modes = (1, 2) if quick else (1, 2, 3, 4, 5, 6)
        cfg = replace(base, particles=20, steps=20) if quick else base
        rules = (1.0, 5.0) if quick else (1.0, 5.0, 10.0, *HEURISTICS[:4])
        runs = [(gmm_circle_target(k, 2), replace(cfg, bandwidth=b)) for k in modes for b in rules]
        title = f"2-D GMM, M = {cfg.particles}, L = {cfg.steps}: number of modes"
        return Sweep(name, runs, lambda r: f"K={r.modes}", lambda r: r.bandwidth, title)
    if name == "samplers":
        cfg = replace(base, particles=20, steps=20) if quick else base
        hmc = replace(cfg, sampler="hmc", step_size=0.3, leapfrog_steps=5, steps=cfg.steps // 5)
        configs = [
            cfg,
            replace(cfg, entropy_norm="m-1"),
            replace(cfg, self_term="exact"),
            replace(cfg, logdet="exact"),
            *(replace(cfg, sampler="langevin", step_size=e) for e in (0.01, 0.1, 0.5)),
            hmc,
            replace(hmc, hmc_estimate="joint"),
        ]
        targets = (gauss,) if quick else (gauss, gmm_circle_target(4, 2))
        runs = [(t, c) for t in targets for c in configs]
        title = (
            f"samplers, M = {cfg.particles} particles/chains, {cfg.steps} gradient steps "
            "(HMC: L/5 iterations × 5 leapfrog), SVGD σ² = 5"
        )
        return Sweep(name, runs, _sampler_label, lambda r: r.target, title)
    if name == "heuristics":
        ms = (10, 20) if quick else (10, 20, 50, 100, 200, 400)
        steps = 20 if quick else 200
        targets = (gauss,) if quick else (gauss, gmm_circle_target(4, 2))
        runs = [
            (t, replace(base, particles=m, steps=steps, bandwidth=b))
            for t in targets
            for m in ms
            for b in HEURISTICS
        ]
        title = f"bandwidth rules against M, L = {steps}"
        return Sweep(
            name, runs, lambda r: f"{r.target} M={r.particles}", lambda r: r.bandwidth, title
        )
    raise ValueError(f"unknown sweep {name!r}; allowed: {SWEEPS}")


def summarize(records: Sequence[EntropyRecord], sweep: Sweep) -> list[dict[str, object]]:
    """Group the runs by (row, col) cell: mean and 95% CI over seeds of estimate and error."""
    groups: dict[tuple[str, str], list[EntropyRecord]] = {}
    for r in records:
        groups.setdefault((sweep.row(r), sweep.col(r)), []).append(r)
    rows = []
    for (row, col), rs in groups.items():
        est, est_ci = mean_ci([r.estimate for r in rs])
        rel, rel_ci = mean_ci([r.rel_error for r in rs])
        rows.append(
            {
                "row": row,
                "col": col,
                "target": rs[0].target,
                "truth": rs[0].truth,
                "truth_se": rs[0].truth_se,
                "seeds": len(rs),
                "estimate": est,
                "estimate_ci": est_ci,
                "rel_error": rel,
                "rel_error_ci": rel_ci,
                "bound_max": max(r.bound_max for r in rs),
                "sigma2": sum(r.sigma2 for r in rs) / len(rs),
                "spread_ratio": sum(r.spread_ratio for r in rs) / len(rs),
                "wall_s": sum(r.wall_s for r in rs),
            }
        )
    return rows


_T = TypeVar("_T")


def _ordered(values: Iterable[_T]) -> list[_T]:
    """The distinct values, in the order they first appear."""
    return list(dict.fromkeys(values))


def markdown_table(summary: list[dict[str, object]], title: str) -> str:
    """Rows × columns of 'estimate ± CI (relative error, invertibility bound, σ²)'."""
    rows, cols = _ordered([s["row"] for s in summary]), _ordered([s["col"] for s in summary])
    cell = {(s["row"], s["col"]): s for s in summary}
    lines = [f"**{title}**", "", "| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for row in rows:
        out = []
        for col in cols:
            s = cell.get((row, col))
            if s is None:
                out.append("")
                continue
            sig = "" if math.isnan(s["sigma2"]) else f", σ² {s['sigma2']:.3g}"
            out.append(
                f"{s['estimate']:.3f} ± {s['estimate_ci']:.3f} "
                f"({100 * s['rel_error']:+.1f}%, b {s['bound_max']:.2f}{sig})"
            )
        lines.append(f"| {row} | " + " | ".join(out) + " |")
    truths = _ordered(
        [f"{s['target']}: H = {s['truth']:.4f} ± {s['truth_se']:.4f}" for s in summary]
    )
    seeds = max(s["seeds"] for s in summary)
    lines += [
        "",
        f"Truth {'; '.join(truths)}. Mean ± 95% t-interval over {seeds} seeds; "
        "b = max ε‖∇φ‖ bound (SVGD) or ε‖∇²f‖ (Langevin/HMC); σ² = last-step kernel "
        "variance.",
    ]
    return "\n".join(lines)


def _save(fig: plt.Figure, path: Path) -> None:
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_heatmap(summary: list[dict[str, object]], title: str, path: Path) -> None:
    """Relative error (%) per (row, col) cell, colours clipped to ±50%."""
    rows, cols = _ordered([s["row"] for s in summary]), _ordered([s["col"] for s in summary])
    grid = torch.full((len(rows), len(cols)), float("nan"))
    for s in summary:
        grid[rows.index(s["row"]), cols.index(s["col"])] = 100 * s["rel_error"]
    fig, ax = plt.subplots(figsize=(2.0 + 1.1 * len(cols), 1.0 + 0.4 * len(rows)))
    im = ax.imshow(grid.clamp(-50, 50).numpy(), cmap="RdBu_r", vmin=-50, vmax=50, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            if not math.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:+.1f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_title(textwrap.fill(title, 60), fontsize=8)
    fig.colorbar(im, ax=ax, label="relative error (%), mean over seeds")
    _save(fig, path)


def plot_estimates(summary: list[dict[str, object]], title: str, path: Path) -> None:
    """Estimate ± 95% CI per row (x) and column (series), with the truth per row (black)."""
    rows, cols = _ordered([s["row"] for s in summary]), _ordered([s["col"] for s in summary])
    fig, ax = plt.subplots(figsize=(2.5 + 0.45 * len(rows), 4.5))
    width = 0.6 / max(len(cols), 1)
    for k, col in enumerate(cols):
        ss = [s for s in summary if s["col"] == col]
        xs = [rows.index(s["row"]) - 0.3 + (k + 0.5) * width for s in ss]
        ci = [0.0 if math.isnan(s["estimate_ci"]) else s["estimate_ci"] for s in ss]
        ax.errorbar(xs, [s["estimate"] for s in ss], yerr=ci, fmt="o", ms=3, capsize=2, label=col)
    truth = {s["row"]: s["truth"] for s in summary}
    ax.scatter(
        range(len(rows)),
        [truth[r] for r in rows],
        marker="_",
        s=400,
        c="k",
        zorder=3,
        label="truth",
    )
    top = max(abs(t) for t in truth.values())
    ax.set_ylim(min(truth.values()) - 0.5 * top - 0.5, max(truth.values()) + 0.5 * top + 0.5)
    ax.set_xticks(range(len(rows)), rows, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("entropy (nats)")
    ax.set_title(textwrap.fill(f"{title} (estimates far off the truth are cut)", 70), fontsize=8)
    ax.legend(fontsize=6, loc="best")
    _save(fig, path)


def plot_heuristics(records: Sequence[EntropyRecord], path: Path) -> None:
    """Kernel variance chosen (left) and relative error (right) against M: colour = rule,
    line style = target."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    rules = _ordered([r.bandwidth for r in records])
    for t, target in enumerate(_ordered([r.target for r in records])):
        for k, rule in enumerate(rules):
            by_m: dict[int, list[EntropyRecord]] = {}
            for r in records:
                if r.target == target and r.bandwidth == rule:
                    by_m.setdefault(r.particles, []).append(r)
            ms = sorted(by_m)
            stats = [mean_ci([r.rel_error for r in by_m[m]]) for m in ms]
            style = dict(color=f"C{k}", ls=("-", "--", ":", "-.")[t % 4], marker="o", ms=3)
            label = f"{target} {rule}"
            sig = [sum(r.sigma2 for r in by_m[m]) / len(by_m[m]) for m in ms]
            axes[0].plot(ms, sig, label=label, **style)
            ci = [0.0 if math.isnan(s[1]) else 100 * s[1] for s in stats]
            axes[1].errorbar(
                ms, [100 * s[0] for s in stats], yerr=ci, capsize=2, label=label, **style
            )
    axes[0].set(xscale="log", yscale="log", xlabel="particles M", ylabel="σ² at last step")
    axes[1].set(xscale="log", xlabel="particles M", ylabel="relative error (%)")
    axes[1].set_yscale("symlog", linthresh=10.0)
    axes[1].axhline(0.0, color="k", lw=0.8)
    for ax in axes:
        ax.legend(fontsize=6)
    _save(fig, path)


def _write_csv(path: Path, rows: Sequence[dict[str, object]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def run_sweep(sweep: Sweep, seeds: int, out: Path, dtype: torch.dtype) -> str:
    """Run every (target, config, seed), write CSVs, plots and the table; return the table."""
    records = [evaluate(t, c, seed=s, dtype=dtype) for t, c in sweep.runs for s in range(seeds)]
    _write_csv(
        out / f"{sweep.name}.csv", [{"sweep": sweep.name, **dataclasses.asdict(r)} for r in records]
    )
    summary = summarize(records, sweep)
    _write_csv(out / f"{sweep.name}_summary.csv", summary)
    plot_heatmap(summary, sweep.title, out / f"{sweep.name}_heatmap.png")
    plot_estimates(summary, sweep.title, out / f"{sweep.name}_estimates.png")
    if sweep.name == "heuristics":
        plot_heuristics(records, out / "heuristics_sigma2.png")
    table = markdown_table(summary, sweep.title)
    (out / f"{sweep.name}.md").write_text(table + "\n")
    return table


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def regime_table(records: Sequence[RegimeRecord]) -> str:
    """One row per case: H(q⁰), the truth (Gaussian-fit bound) and each estimator's estimate
    with its error; with the step cap each estimator's particles have their own truth,
    shown after its error. Means over seeds."""
    by_case: dict[str, dict[str, list[RegimeRecord]]] = {}
    for r in records:
        by_case.setdefault(r.label, {}).setdefault(r.estimator, []).append(r)
    heads = [ESTIMATOR_LABELS[e] for e in ESTIMATORS]
    lines = [
        "| case | H(q⁰) | truth (Gaussian fit) | " + " | ".join(heads) + " |",
        "|---" * (3 + len(heads)) + "|",
    ]
    for label, per in by_case.items():
        base = per["none"]
        cells = []
        for e in ESTIMATORS:
            rs = per.get(e)
            if not rs:
                cells.append("–")
                continue
            cell = f"{_mean([r.estimate for r in rs]):.3f} ({_mean([r.error for r in rs]):+.3f}"
            own_truth = _mean([r.truth for r in rs])
            if abs(own_truth - _mean([r.truth for r in base])) > 1e-12:
                cell += f" vs {own_truth:.3f}"
            cells.append(cell + ")")
        truth = (
            f"{_mean([r.truth for r in base]):.3f} ({_mean([r.gaussian_fit for r in base]):.3f})"
        )
        lines.append(
            f"| {label} | {_mean([r.h0 for r in base]):.3f} | {truth} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def regime_overview(records: Sequence[RegimeRecord]) -> str:
    """Median |error| and median share of the entropy change missed, per curvature and
    estimator, over the cases at M = 10, L = 3, ``mean_half``, without the cap."""
    base = [
        r
        for r in records
        if r.particles == 10
        and r.steps == 3
        and r.bandwidth == "mean_half"
        and math.isnan(r.max_step_norm)
    ]
    curvatures = sorted({r.curvature for r in base})
    lines = [
        "| curvature | cases | " + " | ".join(ESTIMATOR_LABELS[e] for e in ESTIMATORS) + " |",
        "|---" * (2 + len(ESTIMATORS)) + "|",
    ]
    for c in curvatures:
        cells = []
        for e in ESTIMATORS:
            rs = [r for r in base if r.curvature == c and r.estimator == e]
            error, missed = _median([abs(r.error) for r in rs]), _median([r.missed for r in rs])
            cells.append(f"{error:.3f} ({100 * missed:.0f} %)")
        n = len({r.label for r in base if r.curvature == c})
        lines.append(f"| ×{c:g} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_regime(records: Sequence[RegimeRecord], path: Path) -> None:
    """Error of each estimator against the truth's change H(q_L) - H(q⁰), one point per case."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, e in enumerate(ESTIMATORS):
        rs = [r for r in records if r.estimator == e]
        ax.scatter(
            [r.truth - r.h0 for r in rs],
            [r.error for r in rs],
            s=12,
            color=f"C{k}",
            label=ESTIMATOR_LABELS[e],
        )
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set(xlabel="entropy change of the steps, truth (nats)", ylabel="estimate - truth (nats)")
    ax.legend(fontsize=7)
    _save(fig, path)


def run_regime(seeds: int, out: Path, *, pool: int, quick: bool) -> str:
    """The ``regime`` sweep: every case of :func:`regime_cases` on seeds 0..N-1."""
    records = [
        r
        for case in regime_cases(quick=quick)
        for seed in range(seeds)
        for r in evaluate_regime(case, seed=seed, pool=pool)
    ]
    return write_regime(records, out)


def write_regime(records: Sequence[RegimeRecord], out: Path) -> str:
    """``regime.csv``, ``regime_errors.png`` and ``regime.md``; returns the markdown."""
    seeds = len({r.seed for r in records})
    _write_csv(out / "regime.csv", [dataclasses.asdict(r) for r in records])
    plot_regime(records, out / "regime_errors.png")
    pools = sorted({r.pool for r in records})
    table = (
        "**SVGD's entropy estimates in the training regime** (ε = 0.1, quadratic targets, "
        "q⁰ = N(0, s²I)): estimate (estimate - truth)\n\n"
        + regime_table(records)
        + "\n\n**Median |error| in nats (median share of the entropy change missed)**, "
        "M = 10, L = 3, `mean_half`, no cap, all D and s\n\n"
        + regime_overview(records)
        + f"\n\nTruth: calibrated whitened kNN entropy (k = 5) of {'/'.join(map(str, pools))} "
        "pooled particles, at most their Gaussian fit (an upper bound, shown in parentheses); "
        f"{seeds} seed(s). Where the cap is on, each estimator's particles "
        "move differently (the self term enters the cap) and its error is against its own "
        "truth (shown after 'vs')."
    )
    (out / "regime.md").write_text(table + "\n")
    return table


def knn_sizes(dim: int, *, quick: bool) -> tuple[tuple[int, bool], ...]:
    """(N, calibrate) pairs of the ``knn`` sweep: 5k and 20k everywhere; in D = 17 also 80k,
    uncalibrated (its Gaussian reference would cost three more 80k estimates)."""
    if quick:
        return ((1000, True),)
    return ((5000, True), (20_000, True), *(((80_000, False),) if dim >= 17 else ()))


def knn_table(records: Sequence[TruthCheckRecord]) -> str:
    """Error of each sample-only estimator (estimate - truth), mean over seeds."""
    groups: dict[tuple[str, int], list[TruthCheckRecord]] = {}
    for r in records:
        groups.setdefault((r.target, r.n), []).append(r)
    lines = [
        "| target | N | truth | kNN | kNN whitened | kNN calibrated | Gaussian fit (bound) |",
        "|---" * 7 + "|",
    ]
    for (target, n), rs in groups.items():
        truth = _mean([r.truth for r in rs])
        errs = [
            _mean([getattr(r, key) for r in rs]) - truth
            for key in ("raw", "whitened", "calibrated", "gaussian_fit")
        ]
        cells = ["–" if math.isnan(e) else f"{e:+.3f}" for e in errs]
        lines.append(f"| {target} | {n} | {truth:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_knn_check(seeds: int, out: Path, *, quick: bool) -> str:
    """The ``knn`` sweep: the ground truth of ``regime`` on targets of known entropy."""
    dims = (3,) if quick else (3, 6, 8, 17)
    records = [
        check_truth(target, n, seed=seed, calibrate=calibrate)
        for d in dims
        for target in truth_check_targets(d)
        for n, calibrate in knn_sizes(d, quick=quick)
        for seed in range(seeds)
    ]
    _write_csv(out / "knn.csv", [dataclasses.asdict(r) for r in records])
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, key in enumerate(("raw", "whitened", "calibrated", "gaussian_fit")):
        rs = [r for r in records if not math.isnan(getattr(r, key))]
        ax.scatter(
            [r.dim + 0.15 * k for r in rs],
            [getattr(r, key) - r.truth for r in rs],
            s=12,
            color=f"C{k}",
            label=key,
        )
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set(xlabel="dimension", ylabel="estimate - truth (nats)")
    ax.legend(fontsize=7)
    _save(fig, out / "knn_errors.png")
    table = (
        "**Sample-only entropy estimators against known entropies** (k = 5): estimate - truth "
        f"in nats, mean over {seeds} seed(s)\n\n" + knn_table(records)
    )
    (out / "knn.md").write_text(table + "\n")
    return table


def _quantile(values: list[float], q: float) -> float:
    return float(torch.quantile(torch.tensor(values, dtype=torch.float64), q))


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 0, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = 0.5 * (start + end)
        start = end + 1
    return ranks


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (NaN when either side is constant)."""
    ra, rb = (torch.tensor(_ranks(v), dtype=torch.float64) for v in (a, b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    norm = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / norm if norm > 0 else float("nan")


def critic_tables(records: Sequence[CriticRecord]) -> str:
    """Per checkpoint and estimator, the distribution over states of estimate - truth; then,
    for the trainer's sampler with and without the self term, how the error follows the
    energy's curvature, σθ and the cap (rank correlations, and medians by tercile)."""
    stages = _ordered((r.checkpoint, r.updates) for r in records)
    lines = [
        "| checkpoint | updates | estimator | states | median error | 10-90 % | "
        "median abs. error | share abs. error > 0.1 | median share of the change missed |",
        "|---" * 9 + "|",
    ]
    for checkpoint, updates in stages:
        for e in CRITIC_ESTIMATORS:
            rs = [r for r in records if r.checkpoint == checkpoint and r.estimator == e]
            if not rs:
                continue
            err = [r.error for r in rs]
            lines.append(
                f"| {checkpoint} | {updates} | {CRITIC_LABELS[e]} | {len(rs)} | "
                f"{_median(err):+.3f} | "
                f"[{_quantile(err, 0.1):+.3f}, {_quantile(err, 0.9):+.3f}] | "
                f"{_median([abs(x) for x in err]):.3f} | "
                f"{100 * sum(abs(x) > 0.1 for x in err) / len(err):.0f} % | "
                f"{100 * _median([r.missed for r in rs]):.0f} % |"
            )
    lines += [
        "",
        "Rank correlation (Spearman, all checkpoints) of estimate - truth with the state's "
        "descriptors: curvature = mean eigenvalue of -∇²f at q⁰'s particles, σθ = geometric "
        "mean of the initial std, cap = the mean factor of the trainer's step cap on ε "
        "without the self term (1: never active), split = share of q⁰'s particles whose "
        "minimal critic is the less common one (½: the twin critics cross through the "
        "cloud), entropy change = truth - H(q⁰).",
        "",
        "| estimator | curvature | σθ | cap factor | split | entropy change |",
        "|---|---|---|---|---|---|",
    ]
    cap_factor = {(r.updates, r.state): r.step_scale for r in records if r.estimator == "none"}
    for e in ("none", "hutchinson", "none_nocap", "logdet"):
        rs = [r for r in records if r.estimator == e]
        if len(rs) < 3:
            continue
        err = [r.error for r in rs]
        cells = [
            _spearman(err, [getattr(r, key) for r in rs]) for key in ("curvature", "sigma_theta")
        ]
        cells.append(_spearman(err, [cap_factor.get((r.updates, r.state), 1.0) for r in rs]))
        cells.append(_spearman(err, [r.critic_split for r in rs]))
        cells.append(_spearman(err, [r.truth - r.h0 for r in rs]))
        lines.append(f"| {CRITIC_LABELS[e]} | " + " | ".join(f"{c:+.2f}" for c in cells) + " |")
    base = [r for r in records if r.estimator == "none"]
    for key, label in (
        ("curvature", "curvature"),
        ("critic_split", "split"),
        ("sigma_theta", "σθ"),
    ):
        lines += ["", *_tercile_table(records, base, key, label)]
    return "\n".join(lines)


def _tercile_table(
    records: Sequence[CriticRecord], base: list[CriticRecord], key: str, label: str
) -> list[str]:
    """Median estimate - truth per estimator, by tercile of a state descriptor."""
    lines = [
        f"Median estimate - truth by tercile of {label} (all checkpoints):",
        "",
        f"| {label} tercile | range | states | "
        + " | ".join(CRITIC_LABELS[e] for e in CRITIC_ESTIMATORS)
        + " | median σθ | median cap factor |",
        "|---" * (5 + len(CRITIC_ESTIMATORS)) + "|",
    ]
    if not base:
        return lines
    values = [getattr(r, key) for r in base]
    cuts = [_quantile(values, q) for q in (1 / 3, 2 / 3)]
    for k, (lo, hi) in enumerate(zip([-math.inf, *cuts], [*cuts, math.inf], strict=True)):
        sel = [r for r in base if lo < getattr(r, key) <= hi]
        keys = {(r.updates, r.state) for r in sel}
        if not keys:
            continue
        cells = []
        for e in CRITIC_ESTIMATORS:
            errs = [r.error for r in records if r.estimator == e and (r.updates, r.state) in keys]
            cells.append(f"{_median(errs):+.3f}" if errs else "–")
        rng = f"{min(getattr(r, key) for r in sel):.2f} to {max(getattr(r, key) for r in sel):.2f}"
        lines.append(
            f"| {k + 1} | {rng} | {len(keys)} | " + " | ".join(cells) + f" | "
            f"{_median([r.sigma_theta for r in sel]):.2f} | "
            f"{_median([r.step_scale for r in sel]):.2f} |"
        )
    return lines


def checkpoint_labels(checkpoints: Sequence[Path]) -> list[str]:
    """How the critic tables name each checkpoint: its file name, or, where two share one
    (``step=19050.ckpt`` of two runs), its path below the folder the checkpoints share."""
    names = [c.name for c in checkpoints]
    if len(set(names)) == len(names):
        return names
    paths = [c.resolve() for c in checkpoints]
    common = Path(os.path.commonpath(paths))
    return [str(p.relative_to(common)) if p != common else p.name for p in paths]


def run_critic(
    checkpoints: Sequence[Path],
    replays: Sequence[Path],
    out: Path,
    *,
    states: int,
    groups: int,
    seed: int,
) -> str:
    """The ``critic`` sweep: :func:`evaluate_critic` at ``states`` replay states of each
    checkpoint (each with its own replay dump), ``groups`` chains per state."""
    from s2ac_lit.trainer.console import quiet_third_party
    from s2ac_lit.trainer.module import RLModule

    quiet_third_party()  # TorchRL's INFO line for each replay storage it builds, as in a run
    records = []
    labels = checkpoint_labels(checkpoints)
    for checkpoint, replay, label in zip(checkpoints, replays, labels, strict=True):
        module = RLModule.load(checkpoint)
        updates = int(torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"])
        observations = replay_observations(module, replay, states, seed=seed)
        records += evaluate_critic(
            module,
            observations,
            groups=groups,
            seed=seed,
            checkpoint=label,
            updates=updates,
        )
        _write_csv(out / "critic.csv", [dataclasses.asdict(r) for r in records])
    return write_critic(records, out)


def write_critic(records: Sequence[CriticRecord], out: Path) -> str:
    """``critic.csv`` and ``critic.md``; returns the markdown."""
    _write_csv(out / "critic.csv", [dataclasses.asdict(r) for r in records])
    pools = "/".join(map(str, sorted({r.pool for r in records})))
    stages = len({r.checkpoint for r in records})
    states = len({(r.checkpoint, r.state) for r in records})
    table = (
        f"**SVGD's entropy estimates on trained critics** ({stages} checkpoint(s), {states} "
        f"replay states in all, {pools} pooled pre-squash particles per state; estimate - truth "
        "in nats)\n\n" + critic_tables(records)
    )
    (out / "critic.md").write_text(table + "\n")
    return table


def load_custom(spec: str) -> Target:
    """``module:attr``: a :class:`Target`, or a zero-argument callable that returns one."""
    module, _, attr = spec.partition(":")
    if str(Path.cwd()) not in sys.path:  # a script's path starts at tools/, not at the cwd
        sys.path.insert(0, str(Path.cwd()))
    if not module or not attr:
        raise UsageError(f"--custom {spec!r} must look like MODULE:ATTR, e.g. mytargets:ring")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as error:
        raise UsageError(f"--custom {spec!r} cannot be loaded: {error}") from None
    target = obj if isinstance(obj, Target) else obj() if callable(obj) else obj
    if not isinstance(target, Target):
        raise UsageError(
            f"--custom {spec!r} must be a Target or return one, got {type(target).__name__}"
        )
    return target


@cli
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sweep",
        nargs="+",
        choices=(*SWEEPS, *REGIME_SWEEPS, "all"),
        help="sweeps to run (all: every one; default: bandwidth, or none with --checkpoint)",
    )
    parser.add_argument(
        "--seeds",
        type=positive_int,
        help="seeds 0..N-1 per configuration (default: 5; regime and knn: 1)",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        nargs="+",
        default=[],
        help="critic: trained S2AC checkpoints (a run's checkpoints/step=N.ckpt)",
    )
    parser.add_argument(
        "--replay",
        type=Path,
        nargs="+",
        default=[],
        help="critic: one replay dump per checkpoint (the run's replay/step-N/rank-R)",
    )
    parser.add_argument(
        "--states", type=positive_int, default=64, help="critic: replay states per checkpoint"
    )
    parser.add_argument(
        "--groups",
        type=positive_int,
        default=500,
        help="critic: independent M-particle chains per state (the pooled truth's sample)",
    )
    parser.add_argument(
        "--pool",
        type=positive_int,
        default=20_000,
        help="regime: particles pooled per case for the truth (quick: 2000)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for smoke tests")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument(
        "--custom",
        metavar="MODULE:ATTR",
        help="also run the kernel-variance sweep on a user Target",
    )
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {str(args.out)!r} is a file, not a folder")
    if len(args.checkpoint) != len(args.replay):
        parser.error(
            f"--checkpoint and --replay need one dump per checkpoint, got {len(args.checkpoint)} "
            f"and {len(args.replay)}"
        )
    for flag, paths in (("--checkpoint", args.checkpoint), ("--replay", args.replay)):
        for path in paths:
            if not path.exists():
                parser.error(f"{flag} {str(path)!r} does not exist")
    torch.set_num_threads(args.threads)
    custom = load_custom(args.custom) if args.custom else None
    args.out.mkdir(parents=True, exist_ok=True)
    requested = args.sweep or ([] if args.checkpoint else ["bandwidth"])
    names = [*SWEEPS, *REGIME_SWEEPS] if "all" in requested else _ordered(requested)
    sweeps = [build_sweep(n, quick=args.quick) for n in names if n in SWEEPS]
    if custom is not None:
        sweeps.append(build_sweep("custom", quick=args.quick, custom=custom))
    dtype = getattr(torch, args.dtype)
    tables, start = [], time.perf_counter()
    for sweep in sweeps:
        t0 = time.perf_counter()
        table = run_sweep(sweep, args.seeds or 5, args.out, dtype)
        tables.append(f"{table}\n\n_{sweep.name}: {time.perf_counter() - t0:.1f} s_")
        print(tables[-1] + "\n", flush=True)
    if args.checkpoint:
        t0 = time.perf_counter()
        table = run_critic(
            args.checkpoint,
            args.replay,
            args.out,
            states=args.states,
            groups=args.groups,
            seed=0,
        )
        tables.append(f"{table}\n\n_critic: {time.perf_counter() - t0:.1f} s_")
        print(tables[-1] + "\n", flush=True)
    for name in (n for n in names if n in REGIME_SWEEPS):
        t0 = time.perf_counter()
        if name == "regime":
            pool = min(args.pool, 2000) if args.quick else args.pool
            table = run_regime(args.seeds or 1, args.out, pool=pool, quick=args.quick)
        else:
            table = run_knn_check(args.seeds or 1, args.out, quick=args.quick)
        tables.append(f"{table}\n\n_{name}: {time.perf_counter() - t0:.1f} s_")
        print(tables[-1] + "\n", flush=True)
    total = f"Total wall time: {time.perf_counter() - start:.1f} s ({args.threads} thread)."
    (args.out / "summary.md").write_text("\n\n".join(tables) + f"\n\n{total}\n")
    print(total)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
