"""What S2AC's and SQL's losses share: keys, TD(0) targets, parameter binding, amortised SVGD.

Both train twin critics against an SVGD-style sampler on the same replay batches, so they read
the same tensordict keys, build the same TD(0) estimator, and run the actor and critic modules
with the loss's own (online, detached or target) parameters.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tensordict import TensorDictBase, TensorDictParams
from tensordict.utils import NestedKey
from torch import Tensor
from torchrl.objectives import LossModule, ValueEstimators
from torchrl.objectives.utils import dispatch_value_estimator

from s2ac_lit.actor import SVGDActor
from s2ac_lit.networks import QEnsemble

Info = dict[str, Tensor]


def amortized_svgd_loss(u: Tensor, phi: Tensor) -> Tensor:
    """A surrogate whose gradient is -(1/(B·M)) Σ φᵀ ∂u/∂ψ (amortised SVGD).

    See docs/algorithm.md §Amortised sampler.

    ``phi`` must be detached: a gradient step on this loss moves each sample u along φ.

    Shapes:
        u, phi: ``[..., M, A]`` → ``[]``.
    """
    return -(phi * u).sum(-1).mean()


class SamplerLoss(LossModule):
    """Base of the losses whose actor is an :class:`SVGDActor` over a :class:`QEnsemble`.

    Subclasses call ``_convert_networks`` in ``__init__`` and register ``log_alpha``.
    """

    @dataclass
    class _AcceptedKeys:
        """Tensordict keys, changeable with ``set_keys``; TorchRL's default names.

        Attributes:
            observation: state s (and s' under ``"next"``).
            action: action a taken in s.
            value: where the next-state soft value is written for the value estimator.
            reward, done, terminated: read under ``"next"`` by the value estimator.
            priority: where the per-sample TD error is written (for prioritised replay).
        """

        observation: NestedKey = "observation"
        action: NestedKey = "action"
        value: NestedKey = "state_value"
        reward: NestedKey = "reward"
        done: NestedKey = "done"
        terminated: NestedKey = "terminated"
        priority: NestedKey = "td_error"

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

    def _convert_networks(self, actor_network: SVGDActor, qvalue_network: QEnsemble) -> None:
        self.convert_to_functional(actor_network, "actor_network")
        self.convert_to_functional(qvalue_network, "qvalue_network", create_target_params=True)

    @property
    def alpha(self) -> Tensor:
        """Current α, detached."""
        return self.log_alpha.detach().exp()

    @contextmanager
    def bind(self, critic_params: TensorDictBase | None = None) -> Iterator[None]:
        """Run the actor and critic modules with this loss's parameters and buffers.

        The loss's ``*_params`` are the source of truth: ``.to(device)`` moves them (and
        ``SoftUpdate`` writes the targets), while the modules' own buffers would go stale.
        ``critic_params`` picks online (default), detached or target critic parameters.
        """
        critic_params = self.qvalue_network_params if critic_params is None else critic_params
        # preserve_module_state=False: detached parameters stay plain tensors. Otherwise
        # tensordict re-wraps them as fresh nn.Parameters, and every backward through the
        # SVGD steps would compute (and throw away) weight gradients for them.
        with (
            self.actor_network_params.to_module(self.actor_network, preserve_module_state=False),
            critic_params.to_module(self.qvalue_network, preserve_module_state=False),
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
        """y = r + γ(1 - terminated)·V(s') from the TD(0) value estimator.

        γ and the termination handling stay TorchRL's (truncation is not termination).

        Shapes:
            tensordict: ``[B]``; next_value: ``[B]`` → ``[B]``.
        """
        keys = self.tensor_keys
        td = tensordict.empty(recurse=True)
        for key in (keys.reward, keys.done, keys.terminated):
            td.set(("next", key), tensordict[("next", key)])
        td.set(("next", keys.value), next_value.unsqueeze(-1))
        return self.value_estimator.value_estimate(td).squeeze(-1)

    def qvalue_regression(self, tensordict: TensorDictBase, target: Tensor) -> tuple[Tensor, Info]:
        """L_Q = Σ_k mean_batch (Q_k(s, a) - y)², with the TD error written to ``priority``.

        Returns:
            The loss and detached info: ``q_value``, ``target_value``, ``td_error`` ``[B]``.
        """
        keys = self.tensor_keys
        with self.bind():
            q = self.qvalue_network(tensordict[keys.observation], tensordict[keys.action])
        loss = (q - target).pow(2).mean(-1).sum(0)
        td_error = (q.detach() - target).abs().amax(0)
        tensordict.set(keys.priority, td_error)
        return loss, {
            "q_value": q.detach().mean(),
            "target_value": target.mean(),
            "td_error": td_error,
        }
