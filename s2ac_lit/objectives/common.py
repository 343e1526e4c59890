"""What S2AC's and SQL's losses share: keys, TD(0) targets, parameter binding, amortised SVGD.

Both may train an amortised sampler g_ψ(s, ξ) by amortised SVGD (S2AC optionally, SQL always);
its loss is ``loss_amortized`` in both (:meth:`SamplerLoss.amortized_loss`).

Both train twin critics against an SVGD-style sampler on the same replay batches, so they read
the same tensordict keys, build the same TD(0) estimator, and run the actor and critic modules
with the loss's own (online, detached or target) parameters.

They follow TorchRL's loss conventions as ``SACLoss`` does: any batch shape ``[*B]``, a
``reduction`` over the batch (``"mean"``, ``"sum"``, ``"none"``), loss masks and prioritised
replay's importance weights applied by ``LossModule._reduce_loss``, n-step data (the value
estimator reads ``steps_to_next_obs``), ``done`` standing in for a missing ``terminated``, and
keyword calls through ``@dispatch`` (``in_keys``/``out_keys``, ``select_out_keys``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, NamedTuple

from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.utils import NestedKey
from torch import Tensor, nn
from torchrl.objectives import LossModule, ValueEstimators
from torchrl.objectives.utils import dispatch_value_estimator

from s2ac_lit.actor import SVGDActor
from s2ac_lit.networks import QEnsemble

Info = dict[str, Tensor]


class EntropyEstimate(NamedTuple):
    """Entropy of π(·|s) at each probe state and the actions it was estimated from.

    Attributes:
        entropy: ``[P]`` -mean log π(a|s) over the samples; NaN where π has no density.
        actions: ``[P, N, A]`` the samples (for
            :func:`s2ac_lit.analysis.entropy.knn.knn_entropy`).
    """

    entropy: Tensor
    actions: Tensor


def check_probe_observations(observations: Tensor) -> None:
    if observations.dim() != 2:
        raise RuntimeError(
            f"expected probe observations of shape [P, O], got {tuple(observations.shape)}"
        )


Reduction = Literal["mean", "sum", "none"]
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")


def amortized_svgd_loss(u: Tensor, phi: Tensor) -> Tensor:
    """Per state, a surrogate whose gradient is -(1/M) Σ_i φ_iᵀ ∂u_i/∂ψ (amortised SVGD).

    See docs/algorithm.md §Amortised sampler.

    ``phi`` must be detached: a gradient step on this loss moves each sample u along φ. Its
    batch mean has gradient -(1/(B·M)) Σ φᵀ ∂u/∂ψ.

    Shapes:
        u, phi: ``[..., M, A]`` → ``[...]``.
    """
    return -(phi * u).sum(-1).mean(-1)


def merge_phases(phases: Iterable[TensorDictBase]) -> TensorDictBase:
    """One output from a loss's phases (``loss_phases``), all computed at the same parameters."""
    out = TensorDict({}, batch_size=[])
    for phase in phases:
        out.update(phase)
    return out


@contextmanager
def using_params(
    actor: nn.Module,
    actor_params: TensorDictBase,
    critic: nn.Module,
    critic_params: TensorDictBase,
) -> Iterator[None]:
    """Run ``actor`` and ``critic`` with the given parameters (and buffers).

    ``preserve_module_state=False``: detached parameters stay plain tensors. Otherwise
    tensordict re-wraps them as fresh nn.Parameters, and every backward through the SVGD
    steps would compute (and throw away) weight gradients for them.
    """
    with (
        actor_params.to_module(actor, preserve_module_state=False),
        critic_params.to_module(critic, preserve_module_state=False),
    ):
        yield


class SamplerLoss(LossModule):
    """Base of the losses whose actor is an :class:`SVGDActor` over a :class:`QEnsemble`.

    Subclasses register ``log_alpha`` and define :meth:`sampler_temperature`.

    Args:
        actor_network, qvalue_network: the actor and the critics; target critic parameters
            are made here and kept by :class:`torchrl.objectives.SoftUpdate`.
        amortized_particles: M, samples per state of :meth:`amortized_loss`.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch, as in TorchRL.
    """

    @dataclass
    class _AcceptedKeys:
        """Tensordict keys, changeable with ``set_keys``; TorchRL's default names.

        Attributes:
            observation: state s (and s' under ``"next"``).
            action: action a taken in s.
            value: the value estimator's next-value key (the losses hand it V(s') directly).
            reward, done, terminated: read under ``"next"`` by the value estimator
                (``done`` stands in for a missing ``terminated``, as in TorchRL).
            priority: where the per-sample TD error is written (for prioritised replay).
            priority_weight: prioritised replay's importance weights; when present they
                weight the critic loss (the TD regression whose errors set the priorities).
        """

        observation: NestedKey = "observation"
        action: NestedKey = "action"
        value: NestedKey = "state_value"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"
        priority: NestedKey = "td_error"
        priority_weight: NestedKey = "priority_weight"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys
    default_value_estimator = ValueEstimators.TD0

    actor_network: SVGDActor
    qvalue_network: QEnsemble
    actor_network_params: TensorDictParams
    qvalue_network_params: TensorDictParams
    target_actor_network_params: TensorDictParams
    target_qvalue_network_params: TensorDictParams
    log_alpha: Tensor
    reduction: Reduction

    def __init__(
        self,
        actor_network: SVGDActor,
        qvalue_network: QEnsemble,
        *,
        amortized_particles: int,
        reduction: Reduction,
    ) -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; allowed: {REDUCTIONS}")
        if amortized_particles < 2:
            raise ValueError(
                f"amortized_particles must be >= 2 (the SVGD kernel needs pairs), got "
                f"{amortized_particles}"
            )
        self.reduction = reduction
        self.amortized_particles = amortized_particles
        self.convert_to_functional(actor_network, "actor_network")
        self.convert_to_functional(qvalue_network, "qvalue_network", create_target_params=True)

    @property
    def in_keys(self) -> list[NestedKey]:
        """The entries ``forward`` reads (keyword names join nested keys with ``_``)."""
        keys = self.tensor_keys
        return [
            keys.observation,
            keys.action,
            ("next", keys.observation),
            ("next", keys.reward),
            ("next", keys.done),
            ("next", keys.terminated),
        ]

    @property
    def out_keys(self) -> list[NestedKey]:
        """The entries of ``forward``'s output, or those kept by ``select_out_keys``."""
        if getattr(self, "_out_keys", None) is None:
            return list(self.default_out_keys)
        return self._out_keys

    @out_keys.setter
    def out_keys(self, values: list[NestedKey]) -> None:
        self._out_keys = list(values)

    @property
    def default_out_keys(self) -> tuple[str, ...]:
        """Every entry ``forward`` writes; defined by each loss."""
        raise NotImplementedError

    @property
    def alpha(self) -> Tensor:
        """Current α, detached."""
        return self.log_alpha.detach().exp()

    def sampler_temperature(self) -> Tensor:
        """T in the sampler's target exp(Q/T)."""
        raise NotImplementedError

    def amortized_loss(self, tensordict: TensorDictBase) -> tuple[Tensor, Info]:
        """Amortised SVGD: ∇_ψ of this loss is -(1/(B·M)) Σ φ(u)ᵀ ∂u/∂ψ, critics untouched.

        See docs/algorithm.md §Amortised sampler. The samples u = g_ψ(s, ξ) move along the
        SVGD direction φ of the current energy f(u) = min_k Q_k(s, squash(u))/T (online
        critics, detached parameters).

        Returns:
            The loss and detached info: ``amortized_direction_norm``.
        """
        obs = tensordict[self.tensor_keys.observation]
        actor = self.actor_network
        with self.bind(self.qvalue_network_params.detach()):
            u = actor.sample_amortized(obs, self.amortized_particles)
            phi = actor.amortized_direction(obs, u, self.qvalue_network, self.sampler_temperature())
        loss = self._reduce_loss(amortized_svgd_loss(u, phi), tensordict)
        return loss, {"amortized_direction_norm": phi.norm(dim=-1).mean()}

    @contextmanager
    def bind(self, critic_params: TensorDictBase | None = None) -> Iterator[None]:
        """Run the actor and critic modules with this loss's parameters and buffers.

        The loss's ``*_params`` are the source of truth: ``.to(device)`` moves them (and
        ``SoftUpdate`` writes the targets), while the modules' own buffers would go stale.
        ``critic_params`` picks online (default), detached or target critic parameters.
        """
        critic_params = self.qvalue_network_params if critic_params is None else critic_params
        with using_params(
            self.actor_network, self.actor_network_params, self.qvalue_network, critic_params
        ):
            yield

    def make_value_estimator(self, value_type: ValueEstimators | None = None, **hyperparams):
        """Build the TD(0) estimator (the only one that fits one-step replay batches)."""
        value_type, hp = self._prepare_value_estimator_kwargs(value_type, **hyperparams)
        if value_type is None:
            return self
        dispatch_value_estimator(
            self,
            value_type,
            supported={ValueEstimators.TD0},
            tensor_keys={
                "value": self.tensor_keys.value,
                "reward": self.tensor_keys.reward,
                "done": self.tensor_keys.done,
                "terminated": self.tensor_keys.terminated,
            },
            value_network=None,
            **hp,
        )
        return self

    def td0_target(self, tensordict: TensorDictBase, next_value: Tensor) -> Tensor:
        """y = r + γⁿ(1 - terminated)·V(s') from the TD(0) value estimator.

        The estimator reads the batch itself, so γ, the termination handling (truncation is
        not termination; ``done`` when ``terminated`` is absent) and n-step data (γⁿ from
        ``steps_to_next_obs``, written by ``MultiStepTransform``) stay TorchRL's.

        Shapes:
            tensordict: ``[*B]``; next_value: ``[*B]`` → ``[*B]``.
        """
        estimate = self.value_estimator.value_estimate(
            tensordict, next_value=next_value.unsqueeze(-1)
        )
        return estimate.squeeze(-1)

    def qvalue_regression(self, tensordict: TensorDictBase, target: Tensor) -> tuple[Tensor, Info]:
        """L_Q = reduce_batch Σ_k (Q_k(s, a) - y)², with the TD error written to ``priority``.

        The reduction is ``self.reduction`` over the valid (unmasked) samples, weighted by
        prioritised replay's importance weights when the batch carries them.

        Returns:
            The loss and detached info: ``q_value``, ``target_value``, ``td_error`` ``[*B]``.
        """
        keys = self.tensor_keys
        with self.bind():
            q = self.qvalue_network(tensordict[keys.observation], tensordict[keys.action])
        per_sample = (q - target).pow(2).sum(0)
        weights = self._maybe_get_priority_weight(tensordict)
        loss = self._reduce_loss(per_sample, tensordict, weights=weights)
        td_error = (q.detach() - target).abs().amax(0)
        tensordict.set(keys.priority, td_error)
        return loss, {
            "q_value": q.detach().mean(),
            "target_value": target.mean(),
            "td_error": td_error,
        }
