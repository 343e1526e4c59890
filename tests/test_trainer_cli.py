"""The command line of tools/fit.py (s2ac_lit/trainer/cli.py): parsed before torch is imported,
so ``--help`` answers at once and lists the presets."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from conftest import ROOT

from s2ac_lit.trainer.cli import CONF, parser, presets_help


def fastest_of(argv: list[str], runs: int = 3) -> float:
    """The shortest wall time of ``runs`` runs of ``argv`` (the least disturbed by other load)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
        times.append(time.perf_counter() - start)
    return min(times)


def test_help_answers_about_as_fast_as_python_starts() -> None:
    """Measured against a bare interpreter in the same test: importing torch alone costs 30 or
    more of these, the parser and the preset list a few."""
    bare = fastest_of([sys.executable, "-c", "pass"])
    helped = fastest_of([sys.executable, "tools/fit.py", "--help"])
    assert helped / bare < 8, (helped, bare)


def test_the_command_line_imports_no_torch() -> None:
    code = "import sys, s2ac_lit.trainer.cli; sys.exit('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env).returncode == 0


def test_help_lists_every_preset_and_where_keys_are_documented() -> None:
    text = parser().format_help()
    presets = sorted(CONF.glob("*.yaml")) + sorted(CONF.glob("algo/*.yaml"))
    for preset in presets:
        assert str(preset.relative_to(ROOT)) in text, preset
    assert "conf/suites" not in text  # the benchmark's suites are not fit presets
    assert "s2ac_lit/config/schema.py" in text and "--print-config" in text
    # The examples run on a newcomer's machine: one process, a preset that exists.
    assert "devices=2" not in text and "python tools/fit.py --config conf/quickstart.yaml" in text


def test_presets_help_says_where_presets_would_be(tmp_path) -> None:
    assert presets_help(tmp_path / "conf") == (
        "presets: none found (a source checkout has them in conf/)\n"
    )
