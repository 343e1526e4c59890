"""CriticLoss: the soft critics of a maximum-entropy actor-critic, for a loss with any actor.

See docs/algorithm.md §Losses and docs/torchrl.md.

What every soft actor-critic loss needs beside its actor, with ``SACLoss``'s keywords and
meaning: K critics Q_k (a :class:`~s2ac_lit.networks.QEnsemble` or TorchRL Q-value modules),
their target copies (``delay_qvalue``, kept by :class:`torchrl.objectives.SoftUpdate`), the
temperature α (``alpha_init``, learned unless ``fixed_alpha``, ``min_alpha``/``max_alpha``,
``target_entropy``), the tensordict keys, the TD target through TorchRL's value estimators
(TD(0), TD(1), TD(λ); n-step data, ``done`` standing in for a missing ``terminated``), and the
critics' regression (``loss_function``, ``reduction``, loss masks, prioritised replay's
importance weights and the TD error written back for it).

A subclass brings the actor. It defines the soft value of the next states
(:meth:`CriticLoss.next_state_value`), the losses of its second phase
(:meth:`CriticLoss.actor_phase`: the actor's, α's) and the entries it writes
(:attr:`CriticLoss.default_out_keys`); ``forward`` and the two-phase ``loss_phases`` (critic
first, for ``optim.update_order=critic_first``) come from here. Loss terms follow TorchRL's
names: ``loss_actor``, ``loss_qvalue``, ``loss_alpha``, with detached ``alpha`` and ``entropy``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.nn import TensorDictModuleBase, dispatch
from tensordict.utils import NestedKey
from torch import Tensor, nn
from torchrl.objectives import LossModule, ValueEstimators
from torchrl.objectives.utils import dispatch_value_estimator, distance_loss

from s2ac_lit.objectives.adapters import as_critic

Info = dict[str, Tensor]
Reduction = Literal["mean", "sum", "none"]
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")
LossFunction = Literal["l2", "smooth_l1", "l1"]
LOSS_FUNCTIONS: tuple[str, ...] = ("l2", "smooth_l1", "l1")
"""The critics' regression per sample, TorchRL's ``distance_loss``: l2 is (Q - y)²."""

SAC_OUT_KEYS = ("loss_actor", "loss_qvalue", "loss_alpha", "alpha", "entropy")
"""``SACLoss``'s outputs; every loss here writes them first, in this order."""

SAC_ONLY_KEYWORDS = {
    "value_network": "the soft value of s' comes from the critics and the actor's samples "
    "(SACLoss without a value network)",
    "delay_value": "there is no value network",
    "gamma": "set γ with make_value_estimator(gamma=...), as for SACLoss",
    "priority_key": "set the key with set_keys(priority=...)",
    "separate_losses": "each loss already reaches only its own parameters (the critics enter "
    "the actor's losses detached)",
    "skip_done_states": "the next-state sampler runs on every state",
    "deactivate_vmap": "the critics are one batched module (a QEnsemble, or K stacked Q-value "
    "modules run by torch.vmap)",
    "scalar_output_mode": "alpha and entropy are always scalars beside the losses",
}
"""``SACLoss`` keywords with no meaning here, and why."""


def refuse_keywords(loss_name: str, given: Mapping[str, Any], reasons: Mapping[str, str]) -> None:
    """Raise TypeError for the keywords ``given`` (caught by ``**kwargs``), naming why each has
    no meaning for ``loss_name`` (``reasons``), or that it is unknown."""
    if not given:
        return
    lines = [
        f"{name}: {reasons[name]}" if name in reasons else f"{name}: not a keyword of {loss_name}"
        for name in given
    ]
    raise TypeError(f"{loss_name} does not accept " + "; ".join(lines))


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
    interrupted: BaseException | None = None
    with (
        actor_params.to_module(actor, preserve_module_state=False),
        critic_params.to_module(critic, preserve_module_state=False),
    ):
        try:
            yield
        except Exception:
            raise
        except BaseException as stop:  # KeyboardInterrupt, the trainer's stop signal
            # tensordict's to_module cannot exit through a BaseException (its __exit__ returns
            # the TensorDict, whose truth value raises a RuntimeError that hides the signal):
            # leave the modules' parameters restored, then let it go on.
            interrupted = stop
    if interrupted is not None:
        raise interrupted


class CriticLoss(LossModule):
    """Base of the soft actor-critic losses: critics, targets, α, keys, TD targets.

    See the module docstring for what a subclass defines. Keywords mean what they mean for
    :class:`torchrl.objectives.SACLoss`.

    Args:
        actor_network: the actor; its parameters become ``actor_network_params`` (the optimiser
            group ``actor``).
        qvalue_network: a :class:`~s2ac_lit.networks.QEnsemble` (∇ₐQ in closed form: the fast
            path), a TorchRL Q-value module (``ValueOperator``: reads an observation and the
            action, writes one value; ∇ₐQ by autograd) copied into ``num_qvalue_nets``
            independently initialised critics, or a list of such modules (one per critic).
        num_qvalue_nets: K; default: the ensemble's own K, the list's length, else 2.
        loss_function: the critics' regression per sample (:data:`LOSS_FUNCTIONS`).
        alpha_init: initial (or fixed) temperature α.
        min_alpha, max_alpha: bounds α is held within (None: unbounded).
        fixed_alpha: keep α at ``alpha_init``; otherwise α is a parameter (group ``alpha``).
        target_entropy: H_target of the α loss (a learned α needs one).
        delay_actor: keep target actor parameters (``target_actor_network_params``).
        delay_qvalue: keep target critic parameters; otherwise the targets are the online
            critics, detached.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch, as in TorchRL.
        use_prioritized_weights: ``"auto"``/True: weight the critic loss by the batch's
            importance weights when present; False: ignore them.
        observation_key, action_key: where the batch holds s and a (TorchRL's defaults; a
            TensorDict actor's own in-key is used when the subclass passes it).

    Raises:
        TypeError: a critic of another kind (naming what was given and what is accepted).
        ValueError: a value out of range, naming it and what is allowed.
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
    SUPPORTED_VALUE_ESTIMATORS = (
        ValueEstimators.TD0,
        ValueEstimators.TD1,
        ValueEstimators.TDLambda,
    )

    actor_network: nn.Module
    qvalue_network: nn.Module
    actor_network_params: TensorDictParams
    qvalue_network_params: TensorDictParams
    target_actor_network_params: TensorDictParams
    target_qvalue_network_params: TensorDictParams
    log_alpha: Tensor
    reduction: Reduction

    def __init__(
        self,
        actor_network: nn.Module,
        qvalue_network: nn.Module | Sequence[TensorDictModuleBase],
        *,
        num_qvalue_nets: int | None = None,
        loss_function: LossFunction = "smooth_l1",
        alpha_init: float = 1.0,
        min_alpha: float | None = None,
        max_alpha: float | None = None,
        fixed_alpha: bool = False,
        target_entropy: float | None = None,
        delay_actor: bool = False,
        delay_qvalue: bool = True,
        reduction: Reduction = "mean",
        use_prioritized_weights: bool | str = "auto",
        observation_key: NestedKey | None = None,
        action_key: NestedKey | None = None,
    ) -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; allowed: {REDUCTIONS}")
        if loss_function not in LOSS_FUNCTIONS:
            raise ValueError(f"unknown loss_function {loss_function!r}; allowed: {LOSS_FUNCTIONS}")
        if use_prioritized_weights not in (True, False, "auto"):
            raise ValueError(
                f"use_prioritized_weights must be True, False or 'auto', got "
                f"{use_prioritized_weights!r}"
            )
        if observation_key is not None:
            self.set_keys(observation=observation_key)
        if action_key is not None:
            self.set_keys(action=action_key)
        self.reduction = reduction
        self.loss_function = loss_function
        self.use_prioritized_weights = use_prioritized_weights
        self.delay_actor = delay_actor
        self.delay_qvalue = delay_qvalue
        critic = as_critic(qvalue_network, num_qvalue_nets, self.tensor_keys.action)
        self.num_qvalue_nets = critic.num_critics
        self.convert_to_functional(actor_network, "actor_network", create_target_params=delay_actor)
        self.convert_to_functional(critic, "qvalue_network", create_target_params=delay_qvalue)
        self._init_alpha(alpha_init, min_alpha, max_alpha, fixed_alpha, target_entropy)

    def _init_alpha(
        self,
        alpha_init: float,
        min_alpha: float | None,
        max_alpha: float | None,
        fixed_alpha: bool,
        target_entropy: float | None,
    ) -> None:
        if alpha_init <= 0:
            raise ValueError(f"alpha_init must be > 0, got {alpha_init}")
        for name, bound in (("min_alpha", min_alpha), ("max_alpha", max_alpha)):
            if bound is not None and bound <= 0:
                raise ValueError(f"{name} must be > 0 (or None), got {bound}")
        if min_alpha is not None and max_alpha is not None and min_alpha > max_alpha:
            raise ValueError(f"need min_alpha <= max_alpha, got {min_alpha} and {max_alpha}")
        if not fixed_alpha and target_entropy is None:
            raise ValueError("a learned α needs a target entropy")
        log_alpha = torch.tensor(math.log(alpha_init))
        if fixed_alpha:
            self.register_buffer("log_alpha", log_alpha)
        else:
            self.log_alpha = nn.Parameter(log_alpha)
        self.fixed_alpha = fixed_alpha
        # Bounds and the target are buffers only when set: the state dict of a loss built
        # without them stays what checkpoints written before they existed hold.
        for name, bound in (("min_log_alpha", min_alpha), ("max_log_alpha", max_alpha)):
            if bound is None:
                setattr(self, name, None)
            else:
                self.register_buffer(name, torch.tensor(math.log(bound)))
        if target_entropy is not None:
            self.register_buffer("target_entropy", torch.tensor(float(target_entropy)))

    # ------------------------------------------------------------------ keys
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
        """Every entry ``forward`` writes: :data:`SAC_OUT_KEYS`, then the loss's own."""
        raise NotImplementedError

    # ------------------------------------------------------------------ α
    @property
    def alpha(self) -> Tensor:
        """Current α, detached (log α held within ``min_alpha``/``max_alpha``, as SACLoss)."""
        if self.min_log_alpha is not None or self.max_log_alpha is not None:
            self.log_alpha.data.clamp_(self.min_log_alpha, self.max_log_alpha)
        return self.log_alpha.detach().exp()

    def alpha_loss(
        self, log_prob: Tensor, tensordict: TensorDictBase | None = None
    ) -> tuple[Tensor, Info]:
        """L_α = -log α·(mean_i log π_i + H_target).detach() per state; zero when α is fixed.

        Reduced over states like the other losses (``tensordict`` supplies any loss mask).

        Shapes:
            log_prob: ``[*B, N]`` (N samples' log-densities at each state).
        """
        if self.fixed_alpha:
            per_state = torch.zeros_like(log_prob.mean(-1))
        else:
            gap = (log_prob.mean(-1) + self.target_entropy).detach()
            per_state = -self.log_alpha * gap
        return self._reduce_loss(per_state, tensordict), {}

    # ------------------------------------------------------------------ networks
    @contextmanager
    def bind(
        self,
        critic_params: TensorDictBase | None = None,
        *,
        actor_params: TensorDictBase | None = None,
    ) -> Iterator[None]:
        """Run the actor and critic modules with this loss's parameters and buffers.

        The loss's ``*_params`` are the source of truth: ``.to(device)`` moves them (and
        ``SoftUpdate`` writes the targets), while the modules' own buffers would go stale.
        ``critic_params`` picks online (default), detached or target critic parameters;
        ``actor_params`` online (default) or target actor parameters.
        """
        critic_params = self.qvalue_network_params if critic_params is None else critic_params
        actor_params = self.actor_network_params if actor_params is None else actor_params
        with using_params(self.actor_network, actor_params, self.qvalue_network, critic_params):
            yield

    # ------------------------------------------------------------------ targets
    def make_value_estimator(self, value_type: ValueEstimators | None = None, **hyperparams):
        """TD(0) (default), TD(1) or TD(λ), as for SACLoss; hyperparameters such as ``gamma``
        and ``lmbda`` go to TorchRL's estimator.

        TD(1) and TD(λ) combine the transitions along the batch's last dimension (TorchRL's
        time dimension): give them trajectories (a ``SliceSampler`` batch reshaped to
        ``[slices, T]``), not independent transitions.

        Raises:
            NotImplementedError: another estimator (GAE, V-trace: on-policy advantages).
        """
        value_type, hp = self._prepare_value_estimator_kwargs(value_type, **hyperparams)
        if value_type is None:
            return self
        dispatch_value_estimator(
            self,
            value_type,
            supported=self.SUPPORTED_VALUE_ESTIMATORS,
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

    def td_target(self, tensordict: TensorDictBase, next_value: Tensor) -> Tensor:
        """The critics' target y from the value estimator, given V(s') of every transition.

        TD(0): y = r + γⁿ(1 - terminated)·V(s'). The estimator reads the batch itself, so γ,
        λ, the termination handling (truncation is not termination; ``done`` when
        ``terminated`` is absent) and n-step data (γⁿ from ``steps_to_next_obs``, written by
        ``MultiStepTransform``) stay TorchRL's.

        Shapes:
            tensordict: ``[*B]``; next_value: ``[*B]`` → ``[*B]``.
        """
        estimate = self.value_estimator.value_estimate(
            tensordict, next_value=next_value.unsqueeze(-1)
        )
        return estimate.squeeze(-1)

    def next_state_value(self, tensordict: TensorDictBase) -> tuple[Tensor, Info]:
        """V(s') under the target critics, without a graph: defined by each loss.

        Returns:
            ``[*B]`` values and detached info (the loss's diagnostics of the next states).
        """
        raise NotImplementedError

    def qvalue_regression(self, tensordict: TensorDictBase, target: Tensor) -> tuple[Tensor, Info]:
        """L_Q = reduce_batch Σ_k ℓ(Q_k(s, a), y), with the TD error written to ``priority``.

        ℓ is ``loss_function`` ((Q - y)² for ``"l2"``). The reduction is ``self.reduction``
        over the valid (unmasked) samples, weighted by prioritised replay's importance
        weights when the batch carries them.

        Returns:
            The loss and detached info: ``q_value``, ``target_value``, ``td_error`` ``[*B]``.
        """
        keys = self.tensor_keys
        with self.bind():
            q = self.qvalue_network(tensordict[keys.observation], tensordict[keys.action])
        per_sample = distance_loss(q, target.expand_as(q), self.loss_function).sum(0)
        weights = self._maybe_get_priority_weight(tensordict)
        loss = self._reduce_loss(per_sample, tensordict, weights=weights)
        td_error = (q.detach() - target).abs().amax(0)
        tensordict.set(keys.priority, td_error)
        return loss, {
            "q_value": q.detach().mean(),
            "target_value": target.mean(),
            "td_error": td_error,
        }

    def critic_loss(self, tensordict: TensorDictBase) -> tuple[Tensor, Info]:
        """L_Q against y = TD target of :meth:`next_state_value`.

        Returns:
            The loss and detached info: ``q_value``, ``target_value``, ``td_error`` ``[*B]``
            (also written to the ``priority`` key) and the next-state info.
        """
        with torch.no_grad():
            next_value, info = self.next_state_value(tensordict)
            target = self.td_target(tensordict, next_value)
        loss, info_q = self.qvalue_regression(tensordict, target)
        return loss, {**info, **info_q}

    # ------------------------------------------------------------------ phases
    def actor_phase(self, tensordict: TensorDictBase, critic_info: Info) -> dict[str, Tensor]:
        """The second phase's entries: ``loss_actor``, ``loss_alpha``, ``alpha``, ``entropy``
        and the loss's own; defined by each loss (``critic_info``: :meth:`critic_loss`'s)."""
        raise NotImplementedError

    def loss_phases(self, tensordict: TensorDictBase) -> Iterator[TensorDictBase]:
        """The losses in two phases: the critics', then the actor's (and α's).

        A caller may step the critics between the two (``optim.update_order=critic_first``,
        the authors' code): the actor phase is computed only when asked for, at the critics'
        parameters of that moment. Consumed without stepping, the phases are :meth:`forward`.
        """
        loss_q, info = self.critic_loss(tensordict)
        outputs = set(self.default_out_keys)
        critic = {key: value for key, value in info.items() if key in outputs}
        yield TensorDict({"loss_qvalue": loss_q, **critic}, batch_size=[])
        yield TensorDict(self.actor_phase(tensordict, info), batch_size=[])

    @dispatch
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """All losses on one replay batch ``[*B]``: :data:`SAC_OUT_KEYS` and the loss's own."""
        return merge_phases(self.loss_phases(tensordict))
