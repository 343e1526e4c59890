"""An environment's whole state, read and written so that a resumed run continues exactly.

See docs/checkpoints.md. An env of :func:`s2ac_lit.envs.make_env` is a TorchRL ``GymEnv`` around a
gymnasium env: wrappers (``TimeLimit`` counts the episode's steps), the simulator, and the
gymnasium random generators (the env's ``np_random``, which its wrappers share, and those of its
spaces). :func:`env_state` reads all of it; :func:`load_env_state` writes it into an env built
the same way, after which the env steps and resets exactly as the one it was read from would.

The simulator's state is read through

- the env's own ``state_dict()`` / ``load_state_dict(state)``, when it has them (the multigoal
  env; a user's env gains exact resume by adding them);
- else, for gymnasium's MuJoCo envs, ``mujoco.mj_getState`` / ``mj_setState`` with
  ``mjSTATE_INTEGRATION``: time, positions, velocities, actuator activations, the constraint
  solver's warm start, controls and applied forces, everything a step reads.

Any other env, or a wrapper not listed in :data:`WRAPPER_FIELDS` without those methods, has a
state this cannot read: :func:`unreadable_reason` says why, and a resume continues statistically
(the env starts from a reset).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker, TimeLimit
from torchrl.envs import EnvBase, TransformedEnv

WRAPPER_FIELDS: dict[type, tuple[str, ...]] = {
    TimeLimit: ("_elapsed_steps",),  # steps into the episode: when it truncates
    OrderEnforcing: ("_has_reset",),
    PassiveEnvChecker: ("checked_reset", "checked_step", "checked_render"),
}
"""gymnasium's wrappers that ``gymnasium.make`` adds, with the attributes that hold their state."""

MUJOCO_MODULE = "gymnasium.envs.mujoco."
"""gymnasium's own MuJoCo envs keep every state a step reads in MuJoCo's ``MjData``."""


def gym_env(env: EnvBase | gymnasium.Env) -> gymnasium.Env | None:
    """The gymnasium env inside a TorchRL env of :func:`s2ac_lit.envs.make_env` (or ``env``
    itself if it is one); None for an env that wraps none."""
    if isinstance(env, gymnasium.Env):
        return env
    base = env.base_env if isinstance(env, TransformedEnv) else env
    inner = getattr(base, "_env", None)  # TorchRL's GymWrapper keeps the gymnasium env here
    return inner if isinstance(inner, gymnasium.Env) else None


def _layers(env: gymnasium.Env) -> list[gymnasium.Env]:
    """The wrappers from the outside in, then the unwrapped env."""
    layers = [env]
    while isinstance(layers[-1], gymnasium.Wrapper):
        layers.append(layers[-1].env)
    return layers


def _has_own_state(obj: object) -> bool:
    return callable(getattr(obj, "state_dict", None)) and callable(
        getattr(obj, "load_state_dict", None)
    )


def _is_mujoco(env: gymnasium.Env) -> bool:
    return type(env).__module__.startswith(MUJOCO_MODULE)


def unreadable_reason(env: EnvBase | gymnasium.Env) -> str | None:
    """Why the state of ``env`` cannot be read (one phrase), or None when it can."""
    inner = gym_env(env)
    if inner is None:
        return f"{type(env).__name__} wraps no gymnasium env"
    *wrappers, unwrapped = _layers(inner)
    for wrapper in wrappers:
        if type(wrapper) not in WRAPPER_FIELDS and not _has_own_state(wrapper):
            return (
                f"the wrapper {type(wrapper).__name__} has no state_dict()/load_state_dict() "
                "to read its state"
            )
    if not _has_own_state(unwrapped) and not _is_mujoco(unwrapped):
        return (
            f"{type(unwrapped).__name__} ({_spec_id(unwrapped)}) has no state API "
            "(state_dict()/load_state_dict(), or MuJoCo's)"
        )
    return None


def _spec_id(env: gymnasium.Env) -> str:
    return env.spec.id if env.spec is not None else "no registered id"


def env_state(env: EnvBase | gymnasium.Env) -> dict[str, Any] | None:
    """The whole state of ``env``, or None where :func:`unreadable_reason` gives a reason.

    Only tensors, numbers, strings, lists and dicts: a checkpoint holding it loads with
    ``torch.load(weights_only=True)``.
    """
    if unreadable_reason(env) is not None:
        return None
    inner = gym_env(env)
    assert inner is not None
    *wrappers, unwrapped = _layers(inner)
    return {
        "wrappers": [_wrapper_state(wrapper) for wrapper in wrappers],
        "simulator": _simulator_state(unwrapped),
        "np_random": unwrapped.np_random.bit_generator.state,
        "np_random_seed": unwrapped._np_random_seed,
        "spaces": [_space_rng(space) for space in _spaces(inner)],
    }


def load_env_state(env: EnvBase | gymnasium.Env, state: dict[str, Any]) -> None:
    """Write a state read by :func:`env_state` into ``env``, built as the env it came from.

    Raises:
        ValueError: ``state`` does not fit ``env`` (other wrappers, another simulator model).
    """
    reason = unreadable_reason(env)
    if reason is not None:
        raise ValueError(f"cannot write a state into this env: {reason}")
    inner = gym_env(env)
    assert inner is not None
    *wrappers, unwrapped = _layers(inner)
    if len(wrappers) != len(state["wrappers"]):
        raise ValueError(
            f"the saved env state has {len(state['wrappers'])} wrappers, this env {len(wrappers)}"
        )
    for wrapper, saved in zip(wrappers, state["wrappers"], strict=True):
        _load_wrapper_state(wrapper, saved)
    _load_simulator_state(unwrapped, state["simulator"])
    unwrapped.np_random = _generator(state["np_random"])
    unwrapped._np_random_seed = state["np_random_seed"]  # the setter above marks it unknown
    for space, saved in zip(_spaces(inner), state["spaces"], strict=True):
        if saved is not None:
            space._np_random = _generator(saved)


def _wrapper_state(wrapper: gymnasium.Wrapper) -> dict[str, Any]:
    if _has_own_state(wrapper):
        return {"type": type(wrapper).__name__, "state": wrapper.state_dict()}
    fields = WRAPPER_FIELDS[type(wrapper)]
    return {"type": type(wrapper).__name__, "fields": {f: getattr(wrapper, f) for f in fields}}


def _load_wrapper_state(wrapper: gymnasium.Wrapper, saved: dict[str, Any]) -> None:
    if saved["type"] != type(wrapper).__name__:
        raise ValueError(
            f"the saved env state has the wrapper {saved['type']} where this env has "
            f"{type(wrapper).__name__}"
        )
    if "state" in saved:
        wrapper.load_state_dict(saved["state"])
    else:
        for name, value in saved["fields"].items():
            setattr(wrapper, name, value)


def _simulator_state(env: gymnasium.Env) -> dict[str, Any]:
    if _has_own_state(env):
        return {"kind": "own", "state": env.state_dict()}
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    physics = np.empty(mujoco.mj_stateSize(env.model, spec))
    mujoco.mj_getState(env.model, env.data, physics, spec)
    return {"kind": "mujoco", "spec": int(spec), "physics": torch.from_numpy(physics)}


def _load_simulator_state(env: gymnasium.Env, saved: dict[str, Any]) -> None:
    kind = "own" if _has_own_state(env) else "mujoco"
    if saved["kind"] != kind:
        raise ValueError(
            f"the saved env state is of kind {saved['kind']!r}, {type(env).__name__} keeps one "
            f"of kind {kind!r}"
        )
    if kind == "own":
        env.load_state_dict(saved["state"])
        return
    import mujoco

    spec = mujoco.mjtState(saved["spec"])
    physics = saved["physics"].numpy()
    size = mujoco.mj_stateSize(env.model, spec)
    if physics.size != size:
        raise ValueError(
            f"the saved MuJoCo state has {physics.size} numbers, this env's model needs {size}"
        )
    mujoco.mj_setState(env.model, env.data, physics, spec)


def _spaces(env: gymnasium.Env) -> list[gymnasium.Space]:
    """The distinct action and observation spaces of every layer, in a fixed order."""
    spaces: dict[int, gymnasium.Space] = {}
    for layer in _layers(env):
        for space in (layer.action_space, layer.observation_space):
            spaces.setdefault(id(space), space)
    return list(spaces.values())


def _space_rng(space: gymnasium.Space) -> dict[str, Any] | None:
    # A space creates its generator on first use (sampling); until then there is none to keep.
    rng = space._np_random
    return None if rng is None else rng.bit_generator.state


def _generator(state: dict[str, Any]) -> np.random.Generator:
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)
