"""An env's whole state (s2ac_lit/envs/state.py): an env given another's state continues exactly
as that one does, through steps, truncations and resets; envs whose state cannot be read say
why, and a state that does not fit an env is refused.

Ground truth: the env the state was read from, stepped on with the same actions.
"""

from __future__ import annotations

import io

import gymnasium
import numpy as np
import pytest
import torch

from s2ac_lit.envs import env_state, load_env_state, make_env, unreadable_reason
from s2ac_lit.envs.state import gym_env

MULTIGOAL = "s2ac_lit/MultiGoalMaxEnt-v0"
STEPS = 80


def through_a_checkpoint(state: dict) -> dict:
    """``state`` saved and loaded as a checkpoint is (``weights_only``: plain types only)."""
    file = io.BytesIO()
    torch.save(state, file)
    file.seek(0)
    return torch.load(file, weights_only=True)


def continuation(env: gymnasium.Env, actions: np.ndarray) -> list[np.ndarray]:
    """Observation, reward, terminated and truncated of each step, and each reset's
    observation (the env resets when an episode ends)."""
    out = []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        out.append(np.concatenate([obs.ravel(), [reward, terminated, truncated]]))
        if terminated or truncated:
            out.append(env.reset()[0])
    return out


@pytest.mark.parametrize("env_id", [MULTIGOAL, "Hopper-v5"])
def test_a_loaded_state_continues_exactly(env_id: str) -> None:
    """Stepped into its second episode, env A's state goes through a checkpoint into env B
    (another seed, just reset): B then steps, truncates (a 25-step limit) and resets (its
    np_random draws Hopper's initial noise) bit for bit as A does."""
    a, b = (make_env(env_id, seed=seed, max_episode_steps=25) for seed in (1, 2))
    gym_a, gym_b = gym_env(a), gym_env(b)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (STEPS + 37, *gym_a.action_space.shape)).astype(np.float32)
    continuation(gym_a, actions[:37])  # past a truncation, mid-episode
    state = through_a_checkpoint(env_state(a))
    gym_b.reset()
    before = continuation(gym_env(make_env(env_id, seed=2, max_episode_steps=25)), actions[37:])
    load_env_state(b, state)
    expected, got = continuation(gym_a, actions[37:]), continuation(gym_b, actions[37:])
    assert len(got) == len(expected) > STEPS  # episodes ended within the steps compared
    assert all(np.array_equal(x, y) for x, y in zip(expected, got, strict=True))
    assert not all(  # without the state, B goes elsewhere: the comparison can fail
        np.array_equal(x, y) for x, y in zip(expected, before, strict=False)
    )


def test_an_env_without_a_state_api_says_why() -> None:
    env = make_env("Pendulum-v1", seed=0)
    reason = unreadable_reason(env)
    assert reason == (
        "PendulumEnv (Pendulum-v1) has no state API (state_dict()/load_state_dict(), or MuJoCo's)"
    )
    assert env_state(env) is None
    with pytest.raises(ValueError, match="cannot write a state into this env: PendulumEnv"):
        load_env_state(env, {})


def test_a_wrapper_whose_state_is_unknown_says_why() -> None:
    env = gymnasium.wrappers.RecordEpisodeStatistics(gymnasium.make(MULTIGOAL))
    assert unreadable_reason(env) == (
        "the wrapper RecordEpisodeStatistics has no state_dict()/load_state_dict() to read its "
        "state"
    )
    assert unreadable_reason(gymnasium.make(MULTIGOAL)) is None


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("Hopper-v5", "Walker2d-v5", r"MuJoCo state has \d+ numbers, this env's model needs \d+"),
        (MULTIGOAL, "Hopper-v5", "of kind 'own', HopperEnv keeps one of kind 'mujoco'"),
    ],
)
def test_a_state_that_does_not_fit_is_refused(source: str, target: str, message: str) -> None:
    state = env_state(make_env(source, seed=0))
    with pytest.raises(ValueError, match=message):
        load_env_state(make_env(target, seed=0), state)
