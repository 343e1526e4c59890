"""Validation of a merged config: choices, numeric ranges, names and keys that only make sense
together, each failure a :class:`~s2ac_lit.config.schema.ConfigError` naming the key and what is
allowed.

Each choice tuple is derived from the ``Literal`` next to the code that implements the choice
(``typing.get_args``), so a choice is spelled once. Which keys each algorithm reads is the
registry's knowledge: :func:`s2ac_lit.algorithms.check_config` refuses the others.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator
from dataclasses import fields, is_dataclass
from typing import Any, NamedTuple

from s2ac_lit.actor import (
    BOUNDS,
    ENERGY_AT,
    INIT_KINDS,
    REMOVED_BOUNDS,
    SELECTIONS,
    STD_MAPS,
)
from s2ac_lit.config.schema import ACCELERATORS, PRECISIONS, PROFILERS, Config, ConfigError
from s2ac_lit.errors import MAX_SEED
from s2ac_lit.networks import ACTIVATIONS
from s2ac_lit.svgd import ENTROPY_NORMS, SELF_TERMS
from s2ac_lit.update import UPDATE_ORDERS


def algorithm_names() -> tuple[str, ...]:
    """The algorithms of the registry (:data:`s2ac_lit.algorithms.ALGORITHMS`): the one list."""
    from s2ac_lit.algorithms import ALGORITHMS  # imported late: the registry imports this module

    return tuple(ALGORITHMS)


_CHOICES: dict[str, tuple[str, ...]] = {
    "svgd.entropy_norm": ENTROPY_NORMS,
    "svgd.self_term": SELF_TERMS,
    "actor.init": INIT_KINDS,
    "actor.activation": ACTIVATIONS,
    "actor.bound": BOUNDS,
    "actor.eval_selection": SELECTIONS,
    "actor.std_map": STD_MAPS,
    "actor.energy_at": ENERGY_AT,
    "optim.update_order": UPDATE_ORDERS,
    "critic.activation": ACTIVATIONS,
    "trainer.precision": PRECISIONS,
    "trainer.accelerator": ACCELERATORS,
}


class Range(NamedTuple):
    """The values a numeric key allows: ``low``/``high`` (None: unbounded), each end included
    unless ``low_open``/``high_open``, plus the ``special`` values outside it that mean
    something (``trainer.devices=-1``: all)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    special: tuple[int, ...] = ()

    def __contains__(self, value: object) -> bool:
        if value in self.special:
            return True
        assert isinstance(value, int | float)
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.high is None:
            text = f"be {'>' if self.low_open else '>='} {self.low}"
        else:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            text = f"lie in {left}{self.low}, {self.high}{right}"
        return text + "".join(f", or {value}" for value in self.special)


_POSITIVE = Range(0, low_open=True)
_NON_NEGATIVE = Range(0)
_UNIT = Range(0, 1)
RANGES: dict[str, Range] = {
    "seed": Range(0, MAX_SEED),
    "env.max_episode_steps": _POSITIVE,
    "collector.total_frames": _POSITIVE,
    "collector.init_random_frames": _NON_NEGATIVE,
    "collector.frames_per_batch": _POSITIVE,
    "collector.update_after": _NON_NEGATIVE,
    "collector.updates_per_batch": _NON_NEGATIVE,
    "replay.capacity": _POSITIVE,
    "replay.batch_size": _POSITIVE,
    "replay.alpha": _NON_NEGATIVE,
    "replay.beta": _UNIT,
    "replay.beta_final": _UNIT,
    "replay.eps": _POSITIVE,
    "optim.critic_lr": _POSITIVE,
    "optim.actor_lr": _POSITIVE,
    "optim.alpha_lr": _POSITIVE,
    "optim.gamma": _UNIT,
    "optim.tau": Range(0, 1, low_open=True),
    "optim.max_grad_norm": _POSITIVE,
    "svgd.num_particles": _POSITIVE,
    "svgd.steps": _NON_NEGATIVE,
    "svgd.step_size": _POSITIVE,
    "svgd.bandwidth": _POSITIVE,
    "svgd.max_step_norm": _POSITIVE,
    "actor.init_std": _POSITIVE,
    "actor.hidden_sizes": _POSITIVE,
    "actor.std_min": _POSITIVE,
    "actor.std_max": _POSITIVE,
    "actor.truncation": _POSITIVE,
    "critic.num_critics": _POSITIVE,
    "critic.hidden_sizes": _POSITIVE,
    "loss.alpha_init": _POSITIVE,
    "loss.target_entropy": Range(),
    "loss.temperature": _POSITIVE,
    "loss.amortized_particles": Range(2),
    "loss.value_particles": _POSITIVE,
    "trainer.devices": Range(1, special=(-1,)),
    "trainer.num_nodes": _POSITIVE,
    "trainer.log_every_updates": _POSITIVE,
    "trainer.checkpoint_every_updates": _POSITIVE,
    "trainer.threads": _POSITIVE,
    "eval.every_frames": _NON_NEGATIVE,
    "eval.episodes": _POSITIVE,
}
"""The range of every numeric key (of a list of numbers: of each element), checked for every
key that holds a number; a float must also be finite (no key gives infinity a meaning).
``tests/test_config.py`` checks that every numeric field of the schema is here and that each
boundary is where the libraries that read the key draw it."""


def get_dotted(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every field of a config dataclass, sections walked into."""
    for item in fields(node):
        value = getattr(node, item.name)
        if is_dataclass(value):
            yield from _leaves(value, f"{prefix}{item.name}.")
        else:
            yield f"{prefix}{item.name}", value


def _check_numbers(cfg: Config) -> None:
    """Every number finite and in its :data:`RANGES` (strings and None are choices, checked
    with the other choices)."""
    for key, value in _leaves(cfg):
        values = value if isinstance(value, list) else [value]
        for number in values:
            if isinstance(number, bool) or not isinstance(number, int | float):
                continue
            allowed = RANGES[key]
            shown = f"{key}={value!r}" + ("" if number is value else f" (element {number!r})")
            if not math.isfinite(number):
                raise ConfigError(f"{shown} is not a finite number; it must {allowed}")
            if number not in allowed:
                raise ConfigError(f"{shown} must {allowed}")


def _check_union(key: str, value: Any, names: tuple[str, ...], what: str) -> None:
    """The string choices of a key that also takes a number (:data:`RANGES` checks those)."""
    if isinstance(value, str) and value not in names:
        raise ConfigError(f"{key}={value!r} is not allowed; allowed: {names} or {what}")


NAME_PATTERN = r"[\w.-]*"
"""``name`` is one folder name: letters, digits, ``_``, ``.`` and ``-``."""


def _check_name(name: str) -> None:
    if not re.fullmatch(NAME_PATTERN, name) or name.startswith("."):
        raise ConfigError(
            f"name={name!r} is not allowed; allowed: a folder name of letters, digits, '_', "
            "'.' and '-', not starting with '.' (the run folder is run_dir/<name>-<time>-<hash>)"
        )


_REMOVED: dict[str, dict[str, str]] = {"actor.bound": REMOVED_BOUNDS}
"""Former values of a key, with why they went and what to use instead."""


def validate(cfg: Config) -> Config:
    """Check choices and ranges; returns ``cfg`` or raises :class:`ConfigError`."""
    for key, allowed in {"algo": algorithm_names(), **_CHOICES}.items():
        if get_dotted(cfg, key) is None:  # an optional choice left to the algorithm
            continue
        value = str(get_dotted(cfg, key))
        if value in _REMOVED.get(key, {}):
            raise ConfigError(
                f"{key}={value!r} is no longer allowed: {_REMOVED[key][value]}; allowed: {allowed}"
            )
        if value not in allowed:
            hint = difflib.get_close_matches(value, allowed, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{key}={value!r} is not allowed; allowed: {allowed}{extra}")
    if cfg.svgd.max_step_norm is not None and cfg.svgd.max_step_norm <= 0:
        raise ConfigError(
            f"svgd.max_step_norm={cfg.svgd.max_step_norm!r} must be > 0, or null for the "
            "authors' fixed step size"
        )
    _check_numbers(cfg)
    _check_name(cfg.name)
    try:
        cfg.svgd.options()
    except ValueError as error:
        raise ConfigError(f"svgd.{error}") from None
    _check_union("trainer.threads", cfg.trainer.threads, ("auto",), "an int > 0")
    if cfg.trainer.profiler not in PROFILERS:
        raise ConfigError(
            f"trainer.profiler={cfg.trainer.profiler!r} is not allowed; allowed: {PROFILERS}"
        )
    _check_union("loss.temperature", cfg.loss.temperature, ("alpha",), "a float > 0")
    if isinstance(cfg.loss.target_entropy, str) and cfg.loss.target_entropy != "auto":
        raise ConfigError(
            f"loss.target_entropy={cfg.loss.target_entropy!r} is not allowed; "
            "allowed: 'auto' or a float"
        )
    if not 0 < cfg.actor.std_min < cfg.actor.std_max:
        raise ConfigError(
            f"actor.std_min={cfg.actor.std_min} and actor.std_max={cfg.actor.std_max} "
            "must satisfy 0 < std_min < std_max"
        )
    if cfg.svgd.num_particles < 2 and isinstance(cfg.svgd.bandwidth, str):
        raise ConfigError("svgd.num_particles must be >= 2 with an adaptive svgd.bandwidth")
    if isinstance(cfg.trainer.deterministic, str) and cfg.trainer.deterministic != "auto":
        raise ConfigError(
            f"trainer.deterministic={cfg.trainer.deterministic!r} is not allowed; allowed: true, "
            "false, 'auto'"
        )
    if isinstance(cfg.trainer.compile, str) and cfg.trainer.compile != "auto":
        raise ConfigError(
            f"trainer.compile={cfg.trainer.compile!r} is not allowed; allowed: true, false, 'auto'"
        )
    if cfg.trainer.compile is True and cfg.svgd.self_term == "exact":
        raise ConfigError(
            "trainer.compile=true needs svgd.self_term='none' or 'hutchinson' (the exact self "
            "term differentiates twice through the critic, which compiled kernels do not support)"
        )
    if cfg.algo == "s2ac" and cfg.actor.eval_selection == "amortized" and not cfg.actor.amortized:
        raise ConfigError("actor.eval_selection='amortized' needs actor.amortized=true")
    _check_combinations(cfg)
    return cfg


def _check_combinations(cfg: Config) -> None:
    """Keys that are valid alone but contradict each other; the message names both."""
    c, r, t = cfg.collector, cfg.replay, cfg.trainer
    ranks = t.devices * t.num_nodes if isinstance(t.devices, int) and t.devices > 0 else 1
    pairs = [
        (
            cfg.seed + ranks - 1 > MAX_SEED,
            f"seed={cfg.seed} with {ranks} DDP ranks (trainer.devices={t.devices}, "
            f"trainer.num_nodes={t.num_nodes}): rank r seeds with seed + r, which must stay "
            f"<= {MAX_SEED}",
        ),
        (
            r.batch_size > r.capacity,
            f"replay.batch_size={r.batch_size} is larger than replay.capacity={r.capacity}; "
            "a batch must fit in the buffer",
        ),
        (
            c.update_after < r.batch_size,
            f"collector.update_after={c.update_after} is below replay.batch_size="
            f"{r.batch_size}; the first update needs at least one batch of transitions",
        ),
        (
            c.update_after >= c.total_frames,
            f"collector.update_after={c.update_after} is not below collector.total_frames="
            f"{c.total_frames}; the run would end without a single update",
        ),
        (
            c.frames_per_batch > c.total_frames,
            f"collector.frames_per_batch={c.frames_per_batch} is larger than "
            f"collector.total_frames={c.total_frames}",
        ),
        (
            cfg.eval.every_frames > c.total_frames,
            f"eval.every_frames={cfg.eval.every_frames} is larger than collector.total_frames="
            f"{c.total_frames}; use eval.every_frames=0 to evaluate only at the end",
        ),
        (
            cfg.optim.update_order == "critic_first"
            and (str(cfg.trainer.devices) != "1" or cfg.trainer.num_nodes != 1),
            f"optim.update_order='critic_first' with trainer.devices={cfg.trainer.devices!r} "
            f"and trainer.num_nodes={cfg.trainer.num_nodes}: it steps twice per update, which "
            "DDP cannot reduce; use one device, or optim.update_order='joint'",
        ),
        (
            cfg.trainer.cudagraphs
            and (str(cfg.trainer.devices) != "1" or cfg.trainer.num_nodes != 1),
            f"trainer.cudagraphs=true with trainer.devices={cfg.trainer.devices!r} and "
            f"trainer.num_nodes={cfg.trainer.num_nodes}: DDP's gradient all-reduce runs outside "
            "a captured graph; use one device",
        ),
        (
            cfg.trainer.cudagraphs and cfg.trainer.precision == "16-mixed",
            "trainer.cudagraphs=true with trainer.precision='16-mixed': AMP's gradient scaler "
            "reads its overflow flag on the host every step; use 'bf16-mixed' or '32'",
        ),
        (
            cfg.trainer.cudagraphs and cfg.replay.prioritized,
            "trainer.cudagraphs=true with replay.prioritized=true: the priorities are written "
            "back through the CPU segment trees after every update; use uniform replay",
        ),
        (
            cfg.trainer.cudagraphs and cfg.svgd.self_term == "exact",
            "trainer.cudagraphs=true with svgd.self_term='exact': its per-dimension autograd "
            "passes are not supported under capture; use 'hutchinson' or 'none'",
        ),
    ]
    for wrong, message in pairs:
        if wrong:
            raise ConfigError(message)
