"""Shared test setup (one CPU thread, fixed seeds) and the builders several test files use.

Test files are named after what they test:

- ``s2ac_lit/<module>.py`` → ``tests/test_<module>.py``;
- ``s2ac_lit/<package>/<module>.py`` → ``tests/test_<package>_<module>.py``, and a whole
  package → ``tests/test_<package>.py``;
- ``tools/<name>.py`` → ``tests/test_tools_<name>.py``;
- an aspect with enough tests of its own → ``tests/test_<module>_<aspect>.py`` (e.g.
  ``test_trainer_train_resume.py``, ``test_tools_bad_inputs.py`` for every tool's bad input).

The builders are plain functions, in the style of TorchRL's ``_create_mock_*`` test helpers;
test files import them with ``from conftest import ...``.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest
import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn
from torchrl.objectives import SoftUpdate

from s2ac_lit.actor import DEFAULT_SVGD, SVGDActor
from s2ac_lit.config import Config
from s2ac_lit.networks import QEnsemble
from s2ac_lit.objectives.common import SamplerLoss
from s2ac_lit.trainer.module import RLModule

torch.set_num_threads(1)  # 2-vCPU machines spin-wait with two
# ... and so does every fit a test starts, in this process or a child, even one with
# trainer.threads='auto' (which takes OMP_NUM_THREADS when it is set).
os.environ["OMP_NUM_THREADS"] = "1"

LossT = TypeVar("LossT", bound=SamplerLoss)

ROOT = Path(__file__).resolve().parents[1]
"""The repository root: presets under ``conf/``, scripts under ``tools/``."""


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# ----------------------------------------------------------------------- losses: data, critics
def mock_replay_batch(
    batch: int,
    obs_dim: int,
    action_dim: int,
    *,
    terminated: torch.Tensor | None = None,
    action_range: tuple[float, float] = (-1.0, 1.0),
    generator: torch.Generator | None = None,
) -> TensorDict:
    """A replay batch under TorchRL's default keys, as a collector and buffer deliver it.

    Observations and rewards are standard normal, actions uniform on ``action_range``, drawn in
    the order observation, action, next observation, reward from ``generator`` (the global RNG
    without one). ``terminated`` (default: none) also serves as ``done``; set
    ``("next", "done")`` afterwards for truncations.

    Shapes:
        ``observation``, ``("next", "observation")``: [batch, obs_dim]; ``action``:
        [batch, action_dim]; ``("next", "reward" | "done" | "terminated")``: [batch, 1].
    """
    if terminated is None:
        terminated = torch.zeros(batch, 1, dtype=torch.bool)
    low, high = action_range
    return TensorDict(
        {
            "observation": torch.randn(batch, obs_dim, generator=generator),
            "action": low + (high - low) * torch.rand(batch, action_dim, generator=generator),
            "next": {
                "observation": torch.randn(batch, obs_dim, generator=generator),
                "reward": torch.randn(batch, 1, generator=generator),
                "done": terminated.clone(),
                "terminated": terminated,
            },
        },
        [batch],
    )


def mock_sampler_loss(
    loss_class: type[LossT],
    obs_dim: int,
    action_dim: int,
    *,
    steps: int | None = None,
    **actor_options: Any,
) -> LossT:
    """A tiny ``S2ACLoss`` or ``SQLLoss`` as the trainer builds it (a fixed α, the squared-error
    critic loss), otherwise with its defaults: an ``SVGDActor`` on [-1, 1]^action_dim built with
    ``actor_options`` (``steps``: the actor's default sampler with that many SVGD steps), then a
    twin critic with one hidden layer of 8."""
    if steps is not None:
        actor_options["svgd"] = replace(DEFAULT_SVGD, steps=steps)
    actor = SVGDActor(obs_dim, [-1.0] * action_dim, [1.0] * action_dim, **actor_options)
    critic = QEnsemble(obs_dim, action_dim, hidden_sizes=(8,))
    return with_target_updater(loss_class(actor, critic, fixed_alpha=True, loss_function="l2"))


def with_target_updater(loss: LossT, tau: float = 0.005) -> LossT:
    """``loss`` with a ``SoftUpdate`` registered, as the trainer builds it (s2ac_lit/update.py):
    TorchRL warns at every call of a loss whose target parameters have no updater. The updater
    copies the online weights into the targets, which a new loss already holds."""
    SoftUpdate(loss, tau=tau)
    return loss


def set_constant_critic(critic: nn.Module | TensorDictBase, values: float | list[float]) -> None:
    """Q_k(s, a) = values[k] everywhere (one value: every critic): zero last-layer weights, the
    bias is the constant. ``critic`` is a ``QEnsemble`` or its parameters (e.g. a loss's
    ``qvalue_network_params``); either is changed in place."""
    params = TensorDict.from_module(critic) if isinstance(critic, nn.Module) else critic
    last = params["layers", str(len(params["layers"].keys()) - 1)]
    with torch.no_grad():
        last["weight"].zero_()
        last["bias"].copy_(torch.tensor(values, dtype=last["bias"].dtype).reshape(-1, 1, 1))


# ------------------------------------------------------------------- training runs and folders
TINY = [
    "env.id=s2ac_lit/MultiGoalMaxEnt-v0",
    "collector.init_random_frames=100",
    "collector.frames_per_batch=50",
    "collector.update_after=100",
    "collector.updates_per_batch=10",
    "replay.capacity=5000",
    "replay.batch_size=32",
    "svgd.num_particles=4",
    "svgd.steps=2",
    "actor.hidden_sizes=[16]",
    "critic.hidden_sizes=[16,16]",
    "trainer.log_every_updates=5",
    "trainer.progress_bar=false",
    "eval.episodes=2",
]
"""Overrides for a tiny multigoal fit: tiny networks, 50-frame batches, updates from frame 100."""


def tiny(tmp_path: Path, *extra: str) -> list[str]:
    """The tiny fit's overrides with its run folder under ``tmp_path / "runs"``, then ``extra``."""
    return [*TINY, f"run_dir={tmp_path / 'runs'}", *extra]


def expected_updates(frames: int) -> int:
    """Updates of a tiny fit over ``frames``: 50-frame batches, updates from frame 100 and 10
    per batch, so F frames give (F/50 - 2 + 1)·10."""
    return (frames // 50 - 2 + 1) * 10


def wait_for(
    predicate: Callable[[], object], process: subprocess.Popen, timeout: float = 120
) -> None:
    """Poll ``predicate`` until it holds, while ``process`` (a :func:`run_fit` child) runs."""
    deadline = time.time() + timeout
    while not predicate():
        assert process.poll() is None, process.stdout.read()
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def run_fit(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``tools/fit.py args`` as a user starts it, output (with stderr) piped and unbuffered;
    ``env``: more environment variables (e.g. a multi-node rendezvous)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "tools" / "fit.py"), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` imported as the module ``tools_<name>`` (a fresh copy each call)."""
    spec = importlib.util.spec_from_file_location(f"tools_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses in the tool look their module up
    spec.loader.exec_module(module)
    return module


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file with a header (a run's metrics, a tool's results)."""
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def assert_bit_identical(run: Path, reference: Path) -> None:
    """Everything a reported number comes from is the same bit for bit: ``summary.json`` (the
    evaluation history, the final return, the counts), every value ``metrics.csv`` logs
    (losses, entropy, Q values, gradient norms, returns; not the wall-clock ``time/`` columns)
    and the final weights and optimiser state."""
    got, want = (json.loads((r / "summary.json").read_text()) for r in (run, reference))
    for key in ("eval_history", "final_eval_return_mean", "final_eval_return_std"):
        assert got[key] == want[key], key
    assert (got["frames"], got["updates"], got["episodes"]) == (
        want["frames"],
        want["updates"],
        want["episodes"],
    )
    logged, expected_log = (
        [{k: v for k, v in row.items() if not k.startswith("time/")} for row in read_csv(path)]
        for path in (r / "logs" / "csv" / "metrics.csv" for r in (run, reference))
    )
    assert logged == expected_log
    last, expected = (
        torch.load(r / "checkpoints" / "last.ckpt", weights_only=True) for r in (run, reference)
    )
    torch.testing.assert_close(last["state_dict"], expected["state_dict"], rtol=0, atol=0)
    optimisers = zip(last["optimizer_states"], expected["optimizer_states"], strict=True)
    for got_opt, want_opt in optimisers:
        torch.testing.assert_close(got_opt["state"], want_opt["state"], rtol=0, atol=0)
        assert got_opt["param_groups"] == want_opt["param_groups"]


def save_untrained_checkpoint(cfg: Config, run: Path) -> Path:
    """An untrained multigoal ``RLModule`` (2-dim observations and actions in [-1, 1]²) saved
    as ``run/checkpoints/last.ckpt`` with the entries Lightning writes; returns its path."""
    (run / "checkpoints").mkdir(parents=True)
    module = RLModule(cfg, 2, [-1.0, -1.0], [1.0, 1.0])
    checkpoint = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "global_step": 0,
    }
    path = run / "checkpoints" / "last.ckpt"
    torch.save(checkpoint, path)
    return path
