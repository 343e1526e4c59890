"""Algorithm registry: config → (loss module, exploration policy) for S2AC, SAC and SQL.

Every loss follows TorchRL's naming (``qvalue_network_params``, ``actor_network_params``,
``log_alpha``), so one optimiser layout and one target updater serve all three.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from tensordict import TensorDictBase
from torch import nn
from torchrl.objectives import LossModule

from s2ac_lit.actor import SVGDActor
from s2ac_lit.config import Config
from s2ac_lit.networks import QEnsemble
from s2ac_lit.objectives import S2ACLoss, SQLLoss, make_sac_loss

Policy = Callable[[TensorDictBase], TensorDictBase]


class Algorithm(NamedTuple):
    """A loss module and the policy that explores (and, deterministically, evaluates) with it."""

    loss: LossModule
    policy: Policy


def make_critic(cfg: Config, observation_dim: int, action_dim: int) -> QEnsemble:
    """The twin-critic ensemble of ``cfg.critic``."""
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
    init: str | None = None,
    amortized: bool | None = None,
    squash_correction: bool | None = None,
) -> SVGDActor:
    """The SVGD actor of ``cfg.actor`` and ``cfg.svgd``; keyword arguments override them."""
    a, s = cfg.actor, cfg.svgd
    return SVGDActor(
        observation_dim,
        action_low,
        action_high,
        init=init or a.init,  # type: ignore[arg-type]
        num_particles=s.num_particles,
        svgd=s.options(),
        init_std=a.init_std,
        hidden_sizes=tuple(a.hidden_sizes),
        activation=a.activation,  # type: ignore[arg-type]
        std_min=a.std_min,
        std_max=a.std_max,
        truncation=a.truncation,
        bound=a.bound,  # type: ignore[arg-type]
        squash_correction=a.squash_correction if squash_correction is None else squash_correction,
        amortized=a.amortized if amortized is None else amortized,
    )


def build_algorithm(
    cfg: Config,
    observation_dim: int,
    action_low: Sequence[float],
    action_high: Sequence[float],
) -> Algorithm:
    """Loss (with its TD(0) value estimator) and policy for ``cfg.algo``."""
    action_dim = len(action_low)
    critic = make_critic(cfg, observation_dim, action_dim)
    lc = cfg.loss
    if cfg.algo == "s2ac":
        loss = S2ACLoss(
            make_actor(cfg, observation_dim, action_low, action_high),
            critic,
            alpha_init=lc.alpha_init,
            learn_alpha=lc.learn_alpha,
            target_entropy=lc.target_entropy,  # type: ignore[arg-type]
            temperature=lc.temperature,  # type: ignore[arg-type]
        )
        policy: Policy = loss.policy(eval_selection=cfg.actor.eval_selection)  # type: ignore[arg-type]
    elif cfg.algo == "sql":
        # SQL's sampler must target exp(Q(a)/α) on the action box, whose log-partition its
        # soft value is: hence the squash correction (see SQLLoss).
        actor = make_actor(
            cfg,
            observation_dim,
            action_low,
            action_high,
            init="fixed",
            amortized=True,
            squash_correction=True,
        )
        loss = SQLLoss(actor, critic, alpha=lc.alpha_init)
        policy = loss.policy()
    elif cfg.algo == "sac":
        loss, policy = make_sac_loss(
            observation_dim,
            action_dim,
            action_low,
            action_high,
            hidden_sizes=tuple(cfg.critic.hidden_sizes),
            activation=cfg.critic.activation,  # type: ignore[arg-type]
            alpha_init=lc.alpha_init,
            learn_alpha=lc.learn_alpha,
            target_entropy=lc.target_entropy,  # type: ignore[arg-type]
        )
    else:
        raise ValueError(f"unknown algo {cfg.algo!r}; allowed: ('s2ac', 'sac', 'sql')")
    loss.make_value_estimator(gamma=cfg.optim.gamma)
    return Algorithm(loss, policy)


PARAMETER_GROUPS = {
    "qvalue_network_params": "critic",
    "actor_network_params": "actor",
    "log_alpha": "alpha",
}


def parameter_groups(loss: nn.Module, lrs: dict[str, float]) -> list[dict]:
    """Optimiser parameter groups (critic, actor, alpha) from the loss's parameter names.

    Args:
        lrs: learning rate per group name (``critic``, ``actor``, ``alpha``).

    Raises:
        RuntimeError: a trainable parameter belongs to no known group.
    """
    groups: dict[str, list[nn.Parameter]] = {name: [] for name in lrs}
    for name, param in loss.named_parameters():
        prefix = name.split(".")[0]
        if prefix not in PARAMETER_GROUPS:
            raise RuntimeError(f"parameter {name!r} belongs to no optimiser group")
        groups[PARAMETER_GROUPS[prefix]].append(param)
    return [
        {"params": params, "lr": lrs[group], "name": group}
        for group, params in groups.items()
        if params
    ]
