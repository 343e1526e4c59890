"""SQLLoss: Soft Q-Learning (Haarnoja et al., 2017) as a TorchRL loss module.

See docs/algorithm.md §Baselines.

Soft value, by importance sampling with N uniform proposals a_i on the action box 𝒜:

    V(s) = α log ∫_𝒜 exp(Q(s, a)/α) da = α log mean_i exp(Q(s, a_i)/α) + α log vol(𝒜),

with log vol(𝒜) = Σ_d log(high_d - low_d), the real action bounds; the SQL paper's α·A·log 2 is
the special case 𝒜 = [-1, 1]^A.

Critic:   y = r + γ(1 - terminated)·V̄(s'),  L_Q = mean_batch Σ_k (Q_k(s, a) - y)²,
          where V̄ is the soft value of min_k Q̄_k (target critics); (·)² is the loss's
          ``loss_function`` and the TD target its value estimator's (see ``objectives.critic``).
Sampler:  the actor's :class:`~s2ac_lit.actor.AmortizedSampler` u = g_ψ(s, ξ) (or a TorchRL
          actor's Gaussian u = μ(s) + σ(s)·ξ), trained by amortised SVGD:
          ∇_ψ L = -(1/(B·M)) Σ_{b,i} φ(u_bi)ᵀ ∂u_bi/∂ψ, with φ the SVGD direction for the energy
          f(u) = min_k Q_k(s, squash(u))/α (online critics, detached parameters). This is the
          loss's ``loss_actor``.
α:        fixed.

Twin critics: each per-proposal value is min_k Q̄_k before the log-mean-exp. That is the
log-partition of exactly the density the sampler targets (its energy uses min_k Q_k too), and,
as clipped double Q in SAC/TD3/S2AC, it damps the overestimation that a max-like operator such
as log-mean-exp amplifies. (Per-critic values V̄_k would let each critic bootstrap on itself.)

Build the actor with ``init="fixed"`` (SQL has no init network) and ``squash_correction=True``:
then the squashed samples target exp(Q(a)/α) on the box, the density whose log-partition V is;
without the correction they target exp(Q(squash(u))/α) in pre-squash space, which over-weights
the box edges.

Shapes:
    B batch of states, N value proposals, M sampler particles, O observation dim, A action dim,
    K critics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import Tensor, nn
from torchrl.data import TensorSpec

from s2ac_lit.actor import Selection, SVGDActor, gather_particle, select_particle
from s2ac_lit.objectives.adapters import ACCEPTED_GAUSSIANS, GaussianSampler, as_gaussian_actor
from s2ac_lit.objectives.common import (
    EntropyEstimate,
    Info,
    SamplerLoss,
    SamplerPolicy,
    check_probe_observations,
    squashed_knn_entropy,
)
from s2ac_lit.objectives.critic import (
    SAC_ONLY_KEYWORDS,
    SAC_OUT_KEYS,
    LossFunction,
    Reduction,
    refuse_keywords,
)
from s2ac_lit.objectives.s2ac import check_action_spec

ACCEPTED_ACTORS = (
    "an SVGDActor built with init='fixed' and amortized=True, or "
    f"{ACCEPTED_GAUSSIANS} as a Gaussian amortised sampler"
)
SQL_FIXED_ALPHA = "SQL's α is fixed: its sampler has no log-density to steer towards a target"
SQL_ONLY_KEYWORDS = {
    **SAC_ONLY_KEYWORDS,
    "min_alpha": SQL_FIXED_ALPHA,
    "max_alpha": SQL_FIXED_ALPHA,
    "target_entropy": SQL_FIXED_ALPHA,
}


def soft_value(q: Tensor, alpha: Tensor | float, log_volume: Tensor | float) -> Tensor:
    """V = α log mean_i exp(q_i/α) + α log vol, the soft value from N uniform proposals.

    Shapes:
        q: ``[..., N]`` values at proposals drawn uniformly on a box of volume vol → ``[...]``.

    Examples:
        >>> soft_value(torch.tensor([1.0, 1.0]), 0.5, math.log(2.0)).item()  # c + α log 2
        1.3465735912322998
    """
    n = q.shape[-1]
    return alpha * (torch.logsumexp(q / alpha, dim=-1) - math.log(n) + log_volume)


def sql_actor(actor_network: nn.Module, action_spec: TensorSpec | None) -> tuple[SVGDActor, dict]:
    """SQL's actor from what the loss was given, and the keys a TorchRL actor reads and writes.

    A TorchRL actor writing ``loc`` and ``scale`` becomes the amortised sampler
    u = μ(s) + σ(s)·ξ of a fixed-init, squash-corrected :class:`SVGDActor` with that actor's
    box.
    """
    if isinstance(actor_network, SVGDActor):
        if actor_network.amortized is None:
            raise ValueError("SQLLoss needs an actor built with amortized=True")
        if actor_network.init_net is not None:
            raise ValueError(
                "SQLLoss trains only the amortised sampler: build the actor with init='fixed' "
                "(an init network would get no gradient)"
            )
        check_action_spec(actor_network, action_spec)
        return actor_network, {}
    given = as_gaussian_actor(actor_network, action_spec, "SQLLoss", ACCEPTED_ACTORS)
    actor = SVGDActor(
        None,
        given.low,
        given.high,
        init="fixed",
        amortized=GaussianSampler(given.gaussian),
        squash_correction=True,
    )
    return actor, {"observation_key": given.observation_key, "action_key": given.action_key}


class SQLLoss(SamplerLoss):
    """TorchRL loss for Soft Q-Learning with an amortised SVGD sampler, a drop-in for ``SACLoss``.

    Keywords shared with :class:`torchrl.objectives.SACLoss` have its meaning and defaults; α
    is fixed (``fixed_alpha=False``, ``min_alpha``, ``max_alpha`` and ``target_entropy`` are
    refused: SQL's sampler has no log-density). See docs/torchrl.md.

    Args:
        actor_network: an :class:`SVGDActor` built with ``init="fixed"`` and ``amortized=True``
            (only its amortised sampler, squash and energy are used; build it with
            ``squash_correction=True``, see the module docstring), or a TorchRL actor writing
            ``loc`` and ``scale`` (e.g. SAC's ``ProbabilisticActor``): then the amortised
            sampler is that Gaussian, u = μ(s) + σ(s)·ξ, squashed onto its box.
        qvalue_network: a :class:`~s2ac_lit.networks.QEnsemble` or TorchRL Q-value modules
            (see ``CriticLoss``).
        num_qvalue_nets, loss_function, delay_qvalue, reduction, use_prioritized_weights: as
            for ``SACLoss`` (see :class:`~s2ac_lit.objectives.critic.CriticLoss`).
        alpha_init: the fixed temperature α.
        action_spec: the action spec; gives a TorchRL actor its box (else the actor's own
            spec), and must agree with an ``SVGDActor``'s.
        fixed_alpha: True (the only choice).
        delay_actor: False (the only choice: SQL's target uses no actor).
        value_particles: N uniform proposals per state for the soft value (SQL: 16).
        amortized_particles: M sampler particles per state for amortised SVGD (SQL: 16).

    Raises:
        TypeError: an actor or critic of another kind, or a SACLoss keyword with no SQL
            meaning (each named, with what is accepted or why).
        ValueError: a value out of range, naming it and what is allowed.

    Outputs of ``forward``: ``loss_actor`` (the sampler's amortised SVGD loss), ``loss_qvalue``,
    ``loss_alpha`` (always 0: α is fixed), detached ``alpha`` and ``entropy`` (the squashed
    nearest-neighbour estimate from the M sampler particles of each batch state:
    :func:`~s2ac_lit.objectives.common.squashed_knn_entropy`), then ``q_value``,
    ``target_value`` and ``amortized_direction_norm``.

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl.objectives import SoftUpdate
        >>> from s2ac_lit.networks import QEnsemble
        >>> actor = SVGDActor(3, [-2.0], [2.0], init="fixed", amortized=True,
        ...                   squash_correction=True)
        >>> loss = SQLLoss(actor, QEnsemble(3, 1, hidden_sizes=(8,))).make_value_estimator(
        ...     gamma=0.99)
        >>> target_update = SoftUpdate(loss, tau=0.005)  # step it after each optimiser step
        >>> td = TensorDict({"observation": torch.randn(5, 3), "action": torch.rand(5, 1),
        ...     "next": {"observation": torch.randn(5, 3), "reward": torch.randn(5, 1),
        ...              "done": torch.zeros(5, 1, dtype=torch.bool),
        ...              "terminated": torch.zeros(5, 1, dtype=torch.bool)}}, [5])
        >>> [k for k in loss(td).keys() if k.startswith("loss_")]
        ['loss_qvalue', 'loss_actor', 'loss_alpha']
    """

    def __init__(
        self,
        actor_network: SVGDActor | TensorDictModuleBase,
        qvalue_network: nn.Module | Sequence[TensorDictModuleBase],
        *,
        num_qvalue_nets: int | None = None,
        loss_function: LossFunction = "smooth_l1",
        alpha_init: float = 1.0,
        action_spec: TensorSpec | None = None,
        fixed_alpha: bool = True,
        delay_actor: bool = False,
        delay_qvalue: bool = True,
        reduction: Reduction = "mean",
        use_prioritized_weights: bool | str = "auto",
        value_particles: int = 16,
        amortized_particles: int = 16,
        **sac_only: Any,
    ) -> None:
        refuse_keywords(type(self).__name__, sac_only, SQL_ONLY_KEYWORDS)
        if not fixed_alpha:
            raise ValueError(f"fixed_alpha=False: {SQL_FIXED_ALPHA}")
        if delay_actor:
            raise ValueError("delay_actor=True: SQL's target uses no actor (uniform proposals)")
        if value_particles < 1:
            raise ValueError(f"value_particles must be >= 1, got {value_particles}")
        actor, keys = sql_actor(actor_network, action_spec)
        super().__init__(
            actor,
            qvalue_network,
            amortized_particles=amortized_particles,
            num_qvalue_nets=num_qvalue_nets,
            loss_function=loss_function,
            alpha_init=alpha_init,
            fixed_alpha=True,
            delay_qvalue=delay_qvalue,
            reduction=reduction,
            use_prioritized_weights=use_prioritized_weights,
            **keys,
        )
        # log vol of the box [loc - scale, loc + scale]^A: A·log 2 only when scale = 1.
        self.register_buffer(
            "log_action_volume", (2.0 * actor.action_scale).log().sum().detach().clone()
        )
        self.value_particles = value_particles

    @property
    def default_out_keys(self) -> tuple[str, ...]:
        return (*SAC_OUT_KEYS, "q_value", "target_value", "amortized_direction_norm")

    def uniform_actions(self, observation: Tensor) -> Tensor:
        """N actions per state, uniform on the action box. ``[..., O]`` → ``[..., N, A]``."""
        actor = self.actor_network
        shape = (*observation.shape[:-1], self.value_particles, actor.action_dim)
        noise = torch.rand(shape, device=observation.device, dtype=observation.dtype)
        return actor.action_loc + actor.action_scale * (2.0 * noise - 1.0)

    def state_value(self, observation: Tensor, params: TensorDictBase) -> Tensor:
        """Soft value V(s) of min_k Q_k under ``params``, from uniform proposals (no grad).

        Shapes:
            observation ``[..., O]`` → ``[...]``.
        """
        with torch.no_grad(), self.bind(params):
            action = self.uniform_actions(observation)
            q = self.qvalue_network(observation.unsqueeze(-2), action).amin(0)
            return soft_value(q, self.alpha, self.log_action_volume)

    def next_state_value(self, tensordict: TensorDictBase) -> tuple[Tensor, Info]:
        """V̄(s') of the target critics (:meth:`state_value`)."""
        next_obs = tensordict[("next", self.tensor_keys.observation)]
        return self.state_value(next_obs, self.target_qvalue_network_params), {}

    def sampler_temperature(self) -> Tensor:
        """T in the sampler's target exp(Q/T): the fixed α."""
        return self.alpha

    def actor_phase(self, tensordict: TensorDictBase, critic_info: Info) -> dict[str, Tensor]:
        """The sampler's loss as ``loss_actor``, a zero ``loss_alpha``, the entropy estimate."""
        loss_actor, info = self.amortized_loss(tensordict)
        return {
            "loss_actor": loss_actor,
            "loss_alpha": self._reduce_loss(torch.zeros_like(critic_info["td_error"]), tensordict),
            "alpha": self.alpha,
            "entropy": squashed_knn_entropy(
                info["samples"], self.actor_network.action_scale
            ).mean(),
            "amortized_direction_norm": info["amortized_direction_norm"],
        }

    def policy(
        self,
        *,
        eval_selection: Selection = "amortized",
        eval_particles: int | None = None,
    ) -> SQLPolicy:
        """A TorchRL policy module acting with this loss's amortised sampler."""
        return SQLPolicy(self, eval_selection=eval_selection, eval_particles=eval_particles)


class SQLPolicy(SamplerPolicy):
    """Acts with the amortised sampler: ``observation`` → ``action``, one action per state.

    Under ``ExplorationType.RANDOM`` (collectors' default) the action is one sample
    squash(g_ψ(s, ξ)). Otherwise ``eval_selection`` applies: ``amortized`` or ``random`` (one
    sample, as exploring), or ``softmax``/``max`` over ``eval_particles`` samples by min_k Q_k
    (as S2AC's selections over its particles). Its weights are those of
    :class:`~s2ac_lit.objectives.common.SamplerPolicy`.

    Shapes:
        observation ``[..., O]`` → action ``[..., A]``.
    """

    def __init__(
        self,
        loss: SQLLoss,
        *,
        eval_selection: Selection = "amortized",
        eval_particles: int | None = None,
    ) -> None:
        super().__init__(loss, eval_selection=eval_selection)
        self.eval_particles = eval_particles or loss.amortized_particles

    @torch.no_grad()
    def act(self, observation: Tensor) -> Tensor:
        """One action per state. ``[..., O]`` → ``[..., A]``."""
        mode = "single" if self.exploring() else self.eval_selection
        actor, critic = self.actor_network, self.qvalue_network
        with self.bind():
            if mode not in ("softmax", "max"):
                return actor.squash(actor.sample_amortized(observation, 1).squeeze(-2))
            action = actor.squash(actor.sample_amortized(observation, self.eval_particles))
            values = critic(observation.unsqueeze(-2), action).amin(0)
        return gather_particle(action, select_particle(values, mode))


def sql_samples(loss: SQLLoss, observations: Tensor, *, num_samples: int = 1000) -> EntropyEstimate:
    """Samples of SQL's amortised sampler; the entropy is NaN.

    a = squash(g_ψ(s, ξ)) is a neural map of noise with no tractable density (g_ψ is not
    invertible in general), so SQL has no log π; use the kNN estimate
    (:func:`s2ac_lit.knn.knn_entropy`) on the actions.

    Shapes:
        observations: ``[P, O]`` → entropy ``[P]`` (NaN), actions ``[P, N, A]``.
    """
    check_probe_observations(observations)
    actor = loss.actor_network
    with torch.no_grad(), loss.bind():
        actions = actor.squash(actor.sample_amortized(observations, num_samples))
    nan = torch.full(observations.shape[:1], math.nan, dtype=actions.dtype)
    return EntropyEstimate(nan, actions)
