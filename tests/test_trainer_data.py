"""ReplayFeeder: the update schedule and exact state round trips."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch
from conftest import mock_sampler_loss
from torchrl.envs.utils import RandomPolicy

from s2ac_lit.config import CollectorConfig, ReplayConfig
from s2ac_lit.envs import make_env
from s2ac_lit.trainer.data import ReplayFeeder, capture_rng, make_replay_buffer, restore_rng

SCHEDULE = CollectorConfig(
    total_frames=500,
    init_random_frames=100,
    frames_per_batch=50,
    update_after=120,
    updates_per_batch=7,
)


def make_feeder(seed: int = 0, env_id: str = "s2ac_lit/MultiGoalMaxEnt-v0") -> ReplayFeeder:
    torch.manual_seed(seed)
    env = make_env(env_id, seed=seed)
    return ReplayFeeder(
        env,
        lambda: RandomPolicy(env.action_spec),
        make_replay_buffer(ReplayConfig(capacity=1000, batch_size=8)),
        SCHEDULE,
    )


def test_schedule_by_hand() -> None:
    """10 batches of 50 frames; updates start once 120 frames are in: after the 3rd batch
    (150 frames), so 8 rounds of 7 updates."""
    feeder = make_feeder()
    batches = list(feeder)
    assert feeder.frames == 500 and len(feeder.buffer) == 500
    assert len(batches) == feeder.updates == feeder.total_updates == 8 * 7
    assert all(b.batch_size == (8,) for b in batches)
    assert feeder.episodes >= 500 // 30  # 30-step episodes, some end early at a goal
    feeder.close()


def assert_same(a: Any, b: Any, where: str = "state") -> None:
    """Nested dicts, lists and tensors equal bit for bit."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


@pytest.mark.parametrize("env_id", ["s2ac_lit/MultiGoalMaxEnt-v0", "Hopper-v5"])
@pytest.mark.parametrize("stop_after", [1, 7, 8, 30])
def test_state_round_trip_continues_exactly(stop_after: int, env_id: str, tmp_path) -> None:
    """A feeder stopped after ``stop_after`` updates (7: the end of a round, the next step
    collects), its state and its buffer's dump loaded into a feeder of another seed: that one
    yields exactly the batches the first yields on, bit for bit, and the same counters."""
    first = make_feeder(env_id=env_id)
    batches = iter(first)
    consumed = list(itertools.islice(batches, stop_after))
    state = first.state_dict()
    first.buffer.dumps(tmp_path / "replay")
    assert state["updates"] == len(consumed) == stop_after
    expected = list(batches)
    second = make_feeder(seed=1, env_id=env_id)  # another env seed: the state must override it
    second.buffer.loads(tmp_path / "replay")
    second.load_state_dict(state)
    assert_same(second.state_dict()["in_flight"], state["in_flight"])  # saved before it collects
    rest = list(second)
    assert stop_after + len(rest) == first.total_updates
    assert len(rest) == len(expected)
    for got, want in zip(rest, expected, strict=True):
        assert (got == want).all()
    assert (second.frames, second.episodes) == (first.frames, first.episodes)
    assert second.return_history == first.return_history
    first.close()
    second.close()


def test_rng_capture_restores_every_generator() -> None:
    state = capture_rng()
    expected = (torch.rand(3), np.random.rand(3))
    restore_rng(state)
    torch.testing.assert_close(torch.rand(3), expected[0])
    np.testing.assert_array_equal(np.random.rand(3), expected[1])


class _ArrayTree:
    """A stand-in for the C++ segment trees of TorchRL's prioritised sampler (O(N) numpy)."""

    def __init__(self, size: int, fill: float, reduce, dtype) -> None:
        self.values = np.full(size, fill, dtype=dtype)
        self.reduce = reduce

    def __getitem__(self, index):
        return self.values[np.asarray(index)]

    def __setitem__(self, index, value) -> None:
        self.values[np.asarray(index)] = np.asarray(value)

    def query(self, start: int, end: int) -> float:
        return float(self.reduce(self.values[start:end]))

    def scan_lower_bound(self, mass):
        return np.searchsorted(np.cumsum(self.values), np.asarray(mass), side="right")


def test_prioritized_replay_without_the_extension_says_why() -> None:
    from s2ac_lit.config import ConfigError
    from s2ac_lit.trainer.data import prioritized_replay_unavailable

    if prioritized_replay_unavailable() is None:
        pytest.skip("TorchRL's C++ extension loads here")
    with pytest.raises(ConfigError, match=r"replay.prioritized=true needs TorchRL's C\+\+ ext"):
        make_replay_buffer(ReplayConfig(prioritized=True))


def test_prioritized_replay_weights_reach_the_loss_and_td_errors_become_priorities(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """TorchRL's prioritised buffer, with its segment trees stood in for where the extension
    does not load: batches carry importance weights that change the critic loss, β anneals
    from ``beta`` to ``beta_final``, and each batch's TD errors become its priorities."""
    from torchrl.data.replay_buffers.samplers import prioritized

    import s2ac_lit.trainer.data as data
    from s2ac_lit.objectives import S2ACLoss

    for name, fill, reduce in (("Sum", 0.0, np.sum), ("Min", np.inf, np.min)):
        for precision, dtype in (("Fp32", np.float32), ("Fp64", np.float64)):

            def tree(size: int, fill=fill, reduce=reduce, dtype=dtype) -> _ArrayTree:
                return _ArrayTree(size, fill, reduce, dtype)

            monkeypatch.setattr(prioritized, f"{name}SegmentTree{precision}", tree)
    monkeypatch.setattr(data, "prioritized_replay_unavailable", lambda: None)

    cfg = ReplayConfig(capacity=1000, batch_size=8, prioritized=True, alpha=0.7, beta=0.4)
    torch.manual_seed(0)
    env = make_env("s2ac_lit/MultiGoalMaxEnt-v0", seed=0)
    buffer = make_replay_buffer(cfg)
    feeder = ReplayFeeder(
        env,
        lambda: RandomPolicy(env.action_spec),
        buffer,
        SCHEDULE,
        beta_annealing=(cfg.beta, cfg.beta_final),
    )
    loss = mock_sampler_loss(S2ACLoss, 2, 2, init="fixed", num_particles=4, steps=1)
    loss.make_value_estimator(gamma=0.9)
    np.random.seed(0)  # TorchRL's prioritised sampler draws with numpy's global generator
    betas, previous, uniform = [], None, True
    for batch in feeder:
        if previous is not None:  # its TD errors are now its priorities
            index, td_error = previous["index"], previous["td_error"]
            once = torch.tensor([(index == i).sum() == 1 for i in index])
            expected = (td_error[once].double().numpy() + cfg.eps) ** cfg.alpha
            got = np.asarray(buffer.sampler._sum_tree[index[once].numpy()], dtype=np.float64)
            np.testing.assert_allclose(got, expected, rtol=1e-5)
        betas.append(buffer.sampler.beta)
        torch.manual_seed(1)
        loss.reduction = "none"
        per_sample = loss(batch.exclude("priority_weight"))["loss_qvalue"]
        loss.reduction = "mean"
        torch.manual_seed(1)
        weighted = loss(batch)["loss_qvalue"]
        weights = batch["priority_weight"]
        torch.testing.assert_close(weighted, (per_sample * weights).sum() / weights.sum())
        uniform &= bool(torch.all(weights == weights[0]))
        previous = batch
    feeder.close()
    assert not uniform  # TD errors made the weights unequal
    assert betas[0] == pytest.approx(0.4) and betas[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(np.diff(betas), 0.6 / (len(betas) - 1), rtol=1e-6)
