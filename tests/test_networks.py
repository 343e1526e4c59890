"""Critic networks (s2ac_lit/networks.py): the fused activation and slope against autograd.

The ensemble's value and input gradient are tested through the actor and compiled kernels in
``test_actor.py``.
"""

from __future__ import annotations

import torch

from s2ac_lit.networks import _activation_and_slope

F64 = torch.float64


def test_elu_with_slope_matches_autograd_reference() -> None:
    """ELU and its slope in one op: values, first and second derivatives as autograd's.

    Reference: ``F.elu`` and its slope min(h, 0) + 1 differentiated by autograd. Second
    derivatives matter: the actor loss differentiates through ∇ₐQ, and a Hutchinson self term
    differentiates it once more.
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
        out = (value * weights[0]).sum() + (value_slope * weights[1]).sum()
        (grad,) = torch.autograd.grad(out, z, create_graph=True)
        (second,) = torch.autograd.grad(grad.pow(2).sum(), z)
        grads.append((grad.detach(), second))
    for ours, ref in zip(*grads, strict=True):
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)
