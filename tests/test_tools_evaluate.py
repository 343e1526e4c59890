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


def test_a_selection_the_run_did_not_train_names_those_it_offers(tmp_path: Path, capsys) -> None:
    """``--selection amortized`` on an S2AC run without the amortised sampler (the
    quickstart's): one line and exit 2, naming the selections this run offers; a run trained
    with ``actor.amortized=true`` evaluates with it."""
    evaluate = load_tool("evaluate")
    cfg = load_config(ROOT / "conf" / "quickstart.yaml", [f"run_dir={tmp_path}"])
    checkpoint = save_untrained_checkpoint(cfg, tmp_path / "run")
    assert evaluate.main([str(checkpoint), "--episodes", "1", "--selection", "amortized"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"error: --selection 'amortized' needs what the run of {str(checkpoint)!r} (s2ac) did "
        "not train (an amortised sampler: actor.amortized=true); this run offers "
        "['softmax', 'max', 'random']\n"
    )
    for selection in ("softmax", "max", "random"):
        assert evaluate.main([str(checkpoint), "--episodes", "1", "--selection", selection]) == 0
    capsys.readouterr()

    cfg = load_config(
        ROOT / "conf" / "quickstart.yaml", [f"run_dir={tmp_path}", "actor.amortized=true"]
    )
    checkpoint = save_untrained_checkpoint(cfg, tmp_path / "amortized")
    assert evaluate.main([str(checkpoint), "--episodes", "1", "--selection", "amortized"]) == 0
    assert "(selection: amortized)" in capsys.readouterr().out
