"""Every MuJoCo preset starts, collects, updates, evaluates and checkpoints on a CPU.

Only the budget is shrunk (frames, time limit, buffer size, evaluation episodes); networks,
particles, SVGD steps and batch size stay the authors', so a preset that breaks on its real
settings fails here rather than after a GPU queue wait.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT

from s2ac_lit.config import load_config
from s2ac_lit.trainer.train import train

MUJOCO_PRESETS = ("walker", "hopper", "halfcheetah", "ant", "humanoid")
SMALL_BUDGET = [
    "collector.total_frames=150",
    "collector.init_random_frames=100",
    "collector.frames_per_batch=50",
    "collector.update_after=100",
    "collector.updates_per_batch=2",
    "replay.capacity=200",
    "env.max_episode_steps=20",
    "eval.every_frames=150",
    "eval.episodes=1",
    "trainer.checkpoint_every_updates=2",
    "trainer.progress_bar=false",
]


@pytest.mark.parametrize("preset", MUJOCO_PRESETS)
def test_preset_runs_every_stage_on_a_cpu(preset: str, tmp_path: Path) -> None:
    path = ROOT / "conf" / f"{preset}.yaml"
    authors = load_config(path)
    assert (authors.algo, authors.actor.init) == ("s2ac", "learned")  # S2AC(φ,θ)
    assert (authors.svgd.num_particles, authors.svgd.steps, authors.svgd.step_size) == (10, 3, 0.1)
    assert authors.replay.batch_size == 100 and authors.collector.total_frames == 500_000

    summary = train(load_config(path, [*SMALL_BUDGET, f"run_dir={tmp_path}"]))
    run = Path(summary["run_folder"])
    assert summary["frames"] == 150
    assert summary["updates"] == 4  # two rounds of 2 updates, after frames 100 and 150
    assert [h["frames"] for h in summary["eval_history"]][-1] == 150
    assert json.loads((run / "summary.json").read_text())["updates"] == 4
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert any((run / "replay").iterdir())
