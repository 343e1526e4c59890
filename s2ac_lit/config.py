"""Configuration schema: typed dataclasses merged with YAML presets and CLI overrides.

``load_config(yaml_path, overrides)`` merges ``OmegaConf.structured(Config)``, YAML presets from
``conf/`` (one, or several in order: a task's, then an algorithm's) and ``key=value``
overrides, then validates. Unknown keys, wrong types, values outside the allowed choices and
numbers outside their range (:data:`RANGES`, every numeric key; NaN and infinity nowhere) fail
with a :class:`ConfigError` that names the key and what is allowed, before anything is built
or written. Every YAML file a user gives is read by :func:`load_yaml`. Defaults are the
authors' MuJoCo settings (docs/algorithm.md §Defaults); presets override them.

Choice fields are plain strings checked against the allowed tuples below (OmegaConf 2.3 cannot
check ``Literal``), so one error path covers every choice. Each tuple is derived from the
``Literal`` next to the code that implements the choice (``typing.get_args``), so a choice is
spelled once. The ``svgd`` section holds the keys of :class:`~s2ac_lit.svgd.SVGDOptions`, which
validates them, plus ``num_particles``. Keys that only make sense together
(``replay.batch_size`` and ``replay.capacity``, the frame budget and its schedules) are checked
together, and the message names both. Which keys each algorithm reads is the registry's
knowledge: :func:`s2ac_lit.algorithms.check_config` refuses the others when set away from their
defaults, before anything is built.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, make_dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Literal, NamedTuple, Union, get_args, get_origin, get_type_hints

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from s2ac_lit.actor import (
    BOUNDS,
    DEFAULT_SVGD,
    ENERGY_AT,
    INIT_KINDS,
    REMOVED_BOUNDS,
    SELECTIONS,
    STD_MAPS,
)
from s2ac_lit.errors import MAX_SEED, UsageError
from s2ac_lit.networks import ACTIVATIONS
from s2ac_lit.svgd import ENTROPY_NORMS, SELF_TERMS, SVGDOptions
from s2ac_lit.update import UPDATE_ORDERS

Precision = Literal["32", "32-true", "64", "64-true", "bf16-mixed", "16-mixed", "bf16-true"]
"""Lightning precisions this package runs with."""
Accelerator = Literal["auto", "cpu", "gpu", "cuda", "mps"]

PRECISIONS: tuple[Precision, ...] = get_args(Precision)
ACCELERATORS: tuple[Accelerator, ...] = get_args(Accelerator)


class ConfigError(UsageError, ValueError):
    """A configuration value is unknown, mistyped or out of range."""


@dataclass
class EnvConfig:
    id: str = "Walker2d-v5"
    """Gymnasium id (``s2ac_lit/MultiGoalMaxEnt-v0`` and friends are registered by s2ac_lit)."""
    max_episode_steps: int | None = None
    """Override the env's time limit (None keeps the registered one)."""


@dataclass
class CollectorConfig:
    total_frames: int = 500_000
    """Environment steps of the whole run (per rank)."""
    init_random_frames: int = 10_000
    """Initial steps taken with uniformly random actions."""
    frames_per_batch: int = 50
    """Environment steps collected between two rounds of updates."""
    update_after: int = 1_000
    """No updates before this many frames are in the buffer."""
    updates_per_batch: int = 50
    """Gradient updates after each collected batch (authors: 50 every 50 steps)."""


@dataclass
class ReplayConfig:
    capacity: int = 1_000_000
    """Transitions the buffer holds (per rank)."""
    batch_size: int = 100
    """Transitions per update."""
    checkpoint: bool = True
    """Dump the buffer beside each checkpoint so a resumed run keeps its data."""
    prioritized: bool = False
    """Prioritised replay (Schaul et al., 2016) by TD error; needs TorchRL's C++ extension."""
    alpha: float = 0.6
    """Prioritisation exponent: P(i) ∝ (|δᵢ| + eps)^alpha (0 is uniform)."""
    beta: float = 0.4
    """Importance-weight exponent at the first update: wᵢ ∝ (N·P(i))^-beta."""
    beta_final: float = 1.0
    """Importance-weight exponent at the last update; beta is annealed linearly to it."""
    eps: float = 1e-8
    """Added to every priority so that no transition has probability zero."""


@dataclass
class OptimConfig:
    critic_lr: float = 1e-3
    """Adam learning rate of the critics."""
    actor_lr: float = 1e-3
    """Adam learning rate of the actor (init network, amortised sampler)."""
    alpha_lr: float = 3e-4
    """Adam learning rate of log α when α is learned."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak weight of the online critics in the target update."""
    max_grad_norm: float | None = None
    """Clip the global gradient norm (None: no clipping)."""
    update_order: str = "joint"
    """'joint': one backward of all losses at the same critics, one optimiser step; or
    'critic_first' (the authors' code): the critics take their step before the actor (and α)
    losses are computed, so those see the updated critics. One device only."""


def _config_type(hint: Any) -> Any:
    """The OmegaConf 2.3 type of an options field: a ``Literal`` choice becomes ``str``."""
    if get_origin(hint) is Literal:
        return str
    if get_origin(hint) in (Union, UnionType):
        return Union[tuple(_config_type(arg) for arg in get_args(hint))]  # noqa: UP007
    return hint


def _svgd_options(self: Any) -> SVGDOptions:
    """The sampler options of this section: every key but ``num_particles``."""
    return SVGDOptions(**{key.name: getattr(self, key.name) for key in fields(SVGDOptions)})


_OPTION_TYPES = get_type_hints(SVGDOptions)
SVGDConfig = make_dataclass(
    "SVGDConfig",
    [
        ("num_particles", int, field(default=10)),
        *(
            (key.name, _config_type(_OPTION_TYPES[key.name]), getattr(DEFAULT_SVGD, key.name))
            for key in fields(SVGDOptions)
        ),
    ],
    namespace={"options": _svgd_options},
)
SVGDConfig.__module__ = __name__  # for pickling (make_dataclass takes module= only from 3.12)
SVGDConfig.__doc__ = """The ``svgd`` section: ``num_particles`` (particles per state, m) and the
keys of :class:`~s2ac_lit.svgd.SVGDOptions` (where each is documented and checked) with the
actor's defaults (:data:`~s2ac_lit.actor.DEFAULT_SVGD`), so the section is the sampler's options
by construction; ``options()`` returns them."""


@dataclass
class ActorConfig:
    init: str = "learned"
    """'learned' is S2AC(φ,θ), 'fixed' is S2AC(φ) (s2ac only; SQL's sampler has no init)."""
    init_std: float = 0.5
    """σ₀ of the fixed initial distribution."""
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256, 256])
    """Hidden widths of the init network and the amortised sampler (SAC: critic.hidden_sizes)."""
    activation: str = "elu"
    """Activation: 'elu', 'relu', 'tanh' or 'silu' (SAC: critic.activation)."""
    std_min: float = 0.1
    """Lower bound of σθ(s)."""
    std_max: float = 1.0
    """Upper bound of σθ(s)."""
    std_map: str = "smooth"
    """σθ from the init network's raw output r: 'smooth' (std_min + (std_max - std_min)·
    sigmoid(r)) or 'clamp' (clamp(exp(r), std_min, std_max), the authors' code)."""
    truncation: float = 3.0
    """Initial noise is a standard normal truncated to ±truncation."""
    bound: str = "init"
    """Box μ ± tσ for the 'init' particles only (by the truncated ξ) or 'all' SVGD iterates."""
    squash_correction: bool = False
    """Add the tanh log-Jacobian to the SVGD energy."""
    energy_at: str = "action"
    """Where the SVGD energy evaluates the critic: 'action' (the executed squash(u)) or
    'pre_squash' (the particle u itself, the authors' code)."""
    scale_log_det: bool = True
    """Include -Σ log(action scale) in log π (the executed action's density); false leaves it
    out, as the authors' code does (a constant shift where the action limit is not 1)."""
    amortized: bool = False
    """Also train an amortised sampler (one forward pass per action)."""
    eval_selection: str | None = None
    """Acting deterministically: 'softmax', 'max', 'amortized', 'random' (s2ac and sql);
    None: the algorithm's own (s2ac: 'softmax', sql: 'amortized')."""


@dataclass
class CriticConfig:
    num_critics: int = 2
    """Critics in the ensemble; targets use their minimum."""
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden widths of each critic (and of SAC's actor)."""
    activation: str = "elu"
    """Activation (smooth, since the actor loss differentiates through ∇ₐQ; also SAC's actor)."""


@dataclass
class LossConfig:
    alpha_init: float = 0.2
    """Initial (or fixed) entropy temperature α."""
    learn_alpha: bool = False
    """Learn α towards target_entropy (s2ac and sac; SQL's α is fixed)."""
    target_entropy: str | float = "auto"
    """Target entropy for learned α: 'auto' (minus the action dimension) or a float."""
    temperature: str | float = "alpha"
    """Sampler temperature T of exp(Q/T): 'alpha' (paper) or a float (authors' code: 1.0)."""
    amortized_particles: int = 16
    """Samples per state of the amortised-sampler loss (s2ac with actor.amortized, and sql)."""
    value_particles: int = 16
    """Uniform action proposals per state of SQL's soft value."""


PROFILERS = (None, "simple", "advanced")


@dataclass
class TrainerConfig:
    accelerator: str = "auto"
    """Lightning accelerator: 'auto', 'cpu', 'gpu'."""
    devices: int | str = 1
    """Devices per node; more than 1 runs DDP."""
    num_nodes: int = 1
    """Nodes for multi-node DDP."""
    strategy: str = "auto"
    """Lightning strategy ('auto', 'ddp', ...); 'auto' picks DDP for several devices."""
    precision: str = "32"
    """'32', 'bf16-mixed' or '16-mixed'."""
    log_every_updates: int = 50
    """Log training metrics every this many updates."""
    checkpoint_every_updates: int = 5_000
    """Write a checkpoint every this many updates (and at the end)."""
    threads: int | str = 1
    """torch CPU threads per process, or 'auto': ``OMP_NUM_THREADS`` when set, else the CPUs
    this process may use divided among the local processes (CPU DDP ranks on this node), at
    least 1 (``train.cpu_threads``). 1 by default: a second thread made no single run faster
    on the 2-CPU machine measured (README, §GPUs and several devices)."""
    keep_freed_memory: bool = True
    """Have glibc's malloc keep freed blocks up to 32 MiB mapped for reuse instead of returning
    them to the OS, which otherwise page-faults an update's activations back in every update
    (``s2ac_lit.trainer.allocator``; about 1.1× per S2AC update on CPU, README §Speed). Process-wide
    and lasting; false leaves the allocator as it is. No effect without glibc."""
    compile: bool | str = "auto"
    """torch.compile the whole training update (s2ac and sql), or 'auto': compile when the run
    makes enough updates to repay the compile time (``trainer.module.compiles``;
    docs/performance.md §Compilation)."""
    cudagraphs: bool = False
    """Capture the whole update in a CUDA graph after a short warm-up and replay it (and the
    acting policy's step); needs one CUDA GPU, and refuses what cannot be captured (DDP,
    16-mixed, prioritised replay, svgd.self_term='exact'). docs/performance.md §GPU."""
    deterministic: bool | str = "auto"
    """Deterministic kernels (``torch.use_deterministic_algorithms``, through Lightning's
    ``Trainer(deterministic=...)``), so that a killed and resumed run ends bit-identical to an
    uninterrupted one (docs/checkpoints.md); an op without a deterministic kernel warns and the
    run goes on. 'auto': true on the CPU, where it costs under 5 % per update
    (tools/bench.py --deterministic; docs/checkpoints.md), false on a GPU."""
    progress_bar: bool = True
    """Show Lightning's progress bar."""
    profiler: str | None = None
    """Lightning profiler: null (none), 'simple' (seconds per hook and per stage of the loop:
    collect, replay_sample, the update, evaluation, checkpoints) or 'advanced' (cProfile per
    hook); the report is written to the run folder (``fit-profile.txt``)."""


@dataclass
class EvalConfig:
    every_frames: int = 10_000
    """Run evaluation episodes every this many frames (0: only at the end)."""
    episodes: int = 5
    """Episodes per evaluation."""


@dataclass
class Config:
    algo: str = "s2ac"
    """A name of the registry (s2ac_lit.algorithms.ALGORITHMS): 's2ac', 'sac', 'sql'."""
    seed: int = 0
    """Seeds torch, numpy, the envs and action sampling; rank r uses seed + r."""
    run_dir: str = "runs"
    """Folder that holds one sub-folder per run."""
    name: str = ""
    """Run name prefix (the folder is <name>-<timestamp>-<hash>)."""
    env: EnvConfig = field(default_factory=EnvConfig)
    collector: CollectorConfig = field(default_factory=CollectorConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    svgd: SVGDConfig = field(default_factory=SVGDConfig)
    actor: ActorConfig = field(default_factory=ActorConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


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


def _get(cfg: Any, dotted: str) -> Any:
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
        if _get(cfg, key) is None:  # an optional choice left to the algorithm
            continue
        value = str(_get(cfg, key))
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
    if cfg.trainer.compile is True and cfg.svgd.self_term != "none":
        raise ConfigError(
            "trainer.compile=true needs svgd.self_term='none' (the self term differentiates "
            "twice through the critic, which compiled kernels do not support)"
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


def _friendly(
    error: OmegaConfBaseException, source: str, base: DictConfig, layer: Any
) -> ConfigError:
    """The one-line message of a failed merge of ``layer`` into ``base``, naming the key."""
    key = getattr(error, "full_key", None) or failing_key(base, layer)
    first_line = str(error).splitlines()[0]
    if "not in" in first_line and "Key" in first_line:
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        node = OmegaConf.structured(Config)
        allowed = list(_get(node, parent).keys()) if parent else list(node.keys())
        leaf = key.rsplit(".", 1)[-1]
        hint = difflib.get_close_matches(leaf, allowed, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        return ConfigError(f"unknown config key {key!r} in {source}{extra}; allowed: {allowed}")
    section = OmegaConf.select(base, key) if key != "?" else None
    if isinstance(section, DictConfig):
        value = OmegaConf.select(OmegaConf.create(layer), key) if _is_mapping(layer) else layer
        return ConfigError(
            f"{key!r} in {source} must be a mapping of its keys {list(section.keys())}, got "
            f"{value!r}"
        )
    return ConfigError(f"bad value for {key!r} in {source}: {first_line}")


def _is_mapping(layer: Any) -> bool:
    return isinstance(layer, dict | DictConfig)


def failing_key(base: DictConfig, layer: Any, prefix: str = "") -> str:
    """The dotted key of ``layer`` whose merge into ``base`` fails, for OmegaConf errors that
    do not name it (a section given a scalar: ``env: 5``); ``'?'`` if none fails alone."""
    if not _is_mapping(layer):
        return prefix.rstrip(".") or "?"
    for key, value in layer.items():
        try:
            OmegaConf.merge(base, OmegaConf.create({key: value}))
        except OmegaConfBaseException:
            inner = OmegaConf.select(base, str(key))
            if _is_mapping(value) and isinstance(inner, DictConfig):
                found = failing_key(inner, value, f"{prefix}{key}.")
                if found != "?":
                    return found
            return f"{prefix}{key}"
    return "?"


def load_yaml(path: str | Path, what: str = "config file") -> DictConfig:
    """A YAML file that must hold a mapping, or a :class:`ConfigError` naming the file and why
    not (syntax error with line and column, unreadable, not a mapping, an alias of itself).

    Every YAML file a user gives (presets, a run's ``config.yaml``, benchmark suites) is read
    here; ``what`` names it in the message.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        # The root node's kind: OmegaConf would read a lone scalar as a key.
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        loaded = OmegaConf.load(path)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        raise ConfigError(
            f"YAML syntax error in {what} {str(path)!r} at {where}: {error.problem or error}"
        ) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read {what} {str(path)!r}: {error}") from None
    except RecursionError:
        raise ConfigError(
            f"cannot read {what} {str(path)!r}: it nests too deeply or refers to itself"
        ) from None
    if root is not None and not isinstance(root, yaml.MappingNode):
        kind = "a list" if isinstance(root, yaml.SequenceNode) else f"the scalar {root.value!r}"
        raise ConfigError(
            f"{what} {str(path)!r} must hold a mapping of keys (e.g. 'algo: s2ac'), not {kind}"
        )
    assert isinstance(loaded, DictConfig)
    return loaded


YamlPaths = str | Path | Sequence[str | Path] | None
"""One YAML preset, or several merged in order (later wins), or none."""

BASE_KEY = "base"
"""In a preset: the presets it includes (paths relative to it), merged before its own keys."""
FOR_ALGO_KEY = "for_algo"
"""In a preset: settings for one algorithm only, applied when the run's ``algo`` is that one
(``for_algo: {s2ac: {svgd: {steps: 10}}}``), after every preset's own keys and before the
command line. A task preset keeps its algorithm-specific choices here, so that any algorithm
runs on it."""


class Preset(NamedTuple):
    """A preset file's own keys and its per-algorithm sections."""

    source: str
    keys: DictConfig
    for_algo: dict[str, DictConfig]


def read_presets(path: str | Path, *, _chain: tuple[Path, ...] = ()) -> list[Preset]:
    """The preset at ``path`` preceded by those it includes (``base:``, depth first).

    Raises:
        ConfigError: a missing or unreadable file, a preset that includes itself, a ``base``
            that is not a list of paths, or a ``for_algo`` that is not a mapping of the
            registry's algorithms to mappings of keys.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    if path.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a folder; give a YAML file")
    if path.resolve() in _chain:
        cycle = " → ".join(str(p) for p in (*_chain, path.resolve()))
        raise ConfigError(f"preset {str(path)!r} includes itself: {cycle}")
    data = load_yaml(path)
    base = data.pop(BASE_KEY, None)
    sections = data.pop(FOR_ALGO_KEY, None)
    included = [base] if isinstance(base, str) else base or []
    if not isinstance(included, Sequence | ListConfig) or not all(
        isinstance(item, str) for item in included
    ):
        raise ConfigError(
            f"{BASE_KEY} in {str(path)!r} must be a preset path or a list of them, got {base!r}"
        )
    presets = []
    for item in included:
        presets += read_presets(path.parent / item, _chain=(*_chain, path.resolve()))
    for_algo: dict[str, DictConfig] = {}
    if sections is not None:
        names = algorithm_names()
        if not isinstance(sections, DictConfig):
            raise ConfigError(
                f"{FOR_ALGO_KEY} in {str(path)!r} must map algorithms {names} to settings"
            )
        for algo, section in sections.items():
            if algo not in names:
                raise ConfigError(
                    f"{FOR_ALGO_KEY}.{algo} in {str(path)!r}: unknown algorithm; allowed: {names}"
                )
            if not isinstance(section, DictConfig):
                raise ConfigError(
                    f"{FOR_ALGO_KEY}.{algo} in {str(path)!r} must be a mapping of keys"
                )
            for_algo[str(algo)] = section
    return [*presets, Preset(str(path), data, for_algo)]


def merge_config(
    base: DictConfig | Config | None = None,
    yaml_path: YamlPaths = None,
    overrides: list[str] | None = None,
) -> DictConfig:
    """Schema ← base ← YAML preset(s) in order (each after those it includes) ← the presets'
    sections for the run's algorithm ← ``key=value`` overrides, type-checked by OmegaConf."""
    paths = [yaml_path] if isinstance(yaml_path, (str, Path)) else list(yaml_path or [])
    presets = [preset for path in paths for preset in read_presets(path)]
    if overrides:
        bad = [item for item in overrides if "=" not in item]
        if bad:
            raise ConfigError(f"overrides must look like key=value, got {bad}")
        empty = [item for item in overrides if item.endswith("=")]
        if empty:
            key = empty[0][:-1]
            raise ConfigError(
                f"override {empty[0]!r} has no value; give one ({key}=null means none and "
                f"{key}='' an empty string, where {key} allows them)"
            )
    command_line = [("command line", OmegaConf.from_dotlist(overrides or []))]
    layers = [("defaults", base)] if base is not None else []
    layers += [(preset.source, preset.keys) for preset in presets]
    merged = _merge(OmegaConf.structured(Config), layers + command_line)
    algo_layers = [
        (f"{preset.source} ({FOR_ALGO_KEY}.{merged.algo})", preset.for_algo[merged.algo])
        for preset in presets
        if merged.algo in preset.for_algo
    ]
    if algo_layers:  # the command line comes last again: it wins over the sections
        merged = _merge(merged, algo_layers + command_line)
    return merged


def _merge(merged: DictConfig, layers: list[tuple[str, Any]]) -> DictConfig:
    for source, layer in layers:
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as error:
            raise _friendly(error, source, merged, layer) from None
    return merged


def load_config(yaml_path: YamlPaths = None, overrides: list[str] | None = None) -> Config:
    """The validated, typed :class:`Config` for preset(s) and overrides."""
    return to_config(merge_config(yaml_path=yaml_path, overrides=overrides))


def to_config(merged: DictConfig) -> Config:
    """A typed, validated :class:`Config` from a merged ``DictConfig``."""
    try:
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:  # an interpolation that does not resolve
        key = getattr(error, "full_key", None) or "?"
        raise ConfigError(f"bad value for {key!r}: {str(error).splitlines()[0]}") from None
    assert isinstance(cfg, Config)
    return validate(cfg)


def to_yaml(cfg: Config) -> str:
    """The resolved config as YAML (what the run folder keeps)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
