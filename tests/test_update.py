"""The training update (s2ac_lit/update.py), without a fit.

Checked against the same steps written out by hand: one backward of the summed losses and one
fused Adam step (``joint``); the critics' step first and the actor's gradient at the stepped
critics (``critic_first``, the authors' order); the non-finite guard masks the step on the
device from the first bad update on and names that update and its terms; no host
synchronisation inside an update (``Tensor.item``/``bool``/``tolist`` made to raise).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
import torch
from conftest import mock_replay_batch, mock_sampler_loss, with_target_updater
from tensordict import TensorDict
from torchrl.objectives import SoftUpdate

from s2ac_lit.actor import DEFAULT_SVGD
from s2ac_lit.algorithms import ALGORITHMS, build_algorithm, make_optimizer, make_update
from s2ac_lit.config import load_config
from s2ac_lit.objectives.s2ac import S2ACLoss
from s2ac_lit.update import NonFiniteError, Update, total_loss

OBS, ACT = 3, 2


def _s2ac() -> S2ACLoss:
    loss = mock_sampler_loss(S2ACLoss, OBS, ACT, num_particles=4, hidden_sizes=(8,))
    loss.make_value_estimator(gamma=0.9)
    return loss


def _algorithm(algo: str):
    """The registry's loss with its target updater registered, as the trainer builds it."""
    cfg = load_config(
        overrides=[f"algo={algo}", "critic.hidden_sizes=[8]", "actor.hidden_sizes=[8]"]
        if algo != "sac"
        else ["algo=sac", "critic.hidden_sizes=[8]"]
    )
    algorithm = build_algorithm(cfg, OBS, [-1.0] * ACT, [1.0] * ACT)
    with_target_updater(algorithm.loss)
    return cfg, algorithm


def _params(loss: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in loss.named_parameters()}


def _targets(loss: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: value.detach().clone()
        for name, value in loss.target_qvalue_network_params.flatten_keys().items()
    }


def test_joint_update_is_one_backward_one_adam_step_and_the_target_update() -> None:
    loss = _s2ac()
    reference = copy.deepcopy(loss)
    batch = mock_replay_batch(16, OBS, ACT)
    cfg = load_config()
    update = Update(loss, make_optimizer(loss, cfg.optim), SoftUpdate(loss, tau=0.1))
    torch.manual_seed(1)
    out = update(batch.clone()).out

    optimizer = make_optimizer(reference, cfg.optim)
    target = SoftUpdate(reference, tau=0.1)
    torch.manual_seed(1)
    expected = reference(batch.clone())
    total_loss(expected).backward()
    optimizer.step()
    target.step()

    for key in ("loss_qvalue", "loss_actor", "loss_alpha", "entropy"):
        assert torch.equal(out[key], expected[key].detach()), key
    for name, value in _params(loss).items():
        assert torch.equal(value, _params(reference)[name]), name
    for name, value in _targets(loss).items():
        assert torch.equal(value, _targets(reference)[name]), name
    assert int(update.count) == 1


@pytest.mark.parametrize("algo", ["s2ac", "sql", "sac"])
def test_joint_phases_equal_forward(algo: str) -> None:
    """The phases consumed without a step are exactly the loss's forward (same draws)."""
    _, algorithm = _algorithm(algo)
    loss = algorithm.loss
    batch = mock_replay_batch(8, OBS, ACT)
    torch.manual_seed(3)
    whole = loss(batch.clone())
    torch.manual_seed(3)
    phases = list(ALGORITHMS[algo].phases(loss)(batch.clone()))
    assert len(phases) == 2
    first = set(phases[0].keys())
    assert "loss_qvalue" in first and "loss_actor" not in first
    for phase in phases:
        for key, value in phase.items():
            assert torch.equal(value, whole[key]), key


@pytest.mark.parametrize("algo", ["s2ac", "sac"])
def test_critic_first_actor_gradient_is_taken_at_the_stepped_critics(algo: str) -> None:
    cfg, algorithm = _algorithm(algo)
    loss = algorithm.loss
    reference, joint = copy.deepcopy(loss), copy.deepcopy(loss)
    batch = mock_replay_batch(16, OBS, ACT)
    cfg.optim.update_order = "critic_first"
    update = make_update(cfg, loss, make_optimizer(loss, cfg.optim))
    torch.manual_seed(5)
    update(batch.clone())
    actor = [p for name, p in loss.named_parameters() if name.startswith("actor_network")]
    got = [p.grad.clone() for p in actor]

    # By hand: the critic loss, a fused Adam step of the critic group, then the actor loss's
    # gradient at the stepped critics.
    optimizer = make_optimizer(reference, cfg.optim)
    torch.manual_seed(5)
    phases = iter(ALGORITHMS[algo].phases(reference)(batch.clone()))
    next(phases)["loss_qvalue"].backward()
    critic_before = {k: v.clone() for k, v in _params(reference).items() if "qvalue" in k}
    optimizer.step()
    moved = [k for k, v in _params(reference).items() if "qvalue" in k]
    assert any(not torch.equal(_params(reference)[k], critic_before[k]) for k in moved)
    actor_phase = next(phases)
    ref_actor = [p for name, p in reference.named_parameters() if name.startswith("actor_network")]
    want = torch.autograd.grad(actor_phase["loss_actor"], ref_actor)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)

    # ... and differs from the joint order's gradient, taken at the critics before the step.
    torch.manual_seed(5)
    phases = iter(ALGORITHMS[algo].phases(joint)(batch.clone()))
    next(phases)
    joint_actor = [p for name, p in joint.named_parameters() if name.startswith("actor_network")]
    assert not all(
        torch.equal(a, b)
        for a, b in zip(
            torch.autograd.grad(next(phases)["loss_actor"], joint_actor), want, strict=True
        )
    )


class PoisonCritic:
    """A loss wrapper whose critic loss is NaN on the given (1-based) calls."""

    def __init__(self, loss: S2ACLoss, bad_calls: set[int]) -> None:
        self.calls, self.bad = 0, bad_calls
        original = loss.critic_loss

        def critic_loss(tensordict):
            self.calls += 1
            value, info = original(tensordict)
            return (value * float("nan") if self.calls in self.bad else value), info

        loss.critic_loss = critic_loss  # type: ignore[method-assign]


def test_a_non_finite_update_is_masked_on_the_device_and_reported_later() -> None:
    loss = _s2ac()
    cfg = load_config()
    update = Update(loss, make_optimizer(loss, cfg.optim), SoftUpdate(loss, tau=0.1))
    PoisonCritic(loss, {3})
    batch = mock_replay_batch(16, OBS, ACT)
    for _ in range(2):
        update(batch.clone())
    after_two = _params(loss)
    update.raise_if_non_finite()  # nothing bad yet
    for _ in range(3):  # update 3 is bad; 4 and 5 are finite but come after it
        update(batch.clone())
    for name, value in _params(loss).items():
        assert torch.equal(value, after_two[name]), name
        assert torch.isfinite(value).all()
    state = update.optimizer.state_dict()["state"]
    assert all(int(s["step"]) == 2 for s in state.values())  # skipped steps are not counted
    with pytest.raises(NonFiniteError) as error:
        update.raise_if_non_finite("RUN/checkpoints/last.ckpt")
    message = str(error.value)
    assert "non-finite loss_qvalue, gradient of critic at update 3" in message
    assert "RUN/checkpoints/last.ckpt" in message


def test_a_finite_run_reports_nothing_and_counts_from_a_resumed_update() -> None:
    loss = _s2ac()
    update = Update(loss, make_optimizer(loss, load_config().optim), None)
    update.start_at(41)
    update(mock_replay_batch(8, OBS, ACT))
    assert int(update.count) == 42
    update.raise_if_non_finite()


def test_gradient_norms_come_back_only_on_log_updates() -> None:
    loss = _s2ac()
    update = Update(loss, make_optimizer(loss, load_config().optim), None)
    batch = mock_replay_batch(8, OBS, ACT)
    assert update(batch.clone()).grad_norms is None
    norms = update(batch.clone(), log=True).grad_norms
    assert set(norms) == {"critic", "actor"}
    assert all(float(n) > 0 for n in norms.values())


def test_clipping_bounds_the_global_norm_of_the_step() -> None:
    loss = _s2ac()
    optim = load_config(overrides=["optim.max_grad_norm=1e-3"]).optim
    update = Update(loss, make_optimizer(loss, optim), None, max_grad_norm=optim.max_grad_norm)
    update(mock_replay_batch(8, OBS, ACT), log=True)
    grads = [p.grad for p in loss.parameters() if p.grad is not None]
    assert float(torch.nn.utils.get_total_norm(grads)) == pytest.approx(1e-3, rel=1e-4)


def test_an_optimiser_that_cannot_skip_steps_on_the_device_is_refused() -> None:
    loss = _s2ac()
    with pytest.raises(ValueError, match="fused=True"):
        Update(loss, torch.optim.Adam(loss.parameters()), None)


@contextmanager
def no_host_reads() -> Iterator[None]:
    """Tensor.item/__bool__/tolist/__int__/__float__ raise: each reads a value on the host
    (a device synchronisation on a GPU)."""

    def refuse(*args, **kwargs):
        raise AssertionError("host read of a tensor inside the update")

    names = ("item", "__bool__", "tolist", "__int__", "__float__", "__index__")
    originals = {name: getattr(torch.Tensor, name) for name in names}
    try:
        for name in names:
            setattr(torch.Tensor, name, refuse)
        yield
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


# SAC is left out: TorchRL's TanhNormal checks its bounds on the host ((high > low).all())
# each time the actor builds its distribution, inside SACLoss.
@pytest.mark.parametrize("algo", ["s2ac", "sql"])
@pytest.mark.parametrize("order", ["joint", "critic_first"])
def test_an_update_reads_nothing_on_the_host(algo: str, order: str) -> None:
    cfg, algorithm = _algorithm(algo)
    cfg.optim.update_order = order
    cfg.optim.max_grad_norm = 1.0
    update = make_update(cfg, algorithm.loss, make_optimizer(algorithm.loss, cfg.optim))
    batch = mock_replay_batch(8, OBS, ACT)
    update(batch.clone())  # first call: lazy initialisation may read shapes or flags
    with no_host_reads():
        for _ in range(3):
            update(batch.clone())
    update.raise_if_non_finite()


def test_no_host_reads_catches_a_read() -> None:
    """The check itself: a host read inside it raises."""
    with no_host_reads(), pytest.raises(AssertionError, match="host read"):
        bool(torch.tensor(1.0) > 0)
    assert bool(torch.tensor(1.0) > 0)  # restored


def test_merge_phases_output_is_detached() -> None:
    loss = _s2ac()
    out = Update(loss, make_optimizer(loss, load_config().optim), None)(
        mock_replay_batch(8, OBS, ACT)
    ).out
    assert isinstance(out, TensorDict)
    assert not any(value.requires_grad for value in out.values())


# Compiling takes about a minute per case on a CPU core: the default's path (Hutchinson) runs in
# the default suite, the paper's closed form with the slow tests.
@pytest.mark.parametrize("self_term", [pytest.param("none", marks=pytest.mark.slow), "hutchinson"])
def test_the_compiled_update_matches_the_eager_one(self_term: str) -> None:
    """``trainer.compile``: torch.compile of the whole update (graph breaks at the backward
    and the fused step) computes what the eager update computes, update after update, with
    or without the self term (Hutchinson's probe is a difference of two closed-form scores, so
    nothing differentiates twice). Inductor draws random numbers its own way unless told to
    fall back to eager's: with the same draws the two agree to float round-off."""
    svgd = replace(DEFAULT_SVGD, self_term=self_term)
    losses = [
        mock_sampler_loss(S2ACLoss, OBS, ACT, num_particles=4, hidden_sizes=(8,), svgd=svgd)
        for _ in range(2)
    ]
    for loss in losses:
        loss.make_value_estimator(gamma=0.9)
    losses[1].load_state_dict(losses[0].state_dict())
    batch = mock_replay_batch(16, OBS, ACT)
    outs = []
    for loss, compiled in zip(losses, (False, True), strict=True):
        update = Update(loss, make_optimizer(loss, load_config().optim), SoftUpdate(loss, tau=0.1))
        call = torch.compile(update.__call__) if compiled else update
        torch.manual_seed(7)
        with torch._inductor.config.patch(fallback_random=True):
            outs.append([call(batch.clone()).out["loss_qvalue"] for _ in range(3)])
    torch.testing.assert_close(torch.stack(outs[1]), torch.stack(outs[0]), rtol=1e-4, atol=1e-5)
    for a, b in zip(losses[1].parameters(), losses[0].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
