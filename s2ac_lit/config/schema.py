"""The configuration schema: one typed dataclass per section, each key with its default and doc.

Defaults are the authors' MuJoCo settings (docs/algorithm.md §Defaults); presets in ``conf/``
override them. Choice fields are plain strings checked against the allowed tuples
(:mod:`s2ac_lit.config.checks`; OmegaConf 2.3 cannot check ``Literal``). The ``svgd`` section
holds the keys of :class:`~s2ac_lit.svgd.SVGDOptions`, which documents and checks them, plus
``num_particles``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, make_dataclass
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from s2ac_lit.actor import (
    DEFAULT_SVGD,
)
from s2ac_lit.errors import UsageError
from s2ac_lit.svgd import SVGDOptions

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
