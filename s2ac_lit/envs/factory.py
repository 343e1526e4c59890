"""TorchRL environments by gymnasium id: the trainers' env factory.

See docs/algorithm.md §Baselines, §Multigoal.

:func:`make_env` wraps any gymnasium id, the multigoal ids of :mod:`s2ac_lit.envs` included, in a
``TransformedEnv`` with float32 observations, a step counter and the episode return, so that
collectors, replay buffers and the loss modules see TorchRL's default keys (``observation``,
``action``, ``("next", "reward")``, ``done``, ``terminated``, ``truncated``, ``step_count``,
``episode_reward``). :func:`env_dims` reads the sizes the networks need from its specs.
"""

from __future__ import annotations

import difflib
from typing import NamedTuple

import gymnasium
import torch
from torch import Tensor
from torchrl.envs import (
    Compose,
    DoubleToFloat,
    EnvBase,
    GymEnv,
    RewardSum,
    StepCounter,
    TransformedEnv,
)

from s2ac_lit.envs import register_envs
from s2ac_lit.errors import UsageError

OBSERVATION_KEY = "observation"


class EnvDims(NamedTuple):
    """Sizes and action bounds of an environment, for building networks.

    Attributes:
        observation_dim: O, the size of the flat ``observation`` entry.
        action_dim: A.
        action_low, action_high: ``[A]`` float32 bounds of the action box.
    """

    observation_dim: int
    action_dim: int
    action_low: Tensor
    action_high: Tensor


class EnvError(UsageError, ValueError):
    """An env id is unknown, or its spaces are not what S2AC, SAC and SQL can drive."""


def check_env_id(env_id: str) -> None:
    """Raise :class:`EnvError` naming ``env_id`` and its closest registered ids if it is unknown.

    Cheap (no env is built): config validation can call it before a run starts.
    """
    register_envs()  # idempotent: the multigoal ids must be known before the look-up
    if env_id in gymnasium.registry:
        return
    # Compare lower-cased names so that a wrong case still finds its id.
    by_lower = {name.lower(): name for name in gymnasium.registry}
    close = [
        by_lower[name]
        for name in difflib.get_close_matches(env_id.lower(), list(by_lower), n=5, cutoff=0.6)
    ]
    hint = f"; did you mean one of {close}?" if close else "; no close match is registered"
    raise EnvError(f"unknown environment id {env_id!r}{hint}")


def check_env_spaces(env_id: str) -> None:
    """Raise :class:`EnvError` unless ``env_id`` has flat continuous actions and observations.

    S2AC, SAC and SQL move actions along ∇ₐQ, so they need a ``Box`` action space, and their
    networks take a flat vector observation. Builds the gymnasium env (no TorchRL wrapper) once.
    """
    check_env_id(env_id)
    try:
        env = gymnasium.make(env_id)
    except Exception as error:  # a registered id whose simulator or assets are missing
        raise EnvError(
            f"environment {env_id!r} cannot be built: {type(error).__name__}: {error}"
        ) from None
    action, observation = env.action_space, env.observation_space
    env.close()
    if not isinstance(action, gymnasium.spaces.Box) or len(action.shape) != 1:
        raise EnvError(
            f"environment {env_id!r} has action space {action}; S2AC, SAC and SQL need a "
            "continuous (Box) action space of shape (A,)"
        )
    if not isinstance(observation, gymnasium.spaces.Box) or len(observation.shape) != 1:
        raise EnvError(
            f"environment {env_id!r} has observation space {observation}; the networks need a "
            "flat vector observation (Box of shape (O,)), not images or dicts"
        )


def make_env(
    env_id: str,
    *,
    seed: int | None = None,
    device: str | torch.device = "cpu",
    max_episode_steps: int | None = None,
) -> EnvBase:
    """A TorchRL env for a gymnasium id: float32 observations, step counter, episode return.

    Args:
        env_id: a gymnasium id, e.g. ``"Pendulum-v1"`` or ``"s2ac_lit/MultiGoalMaxEnt-v0"``.
        seed: seeds the env (its reset and action-space RNGs) when given.
        device: where the env's tensors live.
        max_episode_steps: replaces the id's registered time limit. It is passed to
            ``gymnasium.make`` so that gymnasium's ``TimeLimit`` reports the cut as
            ``truncated``, never as ``terminated`` (a time limit is not a terminal state).

    Returns:
        ``TransformedEnv(GymEnv(env_id), Compose(DoubleToFloat(), StepCounter(), RewardSum()))``.

    Raises:
        EnvError: ``env_id`` is not registered; the message lists close matches.

    Examples:
        >>> env = make_env("Pendulum-v1", seed=0)
        >>> env.rollout(3)["next", "observation"].dtype
        torch.float32
    """
    check_env_id(env_id)
    kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    env = TransformedEnv(
        GymEnv(env_id, device=device, **kwargs),
        Compose(DoubleToFloat(), StepCounter(), RewardSum()),
    )
    if seed is not None:
        env.set_seed(seed)
    return env


def env_dims(env: EnvBase) -> EnvDims:
    """Observation and action sizes and the action box, read from ``env``'s specs.

    Raises:
        RuntimeError: the observation or action is not a flat vector.

    Examples:
        >>> env_dims(make_env("Pendulum-v1")).action_high
        tensor([2.])
    """
    observation_spec = env.observation_spec_unbatched[OBSERVATION_KEY]
    action_spec = env.action_spec_unbatched
    if observation_spec.ndim != 1 or action_spec.ndim != 1:
        raise RuntimeError(
            f"expected flat observation and action vectors, got shapes "
            f"{tuple(observation_spec.shape)} and {tuple(action_spec.shape)}"
        )
    return EnvDims(
        observation_dim=observation_spec.shape[-1],
        action_dim=action_spec.shape[-1],
        action_low=action_spec.space.low.to(torch.float32).cpu(),
        action_high=action_spec.space.high.to(torch.float32).cpu(),
    )
