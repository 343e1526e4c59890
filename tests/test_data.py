"""ReplayFeeder: the update schedule and exact state round trips."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torchrl.envs.utils import RandomPolicy

from s2ac_lit.config import CollectorConfig, ReplayConfig
from s2ac_lit.data import ReplayFeeder, capture_rng, make_replay_buffer, restore_rng
from s2ac_lit.envs import make_env

SCHEDULE = CollectorConfig(
    total_frames=500,
    init_random_frames=100,
    frames_per_batch=50,
    update_after=120,
    updates_per_batch=7,
)


def make_feeder(seed: int = 0) -> ReplayFeeder:
    torch.manual_seed(seed)
    env = make_env("s2ac_lit/MultiGoalMaxEnt-v0", seed=seed)
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


@pytest.mark.parametrize("stop_after", [1, 7, 8, 30])
def test_state_round_trip_neither_loses_nor_repeats(stop_after: int) -> None:
    first = make_feeder()
    consumed = list(itertools.islice(iter(first), stop_after))
    state = first.state_dict()
    assert state["updates"] == len(consumed) == stop_after
    second = make_feeder(seed=1)  # different env seed: the state must override it
    second.buffer.extend(first.buffer[: len(first.buffer)])
    second.load_state_dict(state)
    rest = list(second)
    assert stop_after + len(rest) == first.total_updates
    assert second.frames == SCHEDULE.total_frames
    first.close()
    second.close()


def test_rng_capture_restores_every_generator() -> None:
    state = capture_rng()
    expected = (torch.rand(3), np.random.rand(3))
    restore_rng(state)
    torch.testing.assert_close(torch.rand(3), expected[0])
    np.testing.assert_array_equal(np.random.rand(3), expected[1])
