"""The command line of ``tools/fit.py``: parsed before torch, Lightning or TorchRL is imported.

``--help`` answers at once (it lists the presets from their own header comments), and a stop
signal during the seconds of imports that follow is one line (:mod:`s2ac_lit.trainer.interrupts`).
Training itself is :func:`s2ac_lit.trainer.train.run`.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from s2ac_lit.errors import cli
from s2ac_lit.trainer.interrupts import RunInterrupted, StopNow, StopSignals, signal_name

CONF = Path(__file__).resolve().parents[2] / "conf"
"""The presets of a source checkout (the package itself ships none)."""
PRESET_FOLDERS = ("", "algo", "study")
"""Subfolders of ``conf/`` whose YAML files are fit presets (``suites/`` are the benchmark's)."""

EXAMPLES = """\
examples:
  python tools/fit.py --config conf/quickstart.yaml
  python tools/fit.py --config conf/quickstart.yaml collector.total_frames=2000 seed=1
  python tools/fit.py --config conf/walker.yaml --print-config
  python tools/fit.py --resume runs/<run>
"""

KEYS = """\
keys: every key, with its type, default and a one-line doc, is in s2ac_lit/config/schema.py (the
typed schema, one dataclass per section: collector, replay, optim, svgd, actor, critic, loss,
trainer, eval); --print-config shows the values a run would use. README §Configs explains the
presets and which keys go together in a short run.
"""


def preset_summary(path: Path, width: int) -> str:
    """The first clause of a preset's header comment, cut to ``width`` characters."""
    comment = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith("#"):
            break
        comment.append(line.lstrip("#").strip())
    clause = " ".join(comment).replace("; ", ". ").split(". ")[0].rstrip(".")
    return textwrap.shorten(clause, width, placeholder=" ...")


def presets_help(conf: Path = CONF, width: int = 100) -> str:
    """``presets ...:`` and one line per preset (its path and header), or where they would be."""
    files = [f for folder in PRESET_FOLDERS for f in sorted((conf / folder).glob("*.yaml"))]
    if not files:
        return f"presets: none found (a source checkout has them in {conf.name}/)\n"
    names = [str(f.relative_to(conf.parent)) for f in files]
    column = max(map(len, names)) + 4
    lines = ["presets (--config; several merge in order: a task's, then an algorithm's):"]
    for name, file in zip(names, files, strict=True):
        lines.append(f"  {name:<{column - 2}}{preset_summary(file, width - column)}".rstrip())
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="fit.py",
        description="Train S2AC (or SAC, SQL) with Lightning: a preset, then key=value overrides.",
        epilog="\n".join((EXAMPLES, presets_help(), KEYS)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    result.add_argument(
        "--config",
        action="append",
        metavar="PRESET",
        help="YAML preset (partial override of the defaults); repeat it to merge several in "
        "order, e.g. a task's then an algorithm's (conf/algo/)",
    )
    result.add_argument(
        "--resume",
        metavar="RUN_OR_CKPT",
        help="continue a run: a run folder, a .ckpt file, or 'auto' (latest run in run_dir)",
    )
    result.add_argument(
        "--print-config", action="store_true", help="print the merged config and exit"
    )
    result.add_argument("overrides", nargs="*", help="key=value overrides, e.g. seed=3")
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return parser().parse_args(argv)


@cli
def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code (2: a usage error, 3: a
    non-finite loss or gradient, 128 + signal: stopped by a signal)."""
    signals = StopSignals().install()  # cuts at once until training can save its state
    try:
        args = parse_args(argv)
        from s2ac_lit.trainer.train import run  # torch, Lightning, TorchRL: seconds

        return run(args, signals)
    except StopNow as stop:
        print(
            f"{signal_name(stop.signum)}: stopped before the run started; nothing was written",
            file=sys.stderr,
        )
        return 128 + stop.signum
    except RunInterrupted as stop:
        print(stop, file=sys.stderr)
        return stop.exit_code
    finally:
        signals.restore()
