"""What S2AC's and SQL's losses share beyond the critics: the SVGD actor, its policy, entropy.

Both are :class:`~s2ac_lit.objectives.critic.CriticLoss` subclasses whose actor is an
:class:`SVGDActor`, sampling from exp(Q/T). :class:`SamplerLoss` keeps what is theirs: the
sampler's temperature T and the amortised sampler's loss (``loss_amortized`` for S2AC's optional
sampler, ``loss_actor`` for SQL's). :class:`SamplerPolicy` is the acting policy both hand out
(``loss.policy()``). The entropy probes of each loss (``EntropyEstimate``) live beside it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import Tensor, nn
from torchrl.envs.utils import ExplorationType, exploration_type

from s2ac_lit.actor import SELECTIONS, Selection, SVGDActor, tanh_log_abs_det
from s2ac_lit.knn import knn_entropy
from s2ac_lit.objectives.critic import CriticLoss, Info, merge_phases, using_params

# merge_phases is also this module's for the training update (s2ac_lit/update.py).
__all__ = [
    "EntropyEstimate",
    "Info",
    "SamplerLoss",
    "SamplerPolicy",
    "amortized_svgd_loss",
    "check_probe_observations",
    "merge_phases",
    "squashed_knn_entropy",
]


class EntropyEstimate(NamedTuple):
    """Entropy of π(·|s) at each probe state and the actions it was estimated from.

    Attributes:
        entropy: ``[P]`` -mean log π(a|s) over the samples; NaN where π has no density.
        actions: ``[P, N, A]`` the samples (for :func:`knn_entropy`).
    """

    entropy: Tensor
    actions: Tensor


def check_probe_observations(observations: Tensor) -> None:
    if observations.dim() != 2:
        raise RuntimeError(
            f"expected probe observations of shape [P, O], got {tuple(observations.shape)}"
        )


def squashed_knn_entropy(u: Tensor, action_scale: Tensor) -> Tensor:
    """Entropy of a = loc + scale·tanh(u) from samples u: H(a) = H(u) + E log|det ∂a/∂u|.

    H(u) is the k = 1 nearest-neighbour estimate (:func:`knn_entropy`) over the N samples of
    each state, taken before the squash, where samples never tie at the box edge; the squash
    adds its mean log-Jacobian exactly. With few samples per state (SQL's
    ``amortized_particles``) it is a monitoring estimate, not a measurement.

    Shapes:
        u: ``[..., N, A]``; action_scale: ``[A]`` → ``[...]``.
    """
    return knn_entropy(u, k=1) + tanh_log_abs_det(u, action_scale).mean(-1)


def amortized_svgd_loss(u: Tensor, phi: Tensor) -> Tensor:
    """Per state, a surrogate whose gradient is -(1/M) Σ_i φ_iᵀ ∂u_i/∂ψ (amortised SVGD).

    See docs/algorithm.md §Amortised sampler.

    ``phi`` must be detached: a gradient step on this loss moves each sample u along φ. Its
    batch mean has gradient -(1/(B·M)) Σ φᵀ ∂u/∂ψ.

    Shapes:
        u, phi: ``[..., M, A]`` → ``[...]``.
    """
    return -(phi * u).sum(-1).mean(-1)


class SamplerLoss(CriticLoss):
    """Base of the losses whose actor is an :class:`SVGDActor` sampling from exp(Q/T).

    What is theirs beyond :class:`~s2ac_lit.objectives.critic.CriticLoss`: the sampler's
    temperature T (:meth:`sampler_temperature`) and the amortised sampler's loss
    (:meth:`amortized_loss`).

    Args:
        actor_network: the :class:`SVGDActor` (its critic comes from this loss).
        qvalue_network: the critics (see ``CriticLoss``).
        amortized_particles: M, samples per state of :meth:`amortized_loss`.
        **critic_options: ``CriticLoss``'s keywords.
    """

    actor_network: SVGDActor

    def __init__(
        self,
        actor_network: SVGDActor,
        qvalue_network: nn.Module | Sequence[nn.Module],
        *,
        amortized_particles: int,
        **critic_options: Any,
    ) -> None:
        if amortized_particles < 2:
            raise ValueError(
                f"amortized_particles must be >= 2 (the SVGD kernel needs pairs), got "
                f"{amortized_particles}"
            )
        super().__init__(actor_network, qvalue_network, **critic_options)
        self.amortized_particles = amortized_particles

    def sampler_temperature(self) -> Tensor:
        """T in the sampler's target exp(Q/T)."""
        raise NotImplementedError

    def amortized_loss(self, tensordict: TensorDictBase) -> tuple[Tensor, Info]:
        """Amortised SVGD: ∇_ψ of this loss is -(1/(B·M)) Σ φ(u)ᵀ ∂u/∂ψ, critics untouched.

        See docs/algorithm.md §Amortised sampler. The samples u = g_ψ(s, ξ) move along the
        SVGD direction φ of the current energy f(u) = min_k Q_k(s, squash(u))/T (online
        critics, detached parameters).

        Returns:
            The loss and detached info: ``amortized_direction_norm``, and ``samples`` (u,
            ``[*B, M, A]``).
        """
        obs = tensordict[self.tensor_keys.observation]
        actor = self.actor_network
        with self.bind(self.qvalue_network_params.detach()):
            u = actor.sample_amortized(obs, self.amortized_particles)
            phi = actor.amortized_direction(obs, u, self.qvalue_network, self.sampler_temperature())
        loss = self._reduce_loss(amortized_svgd_loss(u, phi), tensordict)
        return loss, {"amortized_direction_norm": phi.norm(dim=-1).mean(), "samples": u.detach()}


def check_selection(selection: str, actor: SVGDActor) -> None:
    """Raise ValueError unless ``selection`` is one of :data:`SELECTIONS` that ``actor`` has."""
    if selection not in SELECTIONS:
        raise ValueError(f"unknown eval_selection {selection!r}; allowed: {SELECTIONS}")
    if selection == "amortized" and actor.amortized is None:
        raise ValueError("eval_selection='amortized' needs an actor built with amortized=True")


class SamplerPolicy(TensorDictModuleBase):
    """The acting policy of a :class:`SamplerLoss`: ``observation`` → ``action``.

    For collectors (``ExplorationType.RANDOM``, their default) and for evaluation rollouts
    (``DETERMINISTIC``, with ``eval_selection``). Each loss's policy defines :meth:`act`.

    Its parameters are exactly the weights it acts with, shared with the loss: the actor's
    (``actor_params``) and the online critics' (``qvalue_params``) parameters and buffers. So
    ``TensorDict.from_module(policy)`` and a collector's ``update_policy_weights_()`` carry
    them to copies of the policy in other processes or on other devices.

    Shapes:
        observation ``[..., O]`` → action ``[..., A]``.
    """

    def __init__(self, loss: SamplerLoss, *, eval_selection: Selection) -> None:
        super().__init__()
        check_selection(eval_selection, loss.actor_network)
        # As in the loss, the networks run with the parameters below swapped in; only those
        # are registered, so they are all that from_module() and weight updates see.
        self.__dict__["actor_network"] = loss.actor_network
        self.__dict__["qvalue_network"] = loss.qvalue_network
        self.actor_params = loss.actor_network_params
        self.qvalue_params = loss.qvalue_network_params
        self.eval_selection: Selection = eval_selection
        self.in_keys = [loss.tensor_keys.observation]
        self.out_keys = [loss.tensor_keys.action]

    @staticmethod
    def exploring() -> bool:
        """Whether the current exploration type asks for a random action (collectors)."""
        return exploration_type() in (None, ExplorationType.RANDOM)

    @contextmanager
    def bind(self) -> Iterator[None]:
        """Run the networks with this policy's weights (critics detached)."""
        with using_params(
            self.actor_network, self.actor_params, self.qvalue_network, self.qvalue_params.detach()
        ):
            yield

    def act(self, observation: Tensor) -> Tensor:
        """One action per state. ``[..., O]`` → ``[..., A]``."""
        raise NotImplementedError

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        tensordict.set(self.out_keys[0], self.act(tensordict.get(self.in_keys[0])))
        return tensordict
