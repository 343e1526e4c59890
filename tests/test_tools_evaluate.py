"""tools/evaluate.py: a long evaluation shows its progress, and showing it changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ROOT, load_tool, save_untrained_checkpoint

from s2ac_lit.config import load_config


def test_progress_lines_leave_the_episodes_as_they_are(tmp_path: Path, monkeypatch, capsys) -> None:
    """With a progress line after every episode, the same seed gives the same returns as
    without any; the lines go to stderr, the result to stdout."""
    cfg = load_config(ROOT / "conf" / "quickstart.yaml", [f"run_dir={tmp_path}"])
    checkpoint = save_untrained_checkpoint(cfg, tmp_path / "run")
    evaluate = load_tool("evaluate")
    argv = [str(checkpoint), "--episodes", "3", "--seed", "7", "--json"]
    assert evaluate.main(argv) == 0
    quiet = capsys.readouterr()
    monkeypatch.setattr(evaluate, "PROGRESS_EVERY_S", 0.0)
    assert evaluate.main(argv) == 0
    chatty = capsys.readouterr()
    assert quiet.err == "" and chatty.out == quiet.out
    assert json.loads(chatty.out)["episodes"] == 3
    lines = chatty.err.splitlines()
    assert [line.split(" episodes")[0] for line in lines] == ["1/3", "2/3"]
    assert all("mean return so far" in line for line in lines)
