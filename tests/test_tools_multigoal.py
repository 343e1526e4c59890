"""Smoke run of ``tools/multigoal.py --quick``: rows, columns, pictures, re-evaluation (slow)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType

import pytest
from conftest import load_tool, read_csv

from s2ac_lit.analysis.goal_metrics import PROBE_STATES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    return load_tool("multigoal")


def test_quick_plans_every_algorithm_with_the_keys_it_reads(tool: ModuleType, tmp_path) -> None:
    """``--quick`` sizes every run down, each algorithm with the keys it reads (SAC has no
    sampler: ``svgd.steps`` would be refused), and still validates every run's config."""
    args = tool.parse_args(["--quick", "--seeds", "1", "--out", str(tmp_path)])
    suite, specs = tool.plan_runs(args)
    assert {spec.algo for spec in specs} == set(tool.LABELS)
    for spec in specs:
        assert "hidden_sizes:\n  - 16\n  - 16" in spec.config_yaml
        registry = tool.ALGORITHMS[tool.registry_name(suite, spec.algo)]
        assert ("steps: 2" in spec.config_yaml) == registry.reads_key("svgd.steps")


@pytest.mark.slow  # eight fit.py processes through Ray: 5-12 minutes on 2 CPUs
def test_quick_run_writes_rows_columns_and_pictures(
    tool: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--quick", "--seeds", "2", "--episodes", "3", "--out", str(tmp_path)]
    assert tool.main([*argv, "--workers", "2"]) == 0
    algos, envs, modes = list(tool.LABELS), ["plain", "obstacle"], ["sampled", "deterministic"]

    rows = read_csv(tmp_path / "results.csv")
    runs = [r for r in rows if r["seed"] not in ("mean", "std")]
    aggregates = [r for r in rows if r["seed"] in ("mean", "std")]
    assert len(runs) == len(algos) * 2 * len(envs) * len(modes)
    assert len(aggregates) == len(algos) * len(envs) * len(modes) * 2
    assert {(r["algo"], r["seed"], r["env"], r["mode"]) for r in runs} == {
        (a, str(s), e, m) for a in algos for s in (0, 1) for e in envs for m in modes
    }
    columns = set(rows[0])
    expected = {"algo", "label", "seed", "env", "env_id", "mode", "alpha", "frames", "updates"}
    expected |= {"distinct_goals", "hit_G1", "hit_G2", "hit_G3", "miss_rate", "return_mean"}
    expected |= {"wall_hits_per_episode", "entropy", "entropy_knn", "episodes", "n_seeds"}
    expected |= {f"entropy_p{i}" for i in range(len(PROBE_STATES))}
    expected |= {f"entropy_knn_p{i}" for i in range(len(PROBE_STATES))}
    assert expected <= columns
    for row in runs:
        hits = sum(float(row[f"hit_G{g}"]) for g in (1, 2, 3)) + float(row["miss_rate"])
        assert hits == pytest.approx(1.0)
        assert row["frames"] == str(tool.QUICK_FRAMES) and row["episodes"] == "3"
        sampled = row["mode"] == "sampled"
        assert math.isfinite(float(row["entropy_knn"])) == sampled
        assert math.isfinite(float(row["entropy"])) == (sampled and row["algo"] != "sql")
        if row["env"] == "plain":
            assert float(row["wall_hits_per_episode"]) == 0.0

    def reject(constant: str) -> None:
        raise AssertionError(f"results.json is not strict JSON: {constant}")

    payload = json.loads((tmp_path / "results.json").read_text(), parse_constant=reject)
    assert set(payload) == {"meta", "runs", "aggregate"}
    assert len(payload["runs"]) == len(runs)
    assert payload["meta"]["probe_states"] == [list(p) for p in PROBE_STATES]
    sql = next(r for r in payload["runs"] if r["algo"] == "sql" and r["mode"] == "sampled")
    assert sql["entropy"] is None and sql["entropy_knn"] is not None
    first = payload["aggregate"][0]
    assert first["n_seeds"] == 2 and set(first["distinct_goals"]) == {"mean", "std"}

    pictures = ["goal_hits.png", "goal_hits_obstacle.png"]
    pictures += [f"trajectories_{a}{s}.png" for a in algos for s in ("", "_obstacle")]
    for name in pictures:
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC, name
    assert "| S2AC(φ) | plain | sampled | 2 |" in capsys.readouterr().out

    # --skip-train re-evaluates the same runs with the same seeds: identical metrics.
    assert tool.main([*argv, "--skip-train", "--algos", "sac", "sql"]) == 0
    again = [r for r in read_csv(tmp_path / "results.csv") if r["seed"] not in ("mean", "std")]

    def strip(row: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in row.items() if k != "eval_wall_s"}

    assert [strip(r) for r in again] == [strip(r) for r in runs if r["algo"] in ("sac", "sql")]
