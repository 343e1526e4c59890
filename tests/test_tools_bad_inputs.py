"""Bad-input catalogue: every command-line tool against the mistakes users make.

Each case runs a tool's ``main(argv)`` in-process and asserts exit status 2 (argparse's and
:mod:`s2ac_lit.errors`' usage-error status), a message that names the bad value and what is
allowed (``needles``, all required), no traceback, and no change to anything in the workspace:
the pre-existing run folder is hashed before and after, and no new file or folder may appear
(a failed start leaves no empty run folder). A few cases also run as real subprocesses.

``pytest -s tests/test_tools_bad_inputs.py`` prints the catalogue as a markdown table.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium
import numpy as np
import pytest
import torch
from conftest import ROOT, load_tool, save_untrained_checkpoint

from s2ac_lit.config import load_config, to_yaml
from s2ac_lit.trainer.train import main as fit_main

HAS_CUDA = torch.cuda.is_available()
IMAGE_ENV = "s2ac_test/ImageObservation-v0"


class Case(NamedTuple):
    tool: str
    argv: tuple[str, ...]
    needles: tuple[str, ...]
    """Substrings the message must hold: the bad value and what is allowed."""


def case(tool: str, argv: str, *needles: str, marks: Any = ()) -> Any:
    return pytest.param(Case(tool, tuple(argv.split()), needles), marks=marks, id=f"{tool}:{argv}")


needs_no_cuda = pytest.mark.skipif(HAS_CUDA, reason="the mistake needs a machine without CUDA")
FIT = "--config conf/quickstart.yaml run_dir={runs}"

CASES = [
    # fit.py: keys and types
    case("fit", f"{FIT} collector.total_frame=600", "total_frame", "did you mean 'total_frames'"),
    case("fit", f"{FIT} replay.batchsize=3", "batchsize", "did you mean 'batch_size'"),
    case("fit", f"{FIT} colector.total_frames=5", "colector", "did you mean 'collector'"),
    case("fit", f"{FIT} seed=abc", "'seed'", "abc", "Integer"),
    case("fit", f"{FIT} critic.hidden_sizes=[a]", "critic.hidden_sizes", "Integer"),
    case("fit", f"{FIT} seed", "key=value", "['seed']"),
    # fit.py: impossible values
    case("fit", f"{FIT} algo=ppo", "algo='ppo'", "allowed: ('s2ac', 'sac', 'sql')"),
    case("fit", f"{FIT} svgd.bandwidth=medain", "medain", "allowed"),
    case("fit", f"{FIT} collector.total_frames=-5", "collector.total_frames=-5", "> 0"),
    case("fit", f"{FIT} optim.gamma=1.5", "optim.gamma=1.5", "[0, 1]"),
    case("fit", f"{FIT} svgd.max_step_norm=0", "svgd.max_step_norm=0", "> 0, or null"),
    case("fit", f"{FIT} svgd.num_particles=1", "svgd.num_particles", ">= 2"),
    case("fit", f"{FIT} actor.eval_selection=amortized", "amortized", "actor.amortized=true"),
    # fit.py: contradicting keys (both named)
    case(
        "fit", f"{FIT} replay.batch_size=1000 replay.capacity=10", "batch_size=1000", "capacity=10"
    ),
    case("fit", f"{FIT} collector.update_after=50", "update_after=50", "replay.batch_size=100"),
    case("fit", f"{FIT} collector.update_after=7000", "update_after=7000", "total_frames=6000"),
    case("fit", f"{FIT} eval.every_frames=9000", "every_frames=9000", "total_frames=6000"),
    # fit.py: environments
    case("fit", f"{FIT} env.id=CartPole-v1", "CartPole-v1", "Discrete(2)", "continuous (Box)"),
    case("fit", f"{FIT} env.id={IMAGE_ENV}", IMAGE_ENV, "(8, 8, 3)", "flat vector"),
    case("fit", f"{FIT} env.id=Walker2d-v9", "Walker2d-v9", "did you mean", "Walker2d-v5"),
    # fit.py: the machine
    case(
        "fit",
        f"{FIT} trainer.accelerator=gpu",
        "'gpu'",
        "no GPU",
        "available: cpu",
        marks=needs_no_cuda,
    ),
    case("fit", f"{FIT} trainer.precision=16-mixed", "16-mixed", "bf16-mixed", marks=needs_no_cuda),
    case("fit", f"{FIT} trainer.precision=8", "'8'", "allowed"),
    case("fit", f"{FIT} trainer.devices=0", "trainer.devices=0", "allowed: a count >= 1"),
    case("fit", f"{FIT} trainer.strategy=dpp", "'dpp'", "did you mean 'ddp'"),
    # fit.py: files and folders
    case("fit", "--config conf/nope.yaml", "conf/nope.yaml", "does not exist"),
    case("fit", "--config {syntax_yaml}", "syntax.yaml", "line 4, column 5"),
    case("fit", "--config {list_yaml}", "list.yaml", "must hold a mapping"),
    case("fit", "--config {runs}", "runs", "is a folder; give a YAML file"),
    case("fit", "--config {binary_yaml}", "binary.yaml", "cannot read config file"),
    case("fit", f"{FIT} run_dir={{a_file}}/runs", "a_file", "is a file, not a folder"),
    case("fit", "--resume {no_ckpt_run}", "no_ckpt_run", "has no checkpoints/*.ckpt"),
    case("fit", "--resume {runs}/missing", "missing", "neither a checkpoint file nor a run folder"),
    case("fit", "--resume {broken_run}", "broken_run", "none of its 1 checkpoints loads"),
    case("fit", "--resume auto run_dir={no_ckpt_run}", "no run with a checkpoint", "no_ckpt_run"),
    case("fit", "--resume {run} replay.capacity=10", "capacity=10", "replay.batch_size=100"),
    # evaluate.py
    case("evaluate", "{run} --episodes 0", "--episodes", "0 must be a positive integer"),
    case("evaluate", "{run} --episodes ten", "--episodes", "'ten' is not an integer"),
    case("evaluate", "{runs}/missing", "missing", "neither a checkpoint file nor a run folder"),
    case("evaluate", "{no_ckpt_run}", "no_ckpt_run", "has no checkpoints/*.ckpt"),
    case("evaluate", "{corrupt_ckpt}", "corrupt.ckpt", "corrupt or not a checkpoint"),
    case("evaluate", "{run} --env CartPole-v1", "CartPole-v1", "continuous (Box)"),
    case("evaluate", "{run} --env Pendulum-v1", "Pendulum-v1", "(3, 1)", "trained on (2, 2)"),
    case("evaluate", "{run} --selection best", "'best'", "choose from"),
    # train_torchrl.py
    case("train_torchrl", "--env CartPole-v1", "CartPole-v1", "continuous (Box)"),
    case("train_torchrl", "--algo ppo", "'ppo'", "choose from"),
    case(
        "train_torchrl", "--batch-size 500 --buffer-size 10", "--batch-size 500", "--buffer-size 10"
    ),
    case("train_torchrl", "--frames 0", "--frames", "positive integer"),
    case("train_torchrl", "--gamma 1.5", "--gamma 1.5", "[0, 1]"),
    case("train_torchrl", "--particles 1", "--particles 1", ">= 2"),
    case("train_torchrl", "--benchmark-updates 2 --benchmark-algos s2ac,ppo", "ppo", "allowed"),
    # multigoal.py
    case("multigoal", "--out {tmp}/mg --set replay.batchsize=3", "batchsize", "did you mean"),
    case("multigoal", "--out {tmp}/mg --seeds 0", "--seeds", "positive integer"),
    case("multigoal", "--out {a_file}", "a_file", "is a file, not a folder"),
    case("multigoal", "--out {tmp}/mg --algos ppo", "'ppo'", "choose from"),
    # entropy_eval.py
    case("entropy_eval", "--out {tmp}/ee --seeds 0", "--seeds", "positive integer"),
    case("entropy_eval", "--out {tmp}/ee --custom nomodule:ring", "nomodule", "cannot be loaded"),
    case("entropy_eval", "--out {tmp}/ee --custom ring", "'ring'", "MODULE:ATTR"),
    case("entropy_eval", "--out {tmp}/ee --sweep bandwith", "'bandwith'", "choose from"),
    # bench.py
    case("bench", "--device cuda", "'cuda'", "no CUDA GPU", "available: cpu", marks=needs_no_cuda),
    case("bench", "--device gpu0", "'gpu0'", "allowed: cpu, cuda, cuda:N"),
    case("bench", "--particles 1", "--particles 1", ">= 2"),
    case("bench", "--precision fp8", "'fp8'", "choose from"),
    case("bench", "--modes eager,jit", "jit", "allowed: eager, compiled, graphed"),
    case("bench", "--modes graphed", "graphed", "needs --device cuda", marks=needs_no_cuda),
    case("fit", f"{FIT} trainer.cudagraphs=true", "cudagraphs", "CUDA GPU", marks=needs_no_cuda),
]

# tools/benchmark.py (issue 13): its bad-input cases go here, as case("benchmark", ...), once the
# tool exists; TOOLS below then needs its entry point.
BENCHMARK_CASES: list[Any] = []


def _load_tool(name: str) -> Callable[[list[str]], int]:
    module = load_tool(name)
    return module.run if name == "train_torchrl" else module.main


TOOLS: dict[str, Callable[[list[str]], int]] = {"fit": fit_main}


def entry_point(tool: str) -> Callable[[list[str]], int]:
    if tool not in TOOLS:
        TOOLS[tool] = _load_tool(tool)
    return TOOLS[tool]


class ImageObservationEnv(gymnasium.Env):
    """Continuous actions but 8×8 RGB observations: the networks need flat vectors."""

    observation_space = gymnasium.spaces.Box(0, 255, (8, 8, 3), np.uint8)
    action_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)


def _tree_digest(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with a hash of its bytes (folders: empty)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, str]:
    """A run folder with a real (untrained) checkpoint, broken files, and paths to fill in."""
    if IMAGE_ENV not in gymnasium.registry:
        gymnasium.register(IMAGE_ENV, entry_point=ImageObservationEnv)
    tmp = tmp_path_factory.mktemp("bad_inputs")
    runs = tmp / "runs"
    cfg = load_config(ROOT / "conf" / "quickstart.yaml", [f"run_dir={runs}"])
    run = runs / "existing-run"
    save_untrained_checkpoint(cfg, run)
    (run / "config.yaml").write_text(to_yaml(cfg))  # as a run folder holds it: resolved
    (run / "logs").mkdir()
    (run / "logs" / "metrics.csv").write_text("step,train/loss\n0,1.0\n")
    no_ckpt = tmp / "no_ckpt_run"
    (no_ckpt / "checkpoints").mkdir(parents=True)
    (no_ckpt / "config.yaml").write_text("algo: s2ac\n")
    corrupt = tmp / "corrupt.ckpt"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    broken = tmp / "broken_run"  # a run whose only checkpoint was cut short
    (broken / "checkpoints").mkdir(parents=True)
    (broken / "config.yaml").write_text((run / "config.yaml").read_text())
    (broken / "checkpoints" / "step=5.ckpt").write_bytes(corrupt.read_bytes())
    (tmp / "binary.yaml").write_bytes(b"\xff\xfe\x00 not text")
    (tmp / "syntax.yaml").write_text("algo: s2ac\nenv:\n  id: [Pendulum-v1\nseed: 1\n")
    (tmp / "list.yaml").write_text("- algo\n- s2ac\n")
    (tmp / "a_file").write_text("not a folder\n")
    return {
        "tmp": str(tmp),
        "runs": str(runs),
        "run": str(run),
        "no_ckpt_run": str(no_ckpt),
        "corrupt_ckpt": str(corrupt),
        "broken_run": str(broken),
        "binary_yaml": str(tmp / "binary.yaml"),
        "syntax_yaml": str(tmp / "syntax.yaml"),
        "list_yaml": str(tmp / "list.yaml"),
        "a_file": str(tmp / "a_file"),
    }


def _run_in_process(tool: str, argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = entry_point(tool)(argv)
    except SystemExit as exit_:  # argparse reports its usage errors by exiting
        code = exit_.code
    return code, capsys.readouterr().err


def _check(code: int, err: str, needles: tuple[str, ...], argv: list[str]) -> None:
    assert code == 2, f"exit status {code} for {argv}: {err}"
    assert "Traceback" not in err, err
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert len(error_lines) == 1, err
    for needle in needles:
        assert needle in error_lines[0], f"{needle!r} not in {error_lines[0]!r}"


@pytest.mark.parametrize("bad", CASES + BENCHMARK_CASES)
def test_mistake_gets_one_line_and_exit_2(bad: Case, workspace: dict[str, str], capsys) -> None:
    argv = [arg.format(**workspace) for arg in bad.argv]
    root = Path(workspace["tmp"])
    before = _tree_digest(root)
    cwd = os.getcwd()
    os.chdir(ROOT)  # argv uses repository-relative presets, as the README does
    try:
        code, err = _run_in_process(bad.tool, argv, capsys)
    finally:
        os.chdir(cwd)
    _check(code, err, bad.needles, argv)
    assert _tree_digest(root) == before, "a failed start changed or created files"
    message = next(line for line in err.splitlines() if "error:" in line)
    shown = " ".join(bad.argv).replace("{", "<").replace("}", ">")
    with capsys.disabled():
        print(f"\n| `{bad.tool} {shown}` | `{message}` |", end="")


def test_catalogue_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert {c.values[0].tool for c in CASES} >= set(
        ("fit", "evaluate", "train_torchrl", "multigoal", "entropy_eval", "bench")
    )


def test_a_real_process_prints_one_line(workspace: dict[str, str]) -> None:
    """The issue's own example, as a user types it: exit 2, one line, no traceback, and no run
    folder left behind in the preset's run_dir. (One process: each costs seconds of imports.)"""
    default_runs = sorted((ROOT / "runs").glob("*"))
    argv = ["tools/fit.py", "--config", "conf/quickstart.yaml", "env.id=CartPole-v1"]
    process = subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    _check(process.returncode, process.stderr, ("Discrete(2)", "continuous (Box)"), argv)
    assert process.stdout == ""
    assert sorted((ROOT / "runs").glob("*")) == default_runs, "a failed start left a run folder"
