"""Networks: MLPs and the critic ensemble (docs/algorithm.md §Networks).

The K critics of the ensemble live in stacked parameters and run as one batched matmul per
layer (``torch.baddbmm``), so the twin critics cost one forward, not two, and the SVGD energy
evaluates every critic on every particle at once.

Shapes:
    ``...``: batch (states, or states × particles), O observation dim, A action dim,
    K ensemble members.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Literal, get_args

import torch
from torch import Tensor, nn
from torch.nn import functional as F

Activation = Literal["elu", "relu", "tanh", "silu"]
ACTIVATIONS: tuple[Activation, ...] = get_args(Activation)
_ACTIVATIONS: dict[Activation, type[nn.Module]] = {
    "elu": nn.ELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}


def activation_layer(name: Activation) -> nn.Module:
    """A fresh activation module by name; raises ``ValueError`` naming the allowed ones."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; allowed: {ACTIVATIONS}")
    return _ACTIVATIONS[name]()


def mlp(
    in_features: int,
    out_features: int,
    hidden_sizes: Sequence[int],
    activation: Activation = "elu",
) -> nn.Sequential:
    """A plain MLP: Linear → activation for each hidden size, then a Linear head."""
    layers: list[nn.Module] = []
    width = in_features
    for hidden in hidden_sizes:
        layers += [nn.Linear(width, hidden), activation_layer(activation)]
        width = hidden
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


class ResettableModule(nn.Module):
    """A module whose parameters TorchRL's ``LossModule.reset_parameters_recursive`` resets.

    TorchRL calls ``reset_parameters_recursive()`` on each network of a loss, with the loss's
    (online, then target) parameters swapped in; this re-initialises, in place, every
    submodule that has a ``reset_parameters`` (as ``TensorDictModuleBase`` does).
    """

    def reset_parameters_recursive(self) -> None:
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()


class EnsembleLinear(nn.Module):
    """The parameters of K independent linear layers, applied by :func:`ensemble_mlp`.

    Each member is initialised like ``nn.Linear`` (uniform in ±1/√in), independently.

    Shapes:
        weight ``[K, in, out]``, bias ``[K, 1, out]``.
    """

    def __init__(self, num_members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(num_members, 1, out_features))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Draw every member anew, uniform in ±1/√in (in place)."""
        bound = 1.0 / math.sqrt(self.weight.shape[-2])
        self.weight.uniform_(-bound, bound)
        self.bias.uniform_(-bound, bound)


_ACTIVATION_FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "elu": F.elu,
    "relu": F.relu,
    "tanh": torch.tanh,
    "silu": F.silu,
}


class _EluWithSlope(torch.autograd.Function):
    """h = ELU(z) and its slope s = σ'(z) from one exp, with a written-out backward.

    With e = exp(min(z, 0)): s = e and h = max(z, 0) + e - 1 (ELU's e^z - 1 for z ≤ 0, to
    round-off). Backward: ∂h/∂z = s and ∂s/∂z = e·[z < 0], so dz = e·(dh + ds·[z < 0]).
    Autograd's own graph for ``F.elu`` plus the slope costs an ``expm1``, a clamp and its
    masked backward per layer: about twice the time (``tools/bench.py``'s update, measured in
    one run).
    """

    @staticmethod
    def forward(ctx, z: Tensor) -> tuple[Tensor, Tensor]:
        e = z.clamp(max=0.0).exp()
        h = z.clamp(min=0.0).add_(e).sub_(1.0)
        # e is an output, so a double backward differentiates it; [z < 0] is piecewise
        # constant, so keeping it as a constant is exact there. A byte per entry, and only
        # when a backward may come: the backward reads activations back from memory, and
        # this is a quarter of what a float copy of min(z, 0) costs it.
        ctx.save_for_backward(e, (z < 0) if ctx.needs_input_grad[0] else None)
        # An output that the loss does not use gets None, not zeros: the value-only ELU of
        # ``ensemble_mlp`` then costs one product in the backward.
        ctx.set_materialize_grads(False)
        return h, e

    @staticmethod
    def backward(ctx, grad_h: Tensor | None, grad_s: Tensor | None) -> Tensor | None:
        e, below = ctx.saved_tensors
        if grad_s is None:
            return None if grad_h is None else grad_h * e
        steep = grad_s * below if grad_h is None else torch.addcmul(grad_h, grad_s, below)
        return steep * e


def _activation_and_slope(name: str, z: Tensor) -> tuple[Tensor, Tensor]:
    """h = σ(z) and σ'(z); the slope reuses h (or, for ELU, the exp) instead of recomputing.

    ReLU: [z > 0]; tanh: 1 - h²; SiLU: s(1 + z(1 - s)) with s = sigmoid(z).
    """
    if name == "elu":
        return _EluWithSlope.apply(z)
    h = _ACTIVATION_FUNCTIONS[name](z)
    if name == "relu":
        return h, (z > 0).to(z.dtype)
    if name == "tanh":
        return h, 1 - h.pow(2)
    s = torch.sigmoid(z)  # silu
    return h, s * (1 + z * (1 - s))


def _activation(name: str, z: Tensor) -> Tensor:
    """σ(z); ELU through :class:`_EluWithSlope`, whose exp costs half of ``F.elu``'s expm1."""
    return _EluWithSlope.apply(z)[0] if name == "elu" else _ACTIVATION_FUNCTIONS[name](z)


def _head(h: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """The last layer, h @ w + b: ``[K, N, H]``, ``[K, H, out]``, ``[K, 1, out]`` → ``[K, N, out]``.

    A one-output head (a Q-value) is a product and a sum: torch's CPU batched matmul with a
    single output column took ~9× as long (0.65 ms against 0.07-0.1 ms on ``[2, 1000, 256]``),
    and its backward, an outer product, ~12× as long as the broadcast product used here.
    ``w`` is read as ``[K, 1, H]`` by a reshape, not a transpose, so its gradient comes back
    contiguous, the layout DDP's gradient buckets expect (a transposed one is copied, with a
    warning, on every backward).
    """
    if w.shape[-1] == 1:
        return (h * w.reshape(*w.shape[:-2], 1, w.shape[-2])).sum(-1, keepdim=True) + b
    return torch.baddbmm(b, h, w)


def ensemble_mlp(
    x: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor], activation: str
) -> Tensor:
    """K MLPs as batched matmuls. x ``[N, in]`` → ``[K, N, out]``.

    A pure function of its tensors, so ``torch.compile`` takes the weights as inputs and
    swapping online, detached and target weights never recompiles.
    """
    h = x.expand(weights[0].shape[0], *x.shape)
    for w, b in zip(weights[:-1], biases[:-1], strict=True):
        h = _activation(activation, torch.baddbmm(b, h, w))
    return _head(h, weights[-1], biases[-1])


def ensemble_mlp_value_and_input_grad(
    x: Tensor,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    activation: str,
    grad_from: int,
) -> tuple[Tensor, Tensor]:
    """Outputs ``[K, N, 1]`` and their gradient w.r.t. inputs ``x[:, grad_from:]``.

    The input gradient is written out (one matmul per layer with the transposed weights,
    times the activation's slope), so it is a plain forward computation: no autograd graph
    when gradients are off, and a first-order graph instead of a double backward when a loss
    differentiates through it. Pure, like :func:`ensemble_mlp`.

    Shapes:
        x ``[N, in]`` → ``[K, N, 1]``, ``[K, N, in - grad_from]``.
    """
    h = x.expand(weights[0].shape[0], *x.shape)
    slopes = []
    for w, b in zip(weights[:-1], biases[:-1], strict=True):
        h, slope = _activation_and_slope(activation, torch.baddbmm(b, h, w))
        slopes.append(slope)
    out = _head(h, weights[-1], biases[-1])
    head = weights[-1].transpose(-1, -2)  # [K, 1, H]: d out / d(last hidden)
    if not slopes:  # a linear network
        return out, head[..., grad_from:].expand(-1, x.shape[0], -1)
    # The hidden layers' weights as the input gradient sees them: the first one only from
    # input grad_from on.
    into = [weights[0][:, grad_from:], *weights[1:-1]]
    top = len(slopes) - 1
    # (head ⊙ slope) @ wᵀ = slope @ (w ⊙ head)ᵀ: the head scales the small weight matrix
    # instead of the [K, N, H] slopes (one pass over the activations less).
    grad = slopes[top] @ (into[top] * head).transpose(-1, -2)
    for slope, w in zip(reversed(slopes[:top]), reversed(into[:top]), strict=True):
        grad = (grad * slope) @ w.transpose(-1, -2)
    return out, grad


class QEnsemble(ResettableModule):
    """K soft Q-functions Q_k(s, a) with stacked parameters (twin critics: K = 2).

    Args:
        observation_dim: O.
        action_dim: A.
        num_critics: K.
        hidden_sizes: widths of the hidden layers (authors: 2 × 256).
        activation: ELU by default: the actor loss differentiates through ∇ₐQ, so a smooth
            activation keeps second derivatives informative (ReLU's are zero).

    Shapes:
        forward: observation ``[..., O]``, action ``[..., A]`` (broadcastable batch)
        → ``[K, ...]``.
    """

    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        *,
        num_critics: int = 2,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: Activation = "elu",
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATION_FUNCTIONS:
            raise ValueError(f"unknown activation {activation!r}; allowed: {ACTIVATIONS}")
        widths = [observation_dim + action_dim, *hidden_sizes, 1]
        self.layers = nn.ModuleList(
            EnsembleLinear(num_critics, w_in, w_out) for w_in, w_out in pairwise(widths)
        )
        self.activation = activation
        self.num_critics = num_critics
        self.observation_dim = observation_dim
        self.action_dim = action_dim

    def _inputs(self, observation: Tensor, action: Tensor) -> tuple[Tensor, torch.Size]:
        if observation.shape[-1] != self.observation_dim or action.shape[-1] != self.action_dim:
            raise RuntimeError(
                f"QEnsemble expects observation [..., {self.observation_dim}] and action "
                f"[..., {self.action_dim}], got {tuple(observation.shape)} and "
                f"{tuple(action.shape)}"
            )
        batch = torch.broadcast_shapes(observation.shape[:-1], action.shape[:-1])
        x = torch.cat([observation.expand(*batch, -1), action.expand(*batch, -1)], dim=-1)
        return x.reshape(-1, self.observation_dim + self.action_dim), batch

    def _parameters_lists(self) -> tuple[list[Tensor], list[Tensor]]:
        return [layer.weight for layer in self.layers], [layer.bias for layer in self.layers]

    def forward(self, observation: Tensor, action: Tensor) -> Tensor:
        x, batch = self._inputs(observation, action)
        q = ensemble_mlp(x, *self._parameters_lists(), self.activation)
        return q.reshape(self.num_critics, *batch)

    def value_and_action_grad(self, observation: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """Q-values and ∇ₐQ (see :func:`ensemble_mlp_value_and_input_grad`).

        Shapes:
            observation ``[..., O]``, action ``[..., A]`` → ``[K, ...]`` and ``[K, ..., A]``.
        """
        x, batch = self._inputs(observation, action)
        q, grad = ensemble_mlp_value_and_input_grad(
            x, *self._parameters_lists(), self.activation, self.observation_dim
        )
        k = self.num_critics
        return q.reshape(k, *batch), grad.reshape(k, *batch, self.action_dim)
