"""What a resume says when it cannot be bit-exact (docs/checkpoints.md §Limits), and the
deterministic mode that exactness needs.

The notice is one line naming every reason at once; a checkpoint written on this machine, by
these libraries, with a readable env and deterministic kernels gets none.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from s2ac_lit.config import TrainerConfig
from s2ac_lit.trainer.checkpoints import machine_record, resume_notice
from s2ac_lit.trainer.train import deterministic

PREFIX = "resume is not bit-exact: "
SUFFIX = "; the run continues statistically"


def checkpoint_with(**feeder: Any) -> dict[str, Any]:
    """A checkpoint as Lightning writes it, holding the replay feeder's state ``feeder``."""
    return {"loops": {"fit_loop": {"state_dict": {"combined_loader": [feeder]}}}}


def saved_here(**changes: Any) -> dict[str, Any]:
    """The feeder state of a one-process run saved on this machine (its env readable), with
    ``changes``."""
    state = {"in_flight": {}, "env_unreadable": None, "world_size": 1}
    return {**state, "machine": machine_record(), **changes}


def notice(
    feeder: dict[str, Any], *, det: bool = True, world_size: int = 1, replay: bool = True
) -> str | None:
    return resume_notice(
        checkpoint_with(**feeder),
        deterministic=det,
        world_size=world_size,
        replay_loaded=replay,
        machine=None,
    )


def test_a_checkpoint_of_this_machine_and_libraries_resumes_without_a_notice() -> None:
    assert notice(saved_here()) is None
    assert notice(saved_here(world_size=4), world_size=4) is None  # each rank saved its own


@pytest.mark.parametrize(
    ("feeder", "det", "world_size", "replay", "reason"),
    [
        (
            saved_here(in_flight=None, env_unreadable="X has no state API"),
            True,
            1,
            True,
            "the env's state cannot be saved: X has no state API",
        ),
        (
            {"machine": machine_record()},  # a checkpoint from before exact resume
            True,
            1,
            True,
            "the checkpoint was written before runs saved their env and collector",
        ),
        (saved_here(), False, 1, True, "trainer.deterministic=false"),
        (
            saved_here(),
            True,
            1,
            False,
            "no replay buffer dump is loaded (replay.checkpoint=false): the buffer starts empty",
        ),
        (
            saved_here(world_size=2),
            True,
            2,
            False,
            "no replay buffer dump is loaded (replay.checkpoint=false): the buffer starts "
            "empty, and DDP ranks other than 0 restart their env and random streams",
        ),
        (
            saved_here(world_size=None),  # from before each rank saved its own state
            True,
            4,
            True,
            "4 DDP ranks from a checkpoint written before each rank saved its env and random state",
        ),
        (saved_here(world_size=2), True, 4, True, "the run had 2 DDP ranks, this fit has 4"),
        (saved_here(), True, 2, True, "the run had 1 DDP rank, this fit has 2"),
    ],
    ids=[
        "unreadable env",
        "older checkpoint",
        "not deterministic",
        "no replay",
        "no replay, DDP",
        "DDP, older checkpoint",
        "more ranks",
        "one rank to two",
    ],
)
def test_each_reason_is_named_in_one_line(
    feeder: dict[str, Any], det: bool, world_size: int, replay: bool, reason: str
) -> None:
    line = notice(feeder, det=det, world_size=world_size, replay=replay)
    assert line == f"{PREFIX}{reason}{SUFFIX}"


@pytest.mark.parametrize(
    ("key", "saved"),
    [("torch", "1.0.0"), ("mujoco", "2.0.0"), ("cpu", "Another CPU"), ("threads", 999)],
)
def test_another_machine_or_library_version_is_named_with_both_values(key: str, saved) -> None:
    here = machine_record()
    line = notice(saved_here(machine={**here, key: saved}))
    assert line == (
        f"{PREFIX}resumed on another machine or library version ({key} {saved} → {here[key]})"
        f"{SUFFIX}"
    )


def test_all_reasons_at_once_in_one_line() -> None:
    feeder = saved_here(env_unreadable="X has no state API")
    feeder["machine"] = {**feeder["machine"], "numpy": "0.1"}
    line = notice(feeder, det=False, world_size=2, replay=False)
    assert line is not None and "\n" not in line
    assert line.count("; ") == 5, line  # five reasons, then the suffix


@pytest.mark.parametrize(
    ("setting", "accelerator", "expected"),
    [("auto", "cpu", True), ("auto", "gpu", False), (False, "cpu", False), (True, "gpu", True)],
)
def test_deterministic_auto_is_true_on_the_cpu_only(
    setting: bool | str, accelerator: str, expected: bool
) -> None:
    cfg = TrainerConfig(deterministic=setting, accelerator=accelerator)
    assert deterministic(cfg) is expected


def test_a_deterministic_trainer_turns_on_deterministic_kernels(tmp_path) -> None:
    """Through Lightning's flag, warn-only: an op without a deterministic kernel warns."""
    from s2ac_lit.config import load_config
    from s2ac_lit.trainer.callbacks import PeriodicEvaluation
    from s2ac_lit.trainer.interrupts import StopSignals
    from s2ac_lit.trainer.train import build_trainer

    was = (
        torch.are_deterministic_algorithms_enabled(),
        (torch.is_deterministic_algorithms_warn_only_enabled()),
    )
    try:
        for setting, expected in (("false", False), ("auto", True)):
            cfg = load_config(
                overrides=[f"trainer.deterministic={setting}", "trainer.accelerator=cpu"]
            )
            torch.use_deterministic_algorithms(False)
            build_trainer(cfg, tmp_path, PeriodicEvaluation(cfg), StopSignals())
            assert torch.are_deterministic_algorithms_enabled() is expected
            assert torch.is_deterministic_algorithms_warn_only_enabled() is expected
    finally:
        torch.use_deterministic_algorithms(was[0], warn_only=was[1])
