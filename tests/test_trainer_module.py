"""The LightningModule's run-level decisions: when ``trainer.compile='auto'`` compiles.

(Updates, logging and checkpoints are tested through whole fits in ``test_train*.py``.)
"""

from __future__ import annotations

import pytest
import torch
from conftest import TINY, expected_updates
from tensordict import TensorDict

from s2ac_lit.config import load_config
from s2ac_lit.trainer import module
from s2ac_lit.trainer.data import planned_updates
from s2ac_lit.trainer.module import COMPILE_MIN_UPDATES, RLModule, compiles
from s2ac_lit.trainer.train import train
from s2ac_lit.update import Update

# Tiny fits make (F/50 - 1)·10 updates over F frames (conftest.expected_updates).
LONG_FRAMES = (COMPILE_MIN_UPDATES // 10 + 1) * 50
SHORT_FRAMES = LONG_FRAMES - 50


@pytest.mark.parametrize("frames", [150, 1_000, 1_020, SHORT_FRAMES, LONG_FRAMES])
def test_planned_updates_follow_the_collector_schedule(frames: int) -> None:
    overrides = [*TINY, f"collector.total_frames={frames}", "eval.every_frames=0"]
    collector = load_config(overrides=overrides).collector
    assert planned_updates(collector) == expected_updates(frames)


def _cfg(*overrides: str):
    return load_config(overrides=[*TINY, *overrides])


@pytest.mark.parametrize(
    ("overrides", "found", "expected"),
    [
        ((f"collector.total_frames={LONG_FRAMES}",), True, True),
        ((f"collector.total_frames={SHORT_FRAMES}",), True, False),  # too short to repay it
        ((f"collector.total_frames={LONG_FRAMES}",), False, False),  # no C++ compiler
        ((f"collector.total_frames={LONG_FRAMES}", "algo=sql"), True, True),
        ((f"collector.total_frames={LONG_FRAMES}", "algo=sac"), True, False),  # no ensemble
        # The exact self term differentiates twice through the critic: compiled kernels
        # cannot. Hutchinson's probe takes a difference of closed-form scores: they can.
        ((f"collector.total_frames={LONG_FRAMES}", "svgd.self_term=exact"), True, False),
        ((f"collector.total_frames={LONG_FRAMES}", "svgd.self_term=hutchinson"), True, True),
        (("trainer.compile=true",), False, True),  # an explicit choice is obeyed
        ((f"collector.total_frames={LONG_FRAMES}", "trainer.compile=false"), True, False),
    ],
)
def test_auto_compiles_long_runs_of_compilable_algorithms(
    monkeypatch, overrides: tuple[str, ...], found: bool, expected: bool
) -> None:
    monkeypatch.setattr(module, "_cpp_compiler_found", lambda: found)
    cfg = _cfg(*overrides)
    assert cfg.trainer.compile == "auto" or "trainer.compile" in " ".join(overrides)
    assert compiles(cfg) is expected


def test_only_fitting_compiles_and_it_compiles_the_whole_update(monkeypatch, tmp_path) -> None:
    """``trainer.compile=true`` compiles the update once, at the first step of a fit; a module
    built to act (evaluation, the goal map) stays eager."""
    calls = []

    def record(fn, **kwargs):
        calls.append(fn)
        return fn

    monkeypatch.setattr(torch, "compile", record)
    cfg = _cfg(
        "trainer.compile=true",
        f"run_dir={tmp_path}",
        "collector.total_frames=150",
        "eval.every_frames=0",
    )
    rl = RLModule(cfg, 2, [-1.0, -1.0], [1.0, 1.0])
    rl.policy()(TensorDict({"observation": torch.zeros(2)}, []))
    assert calls == []
    train(cfg)
    assert len(calls) == 1 and calls[0].__self__.__class__ is Update  # the bound __call__
    train(
        _cfg(
            "trainer.compile=false",
            f"run_dir={tmp_path}",
            "collector.total_frames=150",
            "eval.every_frames=0",
        )
    )
    assert len(calls) == 1
