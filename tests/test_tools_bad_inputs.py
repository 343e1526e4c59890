"""Bad-input catalogue: every command-line tool against the mistakes users make.

Each case runs a tool's ``main(argv)`` in-process and asserts exit status 2 (argparse's and
:mod:`s2ac_lit.errors`' usage-error status), a message that names the bad value and what is
allowed (``needles``, all required), no traceback, and no change to anything in the workspace:
the pre-existing run folder is hashed before and after, and no new file or folder may appear
(a failed start leaves no empty run folder). A few cases also run as real subprocesses.

The catalogue, as a markdown table of commands and their messages, is written to
``bad_inputs.md`` in pytest's base temporary folder (``pytest --basetemp=DIR
tests/test_tools_bad_inputs.py`` writes ``DIR/bad_inputs.md``), not to the console, where its
``error:`` lines would read as failures.
"""

from __future__ import annotations

import hashlib
import os
import shutil
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
from s2ac_lit.trainer.runfolder import write_manifest
from s2ac_lit.trainer.train import main as fit_main

HAS_CUDA = torch.cuda.is_available()
IMAGE_ENV = "s2ac_test/ImageObservation-v0"


class Case(NamedTuple):
    tool: str
    argv: tuple[str, ...]
    needles: tuple[str, ...]
    """Substrings the message must hold: the bad value and what is allowed."""
    env: tuple[tuple[str, str], ...] = ()
    """Environment variables set for the case (values filled in like ``argv``)."""


def case(
    tool: str, argv: str, *needles: str, marks: Any = (), env: dict[str, str] | None = None
) -> Any:
    shown = " ".join(f"{k}={v}" for k, v in (env or {}).items())
    return pytest.param(
        Case(tool, tuple(argv.split()), needles, tuple((env or {}).items())),
        marks=marks,
        id=f"{tool}:{shown + ' ' if shown else ''}{argv}",
    )


needs_no_cuda = pytest.mark.skipif(HAS_CUDA, reason="the mistake needs a machine without CUDA")
FIT = "--config conf/quickstart.yaml run_dir={runs}"

CASES = [
    # fit.py: keys and types
    case(
        "fit",
        f"{FIT} collector.total_frame=600",
        "total_frame",
        "did you mean 'collector.total_frames'",
    ),
    case("fit", f"{FIT} replay.batchsize=3", "batchsize", "did you mean 'replay.batch_size'"),
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
    case("fit", f"{FIT} trainer.devices=0", "trainer.devices=0", "must be >= 1, or -1"),
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
    case("multigoal", "--out {a_file}/sub", "a_file", "is a file, not a folder"),
    case("multigoal", "--out {tmp}/mg --algos ppo", "'ppo'", "choose from"),
    # entropy_eval.py
    case("entropy_eval", "--out {tmp}/ee --seeds 0", "--seeds", "positive integer"),
    case("entropy_eval", "--out {tmp}/ee --custom nomodule:ring", "nomodule", "cannot be loaded"),
    case("entropy_eval", "--out {tmp}/ee --custom ring", "'ring'", "MODULE:ATTR"),
    case("entropy_eval", "--out {tmp}/ee --sweep bandwith", "'bandwith'", "choose from"),
    case("entropy_eval", "--out {tmp}/ee --checkpoint {tmp}/corrupt.ckpt", "--replay", "one dump"),
    case(
        "entropy_eval",
        "--out {tmp}/ee --checkpoint {tmp}/none.ckpt --replay {tmp}",
        "--checkpoint",
        "none.ckpt' does not exist",
    ),
    # bench.py
    case("bench", "--device cuda", "'cuda'", "no CUDA GPU", "available: cpu", marks=needs_no_cuda),
    case("bench", "--device gpu0", "'gpu0'", "allowed: cpu, cuda, cuda:N"),
    case("bench", "--particles 1", "--particles 1", ">= 2"),
    case("bench", "--self-term hessian", "'hessian'", "choose from"),
    case("bench", "--precision fp8", "'fp8'", "choose from"),
    case("bench", "--modes eager,jit", "jit", "allowed: eager, compiled, graphed"),
    case("bench", "--modes graphed", "graphed", "needs --device cuda", marks=needs_no_cuda),
    case("fit", f"{FIT} trainer.cudagraphs=true", "cudagraphs", "CUDA GPU", marks=needs_no_cuda),
]

# Issue 30: every input checked before anything is written, one class of mistakes at a time
# (each class: the issue's example first, then at least three more).
RUN_FOLDER = "S2AC_RUN_FOLDER"
FIXED = "S2AC_FIXED_RUN_FOLDER"
CPU_NODES = f"{FIT} trainer.accelerator=cpu trainer.num_nodes=2"
ISSUE_30_CASES = [
    # 1. the run folder of several ranks: rank 0 owns it, others need it, never two runs in it
    case("fit", CPU_NODES, "rank 1", RUN_FOLDER, env={"NODE_RANK": "1"}),
    case("fit", FIT, "already holds a run", "--resume", env={RUN_FOLDER: "{run}"}),
    case("fit", "--resume {run}", RUN_FOLDER, "same folder", env={RUN_FOLDER: "{runs}/other"}),
    case("fit", FIT, "a_file", "is a file, not a folder", env={RUN_FOLDER: "{a_file}"}),
    case(
        "fit", f"{CPU_NODES} trainer.devices=2", "rank 3", env={"NODE_RANK": "1", "LOCAL_RANK": "1"}
    ),
    # 2. values a library would refuse later, refused while validating
    case("fit", f"{FIT} seed=-1", "seed=-1", "[0, 4294967295]"),
    case("fit", f"{FIT} seed=4294967296", "seed=4294967296", "[0, 4294967295]"),
    case("fit", f"{FIT} env.max_episode_steps=0", "env.max_episode_steps=0", "> 0"),
    case("fit", f"{FIT} actor.hidden_sizes=[64,0]", "actor.hidden_sizes=[64, 0]", "> 0"),
    case("fit", f"{FIT} replay.beta=1.5", "replay.beta=1.5", "[0, 1]"),
    case("fit", f"{FIT} trainer.devices=-2", "trainer.devices=-2", ">= 1, or -1"),
    case("fit", f"{FIT} trainer.devices=2 seed=4294967295", "seed=4294967295", "2 DDP ranks"),
    # 3. NaN and infinity
    case("fit", f"{FIT} optim.critic_lr=nan", "optim.critic_lr=nan", "not a finite number"),
    case("fit", f"{FIT} optim.tau=nan", "optim.tau=nan", "not a finite number", "(0, 1]"),
    case("fit", f"{FIT} replay.alpha=inf", "replay.alpha=inf", "not a finite number"),
    case("fit", f"{FIT} loss.alpha_init=-inf", "loss.alpha_init=-inf", "not a finite number"),
    case("fit", f"{FIT} svgd.step_size=nan", "svgd.step_size=nan", "not a finite number"),
    case("fit", f"{FIT} optim.gamma=nan", "optim.gamma=nan", "[0, 1]"),
    # 4. sizes that cannot fit the device
    case("fit", f"{FIT} svgd.num_particles=100000", "needs about", "GiB", "RAM"),
    case("fit", f"{FIT} critic.hidden_sizes=[1000000,1000000]", "weights and optimiser", "RAM"),
    case("fit", f"{FIT} replay.capacity=100000000000", "replay buffer", "RAM"),
    case("fit", f"{FIT} critic.num_critics=10000000", "needs about", "RAM"),
    case("fit", f"{FIT} svgd.steps=10000000", "update activations", "RAM"),
    # 5. paths that leave their folder or are files
    case("fit", f"{FIT} name=../../escape", "name='../../escape'", "folder name"),
    case("fit", f"{FIT} name=a/b", "name='a/b'", "folder name"),
    case("fit", f"{FIT} name=.hidden", "name='.hidden'", "not starting with '.'"),
    case("fit", f"{FIT} name=..", "name='..'", "folder name"),
    case("benchmark", "--suite {suite} --out {a_file}", "a_file", "is a file, not a folder"),
    case("benchmark", "--suite {suite} --out {a_file}/out", "a_file", "is a file, not a folder"),
    # 6. resume inputs: the run's own files
    case("fit", "--resume {syntax_run}", "run config", "config.yaml", "line 2, column 5"),
    case("fit", "--resume {algo_run}", "algo='s2ac'", "algo='sac'", "keeps its algorithm"),
    case("fit", "--resume {dump_run}", "rank-0", "bytes", "were written"),
    case("fit", "--resume {list_run}", "run config", "must hold a mapping", "a list"),
    case("fit", "--resume {run} algo=sac", "algo='s2ac'", "algo='sac'"),
    case("fit", "--resume {run} critic.hidden_sizes=[32]", "critic.hidden_sizes: [64, 64] → [32]"),
    case("fit", "--resume {no_dump_run}", "step-0", "it is missing"),
    case("fit", "--resume {bad_manifest_run}", "manifest.json cannot be read"),
    # 7. the benchmark harness's suites and flags
    case("benchmark", "--suite {suite_seeds0} --out {tmp}/b", "seeds=0", ">= 1"),
    case("benchmark", "--suite {suite_baseline} --out {tmp}/b", "baseline='td3'", "allowed"),
    case("benchmark", "--suite {suite_inverted} --out {tmp}/b", "reference_score=-250.0", "above"),
    case("benchmark", "--suite {suite} --out {tmp}/b --gpus-per-run 64", "64", "GPUs"),
    case(
        "benchmark",
        "--suite {suite} --out {empty_out} --report-only",
        "no run",
        "nothing to report",
    ),
    case("benchmark", "--suite {suite_algo_seeds0} --out {tmp}/b", "algos.s2ac.seeds=0"),
    case("benchmark", "--suite {suite_frames0} --out {tmp}/b", "tasks.multigoal.frames=0"),
    case("benchmark", "--suite {suite_equal} --out {tmp}/b", "reference_score=-200.0", "above"),
    case("benchmark", "--suite {suite_nan} --out {tmp}/b", "reference_score=nan", "finite"),
    case("benchmark", "--suite {suite} --out {tmp}/b --gpus-per-run 1.5", "1.5", "whole"),
    case(
        "benchmark",
        "--suite {suite} --out {tmp}/b --gpus-per-run -1",
        "--gpus-per-run=-1.0",
        ">= 0",
    ),
    case("benchmark", "--suite {suite} --out {tmp}/b --workers 0", "--workers=0", ">= 1"),
    case("benchmark", "--suite {suite} --out {tmp}/nope --report-only", "nope", "does not exist"),
    case("benchmark", "--suite {suite} --out {tmp}/b --stop-timeout nan", "--stop-timeout=nan"),
    case("benchmark", "--suite {suite} --out {tmp}/b --reps 0", "--reps=0", ">= 1"),
    # 8. evaluate.py
    case("evaluate", "{run} --seed -1", "--seed", "-1 must be a seed in [0, 4294967295]"),
    case("evaluate", "{run} --seed 4294967296", "--seed", "4294967296 must be a seed"),
    case("evaluate", "{run} --seed abc", "--seed", "'abc' is not an integer"),
    case("evaluate", "{run} --seed 1.5", "--seed", "'1.5' is not an integer"),
    case("evaluate", "{run} --episodes -3", "--episodes", "-3 must be a positive integer"),
    # 9. messages that name the key (or the file, and what it must hold)
    case("fit", "--config {scalar_yaml}", "scalar.yaml", "must hold a mapping", "'just a string'"),
    case("fit", "--config {env5_yaml}", "'env'", "must be a mapping", "'id'", "got 5"),
    case("benchmark", "--suite {list_yaml} --out {tmp}/b", "suite file", "must hold a mapping"),
    case("fit", f"{FIT} env.id=", "'env.id='", "has no value", "env.id=null"),
    case("fit", "--config {alias_yaml}", "alias.yaml", "recursive aliases"),
    case("fit", "--config {critic_list_yaml}", "'critic'", "must be a mapping", "num_critics"),
    case("fit", f"{FIT} collector=3", "'collector'", "must be a mapping", "total_frames"),
    case("fit", f"{FIT} trainer.threads=", "'trainer.threads='", "has no value"),
    case("fit", "--config {self_yaml}", "'name'", "Recursive interpolation"),
    case("fit", "--config {deep_yaml}", "deep.yaml", "nests too deeply"),
    case("benchmark", "--suite {suite_tasks5} --out {tmp}/b", "'tasks'", "tasks"),
    case("benchmark", "--suite {scalar_yaml} --out {tmp}/b", "suite file", "'just a string'"),
    # 10. leftovers: a fresh run never goes into a folder that holds another run
    case("fit", FIT, "already holds a run", env={FIXED: "{run}"}),
    case("fit", FIT, "already holds a run", env={RUN_FOLDER: "{broken_run}"}),
    case("fit", FIT, "already holds a run", env={FIXED: "{dump_run}"}),
    case("fit", "--resume {run}", FIXED, "same folder", env={FIXED: "{broken_run}"}),
]

# tools/benchmark.py (issue 13): its bad-input cases go here, as case("benchmark", ...).
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
    (tmp / "scalar.yaml").write_text("just a string\n")
    (tmp / "env5.yaml").write_text("env: 5\n")
    (tmp / "alias.yaml").write_text("critic: &c\n  hidden_sizes: *c\n")
    (tmp / "critic_list.yaml").write_text("critic: [1, 2]\n")
    (tmp / "self.yaml").write_text("name: ${name}\n")
    (tmp / "deep.yaml").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    resumable = _resume_inputs(tmp, run)
    suites = _suites(tmp)
    (tmp / "empty_out").mkdir()
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
        "empty_out": str(tmp / "empty_out"),
        **{name: str(tmp / f"{name[:-5]}.yaml") for name in YAML_FILES},
        **resumable,
        **suites,
    }


YAML_FILES = (
    "scalar_yaml",
    "env5_yaml",
    "alias_yaml",
    "critic_list_yaml",
    "self_yaml",
    "deep_yaml",
)


def _resume_inputs(tmp: Path, run: Path) -> dict[str, str]:
    """Copies of ``run`` whose own files are damaged or changed by hand: config.yaml (a syntax
    error, another algorithm, a list) and the replay dump its checkpoint names (cut short,
    missing, an unreadable manifest)."""
    config = (run / "config.yaml").read_text()
    folders = {}
    for name, text in {
        "syntax_run": config.replace("algo: s2ac", "algo: [s2ac"),
        "algo_run": config.replace("algo: s2ac", "algo: sac"),
        "list_run": "- algo\n- s2ac\n",
    }.items():
        shutil.copytree(run, tmp / name)
        (tmp / name / "config.yaml").write_text(text)
        folders[name] = str(tmp / name)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    for name in ("dump_run", "no_dump_run", "bad_manifest_run"):
        folder = tmp / name
        shutil.copytree(run, folder)
        torch.save({**checkpoint, "replay_dir": "step-0"}, folder / "checkpoints" / "last.ckpt")
        folders[name] = str(folder)
    dump = tmp / "dump_run" / "replay" / "step-0" / "rank-0"
    dump.mkdir(parents=True)
    (dump / "storage.memmap").write_bytes(b"\0" * 100)
    write_manifest(dump)
    (dump / "storage.memmap").write_bytes(b"\0" * 60)  # a copy cut short
    (tmp / "no_dump_run" / "replay").mkdir()
    bad = tmp / "bad_manifest_run" / "replay" / "step-0" / "rank-0"
    bad.mkdir(parents=True)
    (bad / "manifest.json").write_text("{not json")
    return folders


SUITE = """name: catalogue
seeds: 1
baseline: sac
algos:
  s2ac: {overrides: [algo=s2ac]}
  sac: {overrides: [algo=sac]}
tasks:
  multigoal:
    preset: conf/quickstart.yaml
    frames: 1500
    eval_every: 500
    random_score: -200.0
    random_source: catalogue
    reference_score: -170.0
    reference_source: catalogue
"""


def _suites(tmp: Path) -> dict[str, str]:
    """A valid suite, and copies with one mistake each."""
    variants = {
        "suite": SUITE,
        "suite_seeds0": SUITE.replace("seeds: 1", "seeds: 0"),
        "suite_baseline": SUITE.replace("baseline: sac", "baseline: td3"),
        "suite_inverted": SUITE.replace("reference_score: -170.0", "reference_score: -250.0"),
        "suite_equal": SUITE.replace("reference_score: -170.0", "reference_score: -200.0"),
        "suite_nan": SUITE.replace("reference_score: -170.0", "reference_score: .nan"),
        "suite_algo_seeds0": SUITE.replace("[algo=s2ac]}", "[algo=s2ac], seeds: 0}"),
        "suite_frames0": SUITE.replace("frames: 1500", "frames: 0"),
        "suite_tasks5": SUITE[: SUITE.index("tasks:")] + "tasks: 5\n",
    }
    for name, text in variants.items():
        (tmp / f"{name}.yaml").write_text(text)
    return {name: str(tmp / f"{name}.yaml") for name in variants}


def _run_in_process(tool: str, argv: list[str], capsys, monkeypatch) -> tuple[int, str]:
    # argparse names the program after sys.argv[0]: the tool's, not pytest's.
    monkeypatch.setattr(sys, "argv", [f"{tool}.py"])
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


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> Path:
    """The markdown table of every case's command and message (see the module docstring)."""
    path = tmp_path_factory.getbasetemp() / "bad_inputs.md"
    path.write_text("| command | message |\n| --- | --- |\n")
    return path


@pytest.mark.parametrize("bad", CASES + ISSUE_30_CASES + BENCHMARK_CASES)
def test_mistake_gets_one_line_and_exit_2(
    bad: Case, workspace: dict[str, str], catalogue: Path, capsys, monkeypatch
) -> None:
    argv = [arg.format(**workspace) for arg in bad.argv]
    for name, value in bad.env:
        monkeypatch.setenv(name, value.format(**workspace))
    root = Path(workspace["tmp"])
    before = _tree_digest(root)
    cwd = os.getcwd()
    os.chdir(ROOT)  # argv uses repository-relative presets, as the README does
    try:
        code, err = _run_in_process(bad.tool, argv, capsys, monkeypatch)
    finally:
        os.chdir(cwd)
    _check(code, err, bad.needles, argv)
    assert _tree_digest(root) == before, "a failed start changed or created files"
    message = next(line for line in err.splitlines() if "error:" in line)
    assert not message.startswith("pytest"), message
    shown = " ".join(bad.argv).replace("{", "<").replace("}", ">")
    with catalogue.open("a") as table:
        table.write(f"| `{bad.tool} {shown}` | `{message}` |\n")


def test_catalogue_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert len(ISSUE_30_CASES) >= 10 * 4  # ten classes, an example and three more each
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
