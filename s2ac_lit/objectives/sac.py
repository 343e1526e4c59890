"""SAC baseline: TorchRL's own ``SACLoss`` with a tanh-Normal actor (docs/algorithm.md §Baselines).

Nothing of SAC is rewritten here: this module only builds the networks TorchRL's
:class:`torchrl.objectives.SACLoss` expects (a ``ProbabilisticActor`` over a ``TanhNormal`` and a
``ValueOperator`` critic, which the loss copies into twin critics and their targets), with the
same widths and activation names as the S2AC networks, so that the trainers can swap algorithms
by name.

Shapes:
    O observation dim, A action dim.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import InteractionType, NormalParamExtractor, TensorDictModule
from torch import Tensor, nn
from torchrl.data import Bounded
from torchrl.modules import MLP, ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import SACLoss

from s2ac_lit.networks import Activation, activation_layer, mlp
from s2ac_lit.objectives.common import EntropyEstimate, check_probe_observations

OBSERVATION_KEY = "observation"
ACTION_KEY = "action"
LOC_KEY = "loc"
SCALE_KEY = "scale"


def make_sac_networks(
    observation_dim: int,
    action_dim: int,
    action_low: Tensor | Sequence[float],
    action_high: Tensor | Sequence[float],
    *,
    hidden_sizes: Sequence[int] = (256, 256),
    activation: Activation = "relu",
) -> tuple[ProbabilisticActor, ValueOperator]:
    """SAC's tanh-Normal actor onto the box and one Q-value critic, as TorchRL's SAC example.

    Args:
        observation_dim: O.
        action_dim: A.
        action_low, action_high: ``[A]`` bounds; the ``TanhNormal`` maps onto this box (the
            actor's ``spec``).
        hidden_sizes: widths of both the actor and the critic MLPs.
        activation: one of :data:`s2ac_lit.networks.Activation`.

    Returns:
        ``(actor, qvalue)``: ``observation`` ``[..., O]`` → ``loc``, ``scale`` and ``action``
        ``[..., A]``; (``observation``, ``action``) → ``state_action_value`` ``[..., 1]``.
    """
    low = torch.as_tensor(action_low, dtype=torch.float32)
    high = torch.as_tensor(action_high, dtype=torch.float32)
    if low.shape != (action_dim,) or high.shape != (action_dim,) or not torch.all(high > low):
        raise ValueError(
            f"action bounds must have shape ({action_dim},) with high > low, got {low} and {high}"
        )
    action_spec = Bounded(low=low, high=high, shape=(action_dim,))
    actor_net = nn.Sequential(
        mlp(observation_dim, 2 * action_dim, hidden_sizes, activation),
        NormalParamExtractor(),
    )
    actor = ProbabilisticActor(
        TensorDictModule(actor_net, in_keys=[OBSERVATION_KEY], out_keys=[LOC_KEY, SCALE_KEY]),
        in_keys=[LOC_KEY, SCALE_KEY],
        out_keys=[ACTION_KEY],
        spec=action_spec,
        distribution_class=TanhNormal,
        distribution_kwargs={"low": low, "high": high, "tanh_loc": False},
        default_interaction_type=InteractionType.RANDOM,
    )
    # TorchRL's MLP concatenates its inputs, which is the (s, a) critic interface ValueOperator
    # calls; the partial builds the activation by the same names as the S2AC networks.
    critic_net = MLP(
        in_features=observation_dim + action_dim,
        out_features=1,
        num_cells=list(hidden_sizes),
        activation_class=functools.partial(activation_layer, activation),
    )
    return actor, ValueOperator(critic_net, in_keys=[OBSERVATION_KEY, ACTION_KEY])


def sac_loss(
    actor: ProbabilisticActor,
    qvalue: nn.Module,
    *,
    num_critics: int = 2,
    alpha_init: float = 1.0,
    learn_alpha: bool = True,
    target_entropy: float | Literal["auto"] = "auto",
) -> SACLoss:
    """TorchRL's ``SACLoss`` (v2, no value network, L2 critic loss) over these networks.

    Args:
        actor: a ``ProbabilisticActor`` (its ``spec`` gives A for ``target_entropy="auto"``).
        qvalue: one Q-value critic, copied into ``num_critics`` (``num_qvalue_nets``); targets
            use their minimum.
        alpha_init: initial (or fixed) entropy temperature α.
        learn_alpha: learn α towards ``target_entropy`` (``SACLoss(fixed_alpha=not learn_alpha)``).
        target_entropy: ``"auto"`` (-A) or a float.
    """
    return SACLoss(
        actor,
        qvalue,
        num_qvalue_nets=num_critics,
        loss_function="l2",
        alpha_init=alpha_init,
        fixed_alpha=not learn_alpha,
        target_entropy=target_entropy,
    )


def make_sac_loss(
    observation_dim: int,
    action_dim: int,
    action_low: Tensor | Sequence[float],
    action_high: Tensor | Sequence[float],
    *,
    num_critics: int = 2,
    hidden_sizes: Sequence[int] = (256, 256),
    activation: Activation = "relu",
    alpha_init: float = 1.0,
    learn_alpha: bool = True,
    target_entropy: float | Literal["auto"] = "auto",
) -> tuple[SACLoss, ProbabilisticActor]:
    """:func:`sac_loss` over :func:`make_sac_networks`, and its policy (the actor).

    Returns:
        ``(loss, policy)``. Build γ with ``loss.make_value_estimator(gamma=...)`` and the targets'
        Polyak averaging with ``torchrl.objectives.SoftUpdate(loss, tau=...)``. The policy maps
        ``observation`` ``[..., O]`` to ``action`` ``[..., A]``: a sample under
        ``ExplorationType.RANDOM`` (collectors' default), the squashed mean under
        ``DETERMINISTIC``.

    Examples:
        >>> from tensordict import TensorDict
        >>> loss, policy = make_sac_loss(3, 1, [-2.0], [2.0], hidden_sizes=(8,))
        >>> policy(TensorDict({"observation": torch.zeros(3)}))["action"].shape
        torch.Size([1])
    """
    actor, qvalue = make_sac_networks(
        observation_dim,
        action_dim,
        action_low,
        action_high,
        hidden_sizes=hidden_sizes,
        activation=activation,
    )
    loss = sac_loss(
        actor,
        qvalue,
        num_critics=num_critics,
        alpha_init=alpha_init,
        learn_alpha=learn_alpha,
        target_entropy=target_entropy,
    )
    return loss, actor


def sac_loss_phases(loss: SACLoss, tensordict: TensorDictBase) -> Iterator[TensorDictBase]:
    """``SACLoss.forward`` in two phases: the critics' loss, then the actor's and α's.

    The same terms as ``forward`` (SACLoss v2: no value network), computed by SACLoss's own
    methods; a caller may step the critics between the phases
    (``optim.update_order=critic_first``), and the actor phase then sees the stepped critics.

    Shapes:
        tensordict: ``[*B]`` replay batch → scalar outputs (``reduction="mean"``).
    """
    loss_qvalue, value_metadata = loss.qvalue_v2_loss(tensordict)
    tensordict.set(loss.tensor_keys.priority, value_metadata["td_error"])
    yield TensorDict({"loss_qvalue": loss_qvalue}, batch_size=[])
    loss_actor, actor_metadata = loss.actor_loss(tensordict)
    log_prob = actor_metadata["log_prob"]
    weights = loss._maybe_get_priority_weight(tensordict)
    loss_alpha = loss._reduce_loss(
        loss.alpha_loss(log_prob), tensordict=tensordict, weights=weights
    )
    yield TensorDict(
        {
            "loss_actor": loss_actor,
            "loss_alpha": loss_alpha,
            "alpha": loss.log_alpha.detach().exp(),
            "entropy": -log_prob.mean(),
        },
        batch_size=[],
    )


def sac_entropy(
    actor: ProbabilisticActor,
    observations: Tensor,
    *,
    num_samples: int = 1000,
    observation_key: str = OBSERVATION_KEY,
) -> EntropyEstimate:
    """-mean log π of samples of a ``ProbabilisticActor`` (SAC's tanh-Normal).

    Samples and log-densities come from the same ``actor.get_dist`` distribution; the tanh
    transform caches each sample's pre-image, so log π is exact even where tanh saturates.

    Shapes:
        observations: ``[P, O]`` → entropy ``[P]``, actions ``[P, N, A]``.
    """
    check_probe_observations(observations)
    td = TensorDict({observation_key: observations}, batch_size=observations.shape[:1])
    with torch.no_grad():
        dist = actor.get_dist(td)
        actions = dist.sample((num_samples,))  # [N, P, A]
        log_prob = dist.log_prob(actions)  # [N, P]
    return EntropyEstimate(-log_prob.mean(0), actions.transpose(0, 1))
