"""Langevin and HMC with change-of-variables log-densities, for contrast.

See docs/algorithm.md §Entropy evaluation.

SVGD (``s2ac_lit.svgd``) tracks log q through an invertible deterministic map of the particles.
For contrast, the paper applies the same change of variables to Langevin dynamics and HMC,
through the deterministic part of each step, and shows that it fails: those steps are not
invertible maps of the particle, so the change-of-variables formula does not apply.

- :func:`langevin_run`: unadjusted Langevin (ULA), x' = x + ε∇f(x) + √(2ε)ξ, with
  log q' = log q - log|det(I + ε∇²f(x))|.
- :func:`hmc_run`: HMC with leapfrog and a Metropolis step, with log q changed by the leapfrog
  map either of the position at fixed momentum or of the joint (x, p) state.

Shapes:
    ``...``: independent groups, M particles (chains), D dimensions, L steps.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from s2ac_lit.analysis.entropy.targets import LogProb

HMCEstimate = Literal["position", "joint"]


class ChainResult(NamedTuple):
    """Output of :func:`langevin_run` and :func:`hmc_run`.

    Attributes:
        particles: ``[..., M, D]`` final states.
        log_q: ``[..., M]`` change-of-variables log-density estimate at the final states.
        step_norm_bound: ``[..., L]`` max over particles of ε‖∇²f(x)‖₂ per step (HMC: over
            its leapfrog positions). Below 1 the deterministic drift step x ↦ x + ε∇f(x) is
            invertible, yet the estimate still fails: the noise, not the drift, breaks it.
        accept_rate: ``[..., L]`` Metropolis acceptance rate per step (ones for ULA).
    """

    particles: Tensor
    log_q: Tensor
    step_norm_bound: Tensor
    accept_rate: Tensor


def score_and_hessian(log_prob: LogProb, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """f(x), ∇f(x) and ∇²f(x) by autograd (D backward passes: small D). Detached outputs.

    Shapes:
        x: ``[..., M, D]`` → ``[..., M]``, ``[..., M, D]``, ``[..., M, D, D]``.
    """
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        f = log_prob(xg)
        if f.shape != x.shape[:-1]:
            raise RuntimeError(
                f"log_prob must map particles {tuple(x.shape)} to {tuple(x.shape[:-1])}, "
                f"got {tuple(f.shape)}"
            )
        (g,) = torch.autograd.grad(f.sum(), xg, create_graph=True, materialize_grads=True)
        if g.requires_grad:
            rows = [
                torch.autograd.grad(g[..., k].sum(), xg, retain_graph=True, materialize_grads=True)[
                    0
                ]
                for k in range(x.shape[-1])
            ]
            hess = torch.stack(rows, dim=-2)
        else:  # f is linear in x
            hess = x.new_zeros(x.shape + x.shape[-1:])
    return f.detach(), g.detach(), hess.detach()


def langevin_run(
    log_prob: LogProb,
    x0: Tensor,
    log_q0: Tensor,
    *,
    steps: int,
    step_size: float,
    generator: torch.Generator | None = None,
) -> ChainResult:
    """Unadjusted Langevin with the change-of-variables estimate the paper shows to fail.

    x' = x + ε∇f(x) + √(2ε)ξ, ξ ~ N(0, I). Given ξ the step is a deterministic map with
    Jacobian I + ε∇²f(x), and the estimate is log q' = log q - log|det(I + ε∇²f(x))|. That is
    the density of x' *conditional on the noise*, not of x': the marginal density convolves
    q with the noise, whose entropy (≈ ½D ln(4πeε) per step) the formula never adds. On a
    log-concave target ∇²f ≤ 0, so each step only contracts: the estimated entropy falls by
    about ε·|Tr ∇²f| per step without bound, while the chain's true entropy converges to H(p).

    Args:
        log_prob: f, ``[..., M, D]`` → ``[..., M]``.
        x0, log_q0: initial particles and their log-density.
        steps: L.
        step_size: ε.
        generator: source of ξ.

    Shapes:
        x0: ``[..., M, D]``; log_q0: ``[..., M]``.
    """
    if log_q0.shape != x0.shape[:-1]:
        raise RuntimeError(f"log_q0 {tuple(log_q0.shape)} does not match x0 {tuple(x0.shape)}")
    x, log_q = x0.detach(), log_q0.detach()
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    norm_bounds = []
    for _ in range(steps):
        _, score, hess = score_and_hessian(log_prob, x)
        log_q = log_q - torch.linalg.slogdet(eye + step_size * hess).logabsdet
        norm_bounds.append(step_size * torch.linalg.matrix_norm(hess, ord=2).amax(-1))
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = x + step_size * score + math.sqrt(2.0 * step_size) * noise
    return _chain_result(x, log_q, norm_bounds, [torch.ones_like(log_q.mean(-1))] * steps)


def hmc_run(
    log_prob: LogProb,
    x0: Tensor,
    log_q0: Tensor,
    *,
    steps: int,
    step_size: float,
    leapfrog_steps: int = 5,
    metropolis: bool = True,
    estimate: HMCEstimate = "position",
    generator: torch.Generator | None = None,
) -> ChainResult:
    """HMC (momentum refresh, leapfrog, Metropolis) with a change-of-variables estimate.

    Each step draws p ~ N(0, I), runs ``leapfrog_steps`` leapfrog steps of size ε on
    H(x, p) = -f(x) + ½|p|², and accepts with probability min(1, e^{H_0 - H_1}). Two ways of
    pushing log q through the deterministic part, both wrong for the same reason:

    - ``"position"``: log q' = log q - log|det ∂x'/∂x| at fixed momentum, the Jacobian
      propagated through the leapfrog steps (needs ∇²f). Like ULA, it is the density given
      the random momentum, not the marginal; ∂x'/∂x can even be singular.
    - ``"joint"``: leapfrog preserves volume in (x, p), so q'(x', p') = q(x)·N(p; 0, I); taking
      N(p'; 0, I) as the momentum's conditional density gives log q' = log q + ½|p'|² - ½|p|².
      On average this adds E[f(x') - f(x)], so the entropy estimate converges to
      H(q_0) + E_{q_0}[f] - E_p[f] = H(p) - KL(q_0‖p) for a normalised f, not to H(p).

    The momentum refresh is a random, many-to-one map of x, and the Metropolis step is
    piecewise (accepted and rejected points can land on the same x), so neither is an
    invertible map of the particle. A rejected proposal leaves x and log q unchanged.

    Args:
        log_prob: f, ``[..., M, D]`` → ``[..., M]``.
        x0, log_q0: initial particles and their log-density.
        steps: L (HMC iterations; each costs ``leapfrog_steps`` gradients).
        step_size: leapfrog ε.
        leapfrog_steps: leapfrog steps per iteration.
        metropolis: apply the accept/reject step (False: always accept).
        estimate: ``"position"`` or ``"joint"``, see above.
        generator: source of momenta and acceptance uniforms.

    Shapes:
        x0: ``[..., M, D]``; log_q0: ``[..., M]``.
    """
    if log_q0.shape != x0.shape[:-1]:
        raise RuntimeError(f"log_q0 {tuple(log_q0.shape)} does not match x0 {tuple(x0.shape)}")
    if estimate not in ("position", "joint"):
        raise ValueError(f"unknown HMC estimate {estimate!r}; allowed: ('position', 'joint')")
    x, log_q = x0.detach(), log_q0.detach()
    d = x.shape[-1]
    eye = torch.eye(d, dtype=x.dtype, device=x.device).expand((*x.shape, d))
    norm_bounds, accepts = [], []
    f, score, hess = score_and_hessian(log_prob, x)
    for _ in range(steps):
        p0 = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        # (A, B) = (∂x/∂x₀, ∂p/∂x₀) at fixed p₀, propagated through each half step.
        jac_x, jac_p = eye, torch.zeros_like(eye)
        p = p0 + 0.5 * step_size * score
        jac_p = jac_p + 0.5 * step_size * hess @ jac_x
        x_new, norm = x, torch.linalg.matrix_norm(hess, ord=2)
        for k in range(leapfrog_steps):
            x_new = x_new + step_size * p
            jac_x = jac_x + step_size * jac_p
            f_new, score_new, hess_new = score_and_hessian(log_prob, x_new)
            half = 0.5 if k == leapfrog_steps - 1 else 1.0
            p = p + half * step_size * score_new
            jac_p = jac_p + half * step_size * hess_new @ jac_x
            norm = torch.maximum(norm, torch.linalg.matrix_norm(hess_new, ord=2))
        if estimate == "position":
            delta = -torch.linalg.slogdet(jac_x).logabsdet
        else:
            delta = 0.5 * (p.pow(2).sum(-1) - p0.pow(2).sum(-1))
        if metropolis:
            log_ratio = (f_new - 0.5 * p.pow(2).sum(-1)) - (f - 0.5 * p0.pow(2).sum(-1))
            u = torch.rand(log_ratio.shape, generator=generator, dtype=x.dtype, device=x.device)
            accept = torch.log(u) < log_ratio
        else:
            accept = torch.ones_like(log_q, dtype=torch.bool)
        log_q = torch.where(accept, log_q + delta, log_q)
        keep = accept.unsqueeze(-1)
        x = torch.where(keep, x_new, x)
        f = torch.where(accept, f_new, f)
        score = torch.where(keep, score_new, score)
        hess = torch.where(keep.unsqueeze(-1), hess_new, hess)
        norm_bounds.append(step_size * norm.amax(-1))
        accepts.append(accept.to(x.dtype).mean(-1))
    return _chain_result(x, log_q, norm_bounds, accepts)


def _chain_result(
    x: Tensor, log_q: Tensor, norm_bounds: list[Tensor], accepts: list[Tensor]
) -> ChainResult:
    empty = x.new_zeros((*x.shape[:-2], 0))
    return ChainResult(
        particles=x,
        log_q=log_q,
        step_norm_bound=torch.stack(norm_bounds, -1) if norm_bounds else empty,
        accept_rate=torch.stack(accepts, -1) if accepts else empty,
    )
