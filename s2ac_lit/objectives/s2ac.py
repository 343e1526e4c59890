"""S2ACLoss: the Stein Soft Actor-Critic objectives as a TorchRL loss module (S2AC.md §3).

Critic:  y = r + γ(1 - terminated)·[mean_i min_k Q̄_k(s', a'_i) - α·mean_i log π(a'_i|s')],
         L_Q = Σ_k mean_batch (Q_k(s, a) - y)².
Actor:   J = mean_s [α·mean_i log π(a_i|s) - mean_i min_k Q_k(s, a_i)]   (S2AC(φ,θ) only),
         with the graph through u⁰ and all L SVGD steps, critic parameters detached.
α:       L_α = -log α·(mean log π + H_target).detach()   (when α is learned).

Every SVGD energy uses the *online* critics with detached parameters (the policy is the
sampler on the current Q); the critic target evaluates the *target* critics at the sampled
actions. γ lives in the TD(0) value estimator: ``loss.make_value_estimator(gamma=0.99)``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import Tensor
from torchrl.envs.utils import ExplorationType, exploration_type

from s2ac_lit.actor import SELECTIONS, Selection, SVGDActor, gather_particle, select_particle
from s2ac_lit.networks import QEnsemble
from s2ac_lit.objectives.common import Info, SamplerLoss, amortized_svgd_loss


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
    ) -> None:
        super().__init__()
        if alpha_init <= 0:
            raise ValueError(f"alpha_init must be > 0, got {alpha_init}")
        if temperature != "alpha" and (isinstance(temperature, str) or temperature <= 0):
            raise ValueError(f"temperature must be 'alpha' or a float > 0, got {temperature!r}")
        self._convert_networks(actor_network, qvalue_network)
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
        self.amortized_particles = amortized_particles

    # ------------------------------------------------------------------ helpers
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
        """L_Q = Σ_k mean (Q_k(s, a) - y)², y from the sampler at s' and the target critics.

        Returns:
            The loss and detached info: ``q_value``, ``target_value``, ``next_log_prob``
            ``[B, M]`` and ``td_error`` ``[B]`` (also written to the ``priority`` key).
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
        loss = (self.alpha * sample.log_prob.mean(-1) - q.mean(-1)).mean()
        return loss, {"log_prob": sample.log_prob.detach()}

    def alpha_loss(self, log_prob: Tensor) -> tuple[Tensor, Info]:
        """L_α = -log α·(mean log π + H_target).detach(); zero when α is fixed.

        Shapes:
            log_prob: any shape (e.g. ``[B, M]``), averaged.
        """
        if not self.learn_alpha:
            return torch.zeros((), device=log_prob.device), {}
        gap = (log_prob.mean() + self.target_entropy).detach()
        return -self.log_alpha * gap, {}

    def amortized_loss(self, tensordict: TensorDictBase) -> tuple[Tensor, Info]:
        """Amortised SVGD: ∇ψ of this loss is -Σ_i φ(u_i)ᵀ ∂u_i/∂ψ (Soft Q-Learning).

        The samples u_i = g_ψ(s, ξ_i) move along the SVGD direction φ of the current energy.
        """
        obs = tensordict[self.tensor_keys.observation]
        with self.bind(self.qvalue_network_params.detach()):
            u = self.actor_network.amortized_particles(obs, self.amortized_particles)
            phi = self.actor_network.amortized_direction(
                obs, u, self.qvalue_network, self.sampler_temperature()
            )
        loss = amortized_svgd_loss(u, phi)
        return loss, {"amortized_direction_norm": phi.norm(dim=-1).mean()}

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """All S2AC losses on one replay batch ``[B]``; see the class docstring."""
        loss_q, info_q = self.critic_loss(tensordict)
        if self.has_actor_parameters:
            loss_actor, info_actor = self.actor_loss(tensordict)
            log_prob = info_actor["log_prob"]
        else:
            loss_actor = torch.zeros((), device=loss_q.device)
            log_prob = info_q["next_log_prob"]
        loss_alpha, _ = self.alpha_loss(log_prob)
        out = {
            "loss_qvalue": loss_q,
            "loss_actor": loss_actor,
            "loss_alpha": loss_alpha,
            "alpha": self.alpha,
            "entropy": -log_prob.mean(),
            "q_value": info_q["q_value"],
            "target_value": info_q["target_value"],
            # Namespaced keys ("svgd/...", "actor/...") are the sampler's diagnostics.
            **{key: value for key, value in info_q.items() if "/" in key},
        }
        if self.actor_network.amortized is not None:
            out["loss_amortized"] = self.amortized_loss(tensordict)[0]
        return TensorDict(out, batch_size=[])

    def policy(self, *, eval_selection: Selection = "softmax") -> S2ACPolicy:
        """A TorchRL policy module acting with this loss's actor, critics and temperature."""
        return S2ACPolicy(self, eval_selection=eval_selection)


class S2ACPolicy(TensorDictModuleBase):
    """Acts with the S2AC sampler: ``observation`` → ``action``, for collectors and rollouts.

    Under ``ExplorationType.RANDOM`` (collectors' default) it acts with a uniformly random
    particle; otherwise with ``eval_selection``: ``softmax`` (p ∝ exp(Q_i - max Q)), ``max``
    (argmax Q) or ``amortized`` (one forward of the amortised sampler). It works under
    ``torch.no_grad()``: the sampler enables gradients locally for ∇ᵤQ.

    The loss is held outside the module tree (collectors may move or copy policies).

    Shapes:
        observation ``[..., O]`` → action ``[..., A]``.
    """

    def __init__(self, loss: S2ACLoss, *, eval_selection: Selection = "softmax") -> None:
        super().__init__()
        if eval_selection not in SELECTIONS:
            raise ValueError(f"unknown eval_selection {eval_selection!r}; allowed: {SELECTIONS}")
        if eval_selection == "amortized" and loss.actor_network.amortized is None:
            raise ValueError("eval_selection='amortized' needs an actor built with amortized=True")
        self.__dict__["loss"] = loss
        self.eval_selection = eval_selection
        self.in_keys = [loss.tensor_keys.observation]
        self.out_keys = [loss.tensor_keys.action]

    def selection_mode(self) -> Selection:
        """``random`` while exploring, the evaluation selection otherwise."""
        if exploration_type() in (None, ExplorationType.RANDOM):
            return "random"
        return self.eval_selection

    def act(self, observation: Tensor, mode: Selection) -> Tensor:
        """One action per state. ``[..., O]`` → ``[..., A]``."""
        loss = self.loss
        actor, critic = loss.actor_network, loss.qvalue_network
        with loss.bind(loss.qvalue_network_params.detach()):
            if mode == "amortized":
                u = actor.amortized_particles(observation, 1).squeeze(-2)
                return actor.squash(u).detach()
            sample = actor.sample(observation, critic, loss.sampler_temperature())
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
