"""What a run prints (s2ac_lit/trainer/progress.py, the start and evaluation lines): one bar
over frames with its total, one line per evaluation, our own lines only; a resumed run's bar
starts where the run stands."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, expected_updates, tiny

BAR = re.compile(r"^\s*\d+%\|[^|]*\| (\d+)/(\d+) frames \[[^\]]*\]\s*$")
OURS = ("run ", "resuming ", "evaluation at ", "goals reached: ")


def console(*args: str) -> tuple[int, str]:
    """``tools/fit.py args`` as a user runs it: exit status and everything it printed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    process = subprocess.run(
        [sys.executable, "tools/fit.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return process.returncode, process.stdout + process.stderr


def pieces(output: str) -> list[str]:
    """The console's lines and bar redraws (tqdm redraws after a carriage return)."""
    return [p for p in re.split(r"[\r\n]", output) if p.strip()]


def bar_states(output: str) -> list[tuple[int, int]]:
    return [(int(m[1]), int(m[2])) for p in pieces(output) if (m := BAR.match(p))]


def test_a_run_prints_our_lines_and_one_bar_over_frames(tmp_path: Path) -> None:
    """The quickstart preset, made tiny: a start line, a bar over 400 frames, a line per
    evaluation, the final line and the goal map's; nothing from Lightning, TorchRL or torch
    (``GPU available``, ``Epoch 0``, ``v_num``, warnings); then a resumed run to 600 frames,
    whose bar starts at 400 and whose start line replaces Lightning's ``Restoring states``."""
    overrides = tiny(tmp_path, "trainer.progress_bar=true", "eval.every_frames=200")
    code, output = console(
        "--config", "conf/quickstart.yaml", *overrides, "collector.total_frames=400"
    )
    assert code == 0, output
    lines = pieces(output)
    for piece in lines:
        assert BAR.match(piece) or piece.startswith(OURS), f"not one of ours: {piece!r}\n{output}"
    (run,) = (tmp_path / "runs").iterdir()
    assert lines[0] == (
        f"run {run}: s2ac on s2ac_lit/MultiGoalMaxEnt-v0, 400 frames, "
        f"{expected_updates(400)} updates, on cpu, 1 thread per process"
    )
    states = bar_states(output)
    assert {total for _, total in states} == {400}
    assert states[-1] == (400, 400)
    assert [done for done, _ in states] == sorted(done for done, _ in states)
    evaluations = [p for p in lines if p.startswith("evaluation at ")]
    assert [e.split(" frames")[0] for e in evaluations] == [
        "evaluation at 200",
        "evaluation at 400",
    ]
    assert all(
        re.search(r"return -?\d+\.\d\d ± \d+\.\d\d over 2 episodes$", e) for e in evaluations
    )
    final = next(p for p in lines if p.startswith(f"run {run}: 400 frames"))
    assert final.endswith(evaluations[-1].split("return ")[1].split(" over")[0])

    code, output = console("--resume", str(run), "collector.total_frames=600")
    assert code == 0, output
    lines = pieces(output)
    for piece in lines:
        assert BAR.match(piece) or piece.startswith(OURS), f"not one of ours: {piece!r}\n{output}"
    assert lines[0].startswith(f"resuming {run} from update {expected_updates(400)}: ")
    states = bar_states(output)
    assert states[0][0] == 400 and states[-1] == (600, 600)
    assert {total for _, total in states} == {600}
    final = next(p for p in lines if p.startswith(f"run {run}: 600 frames"))
    assert re.search(r" in [\d.]+ s \(2 attempts: [\d.]+ s \+ [\d.]+ s\); ", final), final


def test_a_stopped_run_ends_the_bar_line_before_its_message(capsys) -> None:
    """A signal or an error during the run: the bar's line ends, so that the one line saying
    how the run stopped starts on its own line."""
    from s2ac_lit.trainer.progress import RunProgressBar

    bar = RunProgressBar(2000, 10, lambda: None)
    bar.train_progress_bar = bar.init_train_tqdm()
    bar.on_exception(None, None, KeyboardInterrupt())
    assert capsys.readouterr().out.endswith("0/2000 frames [00:00<?]\n")
