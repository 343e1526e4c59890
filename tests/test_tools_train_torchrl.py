"""tools/train_torchrl.py (plain TorchRL trainer) and the env factory it builds on.

The smoke runs launch the script as subprocesses, all at once (each mostly waits on imports),
and check that the last line of each is ``eval_return=<float>``. The learning check is slow.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, load_tool

from s2ac_lit.envs import check_env_id, env_dims, make_env

SCRIPT = ROOT / "tools" / "train_torchrl.py"
LAST_LINE = re.compile(r"^eval_return=(-?\d+(\.\d*)?([eE][-+]?\d+)?|nan|-?inf)$")
SMOKE_ALGOS = ("s2ac", "s2ac-phi", "sac", "sql", "random")
TINY_FLAGS = {
    "--frames": 120,
    "--init-random-frames": 60,
    "--frames-per-batch": 30,
    "--batch-size": 16,
    "--hidden": 8,
    "--particles": 3,
    "--steps": 1,
    "--value-particles": 4,
    "--eval-episodes": 1,
    "--eval-max-steps": 10,
    "--log-every": 60,
}
TINY = [str(part) for flag in TINY_FLAGS.items() for part in flag]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _last_value(stdout: str) -> float:
    last = stdout.strip().splitlines()[-1]
    match = LAST_LINE.match(last)
    assert match, f"last line is not eval_return=<float>: {last!r}"
    return float(match.group(1))


@pytest.fixture(scope="module")
def smoke_runs() -> dict[str, subprocess.CompletedProcess]:
    procs = {
        algo: subprocess.Popen(
            [sys.executable, str(SCRIPT), "--algo", algo, *TINY],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
            cwd=ROOT,
        )
        for algo in SMOKE_ALGOS
    }
    runs = {}
    for algo, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        runs[algo] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return runs


@pytest.mark.parametrize("algo", SMOKE_ALGOS)
def test_script_smoke_last_line(smoke_runs, algo: str) -> None:
    run = smoke_runs[algo]
    assert run.returncode == 0, run.stderr[-3000:]
    value = _last_value(run.stdout)
    assert value < 0  # Pendulum rewards are all negative
    if algo != "random":
        assert "updates=" in run.stdout and "loss_qvalue=" in run.stdout


def test_amortized_selections_and_benchmark_in_process(capsys) -> None:
    script = load_tool("train_torchrl")
    metrics = script.main(["--algo", "s2ac", "--amortized", *TINY])
    for selection in ("softmax", "max", "amortized"):
        assert f"{selection}_ms_per_action" in metrics
    assert _last_value(capsys.readouterr().out) == pytest.approx(metrics["eval_return"])
    timings = script.main(["--benchmark-updates", "2", "--hidden", "8", "--batch-size", "8"])
    assert set(timings) == {"s2ac", "sac"} and all(t > 0 for t in timings.values())
    torch.set_num_threads(1)


def test_script_rejects_inconsistent_flags() -> None:
    script = load_tool("train_torchrl")
    with pytest.raises(SystemExit):
        script.parse_args(["--algo", "sac", "--amortized"])
    with pytest.raises(SystemExit):
        script.parse_args(["--algo", "s2ac", "--eval-selection", "amortized"])


def test_make_env_float32_dims_and_seed() -> None:
    env = make_env("Pendulum-v1", seed=3, max_episode_steps=7)
    dims = env_dims(env)
    assert (dims.observation_dim, dims.action_dim) == (3, 1)
    torch.testing.assert_close(dims.action_high, torch.tensor([2.0]))
    rollout = env.rollout(50, break_when_any_done=False)
    assert rollout["next", "observation"].dtype == torch.float32
    assert rollout["next", "truncated"].sum() == 7 and not rollout["next", "terminated"].any()
    again = make_env("Pendulum-v1", seed=3).reset()["observation"]
    torch.testing.assert_close(make_env("Pendulum-v1", seed=3).reset()["observation"], again)
    multigoal = env_dims(make_env("s2ac_lit/MultiGoalMaxEnt-v0"))
    assert (multigoal.observation_dim, multigoal.action_dim) == (2, 2)


def test_make_env_unknown_id_suggests_close_matches() -> None:
    check_env_id("s2ac_lit/MultiGoal-v0")  # registered by importing s2ac_lit.envs
    with pytest.raises(ValueError, match=r"'Pendulm-v1'.*Pendulum-v1"):
        make_env("Pendulm-v1")
    with pytest.raises(ValueError, match="s2ac_lit/MultiGoalMaxEnt-v0"):
        make_env("multigoalmaxent-v0")


@pytest.mark.slow
def test_s2ac_and_sac_learn_pendulum() -> None:
    """Default flags (8000 frames): random ≈ -1200; S2AC and SAC reach about -100 to -300."""
    returns = {}
    for algo in ("random", "sac", "s2ac"):
        run = subprocess.run(
            [sys.executable, str(SCRIPT), "--algo", algo, "--seed", "0"],
            capture_output=True,
            text=True,
            env=_env(),
            cwd=ROOT,
            timeout=1500,
            check=True,
        )
        returns[algo] = _last_value(run.stdout)
    assert returns["random"] < -800, returns
    for algo in ("sac", "s2ac"):
        assert returns[algo] > returns["random"] + 700 and returns[algo] > -400, returns


def test_torchrl_networks_train_and_benchmark_in_process(capsys) -> None:
    """--networks torchrl: the SAC example's actor and critics under S2AC and SQL."""
    script = load_tool("train_torchrl")
    for algo in ("s2ac", "sql"):
        metrics = script.main(["--algo", algo, "--networks", "torchrl", *TINY])
        assert math.isfinite(metrics["eval_return"]) and metrics["updates"] > 0
    assert _last_value(capsys.readouterr().out) == pytest.approx(metrics["eval_return"])
    timings = script.main(
        [
            "--benchmark-updates",
            "2",
            "--benchmark-algos",
            "s2ac",
            "--benchmark-networks",
            "project,torchrl",
            "--hidden",
            "8",
            "--batch-size",
            "8",
        ]
    )
    assert set(timings) == {"s2ac", "s2ac/torchrl"} and all(t > 0 for t in timings.values())
    assert "benchmark algo=s2ac networks=torchrl" in capsys.readouterr().out
    torch.set_num_threads(1)
    with pytest.raises(SystemExit):
        script.parse_args(["--algo", "s2ac-phi", "--networks", "torchrl"])
