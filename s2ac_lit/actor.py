"""The S2AC actor: a policy that is an SVGD sampler over the critic's energy.

See docs/algorithm.md §Actor.

Per state, M particles u⁰ are drawn in pre-squash space, moved by L SVGD steps towards
exp(f(u)) with f(u) = min_k Q_k(s, squash(u)) / T, and squashed to actions
a = loc + scale·tanh(u). The log-density of each action is the sampler's closed-form
log q_L(u) minus the squash log-Jacobian.

Variants:
    ``init="fixed"`` is S2AC(φ): u⁰ ~ N(0, σ₀²I); the actor has no parameters.
    ``init="learned"`` is S2AC(φ,θ): u⁰ = μθ(s) + σθ(s)·ξ with ξ a standard normal truncated to
    [-t, t], drawn by inverse CDF (no rejection loop).

Shapes:
    ``...``: batch of states, M particles, O observation dim, A action dim.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple, get_args

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from s2ac_lit.networks import Activation, ResettableModule, mlp
from s2ac_lit.svgd import SVGDOptions, finite_difference_step, svgd_direction_at, svgd_run

Critic = Callable[[Tensor, Tensor], Tensor]
"""Maps observation ``[..., O]`` and action ``[..., A]`` to Q-values ``[K, ...]``."""

InitKind = Literal["fixed", "learned"]
"""``fixed``: S2AC(φ); ``learned``: S2AC(φ,θ)."""
BoundKind = Literal["init", "all"]
"""Where the particles are held in the box μ ± tσ: ``init`` (u⁰ only, by the truncated ξ of
S2AC(φ,θ); the authors' code) or ``all`` (every SVGD iterate is clamped; the paper)."""
EnergyAt = Literal["action", "pre_squash"]
"""Where the sampler's energy evaluates the critic: at the executed ``action`` squash(u) (ours)
or at the ``pre_squash`` particle u itself (the authors' code)."""
StdMap = Literal["smooth", "clamp"]
"""How σθ(s) comes from the init network's raw output r: ``smooth`` is
σ_min + (σ_max - σ_min)·sigmoid(r) (ours: gradients never vanish), ``clamp`` is
clamp(exp(r), σ_min, σ_max) (the authors' code)."""
ParticleSelection = Literal["random", "softmax", "max"]
"""Which of the M SVGD particles to act with, see :func:`select_particle`."""
Selection = Literal[ParticleSelection, "amortized"]
"""How to act deterministically: a particle selection, or one amortised-sampler pass."""
INIT_KINDS: tuple[InitKind, ...] = get_args(InitKind)
BOUNDS: tuple[BoundKind, ...] = get_args(BoundKind)
SELECTIONS: tuple[Selection, ...] = get_args(Selection)
ENERGY_AT: tuple[EnergyAt, ...] = get_args(EnergyAt)
STD_MAPS: tuple[StdMap, ...] = get_args(StdMap)

REMOVED_BOUNDS = {
    "none": "it ran the same computation as 'init' (u⁰ = μ + σξ lies in μ ± tσ because ξ is "
    "truncated to ±t either way); use 'init', with a large truncation for an effectively "
    "untruncated start",
}
"""Former ``bound`` values and why they went (docs/algorithm.md §Actor)."""

DEFAULT_SVGD = SVGDOptions(max_step_norm=0.5, self_term="hutchinson")
"""The actor's sampler: the authors' settings with the step-size cap (docs/algorithm.md
§Stability) and the entropy estimate's self term, estimated with one Hutchinson probe per step
(at M = 10, L = 3 the closed form without it misses most of the entropy change the steps make:
docs/algorithm.md §Measurements); the trainer's ``svgd`` defaults are the same."""


class PolicySample(NamedTuple):
    """M particles per state and their log-densities.

    Attributes:
        action: ``[..., M, A]`` squashed actions.
        log_prob: ``[..., M]`` log π(a|s), squash correction included.
        particles: ``[..., M, A]`` pre-squash particles u.
        diagnostics: detached scalars that show trouble coming (see
            :func:`sampler_diagnostics`), or None unless requested.
    """

    action: Tensor
    log_prob: Tensor
    particles: Tensor
    diagnostics: dict[str, Tensor] | None = None


SATURATION = 0.99
"""|tanh u| above this counts as a saturated action coordinate."""


def sampler_diagnostics(
    u0: Tensor,
    u: Tensor,
    sigma2: Tensor,
    step_norm_bound: Tensor,
    init_mean: Tensor | None = None,
    init_std: Tensor | None = None,
) -> dict[str, Tensor]:
    """Detached scalars of one sampler run that warn of a collapse before it happens.

    ``svgd/sigma2_first``, ``svgd/sigma2_last``: kernel variance at the first and last step
    (mean over states); ``svgd/step_norm_bound``: the invertibility bound ε‖∂φ/∂u‖ (max over
    steps and states; the change of variables needs it below 1); ``svgd/spread_init``,
    ``svgd/spread_final``: particle standard deviation before and after SVGD (mean over
    states and coordinates); ``actor/saturated``: fraction of coordinates with
    |tanh u| > 0.99; with a learned init, ``actor/std_mean``, ``actor/std_min`` (σθ) and
    ``actor/mean_norm`` (‖μθ‖, mean over states). No host synchronisation: all are tensors.

    Shapes:
        u0, u: ``[..., M, A]``; sigma2, step_norm_bound: ``[..., L]``; init_mean,
        init_std: ``[..., 1, A]``.
    """
    with torch.no_grad():
        out = {
            "svgd/spread_init": u0.std(-2).mean(),
            "svgd/spread_final": u.std(-2).mean(),
            "actor/saturated": (torch.tanh(u).abs() > SATURATION).to(u.dtype).mean(),
        }
        if sigma2.shape[-1]:
            out["svgd/sigma2_first"] = sigma2[..., 0].mean()
            out["svgd/sigma2_last"] = sigma2[..., -1].mean()
            out["svgd/step_norm_bound"] = step_norm_bound.amax()
        if init_mean is not None and init_std is not None:
            out["actor/std_mean"] = init_std.mean()
            out["actor/std_min"] = init_std.amin()
            out["actor/mean_norm"] = init_mean.norm(dim=-1).mean()
        return {key: value.detach() for key, value in out.items()}


def tanh_log_abs_det(u: Tensor, scale: Tensor | None = None) -> Tensor:
    """Σ_d log|d a_d / d u_d| for a = loc + scale·tanh(u), stable for large |u|.

    Uses log(1 - tanh²u) = 2(log 2 - u - softplus(-2u)). ``scale=None`` leaves out the
    constant Σ_d log scale_d (the authors' code does: ``SVGDActor(scale_log_det=False)``).

    Shapes:
        u: ``[..., A]``; scale: ``[A]`` → ``[...]``.
    """
    log_det = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
    return (log_det if scale is None else log_det + scale.log()).sum(-1)


def std_from_raw(raw: Tensor, std_min: float, std_max: float, std_map: StdMap) -> Tensor:
    """σθ from the init network's raw output, in [std_min, std_max]; see :data:`StdMap`.

    ``clamp`` computes the authors' clamp(exp(r), σ_min, σ_max) with r first cut at
    log σ_max + 1. The clamp leaves r without gradient outside [log σ_min, log σ_max], so r can
    drift without bound (on InvertedDoublePendulum-v5 it reached 88.8 after 6,782 updates,
    docs/algorithm.md §Paper versus code); past 88.7 exp overflows in float32 and the clamp's
    zero gradient times exp's infinite one is NaN. The cut changes no value and no gradient
    where the uncut formula is finite (both are σ_max with zero gradient above log σ_max).
    """
    if std_map == "clamp":
        return raw.clamp(max=math.log(std_max) + 1.0).exp().clamp(std_min, std_max)
    return std_min + (std_max - std_min) * torch.sigmoid(raw)


def truncated_standard_normal(
    shape: Sequence[int],
    truncation: float,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Standard normal samples truncated to [-t, t], by inverse CDF (vectorised, exact)."""
    t = torch.tensor(truncation, dtype=torch.float64)
    low, high = torch.special.ndtr(-t), torch.special.ndtr(t)
    uniform = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
    xi = torch.special.ndtri(low + uniform * (high - low)).clamp(-truncation, truncation)
    return xi.to(dtype or torch.get_default_dtype())


def truncated_standard_normal_log_prob(xi: Tensor, truncation: float) -> Tensor:
    """Σ_d log density of the standard normal truncated to [-t, t]. ``[..., A]`` → ``[...]``."""
    log_mass = math.log(math.erf(truncation / math.sqrt(2.0)))
    return (-0.5 * xi.pow(2) - 0.5 * math.log(2 * math.pi) - log_mass).sum(-1)


def select_particle(
    values: Tensor,
    mode: ParticleSelection,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Index of the particle to act with, per state.

    ``random``: uniform over particles; ``softmax``: p_i ∝ exp(Q_i - max Q); ``max``: argmax Q.

    Shapes:
        values: ``[..., M]`` Q-values of the particles → ``[...]`` long indices.
    """
    if mode == "max":
        return values.argmax(-1)
    logits = torch.zeros_like(values) if mode == "random" else values - values.amax(-1, True)
    flat = logits.reshape(-1, logits.shape[-1]).softmax(-1)
    return torch.multinomial(flat, 1, generator=generator).reshape(values.shape[:-1])


def gather_particle(action: Tensor, index: Tensor) -> Tensor:
    """``action[..., index, :]`` per state. ``[..., M, A]``, ``[...]`` → ``[..., A]``."""
    idx = index[..., None, None].expand(*index.shape, 1, action.shape[-1])
    return action.gather(-2, idx).squeeze(-2)


class AmortizedSampler(nn.Module):
    """g_ψ(s, ξ) → u: one forward pass per action instead of L SVGD steps.

    See docs/algorithm.md §Amortised sampler.

    Trained by amortised SVGD (Soft Q-Learning): its samples are pushed along the SVGD
    direction of the current energy; see ``S2ACLoss.amortized_loss``.

    Shapes:
        forward: observation ``[..., O]``, noise ``[..., M, A]`` → u ``[..., M, A]``.
    """

    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        *,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: Activation = "elu",
    ) -> None:
        super().__init__()
        self.net = mlp(observation_dim + action_dim, action_dim, hidden_sizes, activation)

    def forward(self, observation: Tensor, noise: Tensor) -> Tensor:
        obs = observation.unsqueeze(-2).expand(*noise.shape[:-1], observation.shape[-1])
        return self.net(torch.cat([obs, noise], -1))


class QEnergy:
    """The sampler's target: f(u) = min_k Q_k(s, squash(u)) / T (+ squash log-Jacobian).

    With the actor's ``energy_at="pre_squash"`` the critic is evaluated at u itself:
    f(u) = min_k Q_k(s, u) / T (the authors' code).

    Calling it maps u ``[..., M, A]`` to f ``[..., M]`` (``observation`` is ``[..., O]``); one
    critic call evaluates every critic on every particle. ``score_fn`` gives ∇ᵤf: in closed
    form when the critic has ``value_and_action_grad`` (:class:`~s2ac_lit.networks.QEnsemble`),
    so the sampler needs no autograd for it; otherwise by autograd (e.g. TorchRL Q-value
    modules). ``score_hvp_fn`` gives ∇ᵤf with the Hessian-vector product of the self term's
    Hutchinson probe (:meth:`score_and_hvp`) for the closed-form critics, None otherwise
    (then the sampler takes the product by autograd).
    """

    def __init__(
        self,
        actor: SVGDActor,
        observation: Tensor,
        critic: Critic,
        temperature: Tensor | float,
    ) -> None:
        self.actor = actor
        self.observation = observation.unsqueeze(-2)
        self.critic = critic
        self.temperature = temperature
        has_grad = hasattr(critic, "value_and_action_grad")
        self.score_fn = self.score if has_grad else self.autograd_score
        self.score_hvp_fn = self.score_and_hvp if has_grad else None

    def __call__(self, u: Tensor) -> Tensor:
        f = self.critic(self.observation, self.actor.energy_input(u)).amin(0) / self.temperature
        if self.actor.squash_correction:
            f = f + tanh_log_abs_det(u, self.actor.action_scale)
        return f

    # Eager under torch.compile: the actor loss differentiates this gradient again (a double
    # backward), which AOTAutograd does not support for compiled code (docs/torchrl.md).
    @torch.compiler.disable
    def autograd_score(self, u: Tensor) -> Tensor:
        """∇ᵤf by autograd, for critics without a closed-form ∇ₐQ; differentiable when
        gradients are enabled (the actor loss), detached otherwise."""
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            ug = u if u.requires_grad else u.detach().requires_grad_(True)
            (score,) = torch.autograd.grad(
                self(ug).sum(), ug, create_graph=create_graph, materialize_grads=True
            )
        return score if create_graph else score.detach()

    def score(self, u: Tensor) -> Tensor:
        """∇ᵤf: ∇ₐQ of the minimal critic over T, times da/du = scale·(1 - tanh²u) when the
        critic is evaluated at the action."""
        q, grad = self.critic.value_and_action_grad(self.observation, self.actor.energy_input(u))
        return self._score(u, grad, q.argmin(0, keepdim=True))

    def score_and_hvp(self, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """∇ᵤf(u) and ∇²ᵤf(u)·v, the latter by a forward difference of the closed-form score
        (:func:`~s2ac_lit.svgd.finite_difference_hvp`'s step), both points in one critic
        call, with the minimal critic chosen at u for both: min_k Q_k has a kink where two
        critics cross, and a difference across it would be a spike of size |∇Q₁ - ∇Q₂|/h
        instead of either critic's curvature.

        Shapes:
            u, v: ``[..., M, A]`` → ``[..., M, A]`` twice.
        """
        h = finite_difference_step(u)
        points = torch.stack([u, u + h * v])
        q, grad = self.critic.value_and_action_grad(
            self.observation, self.actor.energy_input(points)
        )
        index = q[:, :1].argmin(0, keepdim=True).expand(1, *q.shape[1:])
        score = self._score(points, grad, index)
        return score[0], (score[1] - score[0]) / h

    def _score(self, u: Tensor, grad: Tensor, index: Tensor) -> Tensor:
        """∇ᵤf from every critic's ∇ₐQ ``[K, ..., M, A]`` and the critic to take per particle
        ``[1, ..., M]``."""
        index = index.unsqueeze(-1).expand(1, *grad.shape[1:])
        score = grad.gather(0, index).squeeze(0) / self.temperature
        if self.actor.energy_at == "action" or self.actor.squash_correction:
            tanh_u = torch.tanh(u)
        if self.actor.energy_at == "action":
            score = score * self.actor.action_scale * (1 - tanh_u.pow(2))
        if self.actor.squash_correction:
            score = score - 2.0 * tanh_u  # ∇ᵤ log(1 - tanh²u)
        return score


class SVGDActor(ResettableModule):
    """S2AC policy: M particles per state moved by L SVGD steps towards exp(Q/T).

    The critic is passed at call time (it belongs to the loss, which also owns its target
    and detached copies), so the actor holds only its own parameters: the init network of
    S2AC(φ,θ) and, optionally, the amortised sampler.

    Args:
        observation_dim: O.
        action_low, action_high: ``[A]`` action bounds; actions are loc + scale·tanh(u).
        init: ``"fixed"`` (S2AC(φ)) or ``"learned"`` (S2AC(φ,θ)).
        num_particles: M (authors: 10).
        svgd: the sampler's settings (L, ε, bandwidth, step-size cap, ...); the default is
            :data:`DEFAULT_SVGD`.
        init_std: σ₀ of the fixed initial distribution (a standard deviation).
        hidden_sizes, activation: the init network (authors: 3 × 256, ELU), and the
            amortised sampler.
        std_min, std_max: range of σθ(s).
        std_map: how σθ(s) comes from the init network (:data:`StdMap`): ``"smooth"``
            (default) keeps gradients alive where the authors' ``"clamp"`` cuts them.
        truncation: t of the truncated normal ξ ∈ [-t, t].
        bound: ``"init"`` (only u⁰ lies in μ ± tσ, the authors' code) or ``"all"`` (every
            SVGD iterate is clamped to μ ± tσ, the paper); see :data:`BoundKind`.
        squash_correction: add the squash log-Jacobian to the energy so that the squashed
            particles target exp(Q(a)/T) in action space.
        energy_at: where the energy evaluates the critic (:data:`EnergyAt`): at the action
            (default) or at the pre-squash particle (the authors' code).
        scale_log_det: include -Σ log(action scale) in log π (default; the density of the
            executed action). The authors' code leaves it out, which shifts log π by a
            constant where the action limit is not 1.
        amortized: also build an :class:`AmortizedSampler` (True), or use this module
            (observation ``[..., O]``, noise ``[..., M, A]``) → u ``[..., M, A]`` as the
            amortised sampler.
        init_net: a module observation ``[..., O]`` → (μθ ``[..., A]``, σθ ``[..., A]``) to
            use as S2AC(φ,θ)'s initial Gaussian instead of building one (``hidden_sizes``,
            ``activation`` and ``std_*`` then do not apply to it); e.g. a TorchRL actor
            through :class:`s2ac_lit.objectives.adapters.TensorDictGaussian`.
            ``observation_dim`` may be None when no network is built.
    """

    def __init__(
        self,
        observation_dim: int | None,
        action_low: Tensor | Sequence[float],
        action_high: Tensor | Sequence[float],
        *,
        init: InitKind = "learned",
        num_particles: int = 10,
        svgd: SVGDOptions = DEFAULT_SVGD,
        init_std: float = 0.5,
        hidden_sizes: Sequence[int] = (256, 256, 256),
        activation: Activation = "elu",
        std_min: float = 0.1,
        std_max: float = 1.0,
        std_map: StdMap = "smooth",
        truncation: float = 3.0,
        bound: BoundKind = "init",
        squash_correction: bool = False,
        energy_at: EnergyAt = "action",
        scale_log_det: bool = True,
        amortized: bool | nn.Module = False,
        init_net: nn.Module | None = None,
    ) -> None:
        super().__init__()
        low = torch.as_tensor(action_low, dtype=torch.float32)
        high = torch.as_tensor(action_high, dtype=torch.float32)
        if low.shape != high.shape or low.dim() != 1 or not torch.all(high > low):
            raise ValueError(f"action bounds must be 1-D with high > low, got {low} and {high}")
        choices = (
            ("init", init, INIT_KINDS),
            ("bound", bound, BOUNDS),
            ("std_map", std_map, STD_MAPS),
            ("energy_at", energy_at, ENERGY_AT),
        )
        for name, value, allowed in choices:
            if value not in allowed:
                why = (
                    f" ({REMOVED_BOUNDS[value]})"
                    if name == "bound" and value in REMOVED_BOUNDS
                    else ""
                )
                raise ValueError(f"unknown {name} {value!r}; allowed: {allowed}{why}")
        if not 0 < std_min < std_max:
            raise ValueError(f"need 0 < std_min < std_max, got {std_min} and {std_max}")
        if init_net is not None and init != "learned":
            raise ValueError("init_net is S2AC(φ,θ)'s initial Gaussian: it needs init='learned'")
        builds = (init == "learned" and init_net is None) or amortized is True
        if observation_dim is None and builds:
            raise ValueError("observation_dim is needed to build the init network or sampler")
        self.register_buffer("action_loc", (high + low) / 2)
        self.register_buffer("action_scale", (high - low) / 2)
        self.action_dim = low.numel()
        self.init = init
        self.num_particles = num_particles
        self.svgd = svgd
        self.init_std = init_std
        self.std_min, self.std_max = std_min, std_max
        self.std_map = std_map
        self.truncation = truncation
        self.bound = bound
        self.squash_correction = squash_correction
        self.energy_at = energy_at
        self.scale_log_det = scale_log_det
        # A given init network returns (μ, σ) itself; the built one returns (μ, raw σ).
        self.init_returns_std = init_net is not None
        if init_net is None and init == "learned":
            init_net = mlp(observation_dim, 2 * self.action_dim, hidden_sizes, activation)
        self.init_net = init_net
        if amortized is True:
            amortized = AmortizedSampler(
                observation_dim, self.action_dim, hidden_sizes=hidden_sizes, activation=activation
            )
        self.amortized = amortized if isinstance(amortized, nn.Module) else None

    def diagnostic_keys(self) -> tuple[str, ...]:
        """Keys of :func:`sampler_diagnostics` for this actor (σ² needs a step, σθ a θ)."""
        keys = ("svgd/spread_init", "svgd/spread_final", "actor/saturated")
        if self.svgd.steps:
            keys += ("svgd/sigma2_first", "svgd/sigma2_last", "svgd/step_norm_bound")
        if self.init_net is not None:
            keys += ("actor/std_mean", "actor/std_min", "actor/mean_norm")
        return keys

    def squash(self, u: Tensor) -> Tensor:
        """a = loc + scale·tanh(u). ``[..., A]`` → ``[..., A]``."""
        return self.action_loc + self.action_scale * torch.tanh(u)

    def energy_input(self, u: Tensor) -> Tensor:
        """What the energy's critic sees for particles u: squash(u), or u (``pre_squash``)."""
        return u if self.energy_at == "pre_squash" else self.squash(u)

    def log_prob(self, u: Tensor, log_q: Tensor) -> Tensor:
        """log π of the actions squash(u) from the particles' log q. ``[..., M, A]``, ``[..., M]``
        → ``[..., M]``."""
        return log_q - tanh_log_abs_det(u, self.action_scale if self.scale_log_det else None)

    def initial_particles(
        self, observation: Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        """Draw u⁰ and log q⁰(u⁰), plus the box μ ± tσ.

        Shapes:
            observation ``[..., O]`` → u⁰ ``[..., M, A]``, log q⁰ ``[..., M]``,
            box (low, high) each ``[..., 1, A]``.
        """
        shape = (*observation.shape[:-1], self.num_particles, self.action_dim)
        kwargs = dict(generator=generator, device=observation.device, dtype=observation.dtype)
        if self.init_net is None:
            xi = torch.randn(shape, **kwargs)
            mean = torch.zeros_like(xi[..., :1, :])
            std = torch.full_like(mean, self.init_std)
            log_q0 = (-0.5 * xi.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)
        else:
            xi = truncated_standard_normal(shape, self.truncation, **kwargs)
            mean, std = self.init_gaussian(observation)
            log_q0 = truncated_standard_normal_log_prob(xi, self.truncation)
        u0 = mean + std * xi
        log_q0 = log_q0 - std.log().sum(-1)
        box = (mean - self.truncation * std, mean + self.truncation * std)
        return u0, log_q0, box

    def init_gaussian(self, observation: Tensor) -> tuple[Tensor, Tensor]:
        """μθ(s) and σθ(s) of S2AC(φ,θ): the init network's (σ through ``std_map``), or a
        given ``init_net``'s own. ``[..., O]`` → ``[..., 1, A]`` each."""
        if self.init_returns_std:
            mean, std = self.init_net(observation)
            return mean.unsqueeze(-2), std.unsqueeze(-2)
        mean, raw_std = self.init_net(observation).unsqueeze(-2).chunk(2, dim=-1)
        return mean, std_from_raw(raw_std, self.std_min, self.std_max, self.std_map)

    def energy(self, observation: Tensor, critic: Critic, temperature: Tensor | float) -> QEnergy:
        """The sampler's target for these states; see :class:`QEnergy`."""
        return QEnergy(self, observation, critic, temperature)

    def sample(
        self,
        observation: Tensor,
        critic: Critic,
        temperature: Tensor | float,
        *,
        differentiable: bool = False,
        diagnostics: bool = False,
        generator: torch.Generator | None = None,
    ) -> PolicySample:
        """M particles per state, moved by L SVGD steps, with their log π.

        With ``differentiable=True`` the graph runs through u⁰ and every SVGD step (second
        order through ∇ᵤQ), for the actor loss; otherwise the outputs are detached and only
        first-order gradients w.r.t. the particles are taken. ``diagnostics=True`` also
        returns :func:`sampler_diagnostics`. ``generator`` draws u⁰, then the self term's
        Hutchinson probes.

        Shapes:
            observation ``[..., O]`` → :class:`PolicySample` with M particles per state.
        """
        u0, log_q0, box = self.initial_particles(observation, generator=generator)
        energy = self.energy(observation, critic, temperature)
        run = svgd_run(
            energy,
            u0,
            log_q0,
            self.svgd,
            score_fn=energy.score_fn,
            score_hvp_fn=energy.score_hvp_fn,
            differentiable=differentiable,
            box=box if self.bound == "all" else None,
            diagnostics=diagnostics,
            generator=generator,
        )
        u = run.particles
        log_prob = self.log_prob(u, run.log_q)
        info = None
        if diagnostics:
            learned = self.init_net is not None
            # The box is μ ± tσ, so μ and σ come back from it without a second forward.
            mean = (box[0] + box[1]) / 2 if learned else None
            std = (box[1] - box[0]) / (2 * self.truncation) if learned else None
            info = sampler_diagnostics(u0, u, run.sigma2, run.step_norm_bound, mean, std)
        return PolicySample(self.squash(u), log_prob, u, info)

    def sample_amortized(
        self, observation: Tensor, num_particles: int, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """u = g_ψ(s, ξ), ξ ~ N(0, I). ``[..., O]`` → ``[..., M, A]``."""
        if self.amortized is None:
            raise RuntimeError("this actor was built with amortized=False")
        shape = (*observation.shape[:-1], num_particles, self.action_dim)
        noise = torch.randn(
            shape, generator=generator, device=observation.device, dtype=observation.dtype
        )
        return self.amortized(observation, noise)

    def amortized_direction(
        self, observation: Tensor, u: Tensor, critic: Critic, temperature: Tensor | float
    ) -> Tensor:
        """SVGD direction φ at the amortised samples for the current energy (detached)."""
        energy = self.energy(observation, critic, temperature)
        return svgd_direction_at(energy, u, self.svgd, score_fn=energy.score_fn)
