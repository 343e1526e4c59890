"""Diagnostics that show a collapse coming, and the stop on a non-finite loss or gradient.

The diagnostics are checked against a direct computation on the same particles (same
generator seed); the non-finite stop against a run whose critic loss is poisoned at a known
update: the run must stop at that update, name the term and the newest checkpoint, leave only
finite checkpoints, and resume from that checkpoint with changed settings.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_train import tiny

from s2ac_lit.actor import DEFAULT_SVGD, SVGDActor, tanh_log_abs_det
from s2ac_lit.checkpoints import read_checkpoint
from s2ac_lit.config import load_config
from s2ac_lit.module import NonFiniteError, RLModule, non_finite_state
from s2ac_lit.networks import QEnsemble
from s2ac_lit.objectives.s2ac import S2ACLoss
from s2ac_lit.svgd import svgd_run
from s2ac_lit.train import NON_FINITE_EXIT, main, train


def test_sampler_diagnostics_match_a_direct_computation() -> None:
    actor = SVGDActor(
        3,
        [-2.0, -1.0],
        [2.0, 1.0],
        num_particles=6,
        hidden_sizes=(16,),
        svgd=replace(DEFAULT_SVGD, steps=3),
    )
    critic = QEnsemble(3, 2, hidden_sizes=(16,))
    obs = torch.randn(7, 3)
    sample = actor.sample(
        obs, critic, 0.5, diagnostics=True, generator=torch.Generator().manual_seed(1)
    )
    u0, log_q0, _ = actor.initial_particles(obs, generator=torch.Generator().manual_seed(1))
    mean, raw = actor.init_net(obs).unsqueeze(-2).chunk(2, -1)
    std = actor.std_min + (actor.std_max - actor.std_min) * torch.sigmoid(raw)
    energy = actor.energy(obs, critic, 0.5)
    run = svgd_run(energy, u0, log_q0, actor.svgd, score_fn=energy.score_fn, diagnostics=True)
    torch.testing.assert_close(sample.particles, run.particles)
    torch.testing.assert_close(
        sample.log_prob, run.log_q - tanh_log_abs_det(run.particles, actor.action_scale)
    )
    d = sample.diagnostics
    expected = {
        "svgd/sigma2_first": run.sigma2[..., 0].mean(),
        "svgd/sigma2_last": run.sigma2[..., -1].mean(),
        "svgd/step_norm_bound": run.step_norm_bound.max(),
        "svgd/spread_init": u0.std(-2).mean(),
        "svgd/spread_final": run.particles.std(-2).mean(),
        "actor/saturated": (run.particles.tanh().abs() > 0.99).float().mean(),
        "actor/std_mean": std.mean(),
        "actor/std_min": std.min(),
        "actor/mean_norm": mean.norm(dim=-1).mean(),
    }
    assert set(d) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(d[key], value.detach(), msg=key)
        assert not d[key].requires_grad


def test_saturation_counts_coordinates_beyond_the_threshold() -> None:
    actor = SVGDActor(
        1, [-1.0], [1.0], init="fixed", num_particles=4, svgd=replace(DEFAULT_SVGD, steps=0)
    )
    u = torch.tensor([[[0.0], [2.0], [2.7], [-3.0]]])  # tanh: 0, 0.964, 0.991, -0.995
    from s2ac_lit.actor import sampler_diagnostics

    d = sampler_diagnostics(u, u, torch.zeros(1, 0), torch.zeros(1, 0))
    assert float(d["actor/saturated"]) == pytest.approx(0.5)
    assert "svgd/sigma2_first" not in d  # no SVGD step, no kernel
    assert actor.init_net is None


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
    rows = list(csv.DictReader((run / "logs" / "csv" / "metrics.csv").open()))
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


@pytest.mark.parametrize(("init", "steps"), [("learned", 2), ("fixed", 2), ("learned", 0)])
def test_diagnostic_keys_name_exactly_what_the_sampler_returns(init: str, steps: int) -> None:
    actor = SVGDActor(
        3,
        [-1.0],
        [1.0],
        init=init,
        num_particles=4,
        hidden_sizes=(8,),
        svgd=replace(DEFAULT_SVGD, steps=steps),
    )
    sample = actor.sample(
        torch.randn(5, 3), QEnsemble(3, 1, hidden_sizes=(8,)), 1.0, diagnostics=True
    )
    assert sorted(sample.diagnostics) == sorted(actor.diagnostic_keys())
