"""Networks: MLPs and the critic ensemble (S2AC.md §2, "Networks").

The K critics of the ensemble live in stacked parameters and run as one batched matmul per
layer (``torch.baddbmm``), so the twin critics cost one forward, not two, and the SVGD energy
evaluates every critic on every particle at once.

Shapes:
    ``...``: batch (states, or states × particles), O observation dim, A action dim,
    K ensemble members.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Literal

import torch
from torch import Tensor, nn

Activation = Literal["elu", "relu", "tanh", "silu"]
_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "elu": nn.ELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}


def _silu_derivative(z: Tensor, h: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1 + z * (1 - s))


# σ'(z) from the pre-activation z and the activation h = σ(z). Reusing h avoids recomputing
# exponentials: ELU's derivative is 1 for z > 0 and e^z = h + 1 for z ≤ 0, i.e. min(h, 0) + 1.
_DERIVATIVES = {
    nn.ELU: lambda z, h: h.clamp(max=0.0) + 1.0,
    nn.ReLU: lambda z, h: (z > 0).to(z.dtype),
    nn.Tanh: lambda z, h: 1 - h.pow(2),
    nn.SiLU: _silu_derivative,
}


def activation_layer(name: Activation) -> nn.Module:
    """A fresh activation module by name; raises ``ValueError`` naming the allowed ones."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; allowed: {tuple(_ACTIVATIONS)}")
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


class EnsembleLinear(nn.Module):
    """K independent linear layers applied as one batched matmul.

    Each member is initialised like ``nn.Linear`` (uniform in ±1/√in), independently.

    Shapes:
        input ``[K, N, in]`` (or ``[N, in]``, shared by all members) → ``[K, N, out]``.
    """

    def __init__(self, num_members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(
            torch.empty(num_members, in_features, out_features).uniform_(-bound, bound)
        )
        self.bias = nn.Parameter(torch.empty(num_members, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            x = x.expand(self.weight.shape[0], *x.shape)
        return torch.baddbmm(self.bias, x, self.weight)


class QEnsemble(nn.Module):
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
        widths = [observation_dim + action_dim, *hidden_sizes, 1]
        self.layers = nn.ModuleList(
            EnsembleLinear(num_critics, w_in, w_out) for w_in, w_out in pairwise(widths)
        )
        self.activation = activation_layer(activation)
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

    def forward(self, observation: Tensor, action: Tensor) -> Tensor:
        x, batch = self._inputs(observation, action)
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x).reshape(self.num_critics, *batch)

    def value_and_action_grad(self, observation: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """Q-values and ∇ₐQ by an explicit backward pass through the MLP.

        The SVGD energy needs ∇ₐQ at every step. Writing the input gradient out (one matmul
        per layer with the transposed weights, times the activation's derivative) makes it a
        plain forward computation: no autograd graph at all when gradients are off (critic
        targets, acting), and a first-order graph instead of a double backward when the actor
        loss differentiates through it.

        Shapes:
            observation ``[..., O]``, action ``[..., A]`` → ``[K, ...]`` and ``[K, ..., A]``.
        """
        derivative = _DERIVATIVES[type(self.activation)]
        x, batch = self._inputs(observation, action)
        slopes = []
        for layer in self.layers[:-1]:
            z = layer(x)
            x = self.activation(z)
            slopes.append(derivative(z, x))
        q = self.layers[-1](x)
        grad = self.layers[-1].weight.transpose(-1, -2)  # [K, 1, H]: dQ/d(last hidden)
        for index in reversed(range(len(slopes))):
            weight = self.layers[index].weight
            if index == 0:  # only the action rows of the first layer are needed
                weight = weight[:, self.observation_dim :]
            grad = (grad * slopes[index]) @ weight.transpose(-1, -2)
        if not slopes:  # a linear critic
            grad = grad[..., self.observation_dim :].expand(-1, x.shape[0], -1)
        k = self.num_critics
        return q.reshape(k, *batch), grad.reshape(k, *batch, self.action_dim)
