"""S2ACLoss: the Stein Soft Actor-Critic objectives as a TorchRL loss module.

See docs/algorithm.md §Losses.

Critic:  y = r + γ(1 - terminated)·[mean_i min_k Q̄_k(s', a'_i) - α·mean_i log π(a'_i|s')],
         L_Q = mean_batch Σ_k (Q_k(s, a) - y)²   (γⁿ on n-step data).
Actor:   J = mean_s [α·mean_i log π(a_i|s) - mean_i min_k Q_k(s, a_i)]   (S2AC(φ,θ) only),
         with the graph through u⁰ and all L SVGD steps, critic parameters detached.
α:       L_α = -log α·(mean log π + H_target).detach()   (when α is learned).

Every SVGD energy uses the *online* critics with detached parameters (the policy is the
sampler on the current Q); the critic target evaluates the *target* critics at the sampled
actions. γ lives in the TD(0) value estimator: ``loss.make_value_estimator(gamma=0.99)``.
"mean_batch" is the loss's ``reduction`` over the valid samples (see ``objectives.common``).
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


class S2ACLoss(SamplerLoss):
    """TorchRL loss for S2AC(φ) and S2AC(φ,θ).

    Args:
        actor_network: the :class:`SVGDActor` (its critic comes from this loss).
        qvalue_network: the :class:`QEnsemble` of twin critics; target copies are made here
            and kept by :class:`torchrl.objectives.SoftUpdate`.
        alpha_init: initial (or fixed) temperature α (authors: 0.2).
        learn_alpha: learn α SAC-style towards ``target_entropy``.
        target_entropy: ``"auto"`` (-A) or a float.
        temperature: the sampler's temperature T in exp(Q/T): ``"alpha"`` (the paper's
            target, default) or a float (authors' code: 1.0).
        amortized_particles: samples per state for the amortised-sampler loss (only used when
            the actor has an amortised sampler).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per-sample losses ``[*B]``)
            over the batch, as in TorchRL's losses.

    Outputs of ``forward``: ``loss_qvalue``, ``loss_actor``, ``loss_alpha`` (and
    ``loss_amortized`` when the actor has an amortised sampler), plus detached ``alpha``,
    ``entropy`` (the policy's entropy estimate at the batch states) and the sampler's
    diagnostics at the next states (``svgd/*``, ``actor/*``; see
    :func:`~s2ac_lit.actor.sampler_diagnostics`).

    Examples:
        >>> from s2ac_lit.networks import QEnsemble
        >>> actor = SVGDActor(3, [-1.0], [1.0], num_particles=4, hidden_sizes=(8,))
        >>> loss = S2ACLoss(actor, QEnsemble(3, 1, hidden_sizes=(8,)))
        >>> td = TensorDict({"observation": torch.randn(5, 3), "action": torch.rand(5, 1),
        ...     "next": {"observation": torch.randn(5, 3), "reward": torch.randn(5, 1),
        ...              "done": torch.zeros(5, 1, dtype=torch.bool),
        ...              "terminated": torch.zeros(5, 1, dtype=torch.bool)}}, [5])
        >>> sorted(k for k in loss(td).keys() if k.startswith("loss_"))
        ['loss_actor', 'loss_alpha', 'loss_qvalue']
    """

    def __init__(
        self,
        actor_network: SVGDActor,
        qvalue_network: QEnsemble,
        *,
        alpha_init: float = 0.2,
        learn_alpha: bool = False,
        target_entropy: float | Literal["auto"] = "auto",
        temperature: float | Literal["alpha"] = "alpha",
        amortized_particles: int = 16,
        reduction: Reduction = "mean",
    ) -> None:
        if alpha_init <= 0:
            raise ValueError(f"alpha_init must be > 0, got {alpha_init}")
        if temperature != "alpha" and (isinstance(temperature, str) or temperature <= 0):
            raise ValueError(f"temperature must be 'alpha' or a float > 0, got {temperature!r}")
        super().__init__(
            actor_network,
            qvalue_network,
            amortized_particles=amortized_particles,
            reduction=reduction,
        )
        log_alpha = torch.tensor(math.log(alpha_init))
        if learn_alpha:
            self.log_alpha = torch.nn.Parameter(log_alpha)
        else:
            self.register_buffer("log_alpha", log_alpha)
        if target_entropy == "auto":
            target_entropy = -float(actor_network.action_dim)
        self.register_buffer("target_entropy", torch.tensor(float(target_entropy)))
        self.learn_alpha = learn_alpha
        self.temperature = temperature

    # ------------------------------------------------------------------ helpers
    @property
    def default_out_keys(self) -> tuple[str, ...]:
        keys = ("loss_qvalue", "loss_actor", "loss_alpha", "alpha", "entropy", "q_value")
        keys += ("target_value", *self.actor_network.diagnostic_keys())
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
    def critic_loss(self, tensordict: TensorDictBase) -> tuple[Tensor, Info]:
        """L_Q = mean Σ_k (Q_k(s, a) - y)², y from the sampler at s' and the target critics.

        Returns:
            The loss and detached info: ``q_value``, ``target_value``, ``next_log_prob``
            ``[*B, M]`` and ``td_error`` ``[*B]`` (also written to the ``priority`` key).
        """
        next_obs = tensordict[("next", self.tensor_keys.observation)]
        with torch.no_grad():
            with self.bind(self.qvalue_network_params.detach()):
                nxt = self.actor_network.sample(
                    next_obs, self.qvalue_network, self.sampler_temperature(), diagnostics=True
                )
            with self.bind(self.target_qvalue_network_params):
                next_q = self.qvalue_network(next_obs.unsqueeze(-2), nxt.action).amin(0)
            next_value = next_q.mean(-1) - self.alpha * nxt.log_prob.mean(-1)
            target = self.td0_target(tensordict, next_value)
        loss, info = self.qvalue_regression(tensordict, target)
        return loss, {**info, "next_log_prob": nxt.log_prob, **nxt.diagnostics}

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

    def alpha_loss(
        self, log_prob: Tensor, tensordict: TensorDictBase | None = None
    ) -> tuple[Tensor, Info]:
        """L_α = -log α·(mean_i log π_i + H_target).detach() per state; zero when α is fixed.

        Reduced over states like the other losses (``tensordict`` supplies any loss mask).

        Shapes:
            log_prob: ``[*B, M]`` (the particles' log-densities at each state).
        """
        gap = (log_prob.mean(-1) + self.target_entropy).detach()
        per_state = -self.log_alpha * gap if self.learn_alpha else torch.zeros_like(gap)
        return self._reduce_loss(per_state, tensordict), {}

    def loss_phases(self, tensordict: TensorDictBase) -> Iterator[TensorDictBase]:
        """The losses in two phases: the critic's, then the actor's (and α's, the sampler's).

        A caller may step the critics between the two (``optim.update_order=critic_first``,
        the authors' code): the actor phase is computed only when asked for, at the critics'
        parameters of that moment. Consumed without stepping, the phases are :meth:`forward`.
        """
        loss_q, info_q = self.critic_loss(tensordict)
        yield TensorDict(
            {
                "loss_qvalue": loss_q,
                "q_value": info_q["q_value"],
                "target_value": info_q["target_value"],
                # Namespaced keys ("svgd/...", "actor/...") are the sampler's diagnostics.
                **{key: value for key, value in info_q.items() if "/" in key},
            },
            batch_size=[],
        )
        if self.has_actor_parameters:
            loss_actor, info_actor = self.actor_loss(tensordict)
            log_prob = info_actor["log_prob"]
        else:
            loss_actor = torch.zeros_like(loss_q)
            log_prob = info_q["next_log_prob"]
        loss_alpha, _ = self.alpha_loss(log_prob, tensordict)
        out = {
            "loss_actor": loss_actor,
            "loss_alpha": loss_alpha,
            "alpha": self.alpha,
            "entropy": -log_prob.mean(),
        }
        if self.actor_network.amortized is not None:
            out["loss_amortized"] = self.amortized_loss(tensordict)[0]
        yield TensorDict(out, batch_size=[])

    @dispatch
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """All S2AC losses on one replay batch ``[*B]``; see the class docstring."""
        return merge_phases(self.loss_phases(tensordict))

    def policy(self, *, eval_selection: Selection = "softmax") -> S2ACPolicy:
        """A TorchRL policy module acting with this loss's actor, critics and temperature."""
        return S2ACPolicy(self, eval_selection=eval_selection)


class S2ACPolicy(TensorDictModuleBase):
    """Acts with the S2AC sampler: ``observation`` → ``action``, for collectors and rollouts.

    Under ``ExplorationType.RANDOM`` (collectors' default) it acts with a uniformly random
    particle; otherwise with ``eval_selection``: ``softmax`` (p ∝ exp(Q_i - max Q)), ``max``
    (argmax Q) or ``amortized`` (one forward of the amortised sampler). It works under
    ``torch.no_grad()``: the sampler enables gradients locally for ∇ᵤQ.

    Its parameters are exactly the weights it acts with, shared with the loss: the actor's
    (``actor_params``) and the online critics' (``qvalue_params``) parameters and buffers, and
    ``log_alpha`` when the sampler's temperature is a learned α. So
    ``TensorDict.from_module(policy)`` and a collector's ``update_policy_weights_()`` carry
    them to copies of the policy in other processes or on other devices. A fixed temperature
    is a constant, read from the loss when the policy is built.

    Shapes:
        observation ``[..., O]`` → action ``[..., A]``.
    """

    def __init__(self, loss: S2ACLoss, *, eval_selection: Selection = "softmax") -> None:
        super().__init__()
        if eval_selection not in SELECTIONS:
            raise ValueError(f"unknown eval_selection {eval_selection!r}; allowed: {SELECTIONS}")
        if eval_selection == "amortized" and loss.actor_network.amortized is None:
            raise ValueError("eval_selection='amortized' needs an actor built with amortized=True")
        # As in the loss, the networks run with the parameters below swapped in; only those
        # are registered, so they are all that from_module() and weight updates see.
        self.__dict__["actor_network"] = loss.actor_network
        self.__dict__["qvalue_network"] = loss.qvalue_network
        self.actor_params = loss.actor_network_params
        self.qvalue_params = loss.qvalue_network_params
        # Not a buffer for a fixed temperature: the loss's .to(device) would leave it behind,
        # and a collector then copies a policy whose weights sit on several devices.
        if loss.temperature == "alpha" and loss.learn_alpha:
            self.log_alpha = loss.log_alpha
            self.fixed_temperature = None
        else:
            self.log_alpha = None
            self.fixed_temperature = float(loss.sampler_temperature())
        self.eval_selection = eval_selection
        self.in_keys = [loss.tensor_keys.observation]
        self.out_keys = [loss.tensor_keys.action]

    def sampler_temperature(self) -> Tensor:
        """T in the sampler's target exp(Q/T): α (detached) or the configured float."""
        if self.log_alpha is None:
            return torch.as_tensor(self.fixed_temperature)
        return self.log_alpha.detach().exp()

    def selection_mode(self) -> Selection:
        """``random`` while exploring, the evaluation selection otherwise."""
        if exploration_type() in (None, ExplorationType.RANDOM):
            return "random"
        return self.eval_selection

    def act(self, observation: Tensor, mode: Selection) -> Tensor:
        """One action per state. ``[..., O]`` → ``[..., A]``."""
        actor, critic = self.actor_network, self.qvalue_network
        with using_params(actor, self.actor_params, critic, self.qvalue_params.detach()):
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

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        observation = tensordict[self.in_keys[0]]
        tensordict.set(self.out_keys[0], self.act(observation, self.selection_mode()))
        return tensordict


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
    (:func:`s2ac_lit.analysis.entropy.knn.knn_entropy`).

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
