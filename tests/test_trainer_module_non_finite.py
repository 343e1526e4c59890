"""The stop on a non-finite loss or gradient, and the diagnostics a run logs before it.

The stop is checked against a run whose critic loss is poisoned at a known update: the run must
stop at that update, name the term and the newest checkpoint, leave only finite checkpoints,
resume from that checkpoint with changed settings, and log the sampler's diagnostics (checked
against a direct computation in ``test_actor.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import read_csv, tiny

from s2ac_lit.config import load_config
from s2ac_lit.objectives.s2ac import S2ACLoss
from s2ac_lit.trainer.checkpoints import read_checkpoint
from s2ac_lit.trainer.module import RLModule, non_finite_state
from s2ac_lit.trainer.train import NON_FINITE_EXIT, main, train
from s2ac_lit.update import NonFiniteError


def test_a_nan_weight_is_never_written() -> None:
    cfg = load_config(overrides=tiny(Path("unused")))
    module = RLModule(cfg, 2, [-1.0, -1.0], [1.0, 1.0])
    state = module.state_dict()
    assert non_finite_state(state) == []
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[name] = state[name].clone().fill_(float("nan"))
    assert non_finite_state(state) == [name]
    with pytest.raises(NonFiniteError, match="non-finite weights"):
        module.on_save_checkpoint({"state_dict": state})


class PoisonedCriticLoss:
    """Patches S2ACLoss.critic_loss to return NaN from the given (1-based) call on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, at_call: int) -> None:
        original = S2ACLoss.critic_loss
        self.calls = 0

        def critic_loss(loss, tensordict):
            self.calls += 1
            value, info = original(loss, tensordict)
            return (value * float("nan") if self.calls >= at_call else value), info

        monkeypatch.setattr(S2ACLoss, "critic_loss", critic_loss)


def test_non_finite_loss_stops_the_run_and_the_last_checkpoint_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    args = tiny(
        tmp_path,
        "collector.total_frames=300",
        "trainer.checkpoint_every_updates=20",
        "eval.every_frames=0",
        "replay.checkpoint=false",
    )
    PoisonedCriticLoss(monkeypatch, at_call=25)
    assert main(args) == NON_FINITE_EXIT
    err = capsys.readouterr().err
    assert "non-finite loss_qvalue, gradient of critic at update 25" in err
    assert "Traceback" not in err and "--resume" in err
    run = next((tmp_path / "runs").iterdir())
    saved = sorted((run / "checkpoints").glob("*.ckpt"))
    # The update-20 checkpoint and its copy as last.ckpt; nothing after the NaN.
    assert [p.name for p in saved] == ["last.ckpt", "step=20.ckpt"]
    assert str(run / "checkpoints" / "last.ckpt") in err
    for path in saved:
        checkpoint = read_checkpoint(path)
        assert checkpoint["global_step"] == 20
        assert non_finite_state(checkpoint["state_dict"]) == []

    monkeypatch.undo()
    summary = train(load_config(overrides=[*args, "optim.critic_lr=0.0005"]), resume_from=saved[1])
    assert summary["updates"] == (300 // 50 - 2 + 1) * 10
    rows = read_csv(run / "logs" / "csv" / "metrics.csv")
    logged = {key for row in rows for key, value in row.items() if value}
    for key in (
        "train/svgd/sigma2_first",
        "train/svgd/sigma2_last",
        "train/svgd/step_norm_bound",
        "train/svgd/spread_init",
        "train/svgd/spread_final",
        "train/actor/std_mean",
        "train/actor/std_min",
        "train/actor/mean_norm",
        "train/actor/saturated",
        "train/grad_norm/critic",
        "train/grad_norm/actor",
        "train/entropy",
    ):
        assert key in logged, key
