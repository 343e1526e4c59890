"""The networks a TorchRL SAC user already has, as the losses' networks.

See docs/torchrl.md.

- Critics: a TorchRL Q-value module (``ValueOperator(MLP)``: reads an observation and the
  action, writes one value), or a list of them, becomes K critics with stacked parameters
  (:class:`ValueOperatorCritics`), called like :class:`~s2ac_lit.networks.QEnsemble`:
  (observation ``[..., O]``, action ``[..., A]``) → ``[K, ...]``. ∇ₐQ then comes from autograd;
  the ``QEnsemble`` computes it in closed form and stays the fast path.
- Actors: a module that writes ``loc`` and ``scale`` (a ``ProbabilisticActor`` or any
  TensorDictModule) becomes a Gaussian s → (μ(s), σ(s)) (:class:`TensorDictGaussian`): S2AC's
  initial distribution N(μθ, σθ), or SQL's amortised sampler u = μ(s) + σ(s)·ξ
  (:class:`GaussianSampler`).

Anything else is refused at construction with a ``TypeError`` naming what was given and what
is accepted. Modules with lazy parameters must be run once first (TorchRL's SAC example does,
on ``env.fake_tensordict()``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import NamedTuple

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import ProbabilisticTensorDictSequential, TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import Tensor, nn
from torchrl.data import Bounded, TensorSpec

from s2ac_lit.networks import QEnsemble, ResettableModule

ACCEPTED_CRITICS = (
    "a QEnsemble, a TorchRL Q-value module (e.g. ValueOperator(MLP, in_keys=['observation', "
    "'action'])) or a list of them"
)
ACCEPTED_GAUSSIANS = (
    "a TensorDictModule that writes 'loc' and 'scale' (e.g. TorchRL's ProbabilisticActor over "
    "a TanhNormal)"
)


def _describe(value: object) -> str:
    return type(value).__name__


def check_initialised(module: nn.Module, what: str) -> None:
    """Raise ValueError if ``module`` still has lazy (uninitialised) parameters."""
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in module.parameters()):
        raise ValueError(
            f"the {what} has uninitialised (lazy) parameters: run it once first, e.g. on "
            "env.fake_tensordict() as TorchRL's SAC example does"
        )


class TensorDictGaussian(nn.Module):
    """μ(s), σ(s) from a TensorDict module that writes them under ``loc`` and ``scale``.

    A ``ProbabilisticActor`` runs only its deterministic part (no action is drawn); its
    distribution class is not used. Over a ``TanhNormal`` (``tanh_loc=False``), loc and scale
    are the mean and standard deviation of the pre-squash Gaussian, which is exactly S2AC's
    initial distribution before the same squash onto the action box.

    Shapes:
        observation ``[..., O]`` → μ, σ ``[..., A]``.
    """

    def __init__(
        self,
        module: TensorDictModuleBase,
        observation_key: NestedKey,
        loc_key: NestedKey,
        scale_key: NestedKey,
    ) -> None:
        super().__init__()
        self.module = module
        self.observation_key = observation_key
        self.loc_key = loc_key
        self.scale_key = scale_key

    def forward(self, observation: Tensor) -> tuple[Tensor, Tensor]:
        td = TensorDict({self.observation_key: observation}, batch_size=observation.shape[:-1])
        out = self.module(td)
        return out.get(self.loc_key), out.get(self.scale_key)


class GaussianSampler(nn.Module):
    """u = μ(s) + σ(s)·ξ: a Gaussian as an amortised sampler g(s, ξ).

    Shapes:
        observation ``[..., O]``, noise ``[..., M, A]`` → u ``[..., M, A]``.
    """

    def __init__(self, gaussian: TensorDictGaussian) -> None:
        super().__init__()
        self.gaussian = gaussian

    def forward(self, observation: Tensor, noise: Tensor) -> Tensor:
        mean, std = self.gaussian(observation)
        return mean.unsqueeze(-2) + std.unsqueeze(-2) * noise


class GaussianActor(NamedTuple):
    """What a TensorDict actor gives the losses: its Gaussian, keys and action box."""

    gaussian: TensorDictGaussian
    observation_key: NestedKey
    action_key: NestedKey
    low: Tensor
    high: Tensor


def _action_box(
    actor: TensorDictModuleBase, action_key: NestedKey, action_spec: TensorSpec | None
) -> tuple[Tensor, Tensor]:
    spec = action_spec
    if spec is None:
        actor_spec = getattr(actor, "spec", None)
        spec = actor_spec.get(action_key, None) if actor_spec is not None else None
    if not isinstance(spec, Bounded):
        raise ValueError(
            f"the actions must lie in a box: give action_spec=<a Bounded spec> (the actor's "
            f"spec for {action_key!r} is {type(spec).__name__})"
        )
    low = torch.as_tensor(spec.space.low, dtype=torch.float32).detach().clone().reshape(-1)
    high = torch.as_tensor(spec.space.high, dtype=torch.float32).detach().clone().reshape(-1)
    return low, high


def as_gaussian_actor(
    actor: nn.Module, action_spec: TensorSpec | None, loss_name: str, accepted: str
) -> GaussianActor:
    """A TensorDict actor that writes ``loc`` and ``scale``, as a :class:`GaussianActor`.

    The observation key is the actor's one in-key; the action key its sampled key (a
    ``ProbabilisticActor``) or ``"action"``; the box comes from ``action_spec``, else from the
    actor's spec.

    Raises:
        TypeError: ``actor`` is no such module (naming ``accepted``, all that ``loss_name``
            accepts).
        ValueError: lazy parameters, several in-keys, or no bounded action spec.
    """
    if not isinstance(actor, TensorDictModuleBase):
        raise TypeError(f"{loss_name} got actor_network={_describe(actor)}; accepted: {accepted}")
    if isinstance(actor, ProbabilisticTensorDictSequential):
        dist_module = list(actor._module_iter())[-1]
        params = dict(zip(dist_module.dist_keys, dist_module.in_keys, strict=True))
        module = actor.det_part
        sampled = actor.dist_sample_keys
        action_key = sampled[0] if len(sampled) == 1 else "action"
    else:
        params = {key: key for key in actor.out_keys if key in ("loc", "scale")}
        module, action_key = actor, "action"
    if "loc" not in params or "scale" not in params:
        raise TypeError(
            f"{loss_name} got actor_network={_describe(actor)} writing {list(actor.out_keys)}; "
            f"accepted: {accepted}"
        )
    in_keys = list(module.in_keys)
    if len(in_keys) != 1:
        raise ValueError(
            f"{loss_name}'s actor must read one observation entry, {_describe(actor)} reads "
            f"{in_keys}"
        )
    check_initialised(actor, "actor_network")
    low, high = _action_box(actor, action_key, action_spec)
    gaussian = TensorDictGaussian(module, in_keys[0], params["loc"], params["scale"])
    return GaussianActor(gaussian, in_keys[0], action_key, low, high)


class ValueOperatorCritics(ResettableModule):
    """K TorchRL Q-value modules with stacked parameters, run by ``torch.vmap``.

    Holds one copy of the module whose parameters (and buffers) are the K critics' stacked
    along a leading dimension, so the loss's ``qvalue_network_params`` is one ``[K]``
    tensordict, as ``SACLoss``'s. Whatever parameters are swapped into the module (online,
    detached, target) are the ones evaluated.

    Shapes:
        observation ``[..., O]``, action ``[..., A]`` (broadcastable batch) → ``[K, ...]``.
    """

    def __init__(self, modules: Sequence[TensorDictModuleBase], action_key: NestedKey) -> None:
        super().__init__()
        first = modules[0]
        in_keys = list(first.in_keys)
        if len(in_keys) != 2 or action_key not in in_keys or len(first.out_keys) != 1:
            raise TypeError(
                f"a Q-value module must read an observation and {action_key!r} and write one "
                f"value; {_describe(first)} reads {in_keys} and writes {list(first.out_keys)}"
            )
        self.observation_key = next(key for key in in_keys if key != action_key)
        self.action_key = action_key
        self.value_key = first.out_keys[0]
        self.num_critics = len(modules)
        # One module holding the K critics' stacked parameters (registered, so the loss's
        # functional parameters are these); each call vmaps over them.
        self.module = copy.deepcopy(first)
        stacked = TensorDict.from_modules(*modules, as_module=True)
        stacked.to_module(self.module)
        self._names = [_path(key) for key in stacked.keys(True, True)]

    def _stacked(self) -> TensorDictBase:
        """The ``[K]`` tensors in the module now. Read by name: tensors swapped in with
        ``preserve_module_state=False`` (the loss's ``bind``) are plain attributes, which
        ``TensorDict.from_module`` does not list."""
        tensors = {}
        for path in self._names:
            owner = self.module.get_submodule(".".join(path[:-1]))
            tensors[path] = getattr(owner, path[-1])
        return TensorDict(tensors, batch_size=[self.num_critics])

    def _call(self, params: TensorDictBase, td: TensorDictBase) -> Tensor:
        with params.to_module(self.module, preserve_module_state=False):
            return self.module(td).get(self.value_key)

    def forward(self, observation: Tensor, action: Tensor) -> Tensor:
        batch = torch.broadcast_shapes(observation.shape[:-1], action.shape[:-1])
        td = TensorDict(
            {
                self.observation_key: observation.expand(*batch, observation.shape[-1]),
                self.action_key: action.expand(*batch, action.shape[-1]),
            },
            batch_size=batch,
        )
        q = torch.vmap(self._call, (0, None), randomness="different")(self._stacked(), td)
        return q.squeeze(-1)

    def reset_parameters_recursive(self) -> None:
        """Re-initialise each critic as its module's own ``reset_parameters`` would (in place)."""
        stacked = self._stacked()
        for k in range(self.num_critics):
            with stacked[k].to_module(self.module, preserve_module_state=False):
                for module in self.module.modules():
                    if hasattr(module, "reset_parameters"):
                        module.reset_parameters()


def _path(key: NestedKey) -> tuple[str, ...]:
    return (key,) if isinstance(key, str) else tuple(key)


def as_critic(
    qvalue_network: nn.Module | Sequence[nn.Module],
    num_qvalue_nets: int | None,
    action_key: NestedKey,
) -> QEnsemble | ValueOperatorCritics:
    """The K critics from what a loss was given (see the module docstring).

    A single Q-value module is deep-copied into K critics, each re-initialised by its
    modules' ``reset_parameters`` (independent draws: identical twins would stay identical).

    Raises:
        TypeError: anything else, naming it and :data:`ACCEPTED_CRITICS`.
        ValueError: ``num_qvalue_nets`` disagreeing with the ensemble or the list.
    """
    if isinstance(qvalue_network, QEnsemble):
        k = qvalue_network.num_critics
        if num_qvalue_nets not in (None, k):
            raise ValueError(
                f"num_qvalue_nets={num_qvalue_nets} disagrees with the QEnsemble's num_critics={k}"
            )
        return qvalue_network
    if isinstance(qvalue_network, TensorDictModuleBase):
        k = 2 if num_qvalue_nets is None else num_qvalue_nets
        check_initialised(qvalue_network, "qvalue_network")
        copies = [qvalue_network]
        for _ in range(k - 1):
            fresh = copy.deepcopy(qvalue_network)
            for module in fresh.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
            copies.append(fresh)
        modules: Sequence[nn.Module] = copies
    elif (
        isinstance(qvalue_network, (list, tuple, nn.ModuleList))
        and len(qvalue_network) > 0
        and all(isinstance(m, TensorDictModuleBase) for m in qvalue_network)
    ):
        modules = list(qvalue_network)
        if num_qvalue_nets not in (None, len(modules)):
            raise ValueError(
                f"num_qvalue_nets={num_qvalue_nets} disagrees with the {len(modules)} Q-value "
                "modules given"
            )
        for module in modules:
            check_initialised(module, "qvalue_network")
    else:
        given = _describe(qvalue_network)
        if isinstance(qvalue_network, (list, tuple, nn.ModuleList)):
            given += f" of {[_describe(m) for m in qvalue_network]}"
        raise TypeError(f"qvalue_network={given} is not a critic; accepted: {ACCEPTED_CRITICS}")
    if len(modules) < 1:
        raise ValueError("need at least one critic")
    return ValueOperatorCritics(modules, action_key)
