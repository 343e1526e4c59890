"""SQLLoss: Soft Q-Learning (Haarnoja et al., 2017) as a TorchRL loss module.

See docs/algorithm.md §Baselines.

Soft value, by importance sampling with N uniform proposals a_i on the action box 𝒜:

    V(s) = α log ∫_𝒜 exp(Q(s, a)/α) da = α log mean_i exp(Q(s, a_i)/α) + α log vol(𝒜),

with log vol(𝒜) = Σ_d log(high_d - low_d), the real action bounds; the SQL paper's α·A·log 2 is
the special case 𝒜 = [-1, 1]^A.

Critic:   y = r + γ(1 - terminated)·V̄(s'),  L_Q = mean_batch Σ_k (Q_k(s, a) - y)²,
          where V̄ is the soft value of min_k Q̄_k (target critics).
Sampler:  the actor's :class:`~s2ac_lit.actor.AmortizedSampler` u = g_ψ(s, ξ), trained by
          amortised SVGD: ∇_ψ L = -(1/(B·M)) Σ_{b,i} φ(u_bi)ᵀ ∂u_bi/∂ψ, with φ the SVGD direction
          for the energy f(u) = min_k Q_k(s, squash(u))/α (online critics, detached parameters).
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
from collections.abc import Iterator
from typing import Literal

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase, dispatch
from torch import Tensor
from torchrl.envs.utils import ExplorationType, exploration_type

from s2ac_lit.actor import SELECTIONS, Selection, SVGDActor, gather_particle, select_particle
from s2ac_lit.networks import QEnsemble
from s2ac_lit.objectives.common import (
    EntropyEstimate,
    Info,
    Reduction,
    SamplerLoss,
    check_probe_observations,
    merge_phases,
    using_params,
)


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


class SQLLoss(SamplerLoss):
    """TorchRL loss for Soft Q-Learning with an amortised SVGD sampler.

    Args:
        actor_network: an :class:`SVGDActor` built with ``init="fixed"`` and ``amortized=True``
            (only its amortised sampler, squash and energy are used).
        qvalue_network: the :class:`QEnsemble` of twin critics; target copies are made here and
            kept by :class:`torchrl.objectives.SoftUpdate`.
        alpha: the fixed temperature α.
        value_particles: N uniform proposals per state for the soft value (SQL: 16).
        amortized_particles: M sampler particles per state for amortised SVGD (SQL: 16).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per-sample losses ``[*B]``)
            over the batch, as in TorchRL's losses.

    Outputs of ``forward``: ``loss_qvalue``, ``loss_amortized`` (the sampler loss, named as in
    S2AC), ``loss_alpha`` (always 0: α is fixed), plus detached ``alpha``, ``q_value``,
    ``target_value`` and ``amortized_direction_norm``.

    Examples:
        >>> from s2ac_lit.networks import QEnsemble
        >>> actor = SVGDActor(3, [-2.0], [2.0], init="fixed", amortized=True,
        ...                   squash_correction=True)
        >>> loss = SQLLoss(actor, QEnsemble(3, 1, hidden_sizes=(8,))).make_value_estimator(
        ...     gamma=0.99)
        >>> td = TensorDict({"observation": torch.randn(5, 3), "action": torch.rand(5, 1),
        ...     "next": {"observation": torch.randn(5, 3), "reward": torch.randn(5, 1),
        ...              "done": torch.zeros(5, 1, dtype=torch.bool),
        ...              "terminated": torch.zeros(5, 1, dtype=torch.bool)}}, [5])
        >>> sorted(k for k in loss(td).keys() if k.startswith("loss_"))
        ['loss_alpha', 'loss_amortized', 'loss_qvalue']
    """

    def __init__(
        self,
        actor_network: SVGDActor,
        qvalue_network: QEnsemble,
        *,
        alpha: float = 1.0,
        value_particles: int = 16,
        amortized_particles: int = 16,
        reduction: Reduction = "mean",
    ) -> None:
        if actor_network.amortized is None:
            raise ValueError("SQLLoss needs an actor built with amortized=True")
        if actor_network.init_net is not None:
            raise ValueError(
                "SQLLoss trains only the amortised sampler: build the actor with init='fixed' "
                "(an init network would get no gradient)"
            )
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        if value_particles < 1:
            raise ValueError(f"value_particles must be >= 1, got {value_particles}")
        super().__init__(
            actor_network,
            qvalue_network,
            amortized_particles=amortized_particles,
            reduction=reduction,
        )
        self.register_buffer("log_alpha", torch.tensor(math.log(alpha)))
        # log vol of the box [loc - scale, loc + scale]^A: A·log 2 only when scale = 1.
        self.register_buffer(
            "log_action_volume", (2.0 * actor_network.action_scale).log().sum().detach().clone()
        )
        self.value_particles = value_particles

    @property
    def default_out_keys(self) -> tuple[str, ...]:
        keys = ("loss_qvalue", "loss_amortized", "loss_alpha", "alpha", "q_value", "target_value")
        return (*keys, "amortized_direction_norm")

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

    def critic_loss(self, tensordict: TensorDictBase) -> tuple[Tensor, Info]:
        """L_Q = mean Σ_k (Q_k(s, a) - y)², y = r + γ(1 - terminated)·V̄(s').

        Returns:
            The loss and detached info: ``q_value``, ``target_value`` and ``td_error`` ``[*B]``
            (also written to the ``priority`` key).
        """
        next_obs = tensordict[("next", self.tensor_keys.observation)]
        next_value = self.state_value(next_obs, self.target_qvalue_network_params)
        with torch.no_grad():
            target = self.td0_target(tensordict, next_value)
        return self.qvalue_regression(tensordict, target)

    def sampler_temperature(self) -> Tensor:
        """T in the sampler's target exp(Q/T): the fixed α."""
        return self.alpha

    def loss_phases(self, tensordict: TensorDictBase) -> Iterator[TensorDictBase]:
        """The critic's loss, then the sampler's (see ``S2ACLoss.loss_phases``)."""
        loss_q, info_q = self.critic_loss(tensordict)
        yield TensorDict(
            {
                "loss_qvalue": loss_q,
                "q_value": info_q["q_value"],
                "target_value": info_q["target_value"],
            },
            batch_size=[],
        )
        loss_amortized, info_amortized = self.amortized_loss(tensordict)
        out = {
            "loss_amortized": loss_amortized,
            "loss_alpha": torch.zeros_like(loss_q),
            "alpha": self.alpha,
            "amortized_direction_norm": info_amortized["amortized_direction_norm"],
        }
        yield TensorDict(out, batch_size=[])

    @dispatch
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """All SQL losses on one replay batch ``[*B]``; see the class docstring."""
        return merge_phases(self.loss_phases(tensordict))

    def policy(
        self,
        *,
        eval_selection: Selection = "amortized",
        eval_particles: int | None = None,
    ) -> SQLPolicy:
        """A TorchRL policy module acting with this loss's amortised sampler."""
        return SQLPolicy(self, eval_selection=eval_selection, eval_particles=eval_particles)


class SQLPolicy(TensorDictModuleBase):
    """Acts with the amortised sampler: ``observation`` → ``action``, one action per state.

    Under ``ExplorationType.RANDOM`` (collectors' default) the action is one sample
    squash(g_ψ(s, ξ)). Otherwise ``eval_selection`` applies: ``amortized`` or ``random`` (one
    sample, as exploring), or ``softmax``/``max`` over ``eval_particles`` samples by min_k Q_k
    (as S2AC's selections over its particles).

    Its parameters are exactly the weights it acts with, shared with the loss: the sampler's
    (``actor_params``) and the online critics' (``qvalue_params``). So
    ``TensorDict.from_module(policy)`` and a collector's ``update_policy_weights_()`` carry
    them to copies of the policy in other processes or on other devices.

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
        super().__init__()
        if eval_selection not in SELECTIONS:
            raise ValueError(f"unknown eval_selection {eval_selection!r}; allowed: {SELECTIONS}")
        # As in the loss, the networks run with the parameters below swapped in; only those
        # are registered, so they are all that from_module() and weight updates see.
        self.__dict__["actor_network"] = loss.actor_network
        self.__dict__["qvalue_network"] = loss.qvalue_network
        self.actor_params = loss.actor_network_params
        self.qvalue_params = loss.qvalue_network_params
        self.eval_selection: Selection = eval_selection
        self.eval_particles = eval_particles or loss.amortized_particles
        self.in_keys = [loss.tensor_keys.observation]
        self.out_keys = [loss.tensor_keys.action]

    def selection_mode(self) -> Literal["single", "softmax", "max"]:
        """``single`` (one sample) while exploring or for one-sample selections."""
        if exploration_type() in (None, ExplorationType.RANDOM):
            return "single"
        if self.eval_selection in ("softmax", "max"):
            return self.eval_selection
        return "single"

    @torch.no_grad()
    def act(self, observation: Tensor, mode: Literal["single", "softmax", "max"]) -> Tensor:
        """One action per state. ``[..., O]`` → ``[..., A]``."""
        actor, critic = self.actor_network, self.qvalue_network
        with using_params(actor, self.actor_params, critic, self.qvalue_params.detach()):
            if mode == "single":
                return actor.squash(actor.sample_amortized(observation, 1).squeeze(-2))
            action = actor.squash(actor.sample_amortized(observation, self.eval_particles))
            values = critic(observation.unsqueeze(-2), action).amin(0)
        return gather_particle(action, select_particle(values, mode))

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        observation = tensordict.get(self.in_keys[0])
        tensordict.set(self.out_keys[0], self.act(observation, self.selection_mode()))
        return tensordict


def sql_samples(loss: SQLLoss, observations: Tensor, *, num_samples: int = 1000) -> EntropyEstimate:
    """Samples of SQL's amortised sampler; the entropy is NaN.

    a = squash(g_ψ(s, ξ)) is a neural map of noise with no tractable density (g_ψ is not
    invertible in general), so SQL has no log π; use the kNN estimate
    (:func:`s2ac_lit.analysis.entropy.knn.knn_entropy`) on the actions.

    Shapes:
        observations: ``[P, O]`` → entropy ``[P]`` (NaN), actions ``[P, N, A]``.
    """
    check_probe_observations(observations)
    actor = loss.actor_network
    with torch.no_grad(), loss.bind():
        actions = actor.squash(actor.sample_amortized(observations, num_samples))
    nan = torch.full(observations.shape[:1], math.nan, dtype=actions.dtype)
    return EntropyEstimate(nan, actions)
