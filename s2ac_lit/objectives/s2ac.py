"""S2ACLoss: the Stein Soft Actor-Critic objectives as a TorchRL loss module.

See docs/algorithm.md §Losses.

Critic:  y = r + γ(1 - terminated)·[mean_i min_k Q̄_k(s', a'_i) - α·mean_i log π(a'_i|s')],
         L_Q = mean_batch Σ_k (Q_k(s, a) - y)²   (γⁿ on n-step data).
Actor:   J = mean_s [α·mean_i log π(a_i|s) - mean_i min_k Q_k(s, a_i)]   (S2AC(φ,θ) only),
         with the graph through u⁰ and all L SVGD steps, critic parameters detached.
α:       L_α = -log α·(mean log π + H_target).detach()   (when α is learned).

Every SVGD energy uses the *online* critics with detached parameters (the policy is the
sampler on the current Q); the critic target evaluates the *target* critics at the sampled
actions. γ lives in the value estimator (TD(0) by default, TD(1), TD(λ)):
``loss.make_value_estimator(gamma=0.99)``. "mean_batch" is the loss's ``reduction`` over the
valid samples, and (·)² its ``loss_function`` (see ``objectives.critic``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import Tensor, nn
from torchrl.data import TensorSpec

from s2ac_lit.actor import Selection, SVGDActor, gather_particle, select_particle
from s2ac_lit.objectives.adapters import ACCEPTED_GAUSSIANS, as_gaussian_actor
from s2ac_lit.objectives.common import (
    EntropyEstimate,
    Info,
    SamplerLoss,
    SamplerPolicy,
    check_probe_observations,
)
from s2ac_lit.objectives.critic import (
    SAC_ONLY_KEYWORDS,
    SAC_OUT_KEYS,
    LossFunction,
    Reduction,
    refuse_keywords,
)

ACCEPTED_ACTORS = f"an SVGDActor, or {ACCEPTED_GAUSSIANS} as S2AC(φ,θ)'s initial Gaussian"


def check_action_spec(actor: SVGDActor, action_spec: TensorSpec | None) -> None:
    """Raise ValueError if ``action_spec`` disagrees with the actor's action box."""
    if action_spec is None:
        return
    if action_spec.shape[-1:] != (actor.action_dim,):
        raise ValueError(
            f"action_spec has shape {tuple(action_spec.shape)}, the actor's actions "
            f"({actor.action_dim},)"
        )
    space = getattr(action_spec, "space", None)
    low, high = getattr(space, "low", None), getattr(space, "high", None)
    box = (actor.action_loc - actor.action_scale, actor.action_loc + actor.action_scale)
    if low is not None and not (
        torch.allclose(torch.as_tensor(low, dtype=box[0].dtype).reshape(-1), box[0])
        and torch.allclose(torch.as_tensor(high, dtype=box[1].dtype).reshape(-1), box[1])
    ):
        raise ValueError(
            f"action_spec's box [{low}, {high}] differs from the actor's [{box[0]}, {box[1]}]"
        )


class S2ACLoss(SamplerLoss):
    """TorchRL loss for S2AC(φ) and S2AC(φ,θ), a drop-in for ``SACLoss``.

    Keywords shared with :class:`torchrl.objectives.SACLoss` have its meaning and defaults
    (a learned α from 1.0, a smooth-L1 critic loss, target critics); the trainer's registry
    passes the authors' fixed α = 0.2 and the squared error explicitly. SACLoss keywords with
    no S2AC meaning (a value network, ...) are refused with the reason. See docs/torchrl.md.

    Args:
        actor_network: an :class:`SVGDActor`, or a TorchRL actor writing ``loc`` and ``scale``
            (e.g. SAC's ``ProbabilisticActor`` over a ``TanhNormal``): then it is
            S2AC(φ,θ)'s initial Gaussian N(μθ(s), σθ(s)), and the SVGD sampler around it has
            :class:`SVGDActor`'s defaults (build an ``SVGDActor(init_net=...)`` for others).
        qvalue_network: a :class:`~s2ac_lit.networks.QEnsemble` (∇ₐQ in closed form, the fast
            path) or TorchRL Q-value modules (see ``CriticLoss``).
        num_qvalue_nets, loss_function, alpha_init, min_alpha, max_alpha, fixed_alpha,
            delay_qvalue, reduction, use_prioritized_weights: as for ``SACLoss`` (see
            :class:`~s2ac_lit.objectives.critic.CriticLoss`).
        action_spec: the action spec; gives a TorchRL actor its box (else the actor's own
            spec), and must agree with an ``SVGDActor``'s.
        target_entropy: ``"auto"`` (-A) or a float.
        delay_actor: keep target actor parameters, with which the critic target samples at s'.
        temperature: the sampler's temperature T in exp(Q/T): ``"alpha"`` (the paper's
            target, default) or a float (authors' code: 1.0).
        amortized_particles: samples per state for the amortised-sampler loss (only used when
            the actor has an amortised sampler).

    Raises:
        TypeError: an actor or critic of another kind, or a SACLoss keyword with no S2AC
            meaning (each named, with what is accepted or why).
        ValueError: a value out of range, naming it and what is allowed.

    Outputs of ``forward``: ``loss_actor``, ``loss_qvalue``, ``loss_alpha``, detached
    ``alpha`` and ``entropy`` (-mean log π of the particles: at the batch states for
    S2AC(φ,θ), at the next states of the critic step for S2AC(φ)), then ``q_value``,
    ``target_value``, the sampler's diagnostics at the next states (``svgd/*``, ``actor/*``;
    see :func:`~s2ac_lit.actor.sampler_diagnostics`) and ``loss_amortized`` when the actor has
    an amortised sampler.

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl.objectives import SoftUpdate
        >>> from s2ac_lit.networks import QEnsemble
        >>> actor = SVGDActor(3, [-1.0], [1.0], num_particles=4, hidden_sizes=(8,))
        >>> loss = S2ACLoss(actor, QEnsemble(3, 1, hidden_sizes=(8,)))
        >>> target_update = SoftUpdate(loss, tau=0.005)  # step it after each optimiser step
        >>> td = TensorDict({"observation": torch.randn(5, 3), "action": torch.rand(5, 1),
        ...     "next": {"observation": torch.randn(5, 3), "reward": torch.randn(5, 1),
        ...              "done": torch.zeros(5, 1, dtype=torch.bool),
        ...              "terminated": torch.zeros(5, 1, dtype=torch.bool)}}, [5])
        >>> [k for k in loss(td).keys() if k.startswith("loss_")]
        ['loss_qvalue', 'loss_actor', 'loss_alpha']
        >>> loss.out_keys[:5]
        ['loss_actor', 'loss_qvalue', 'loss_alpha', 'alpha', 'entropy']
    """

    def __init__(
        self,
        actor_network: SVGDActor | TensorDictModuleBase,
        qvalue_network: nn.Module | Sequence[TensorDictModuleBase],
        *,
        num_qvalue_nets: int | None = None,
        loss_function: LossFunction = "smooth_l1",
        alpha_init: float = 1.0,
        min_alpha: float | None = None,
        max_alpha: float | None = None,
        action_spec: TensorSpec | None = None,
        fixed_alpha: bool = False,
        target_entropy: float | Literal["auto"] = "auto",
        delay_actor: bool = False,
        delay_qvalue: bool = True,
        reduction: Reduction = "mean",
        use_prioritized_weights: bool | str = "auto",
        temperature: float | Literal["alpha"] = "alpha",
        amortized_particles: int = 16,
        **sac_only: Any,
    ) -> None:
        refuse_keywords(type(self).__name__, sac_only, SAC_ONLY_KEYWORDS)
        if temperature != "alpha" and (isinstance(temperature, str) or temperature <= 0):
            raise ValueError(f"temperature must be 'alpha' or a float > 0, got {temperature!r}")
        keys: dict[str, Any] = {}
        if isinstance(actor_network, SVGDActor):
            check_action_spec(actor_network, action_spec)
            actor = actor_network
        else:
            given = as_gaussian_actor(actor_network, action_spec, "S2ACLoss", ACCEPTED_ACTORS)
            actor = SVGDActor(None, given.low, given.high, init_net=given.gaussian)
            keys = {"observation_key": given.observation_key, "action_key": given.action_key}
        if target_entropy == "auto":
            target_entropy = -float(actor.action_dim)
        super().__init__(
            actor,
            qvalue_network,
            amortized_particles=amortized_particles,
            num_qvalue_nets=num_qvalue_nets,
            loss_function=loss_function,
            alpha_init=alpha_init,
            min_alpha=min_alpha,
            max_alpha=max_alpha,
            fixed_alpha=fixed_alpha,
            target_entropy=float(target_entropy),
            delay_actor=delay_actor,
            delay_qvalue=delay_qvalue,
            reduction=reduction,
            use_prioritized_weights=use_prioritized_weights,
            **keys,
        )
        self.temperature = temperature

    # ------------------------------------------------------------------ helpers
    @property
    def default_out_keys(self) -> tuple[str, ...]:
        keys = (*SAC_OUT_KEYS, "q_value", "target_value", *self.actor_network.diagnostic_keys())
        return (*keys, "loss_amortized") if self.actor_network.amortized is not None else keys

    def sampler_temperature(self) -> Tensor:
        """T in the sampler's target exp(Q/T): α (detached) or the configured float."""
        if self.temperature == "alpha":
            return self.alpha
        return torch.as_tensor(self.temperature, device=self.log_alpha.device)

    @property
    def has_actor_parameters(self) -> bool:
        """False for S2AC(φ), whose sampler has nothing to learn."""
        return self.actor_network.init_net is not None

    # ------------------------------------------------------------------ losses
    def next_state_value(self, tensordict: TensorDictBase) -> tuple[Tensor, Info]:
        """V(s') = mean_i min_k Q̄_k(s', a'_i) - α·mean_i log π(a'_i|s'), a' from the sampler.

        The sampler runs on the online critics (parameters detached) with the target actor's
        parameters (the online ones unless ``delay_actor``); the target critics evaluate it.

        Returns:
            ``[*B]`` values and detached info: ``next_log_prob`` ``[*B, M]`` and the
            sampler's diagnostics.
        """
        next_obs = tensordict[("next", self.tensor_keys.observation)]
        with self.bind(
            self.qvalue_network_params.detach(), actor_params=self.target_actor_network_params
        ):
            nxt = self.actor_network.sample(
                next_obs, self.qvalue_network, self.sampler_temperature(), diagnostics=True
            )
        with self.bind(self.target_qvalue_network_params):
            next_q = self.qvalue_network(next_obs.unsqueeze(-2), nxt.action).amin(0)
        value = next_q.mean(-1) - self.alpha * nxt.log_prob.mean(-1)
        return value, {"next_log_prob": nxt.log_prob, **nxt.diagnostics}

    def actor_loss(self, tensordict: TensorDictBase) -> tuple[Tensor, Info]:
        """J = mean_s [α·mean_i log π(a_i|s) - mean_i min_k Q_k(s, a_i)], through all steps.

        Critic parameters enter detached: ∇ₐQ flows through the SVGD steps into the init
        network, but the critics get no gradient from this loss.

        Returns:
            The loss and detached info: ``log_prob`` ``[B, M]``.
        """
        obs = tensordict[self.tensor_keys.observation]
        with self.bind(self.qvalue_network_params.detach()):
            sample = self.actor_network.sample(
                obs, self.qvalue_network, self.sampler_temperature(), differentiable=True
            )
            q = self.qvalue_network(obs.unsqueeze(-2), sample.action).amin(0)
        per_state = self.alpha * sample.log_prob.mean(-1) - q.mean(-1)
        return self._reduce_loss(per_state, tensordict), {"log_prob": sample.log_prob.detach()}

    def actor_phase(self, tensordict: TensorDictBase, critic_info: Info) -> dict[str, Tensor]:
        """``loss_actor`` (zero for S2AC(φ)), ``loss_alpha`` and ``entropy`` from the particles
        at s (S2AC(φ,θ)) or at s' (S2AC(φ): the critic step's), ``loss_amortized``."""
        if self.has_actor_parameters:
            loss_actor, info_actor = self.actor_loss(tensordict)
            log_prob = info_actor["log_prob"]
        else:
            zeros = torch.zeros_like(critic_info["td_error"])
            loss_actor = self._reduce_loss(zeros, tensordict)
            log_prob = critic_info["next_log_prob"]
        loss_alpha, _ = self.alpha_loss(log_prob, tensordict)
        out = {
            "loss_actor": loss_actor,
            "loss_alpha": loss_alpha,
            "alpha": self.alpha,
            "entropy": -log_prob.mean(),
        }
        if self.actor_network.amortized is not None:
            out["loss_amortized"] = self.amortized_loss(tensordict)[0]
        return out

    def policy(self, *, eval_selection: Selection = "softmax") -> S2ACPolicy:
        """A TorchRL policy module acting with this loss's actor, critics and temperature."""
        return S2ACPolicy(self, eval_selection=eval_selection)


class S2ACPolicy(SamplerPolicy):
    """Acts with the S2AC sampler: ``observation`` → ``action``, for collectors and rollouts.

    Under ``ExplorationType.RANDOM`` (collectors' default) it acts with a uniformly random
    particle; otherwise with ``eval_selection``: ``softmax`` (p ∝ exp(Q_i - max Q)), ``max``
    (argmax Q), ``random`` or ``amortized`` (one forward of the amortised sampler). It works
    under ``torch.no_grad()``: the sampler enables gradients locally for ∇ᵤQ.

    Beside the weights of :class:`~s2ac_lit.objectives.common.SamplerPolicy` it holds
    ``log_alpha`` when the sampler's temperature is a learned α (held within the loss's
    bounds). A fixed temperature is a constant, read from the loss when the policy is built:
    not a buffer, which the loss's ``.to(device)`` would leave behind, and a collector would
    then copy a policy whose weights sit on several devices.

    Shapes:
        observation ``[..., O]`` → action ``[..., A]``.
    """

    def __init__(self, loss: S2ACLoss, *, eval_selection: Selection = "softmax") -> None:
        super().__init__(loss, eval_selection=eval_selection)
        if loss.temperature == "alpha" and not loss.fixed_alpha:
            self.log_alpha = loss.log_alpha
            self.fixed_temperature = None
            bounds = (loss.min_log_alpha, loss.max_log_alpha)
            self.log_alpha_bounds = tuple(None if b is None else float(b) for b in bounds)
        else:
            self.log_alpha = None
            self.fixed_temperature = float(loss.sampler_temperature())

    def sampler_temperature(self) -> Tensor:
        """T in the sampler's target exp(Q/T): α (detached) or the configured float."""
        if self.log_alpha is None:
            return torch.as_tensor(self.fixed_temperature)
        log_alpha = self.log_alpha.detach()
        if any(bound is not None for bound in self.log_alpha_bounds):
            log_alpha = log_alpha.clamp(*self.log_alpha_bounds)
        return log_alpha.exp()

    def act(self, observation: Tensor) -> Tensor:
        """One action per state. ``[..., O]`` → ``[..., A]``."""
        mode = "random" if self.exploring() else self.eval_selection
        actor, critic = self.actor_network, self.qvalue_network
        with self.bind():
            if mode == "amortized":
                u = actor.sample_amortized(observation, 1).squeeze(-2)
                return actor.squash(u).detach()
            sample = actor.sample(observation, critic, self.sampler_temperature())
            if mode == "random":
                values = sample.log_prob  # only the shape matters
            else:
                with torch.no_grad():
                    values = critic(observation.unsqueeze(-2), sample.action).amin(0)
        return gather_particle(sample.action, select_particle(values, mode))


def s2ac_entropy(
    loss: S2ACLoss, observations: Tensor, *, num_samples: int = 1000
) -> EntropyEstimate:
    """-mean log π of S2AC's particles: the SVGD chain's closed-form log-density.

    See docs/algorithm.md §Sampler and §Multigoal.

    The policy is the M-particle chain the agent was trained with; a chain with more particles
    would be another distribution (the kernel couples them). So each probe state is repeated
    ⌈N/M⌉ times and every copy runs an independent M-particle chain: N ≈ ⌈N/M⌉·M samples of
    the trained policy, each with its log π (squash correction included). The log π is the
    sampler's own estimate (first order in ε, with the agent's ``self_term`` setting), so it
    may differ from the kNN estimate of the same actions
    (:func:`~s2ac_lit.knn.knn_entropy`).

    Shapes:
        observations: ``[P, O]`` → entropy ``[P]``, actions ``[P, ⌈N/M⌉·M, A]``.
    """
    check_probe_observations(observations)
    actor = loss.actor_network
    copies = max(1, math.ceil(num_samples / actor.num_particles))
    obs = observations.unsqueeze(-2).expand(-1, copies, -1)
    with loss.bind(loss.qvalue_network_params.detach()):
        sample = actor.sample(obs, loss.qvalue_network, loss.sampler_temperature())
    log_prob = sample.log_prob.detach().flatten(-2)  # [P, copies, M] → [P, N]
    actions = sample.action.detach().flatten(-3, -2)  # [P, copies, M, A] → [P, N, A]
    return EntropyEstimate(-log_prob.mean(-1), actions)
