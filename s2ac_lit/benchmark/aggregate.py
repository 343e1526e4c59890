"""Statistics of normalised scores with rliable (Agarwal et al., NeurIPS 2021).

Scores are normalised per task, ``(return - random) / (reference - random)``, so 0 is a random
policy and 1 the suite's reference. Every interval is rliable's stratified bootstrap (runs are
resampled within each task) at 95 %; nothing here resamples by hand.

Shapes: score matrices are ``[R, T]`` (runs × tasks) per algorithm; curves ``[R, T, P]``
(P evaluation points). An algorithm's runs are its seeds that finished on every task.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
from rliable import library, metrics

METRICS: dict[str, Callable[[np.ndarray], float]] = {
    "IQM": metrics.aggregate_iqm,
    "mean": metrics.aggregate_mean,
    "median": metrics.aggregate_median,
    "optimality gap": metrics.aggregate_optimality_gap,
}
CONFIDENCE = 0.95


def normalise(returns: np.ndarray, random: float, reference: float) -> np.ndarray:
    """0 at the random policy's return, 1 at the reference return."""
    return (np.asarray(returns, dtype=float) - random) / (reference - random)


def score_matrix(finals: Mapping[tuple[str, int], float], tasks: list[str]) -> np.ndarray:
    """``[R, T]`` from ``(task, seed) → score``, keeping the seeds present for every task."""
    seeds = sorted({s for _, s in finals})
    complete = [s for s in seeds if all((t, s) in finals for t in tasks)]
    return np.array([[finals[(t, s)] for t in tasks] for s in complete]).reshape(-1, len(tasks))


@contextmanager
def _numpy_seeded(seed: int) -> Iterator[None]:
    """numpy's global generator seeded for the block, then put back as it was.

    rliable's stratified bootstraps draw their resampling indices from ``np.random`` whatever
    ``random_state`` they are given, so only this makes a report's intervals the same on
    every regeneration.
    """
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _each_alone(
    scores: Mapping[str, Any], seed: int, estimate: Callable[[dict], tuple[dict, dict]]
) -> tuple[dict, dict]:
    """``estimate({algo: data})`` for each algorithm on its own, numpy seeded with ``seed``
    each time, the two result dicts merged: one stream shared by all would move an
    algorithm's interval whenever another algorithm gains a run."""
    first, second = {}, {}
    for algo, data in scores.items():
        with _numpy_seeded(seed):
            one, two = estimate({algo: data})
        first |= one
        second |= two
    return first, second


def _interval(
    scores: Mapping[str, np.ndarray | tuple[np.ndarray, np.ndarray]],
    func: Callable[..., np.ndarray],
    reps: int,
    seed: int,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """rliable's point estimates and intervals, each algorithm bootstrapped on its own."""

    def estimate(one: dict) -> tuple[dict, dict]:
        with warnings.catch_warnings():
            # arch deprecates random_state in favour of a Generator; rliable still passes it.
            warnings.filterwarnings("ignore", message="random_state is deprecated")
            return library.get_interval_estimates(
                one,
                func,
                reps=reps,
                confidence_interval_size=CONFIDENCE,
                random_state=np.random.RandomState(seed),
            )

    return _each_alone(scores, seed, estimate)


def aggregate_metrics(
    scores: Mapping[str, np.ndarray], *, reps: int = 2000, seed: int = 0
) -> dict[str, dict[str, dict[str, float | list[float]]]]:
    """``algo → metric → {value, ci: [low, high]}`` for IQM, mean, median, optimality gap.

    Shapes: ``scores[algo]`` is ``[R, T]``; algorithms with no complete run are left out.
    """
    usable = {a: s for a, s in scores.items() if s.shape[0] > 0}
    if not usable:
        return {}

    def all_metrics(x: np.ndarray) -> np.ndarray:
        return np.array([f(x) for f in METRICS.values()])

    points, cis = _interval(usable, all_metrics, reps, seed)
    return {
        algo: {
            name: {"value": float(points[algo][i]), "ci": [float(v) for v in cis[algo][:, i]]}
            for i, name in enumerate(METRICS)
        }
        for algo in usable
    }


def improvement_probability(
    scores: Mapping[str, np.ndarray], baseline: str, *, reps: int = 2000, seed: int = 0
) -> dict[str, dict[str, float | list[float]]]:
    """``algo → {value, ci}``: P(algo's run beats baseline's run), averaged over tasks.

    Shapes: ``scores[algo]`` is ``[R, T]``; R may differ between the two algorithms.
    """
    if baseline not in scores or scores[baseline].shape[0] == 0:
        return {}
    pairs = {
        algo: (s, scores[baseline])
        for algo, s in scores.items()
        if algo != baseline and s.shape[0] > 0
    }
    if not pairs:
        return {}

    def probability(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.array([metrics.probability_of_improvement(x, y)])

    points, cis = _interval(pairs, probability, reps, seed)
    return {
        algo: {"value": float(points[algo][0]), "ci": [float(v) for v in cis[algo][:, 0]]}
        for algo in pairs
    }


def iqm_curves(
    curves: Mapping[str, np.ndarray], *, reps: int = 2000, seed: int = 0
) -> dict[str, dict[str, list]]:
    """``algo → {iqm, low, high}``: IQM over runs and tasks at each evaluation point.

    Shapes: ``curves[algo]`` is ``[R, T, P]``; each output list has P entries.
    """
    usable = {a: c for a, c in curves.items() if c.shape[0] > 0}
    if not usable:
        return {}

    def iqm_per_point(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(x[..., p]) for p in range(x.shape[-1])])

    points, cis = _interval(usable, iqm_per_point, reps, seed)
    return {
        a: {"iqm": points[a].tolist(), "low": cis[a][0].tolist(), "high": cis[a][1].tolist()}
        for a in usable
    }


def performance_profiles(
    scores: Mapping[str, np.ndarray], taus: np.ndarray, *, reps: int = 2000, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Fraction of runs with normalised score > τ, per τ, with 95 % CIs (``[2, len(taus)]``),
    each algorithm bootstrapped on its own from ``seed`` (as :func:`_interval`)."""
    usable = {a: s for a, s in scores.items() if s.shape[0] > 0}
    return _each_alone(
        usable,
        seed,
        lambda one: library.create_performance_profile(
            one, taus, reps=reps, confidence_interval_size=CONFIDENCE
        ),
    )
