"""The goal map a multigoal fit leaves in its run folder, and the line it prints."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import save_untrained_checkpoint

from s2ac_lit.analysis.goal_map import write_goal_map
from s2ac_lit.config import load_config
from s2ac_lit.envs import run_output
from s2ac_lit.trainer.module import RLModule

ENV_ID = "s2ac_lit/MultiGoalMaxEnt-v0"
EPISODES = 8  # each sampled episode is 30 SVGD-policy steps: keep the test short


def test_goal_map_writes_picture_and_rates_and_names_goals(tmp_path: Path) -> None:
    cfg = load_config(
        overrides=[
            f"env.id={ENV_ID}",
            "svgd.num_particles=4",
            "svgd.steps=1",
            "actor.init=fixed",
            "critic.hidden_sizes=[8]",
        ]
    )
    run = tmp_path / "run"
    save_untrained_checkpoint(cfg, run)

    assert run_output(ENV_ID) is write_goal_map  # the multigoal ids' run output
    policy = RLModule.load(run / "checkpoints" / "last.ckpt").eval().policy()
    line = write_goal_map(run, ENV_ID, policy, EPISODES)

    assert (run / "goal_map.png").stat().st_size > 10_000  # a drawn figure, not an empty file
    saved = json.loads((run / "goal_map.json").read_text())
    rates = [saved[f"G{g}"] for g in (1, 2, 3)]
    assert saved["episodes"] == EPISODES
    # Rates are fractions of whole episodes and, with the misses, account for all of them.
    assert all(round(r * EPISODES) == r * EPISODES for r in rates)
    assert sum(rates) <= 1.0
    reached = sum(r > 0 for r in rates)
    assert line.startswith(f"goals reached: {reached} of 3 (G1 {rates[0]:.0%}, ")
    miss = re.search(r"(\d+)% none", line)
    assert miss is not None and int(miss.group(1)) == round(100 * (1 - sum(rates)))
    assert line.endswith(str(run / "goal_map.png"))
    # Same seed, same episodes: the map is reproducible.
    assert write_goal_map(run, ENV_ID, policy, EPISODES) == line
