"""make_sac_loss: TorchRL's SACLoss with a tanh-Normal actor, built, run and collected with."""

from __future__ import annotations

import pytest
import torch
from conftest import mock_replay_batch
from tensordict import TensorDict
from torchrl.collectors import Collector
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.objectives import SACLoss, SoftUpdate

from s2ac_lit.envs import env_dims, make_env
from s2ac_lit.objectives import make_sac_loss

OBS_DIM, ACT_DIM, BATCH = 3, 2, 8
LOW, HIGH = [-2.0, 0.0], [2.0, 1.0]


def test_builds_torchrl_sac_with_finite_losses() -> None:
    loss, _ = make_sac_loss(OBS_DIM, ACT_DIM, LOW, HIGH, hidden_sizes=(16, 16), alpha_init=0.3)
    assert isinstance(loss, SACLoss)
    loss.make_value_estimator(gamma=0.99)
    SoftUpdate(loss, tau=0.005)
    out = loss(mock_replay_batch(BATCH, OBS_DIM, ACT_DIM, action_range=(0.0, 1.0)))
    for key in ("loss_actor", "loss_qvalue", "loss_alpha", "alpha", "entropy"):
        assert torch.isfinite(out[key]).all(), key
    assert out["alpha"].item() == pytest.approx(0.3)
    assert loss.target_entropy.item() == -ACT_DIM
    (out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"]).backward()
    assert loss.log_alpha.grad is not None


def test_fixed_alpha_and_target_entropy() -> None:
    loss, _ = make_sac_loss(
        OBS_DIM, ACT_DIM, LOW, HIGH, hidden_sizes=(8,), learn_alpha=False, target_entropy=-0.5
    )
    assert not loss.log_alpha.requires_grad
    assert loss.target_entropy.item() == -0.5


def test_policy_is_tanh_normal_in_bounds() -> None:
    _, policy = make_sac_loss(OBS_DIM, ACT_DIM, LOW, HIGH, hidden_sizes=(8,))
    td = TensorDict({"observation": torch.randn(500, OBS_DIM)}, [500])
    with torch.no_grad():
        action = policy(td.clone())["action"]
        with set_exploration_type(ExplorationType.DETERMINISTIC):
            first = policy(td.clone())["action"]
            second = policy(td.clone())["action"]
    assert torch.all(action > torch.tensor(LOW)) and torch.all(action < torch.tensor(HIGH))
    torch.testing.assert_close(first, second)  # deterministic mode does not sample
    assert not torch.equal(action, first)


def test_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError, match="high > low"):
        make_sac_loss(OBS_DIM, 1, [1.0], [-1.0])
    with pytest.raises(ValueError, match="shape"):
        make_sac_loss(OBS_DIM, 2, [-1.0], [1.0])


def test_policy_acts_in_a_collector() -> None:
    env = make_env("Pendulum-v1", seed=0)
    dims = env_dims(env)
    _, policy = make_sac_loss(
        dims.observation_dim, dims.action_dim, dims.action_low, dims.action_high, hidden_sizes=(8,)
    )
    collector = Collector(
        env,
        policy,
        frames_per_batch=20,
        total_frames=-1,
        auto_register_policy_transforms=False,  # as the trainer: no recurrent state
    )
    batch = next(iter(collector))
    collector.shutdown()
    assert batch["action"].shape == (20, 1)
    assert torch.all(batch["action"].abs() <= 2.0)
    assert batch["next", "observation"].dtype == torch.float32
