"""Smoke runs of ``tools/entropy_eval.py --quick``: files, columns and row counts."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
import torch
from conftest import ROOT, load_tool, read_csv, save_untrained_checkpoint
from tensordict import TensorDict

from s2ac_lit.analysis.entropy import EntropyRecord
from s2ac_lit.analysis.entropy.critic import CRITIC_ESTIMATORS
from s2ac_lit.analysis.entropy.regime import RegimeRecord
from s2ac_lit.config import load_config
from s2ac_lit.trainer.callbacks import FilledStorageCheckpointer
from s2ac_lit.trainer.data import make_replay_buffer

TOOL = ROOT / "tools" / "entropy_eval.py"
RECORD_COLUMNS = ["sweep", *(f.name for f in dataclasses.fields(EntropyRecord))]
SUMMARY_COLUMNS = [
    "row",
    "col",
    "target",
    "truth",
    "truth_se",
    "seeds",
    "estimate",
    "estimate_ci",
    "rel_error",
    "rel_error_ci",
    "bound_max",
    "sigma2",
    "spread_ratio",
    "wall_s",
]


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    return load_tool("entropy_eval")


@pytest.fixture(scope="module")
def quick_run(tool: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("entropy_eval")
    assert tool.main(["--sweep", "all", "--quick", "--seeds", "2", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(
    "sweep", ["bandwidth", "particles", "init", "dims", "modes", "samplers", "heuristics"]
)
def test_quick_sweep_writes_csv_and_plots(tool: ModuleType, quick_run: Path, sweep: str) -> None:
    rows = read_csv(quick_run / f"{sweep}.csv")
    expected_runs = len(tool.build_sweep(sweep, quick=True).runs)
    assert list(rows[0]) == RECORD_COLUMNS
    assert len(rows) == 2 * expected_runs
    assert {r["seed"] for r in rows} == {"0", "1"}
    assert all(r["sweep"] == sweep for r in rows)
    for r in rows:
        assert float(r["truth"]) > 0 and float(r["wall_s"]) >= 0
        assert float(r["rel_error"]) == pytest.approx(
            (float(r["estimate"]) - float(r["truth"])) / float(r["truth"]), rel=1e-9, abs=1e-12
        )
    summary = read_csv(quick_run / f"{sweep}_summary.csv")
    assert list(summary[0]) == SUMMARY_COLUMNS
    assert len(summary) == expected_runs and all(s["seeds"] == "2" for s in summary)
    for png in (f"{sweep}_heatmap.png", f"{sweep}_estimates.png"):
        assert (quick_run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (quick_run / f"{sweep}.md").read_text().count("|") > 4


def test_quick_run_summary_and_diagnostics(quick_run: Path) -> None:
    assert (quick_run / "heuristics_sigma2.png").stat().st_size > 0
    assert "Total wall time" in (quick_run / "summary.md").read_text()
    rows = read_csv(quick_run / "bandwidth.csv")
    assert {r["bandwidth"] for r in rows} == {"1.0", "5.0", "100.0", "median"}
    assert all(0 < float(r["bound_max"]) < 1 for r in rows)  # invertibility bound reported
    samplers = {r["method"] for r in read_csv(quick_run / "samplers.csv")}
    assert samplers == {"svgd", "svgd_exact_logdet", "langevin", "hmc_position", "hmc_joint"}


def test_custom_target_and_script_entry_point(tmp_path: Path) -> None:
    """Runs the file as a script from another directory, with a user's target module."""
    (tmp_path / "my_target.py").write_text(
        textwrap.dedent("""
        from s2ac_lit.analysis.entropy import custom_target

        def banana():
            def log_prob(x):
                return -0.5 * (x[..., 0] ** 2 / 4 + (x[..., 1] - 0.25 * x[..., 0] ** 2) ** 2)
            return custom_target(log_prob, 2, box=((-12, -8), (12, 30)), name="banana")
    """)
    )
    result = subprocess.run(
        [
            sys.executable,
            str(TOOL),
            "--sweep",
            "init",
            "--quick",
            "--seeds",
            "1",
            "--custom",
            "my_target:banana",
            "--out",
            str(tmp_path / "out"),
        ],
        cwd=tmp_path,  # the user's module is found from the working directory
        capture_output=True,
        text=True,
        timeout=120,
        env={"MPLCONFIGDIR": str(tmp_path / "mpl")},  # no PYTHONPATH: the tool finds s2ac_lit
    )
    assert result.returncode == 0, result.stderr
    assert "banana" in result.stdout
    rows = read_csv(tmp_path / "out" / "custom.csv")
    assert {r["target"] for r in rows} == {"banana"} and len(rows) == 8
    assert (tmp_path / "out" / "custom_heatmap.png").exists()


def test_quick_regime_and_knn_sweeps(quick_run: Path) -> None:
    """The regime sweep writes one row per case, seed and estimator (no exact log-det mode
    with the cap), each error against its truth; the knn sweep one row per target, N and
    seed."""
    rows = read_csv(quick_run / "regime.csv")
    assert list(rows[0]) == [f.name for f in dataclasses.fields(RegimeRecord)]
    assert len(rows) == 2 * (4 + 3)  # 2 seeds; the capped case has no log-det mode
    for r in rows:
        assert float(r["error"]) == pytest.approx(float(r["estimate"]) - float(r["truth"]))
        assert float(r["pool"]) == 2000
    capped = [r for r in rows if r["max_step_norm"] == "0.5"]
    assert {r["estimator"] for r in capped} == {"none", "exact", "hutchinson"}
    table = (quick_run / "regime.md").read_text()
    assert "closed form (paper)" in table and "vs" in table  # own truths under the cap
    assert (quick_run / "regime_errors.png").read_bytes()[:4] == b"\x89PNG"
    knn = read_csv(quick_run / "knn.csv")
    assert {r["target"] for r in knn} == {"quad_d3_x1", "gmm4_d3"} and len(knn) == 4


@pytest.mark.parametrize("presets", [[], ["conf/algo/s2ac_authors.yaml"]], ids=["ours", "authors"])
def test_critic_sweep_on_a_checkpoint_and_its_replay_dump(
    tool: ModuleType, tmp_path: Path, presets: list[str], caplog, monkeypatch
) -> None:
    """An untrained multigoal S2AC(φ,θ) checkpoint and a replay dump of random states: every
    estimator at every state, the no-cap estimators on one set of particles (one truth). A run
    with the authors' settings (1/(M-1), no cap) is compared too. The console has our lines
    only, not TorchRL's INFO line for the replay storage it loads."""
    torchrl_log = logging.getLogger("torchrl")  # as imported, whatever earlier tests quietened
    monkeypatch.setattr(torchrl_log, "level", logging.INFO)
    for handler in torchrl_log.handlers:
        monkeypatch.setattr(handler, "level", logging.INFO)
    caplog.set_level(logging.INFO)
    cfg = load_config(
        [ROOT / p for p in presets],
        ["env.id=s2ac_lit/MultiGoalMaxEnt-v0", "actor.hidden_sizes=[8]"],
    )
    # Two runs' checkpoints under one file name, as two runs' step=N.ckpt at the same update.
    checkpoints = [save_untrained_checkpoint(cfg, tmp_path / run) for run in ("run-a", "run-b")]
    buffer = make_replay_buffer(cfg.replay)
    buffer.extend(TensorDict({"observation": torch.randn(50, 2)}, [50]))
    buffer.storage.checkpointer = FilledStorageCheckpointer()  # as the trainer dumps: 50 of 1e6
    buffer.dumps(tmp_path / "replay")
    caplog.clear()  # the lines of the test's own buffer
    out = tmp_path / "out"
    argv = ["--checkpoint", *map(str, checkpoints), "--replay", *[str(tmp_path / "replay")] * 2]
    assert tool.main([*argv, "--states", "2", "--groups", "40", "--out", str(out)]) == 0
    rows = read_csv(out / "critic.csv")
    assert len(rows) == 2 * 2 * len(CRITIC_ESTIMATORS)
    labels = [f"{run}/checkpoints/last.ckpt" for run in ("run-a", "run-b")]
    assert {r["checkpoint"] for r in rows} == set(labels)
    for label in labels:
        for state in ("0", "1"):
            nocap = {
                r["truth"]
                for r in rows
                if r["checkpoint"] == label and r["state"] == state and "nocap" in r["estimator"]
            }
            assert len(nocap) == 1
    table = (out / "critic.md").read_text()
    assert "2 checkpoint(s), 4 replay states in all" in table
    for label in labels:
        assert f"| {label} | 0 | closed form | 2 |" in table, table
    torchrl_lines = [r.getMessage() for r in caplog.records if r.name.startswith("torchrl")]
    assert not torchrl_lines, torchrl_lines


def test_critic_sweep_needs_one_replay_dump_per_checkpoint(
    tool: ModuleType, tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--checkpoint", str(tmp_path), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
