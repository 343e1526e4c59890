"""SVGD's entropy estimates on trained critics, against the entropy of the sampler's output.

See docs/algorithm.md §Entropy evaluation.

The regime sweep (:mod:`~s2ac_lit.analysis.entropy.regime`) on a checkpoint's real energy: for
each state s, f(u) = min_k Q_k(s, squash(u))/T with the run's temperature, the actor's own q⁰
(S2AC(φ,θ): N(μθ(s), σθ(s)²) truncated) and the run's sampler settings. ``groups`` independent
M-particle chains per state give the pooled pre-squash particles whose calibrated kNN entropy
(at most the Gaussian-fit bound) is the truth of that state (the squash's log-Jacobian is exact
and common to every estimator, so the comparison in u is the one that matters).

Per state, the estimators are those of the trainer's sampler (its cap included): ``none``
(the closed form) and ``hutchinson`` (with the self term, which also enters the cap, so the
two move their particles differently and each has its own truth); and, without the cap (one
set of particles), ``none_nocap``, ``exact_nocap`` (with the exact self term) and ``logdet``
(the exact log-det mode), which separate the cap's effect from the estimate's.

Shapes:
    S states, G groups per state, M particles, A action dims, O observation dims.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from s2ac_lit.knn import calibrated_knn_entropy
from s2ac_lit.svgd import svgd_run

CRITIC_ESTIMATORS = ("none", "hutchinson", "none_nocap", "exact_nocap", "logdet")
"""Per state: the trainer's sampler without and with the self term (Hutchinson's), then, on
one set of particles without the cap, the closed form, it plus the exact self term, and the
exact log-det mode."""


@dataclass(frozen=True, kw_only=True)
class CriticRecord:
    """One estimator at one state of one checkpoint.

    ``truth``: the calibrated kNN entropy of the state's pooled pre-squash particles (this
    estimator's particles), at most their Gaussian fit ``gaussian_fit``; ``h0``: the exact
    entropy of q⁰; ``error`` = ``estimate`` - ``truth``; ``missed``: -error / (truth - h0).
    State descriptors (the same for every estimator of a state): ``sigma_theta`` (geometric
    mean of σθ(s), or σ₀),
    ``curvature`` (mean over the initial particles of -Δf/A, the mean eigenvalue of -∇²f),
    ``self_size`` (mean over them of ε·L·Δf/M, the self term's size if the particles stayed
    put), ``critic_split`` (the share of them whose minimal critic is not the most common
    one: 0 when one critic is the minimum everywhere, ½ when the twin critics' crossing
    halves the cloud). Per estimator: ``step_scale`` (the cap's mean factor on ε),
    ``bound_max`` (the largest invertibility bound at the configured ε).
    """

    checkpoint: str
    updates: int
    state: int
    estimator: str
    pool: int
    h0: float
    truth: float
    gaussian_fit: float
    estimate: float
    error: float
    missed: float
    sigma_theta: float
    curvature: float
    self_size: float
    critic_split: float
    step_scale: float
    bound_max: float
    wall_s: float


def replay_observations(module, replay_dir: Path, n: int, *, seed: int = 0) -> Tensor:
    """``n`` observations drawn uniformly without replacement from a run's replay dump.

    ``replay_dir`` is one rank's dump (``RUN/replay/step-N/rank-R``), read into the run's own
    buffer type (``module.cfg.replay``) as a resume would. Shapes: → ``[n, O]``.
    """
    from s2ac_lit.trainer.callbacks import load_replay_dump
    from s2ac_lit.trainer.data import make_replay_buffer

    buffer = make_replay_buffer(module.cfg.replay)
    load_replay_dump(buffer, replay_dir)
    size = len(buffer)
    if size < n:
        raise ValueError(f"the replay dump {str(replay_dir)!r} holds {size} states, asked {n}")
    index = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:n]
    return buffer.storage[index]["observation"]


def truncated_normal_entropy(truncation: float) -> float:
    """Entropy of the standard normal truncated to [-t, t]: ln(√(2πe)·Z) - tφ(t)/Z."""
    z = math.erf(truncation / math.sqrt(2.0))
    phi = math.exp(-0.5 * truncation**2) / math.sqrt(2.0 * math.pi)
    return math.log(math.sqrt(2.0 * math.pi * math.e) * z) - truncation * phi / z


def _initial_entropy(actor, box: tuple[Tensor, Tensor]) -> Tensor:
    """H(q⁰) per state from the box μ ± tσ. ``[S, G, 1, A]`` → ``[S]``."""
    if actor.init_net is None:
        return torch.full(
            box[0].shape[:1],
            actor.action_dim * (0.5 * math.log(2 * math.pi * math.e) + math.log(actor.init_std)),
        )
    std = (box[1] - box[0])[:, 0, 0] / (2 * actor.truncation)  # [S, A]
    return std.double().log().sum(-1) + actor.action_dim * truncated_normal_entropy(
        actor.truncation
    )


def _laplacian(energy, u: Tensor) -> Tensor:
    """Δf at the particles by autograd (A backward passes). ``[..., M, A]`` → ``[..., M]``."""
    with torch.enable_grad():
        x = u.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(energy(x).sum(), x, create_graph=True)
        return sum(
            torch.autograd.grad(g[..., k].sum(), x, retain_graph=True)[0][..., k]
            for k in range(u.shape[-1])
        ).detach()


def evaluate_critic(
    module,
    observations: Tensor,
    *,
    groups: int = 1000,
    seed: int = 0,
    checkpoint: str = "",
    updates: int = 0,
    knn_draws: int = 3,
) -> list[CriticRecord]:
    """Every estimator of :data:`CRITIC_ESTIMATORS` at each of ``observations`` ``[S, O]``.

    The actor's q⁰ and the run's sampler settings (the cap becomes ``max_step_norm=None``
    for the ``*_nocap`` estimators and the exact log-det mode), the energy min_k Q_k/T with
    the online critics and the run's temperature. ``seed`` fixes x⁰ and the probes.
    """
    loss = module.loss_module
    actor = loss.actor_network
    options = actor.svgd
    records = []
    torch.manual_seed(seed)
    with loss.bind(loss.qvalue_network_params.detach()), torch.no_grad():
        temperature = loss.sampler_temperature()
        for s, obs_s in enumerate(observations):
            obs = obs_s.expand(groups, -1)
            u0, log_q0, box = actor.initial_particles(obs)
            energy = actor.energy(obs, loss.qvalue_network, temperature)
            h0 = float(_initial_entropy(actor, (box[0][None], box[1][None]))[0])
            sigma = (box[1] - box[0])[0, 0] / (2 * actor.truncation)
            lap0 = _laplacian(energy, u0).double()
            minimal = loss.qvalue_network(energy.observation, actor.energy_input(u0)).argmin(0)
            shares = torch.bincount(minimal.flatten(), minlength=2).double() / minimal.numel()
            state = dict(
                critic_split=float(1.0 - shares.max()),
                sigma_theta=float(sigma.log().mean().exp())
                if actor.init_net is not None
                else actor.init_std,
                curvature=float(-lap0.mean() / actor.action_dim),
                self_size=float(options.step_size * options.steps * lap0.mean() / u0.shape[-2]),
            )
            nocap = dataclasses.replace(options, max_step_norm=None, self_term="none")
            runs = {
                "none": dataclasses.replace(options, self_term="none"),
                "hutchinson": dataclasses.replace(options, self_term="hutchinson"),
                "none_nocap": nocap,
                "exact_nocap": dataclasses.replace(nocap, self_term="exact"),
                # The exact mode computes the whole log-det, so its sum is over M (a run with
                # the authors' 1/(M-1), entropy_norm='m-1', is compared at its own estimate).
                "logdet": dataclasses.replace(nocap, entropy_norm="m"),
            }
            truths: dict[str, object] = {}
            for name, opts in runs.items():
                start = time.perf_counter()
                run = svgd_run(
                    energy,
                    u0,
                    log_q0,
                    opts,
                    score_fn=energy.score_fn,
                    score_hvp_fn=energy.score_hvp_fn,
                    box=box if actor.bound == "all" else None,
                    logdet="exact" if name == "logdet" else "closed_form",
                    generator=torch.Generator().manual_seed(seed + 1),
                    diagnostics=True,
                )
                shared = "nocap" if opts.max_step_norm is None else name
                if shared not in truths:
                    truths[shared] = calibrated_knn_entropy(
                        run.particles.reshape(-1, actor.action_dim).double(), draws=knn_draws
                    )
                truth = truths[shared]
                estimate = -float(run.log_q.double().mean())
                cap = options.max_step_norm
                scale = (
                    float((cap / run.step_norm_bound).clamp(max=1.0).mean())
                    if opts.max_step_norm is not None
                    else 1.0
                )
                records.append(
                    CriticRecord(
                        checkpoint=checkpoint,
                        updates=updates,
                        state=s,
                        estimator=name,
                        pool=groups * u0.shape[-2],
                        h0=h0,
                        truth=truth.bounded,
                        gaussian_fit=truth.gaussian_fit,
                        estimate=estimate,
                        error=estimate - truth.bounded,
                        missed=(truth.bounded - estimate) / (truth.bounded - h0),
                        step_scale=scale,
                        bound_max=float(run.step_norm_bound.amax()),
                        wall_s=time.perf_counter() - start,
                        **state,
                    )
                )
    return records
