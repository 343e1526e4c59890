"""Critic networks (s2ac_lit/networks.py): the fused activation and slope against autograd.

The ensemble's value and input gradient are tested through the actor and compiled kernels in
``test_actor.py``.
"""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch

from s2ac_lit.networks import QEnsemble, _activation_and_slope, ensemble_mlp

F64 = torch.float64


@pytest.mark.parametrize("used", [(1.0, 1.0), (1.0, 0.0), (0.0, 1.0)], ids=["both", "h", "slope"])
def test_elu_with_slope_matches_autograd_reference(used: tuple[float, float]) -> None:
    """ELU and its slope in one op: values, first and second derivatives as autograd's.

    Reference: ``F.elu`` and its slope min(h, 0) + 1 differentiated by autograd. Second
    derivatives matter: the actor loss differentiates through ∇ₐQ, and a Hutchinson self term
    differentiates it once more. ``used`` weights the two outputs: with a zero weight the
    output is left out of the loss, so its incoming gradient is None (the backward's two
    one-output branches).
    """
    z = (3 * torch.randn(2, 5, 7, dtype=F64)).requires_grad_(True)
    weights = torch.randn(2, *z.shape, dtype=F64)
    h, slope = _activation_and_slope("elu", z)
    ref_h = torch.nn.functional.elu(z)
    ref_slope = ref_h.clamp(max=0.0) + 1.0
    torch.testing.assert_close(h, ref_h, rtol=0, atol=1e-15)
    torch.testing.assert_close(slope, ref_slope, rtol=0, atol=1e-15)
    grads = []
    for value, value_slope in ((h, slope), (ref_h, ref_slope)):
        out = sum(
            (output * w).sum()
            for output, w, use in zip((value, value_slope), weights, used, strict=True)
            if use
        )
        (grad,) = torch.autograd.grad(out, z, create_graph=True)
        (second,) = torch.autograd.grad(grad.pow(2).sum(), z)
        grads.append((grad.detach(), second))
    for ours, ref in zip(*grads, strict=True):
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("out_features", [1, 3])
def test_ensemble_mlp_matches_a_plain_elu_network(out_features: int) -> None:
    """The ensemble (exp-based ELU shared with the slope, a product-and-sum head for one
    output) computes the plain network.

    Reference: the same two-member MLP with ``torch.nn.functional.elu`` and batched matmuls
    throughout; values and the gradients w.r.t. input and weights agree to float64 round-off.
    """
    gen = torch.Generator().manual_seed(0)
    widths = [5, 8, 8, out_features]
    weights = [torch.randn(2, i, o, dtype=F64, generator=gen) for i, o in pairwise(widths)]
    biases = [torch.randn(2, 1, o, dtype=F64, generator=gen) for o in widths[1:]]
    x = torch.randn(6, 5, dtype=F64, generator=gen)
    params = [x, *weights, *biases]
    for p in params:
        p.requires_grad_(True)

    def reference() -> torch.Tensor:
        h = x.expand(2, *x.shape)
        for w, b in zip(weights[:-1], biases[:-1], strict=True):
            h = torch.nn.functional.elu(torch.baddbmm(b, h, w))
        return torch.baddbmm(biases[-1], h, weights[-1])

    ours, ref = ensemble_mlp(x, weights, biases, "elu"), reference()
    torch.testing.assert_close(ours, ref, rtol=1e-13, atol=1e-14)
    for g, g_ref in zip(
        torch.autograd.grad(ours.sum(), params), torch.autograd.grad(ref.sum(), params), strict=True
    ):
        torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("activation", ["elu", "relu", "tanh", "silu"])
@pytest.mark.parametrize("hidden_sizes", [(), (9,), (9, 7)], ids=["linear", "one", "two"])
def test_explicit_action_gradient_matches_autograd(activation: str, hidden_sizes) -> None:
    """∇ₐQ written out equals autograd's, and so do the weight gradients of a loss on it.

    The second part is a double backward in the reference (autograd through its own ∇ₐQ) and a
    first-order graph in ours: the actor's loss and SQL's sampler differentiate through ∇ₐQ.
    """
    critic = QEnsemble(4, 3, hidden_sizes=hidden_sizes, activation=activation).double()
    obs = torch.randn(5, 1, 4, dtype=F64)
    act = torch.randn(5, 6, 3, dtype=F64, requires_grad=True)
    q, grad = critic.value_and_action_grad(obs, act)
    ref_q = critic(obs, act)
    (ref_grad,) = torch.autograd.grad(ref_q.sum(), act, create_graph=True)
    torch.testing.assert_close(q, ref_q, rtol=1e-12, atol=1e-13)
    # Σ_k ∇ₐQ_k is what autograd gives for the summed Q; ours is per member.
    torch.testing.assert_close(grad.sum(0), ref_grad, rtol=1e-12, atol=1e-13)
    weights = list(critic.parameters())
    ours = torch.autograd.grad(grad.sum(0).pow(2).sum(), weights, allow_unused=True)
    ref = torch.autograd.grad(ref_grad.pow(2).sum(), weights, allow_unused=True)
    for w, g, g_ref in zip(weights, ours, ref, strict=True):
        # None: a parameter ∇ₐQ does not depend on (the head's bias; biases under ReLU).
        zero = torch.zeros_like(w)
        g, g_ref = zero if g is None else g, zero if g_ref is None else g_ref
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)
