"""Algorithm registry: everything that differs between S2AC, SAC and SQL, by ``cfg.algo``.

One :class:`AlgorithmSpec` per name builds the loss module and the policy that acts with it,
names the deterministic selections that policy offers, estimates the policy's entropy at probe
states, and lists the config keys it reads. The Lightning trainer (:mod:`s2ac_lit.trainer.module`),
the plain-TorchRL script (``tools/train_torchrl.py``), evaluation (``tools/evaluate.py``,
``tools/multigoal.py``) and the benchmarks all go through :data:`ALGORITHMS`; nothing else
dispatches on the algorithm.

Every loss follows TorchRL's naming (``qvalue_network_params``, ``actor_network_params``,
``log_alpha``), so one optimiser layout (:func:`parameter_groups`) and one target updater serve
all three. A key of the algorithm-specific sections (:data:`ALGORITHM_KEYS`) that the chosen
algorithm does not read must stay at its default: :func:`check_config` refuses it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from tensordict import TensorDictBase
from torch import Tensor, nn
from torchrl.objectives import LossModule, SoftUpdate

from s2ac_lit.actor import SVGDActor
from s2ac_lit.config import Config, ConfigError, OptimConfig
from s2ac_lit.networks import QEnsemble
from s2ac_lit.objectives import S2ACLoss, SQLLoss, make_sac_networks, sac_loss
from s2ac_lit.objectives.adapters import GaussianSampler, as_gaussian_actor
from s2ac_lit.objectives.common import EntropyEstimate
from s2ac_lit.objectives.s2ac import ACCEPTED_ACTORS as S2AC_ACTORS
from s2ac_lit.objectives.s2ac import s2ac_entropy
from s2ac_lit.objectives.sac import sac_entropy, sac_loss_phases
from s2ac_lit.objectives.sql import ACCEPTED_ACTORS as SQL_ACTORS
from s2ac_lit.objectives.sql import sql_samples
from s2ac_lit.svgd import SVGDOptions
from s2ac_lit.update import Phases, Stepper, Update

Policy = Callable[[TensorDictBase], TensorDictBase]

# Config keys (dotted) or whole sections whose meaning depends on the algorithm; every other
# key is a run setting that the trainer reads for all of them.
ALGORITHM_KEYS = ("svgd", "actor", "critic", "loss", "optim.alpha_lr", "trainer.compile")


class Algorithm(NamedTuple):
    """A loss module (with its TD(0) value estimator) and the policy that acts with it.

    The policy samples under ``ExplorationType.RANDOM`` (collectors) and acts with the
    configured deterministic selection otherwise (evaluation).
    """

    loss: LossModule
    policy: Policy


Builder = Callable[..., Algorithm]
"""``(cfg, observation_dim, action_low, action_high)`` → :class:`Algorithm`, and for the
built-in algorithms an optional ``networks`` (:data:`Networks`)."""
Networks = tuple[nn.Module, nn.Module]
"""``(actor_network, qvalue_network)`` to build a loss around instead of the config's networks,
e.g. TorchRL's ``ProbabilisticActor`` and ``ValueOperator`` (docs/torchrl.md)."""
EntropyProbe = Callable[[Any, Policy, Tensor, int], EntropyEstimate]


@dataclasses.dataclass(frozen=True)
class AlgorithmSpec:
    """How to build, evaluate and probe one algorithm.

    Attributes:
        build: ``(cfg, observation_dim, action_low, action_high)`` → :class:`Algorithm`
            (before its value estimator; use :func:`build_algorithm`).
        selections: deterministic selections its loss's ``policy(eval_selection=...)``
            offers, the default first; empty when the policy has only its own deterministic
            mode (SAC: the squashed mean).
        probe_entropy: ``(loss, policy, observations [P, O], num_samples)`` → the entropy of
            π(·|s) at probe states and the sampled actions.
        reads: the keys of :data:`ALGORITHM_KEYS` (dotted, or whole sections) it reads.
        phases: loss → its losses in phases, critic first (for ``optim.update_order``).
    """

    build: Builder
    selections: tuple[str, ...]
    probe_entropy: EntropyProbe
    reads: tuple[str, ...]
    phases: Callable[[Any], Phases]

    def reads_key(self, key: str) -> bool:
        """Whether ``key`` (dotted) is read: a run setting, or listed in :attr:`reads`."""
        return not _covered(key, ALGORITHM_KEYS) or _covered(key, self.reads)

    def default_selection(self, cfg: Config) -> str | None:
        """``actor.eval_selection``, or this algorithm's own default when it is unset."""
        if not self.selections:
            return None
        return cfg.actor.eval_selection or self.selections[0]


def _covered(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def make_critic(cfg: Config, observation_dim: int, action_dim: int) -> QEnsemble:
    """The critic ensemble of ``cfg.critic``."""
    c = cfg.critic
    return QEnsemble(
        observation_dim,
        action_dim,
        num_critics=c.num_critics,
        hidden_sizes=tuple(c.hidden_sizes),
        activation=c.activation,  # type: ignore[arg-type]
    )


def make_actor(
    cfg: Config,
    observation_dim: int,
    action_low: Sequence[float],
    action_high: Sequence[float],
    *,
    init_net: nn.Module | None = None,
) -> SVGDActor:
    """S2AC's SVGD actor of ``cfg.actor`` and ``cfg.svgd``; a given ``init_net`` (a TorchRL
    actor's Gaussian, see :class:`SVGDActor`) makes it S2AC(φ,θ) with that network."""
    a, s = cfg.actor, cfg.svgd
    return SVGDActor(
        observation_dim,
        action_low,
        action_high,
        init="learned" if init_net is not None else a.init,  # type: ignore[arg-type]
        num_particles=s.num_particles,
        svgd=s.options(),
        init_std=a.init_std,
        hidden_sizes=tuple(a.hidden_sizes),
        activation=a.activation,  # type: ignore[arg-type]
        std_min=a.std_min,
        std_max=a.std_max,
        std_map=a.std_map,  # type: ignore[arg-type]
        truncation=a.truncation,
        bound=a.bound,  # type: ignore[arg-type]
        squash_correction=a.squash_correction,
        energy_at=a.energy_at,  # type: ignore[arg-type]
        scale_log_det=a.scale_log_det,
        amortized=a.amortized,
        init_net=init_net,
    )


CRITIC_LOSS = "l2"
"""The critics' regression of every algorithm: (Q - y)² (SAC's too, ``make_sac_loss``)."""

# What the builders read, beside each builder.
_LOSS_COMMON = ("critic", "loss.alpha_init")
_SAMPLER_LOSS = (*_LOSS_COMMON, "loss.amortized_particles", "trainer.compile")  # S2AC and SQL
_LEARNED_ALPHA = ("loss.learn_alpha", "loss.target_entropy", "optim.alpha_lr")


def _select(loss: S2ACLoss | SQLLoss, selection: str) -> Policy:
    return loss.policy(eval_selection=selection)  # type: ignore[arg-type]


def _build_s2ac(
    cfg: Config,
    observation_dim: int,
    action_low: Sequence[float],
    action_high: Sequence[float],
    networks: Networks | None = None,
) -> Algorithm:
    if networks is None:  # the critic first: seeded runs depend on the order of the draws
        critic = make_critic(cfg, observation_dim, len(action_low))
        actor = make_actor(cfg, observation_dim, action_low, action_high)
    else:  # a TorchRL actor is S2AC(φ,θ)'s initial Gaussian, inside the config's sampler
        actor, critic = networks
        if not isinstance(actor, SVGDActor):
            gaussian = as_gaussian_actor(actor, None, "S2ACLoss", S2AC_ACTORS).gaussian
            actor = make_actor(cfg, observation_dim, action_low, action_high, init_net=gaussian)
    lc = cfg.loss
    # The loss's defaults are SACLoss's (a learned α, a smooth-L1 critic loss); the config's
    # choices (the authors' fixed α = 0.2, the squared error) are passed explicitly.
    loss = S2ACLoss(
        actor,
        critic,
        loss_function=CRITIC_LOSS,
        alpha_init=lc.alpha_init,
        fixed_alpha=not lc.learn_alpha,
        target_entropy=lc.target_entropy,  # type: ignore[arg-type]
        temperature=lc.temperature,  # type: ignore[arg-type]
        amortized_particles=lc.amortized_particles,
    )
    return Algorithm(loss, _select(loss, ALGORITHMS["s2ac"].default_selection(cfg) or ""))


_S2AC_READS = ("svgd", "actor", "loss.temperature", *_SAMPLER_LOSS, *_LEARNED_ALPHA)


def _build_sql(
    cfg: Config,
    observation_dim: int,
    action_low: Sequence[float],
    action_high: Sequence[float],
    networks: Networks | None = None,
) -> Algorithm:
    # SQL's sampler is the amortised one alone; it must target exp(Q(a)/α) on the action box,
    # whose log-partition its soft value is: hence the squash correction (see SQLLoss). Of
    # the SVGD settings only the kernel's act, through the amortised direction. A TorchRL
    # actor is the sampler.
    actor, critic = networks or (None, make_critic(cfg, observation_dim, len(action_low)))
    if not isinstance(actor, SVGDActor):
        sampler = (
            True
            if actor is None
            else GaussianSampler(as_gaussian_actor(actor, None, "SQLLoss", SQL_ACTORS).gaussian)
        )
        a, s = cfg.actor, cfg.svgd
        actor = SVGDActor(
            observation_dim,
            action_low,
            action_high,
            init="fixed",
            svgd=SVGDOptions(bandwidth=s.bandwidth, include_diagonal=s.include_diagonal),
            hidden_sizes=tuple(a.hidden_sizes),
            activation=a.activation,  # type: ignore[arg-type]
            squash_correction=True,
            amortized=sampler,
        )
    lc = cfg.loss
    loss = SQLLoss(
        actor,
        critic,
        loss_function=CRITIC_LOSS,
        alpha_init=lc.alpha_init,
        value_particles=lc.value_particles,
        amortized_particles=lc.amortized_particles,
    )
    return Algorithm(loss, _select(loss, ALGORITHMS["sql"].default_selection(cfg) or ""))


_AMORTIZED_SAMPLER = ("actor.hidden_sizes", "actor.activation", "svgd.bandwidth")
_SQL_OWN = ("svgd.include_diagonal", "actor.eval_selection", "loss.value_particles")
_SQL_READS = (*_SAMPLER_LOSS, *_AMORTIZED_SAMPLER, *_SQL_OWN)


def _build_sac(
    cfg: Config,
    observation_dim: int,
    action_low: Sequence[float],
    action_high: Sequence[float],
    networks: Networks | None = None,
) -> Algorithm:
    c, lc = cfg.critic, cfg.loss
    actor, critic = networks or make_sac_networks(
        observation_dim,
        len(action_low),
        action_low,
        action_high,
        hidden_sizes=tuple(c.hidden_sizes),
        activation=c.activation,  # type: ignore[arg-type]
    )
    loss = sac_loss(
        actor,  # type: ignore[arg-type]
        critic,
        num_critics=c.num_critics,
        alpha_init=lc.alpha_init,
        learn_alpha=lc.learn_alpha,
        target_entropy=lc.target_entropy,  # type: ignore[arg-type]
    )
    return Algorithm(loss, actor)


# SAC's actor has the critic's widths and activation (as in TorchRL's SAC example).
_SAC_READS = (*_LOSS_COMMON, *_LEARNED_ALPHA)


def _s2ac_entropy(loss: S2ACLoss, policy: Policy, observations: Tensor, n: int) -> EntropyEstimate:
    return s2ac_entropy(loss, observations, num_samples=n)


def _sac_entropy(loss: LossModule, policy: Any, observations: Tensor, n: int) -> EntropyEstimate:
    return sac_entropy(policy, observations, num_samples=n)


def _sql_entropy(loss: SQLLoss, policy: Policy, observations: Tensor, n: int) -> EntropyEstimate:
    return sql_samples(loss, observations, num_samples=n)


def _own_phases(loss: S2ACLoss | SQLLoss) -> Phases:
    return loss.loss_phases


def _sac_phases(loss: Any) -> Phases:
    return functools.partial(sac_loss_phases, loss)


ALGORITHMS: dict[str, AlgorithmSpec] = {
    "s2ac": AlgorithmSpec(
        _build_s2ac,
        ("softmax", "max", "amortized", "random"),
        _s2ac_entropy,
        _S2AC_READS,
        _own_phases,
    ),
    "sac": AlgorithmSpec(_build_sac, (), _sac_entropy, _SAC_READS, _sac_phases),
    "sql": AlgorithmSpec(
        _build_sql,
        ("amortized", "softmax", "max", "random"),
        _sql_entropy,
        _SQL_READS,
        _own_phases,
    ),
}


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key → value of every leaf of a (nested) config dataclass."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(node):
        value, key = getattr(node, f.name), f"{prefix}{f.name}"
        out.update(_leaves(value, key + ".") if dataclasses.is_dataclass(value) else {key: value})
    return out


def unread_keys(cfg: Config) -> list[str]:
    """Keys set away from their defaults that ``cfg.algo`` does not read."""
    spec, defaults = ALGORITHMS[cfg.algo], _leaves(Config())
    return [
        key
        for key, value in _leaves(cfg).items()
        if value != defaults[key] and not spec.reads_key(key)
    ]


def check_config(cfg: Config) -> Config:
    """Refuse keys the algorithm would ignore; returns ``cfg``.

    Raises:
        ConfigError: naming the algorithm and every such key with its value and default.
    """
    unread = unread_keys(cfg)
    if unread:
        values, defaults = _leaves(cfg), _leaves(Config())
        listed = ", ".join(f"{key}={values[key]!r} (default {defaults[key]!r})" for key in unread)
        raise ConfigError(
            f"{listed} {'has' if len(unread) == 1 else 'have'} no effect with "
            f"algo={cfg.algo!r}; remove {'it' if len(unread) == 1 else 'them'} or choose an "
            "algorithm that reads them (a preset's for_algo section holds settings of one "
            "algorithm)"
        )
    return cfg


def without_unread(cfg: Config) -> Config:
    """``cfg`` with the keys ``cfg.algo`` does not read back at their defaults.

    Only for configs written before :func:`check_config` refused such keys (the run folders
    and checkpoints of older runs, which still resume); everything new is refused instead.
    """
    defaults = _leaves(Config())
    for key in unread_keys(cfg):
        *parents, leaf = key.split(".")
        node = cfg
        for part in parents:
            node = getattr(node, part)
        setattr(node, leaf, defaults[key])
    return cfg


def build_algorithm(
    cfg: Config,
    observation_dim: int,
    action_low: Sequence[float],
    action_high: Sequence[float],
    *,
    networks: Networks | None = None,
) -> Algorithm:
    """Loss (with its TD(0) value estimator) and policy for ``cfg.algo``.

    ``networks`` replaces the networks of ``cfg.actor``/``cfg.critic`` (their keys then shape
    nothing): e.g. TorchRL's, for ``tools/train_torchrl.py --networks torchrl``.

    Raises:
        ConfigError: ``cfg`` sets a key the algorithm does not read (:func:`check_config`).
    """
    extra = {} if networks is None else {"networks": networks}
    algorithm = ALGORITHMS[check_config(cfg).algo].build(
        cfg, observation_dim, action_low, action_high, **extra
    )
    algorithm.loss.make_value_estimator(gamma=cfg.optim.gamma)
    return algorithm


def policy_with_selection(algo: str, loss: LossModule, selection: str) -> Policy:
    """The policy of ``loss`` acting deterministically with ``selection``.

    Raises:
        ConfigError: ``algo`` does not offer ``selection``.
    """
    spec = ALGORITHMS[algo]
    if selection not in spec.selections:
        raise ConfigError(
            f"selection {selection!r} does not apply to algo={algo!r}; allowed: "
            f"{spec.selections or 'none (it acts with its own deterministic mode)'}"
        )
    return _select(loss, selection)  # type: ignore[arg-type]


PARAMETER_GROUPS = {
    "qvalue_network_params": "critic",
    "actor_network_params": "actor",
    "log_alpha": "alpha",
}


def parameter_groups(loss: nn.Module, optim: OptimConfig) -> list[dict]:
    """Optimiser parameter groups (critic, actor, alpha) from the loss's parameter names.

    Each ``loss_*`` term reaches only its own group (the actor and sampler losses see detached
    critic parameters), so one backward of their sum and one optimiser step are exact.

    Raises:
        RuntimeError: a trainable parameter belongs to no known group.
    """
    lr_keys = {"critic": "critic_lr", "actor": "actor_lr", "alpha": "alpha_lr"}
    groups: dict[str, list[nn.Parameter]] = {name: [] for name in lr_keys}
    for name, param in loss.named_parameters():
        prefix = name.split(".")[0]
        if prefix not in PARAMETER_GROUPS:
            raise RuntimeError(f"parameter {name!r} belongs to no optimiser group")
        groups[PARAMETER_GROUPS[prefix]].append(param)
    # Only the learning rates of groups that exist are read (the registry's declared keys).
    return [
        {"params": params, "lr": getattr(optim, lr_keys[group]), "name": group}
        for group, params in groups.items()
        if params
    ]


def make_optimizer(
    loss: nn.Module, optim: OptimConfig, *, capturable: bool = False
) -> torch.optim.Optimizer:
    """One Adam over :func:`parameter_groups` (absent groups, e.g. S2AC(φ)'s actor, left out).

    Fused: one kernel per step, which also skips a step on the device when told to
    (``found_inf``); that is how :class:`~s2ac_lit.update.Update` keeps non-finite values
    out of the weights without reading the device. ``capturable``: its step counters live on
    the device, so a CUDA graph can capture the step (``trainer.cudagraphs``).
    """
    return torch.optim.Adam(parameter_groups(loss, optim), fused=True, capturable=capturable)


def make_update(
    cfg: Config,
    loss: LossModule,
    optimizer: torch.optim.Optimizer,
    *,
    target_updater: SoftUpdate | None = None,
    stepper: Stepper | None = None,
) -> Update:
    """The training update of ``cfg`` (``optim.update_order``, ``optim.max_grad_norm``,
    ``optim.tau``: a new ``SoftUpdate`` unless ``target_updater`` is given)."""
    return Update(
        loss,
        optimizer,
        target_updater or SoftUpdate(loss, tau=cfg.optim.tau),
        update_order=cfg.optim.update_order,  # type: ignore[arg-type]
        phases=ALGORITHMS[cfg.algo].phases(loss),
        max_grad_norm=cfg.optim.max_grad_norm,
        stepper=stepper,
    )
