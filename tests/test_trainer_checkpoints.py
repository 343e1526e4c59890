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
    """The feeder state of a run saved on this machine (its env readable), with ``changes``."""
    return {"in_flight": {}, "env_unreadable": None, "machine": machine_record(), **changes}


def notice(feeder: dict[str, Any], *, det: bool = True, world_size: int = 1) -> str | None:
    return resume_notice(
        checkpoint_with(**feeder), deterministic=det, world_size=world_size, machine=None
    )


def test_a_checkpoint_of_this_machine_and_libraries_resumes_without_a_notice() -> None:
    assert notice(saved_here()) is None


@pytest.mark.parametrize(
    ("feeder", "det", "world_size", "reason"),
    [
        (
            saved_here(in_flight=None, env_unreadable="X has no state API"),
            True,
            1,
            "the env's state cannot be saved: X has no state API",
        ),
        (
            {"machine": machine_record()},  # a checkpoint from before exact resume
            True,
            1,
            "the checkpoint was written before runs saved their env and collector",
        ),
        (saved_here(), False, 1, "trainer.deterministic=false"),
        (saved_here(), True, 4, "4 DDP ranks (only rank 0's env and random state are saved)"),
    ],
    ids=["unreadable env", "older checkpoint", "not deterministic", "DDP"],
)
def test_each_reason_is_named_in_one_line(
    feeder: dict[str, Any], det: bool, world_size: int, reason: str
) -> None:
    assert notice(feeder, det=det, world_size=world_size) == f"{PREFIX}{reason}{SUFFIX}"


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
    line = notice(feeder, det=False, world_size=2)
    assert line is not None and "\n" not in line
    assert line.count("; ") == 4, line  # four reasons, then the suffix


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
