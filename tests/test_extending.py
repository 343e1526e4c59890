"""docs/extending.md's example algorithm, run as written: registered through the registry, it
trains with the Lightning trainer on any task preset, and a key it does not read is refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ROOT, expected_updates, tiny

from s2ac_lit.algorithms import ALGORITHMS, check_config, without_unread
from s2ac_lit.config import ConfigError, load_config
from s2ac_lit.trainer.train import train


@pytest.fixture
def example_algorithm():
    text = (ROOT / "docs" / "extending.md").read_text()
    code = re.search(
        r"<!-- example algorithm -->\n```python\n(.*?)```\n<!-- end example algorithm -->",
        text,
        re.S,
    )
    assert code is not None, "the example block of docs/extending.md is missing"
    exec(compile(code.group(1), "docs/extending.md", "exec"), {"__name__": "extending_example"})
    yield "gaussian_actor"
    ALGORITHMS.pop("gaussian_actor")


def test_the_documented_algorithm_trains_through_the_registry(
    example_algorithm: str, tmp_path: Path
) -> None:
    overrides = tiny(tmp_path, f"algo={example_algorithm}", "collector.total_frames=200")
    # The tiny fit's S2AC settings go back to their defaults, as for SAC's tiny fits.
    cfg = without_unread(load_config(overrides=[*overrides, "eval.every_frames=0"]))
    summary = train(cfg)
    assert summary["updates"] == expected_updates(200)
    assert summary["final_eval_return_mean"] is not None
    with pytest.raises(ConfigError, match=r"svgd\.steps=4"):
        check_config(load_config(overrides=[f"algo={example_algorithm}", "svgd.steps=4"]))
    preset = load_config(ROOT / "conf" / "multigoal.yaml", [f"algo={example_algorithm}"])
    assert check_config(preset).algo == example_algorithm
