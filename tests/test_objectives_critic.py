"""CriticLoss, the critic base any actor can use: SAC written on it is TorchRL's SACLoss.

The ground truth is TorchRL itself: a loss with a tanh-Gaussian actor built on ``CriticLoss``
(its critics, targets, α, keys, TD target and regression; the actor's part in 20 lines) gives
``SACLoss``'s outputs, TD errors and gradients on the same networks, parameters and noise.
Then the value estimators against TorchRL's own, and SACLoss's keywords.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from conftest import mock_replay_batch, set_constant_critic, with_target_updater
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import InteractionType, NormalParamExtractor, TensorDictModule
from torch import Tensor, nn
from torch.nn import functional as F
from torchrl.data import Bounded
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import MLP, ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import SACLoss, SoftUpdate, ValueEstimators
from torchrl.objectives.sac import compute_rsample_log_prob
from torchrl.objectives.value import TD0Estimator, TD1Estimator, TDLambdaEstimator

from s2ac_lit.actor import SVGDActor
from s2ac_lit.networks import QEnsemble
from s2ac_lit.objectives import CriticLoss, S2ACLoss, SQLLoss
from s2ac_lit.objectives.critic import SAC_OUT_KEYS, Info

OBS, ACT, B, GAMMA = 3, 2, 10, 0.9


def tanh_normal_actor() -> ProbabilisticActor:
    spec = Bounded(-torch.ones(ACT), torch.ones(ACT), shape=(ACT,))
    net = nn.Sequential(
        MLP(in_features=OBS, out_features=2 * ACT, num_cells=[8]), NormalParamExtractor()
    )
    return ProbabilisticActor(
        TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"],
        spec=spec,
        distribution_class=TanhNormal,
        distribution_kwargs={"low": spec.space.low, "high": spec.space.high, "tanh_loc": False},
        default_interaction_type=InteractionType.RANDOM,
    )


def q_value_module() -> ValueOperator:
    return ValueOperator(
        MLP(in_features=OBS + ACT, out_features=1, num_cells=[8], activation_class=nn.ELU),
        in_keys=["observation", "action"],
    )


class GaussianSACLoss(CriticLoss):
    """SAC on the critic base: everything but the actor's sampling comes from ``CriticLoss``."""

    def __init__(self, actor: ProbabilisticActor, critic: nn.Module, **options) -> None:
        super().__init__(actor, critic, target_entropy=-float(ACT), **options)

    @property
    def default_out_keys(self) -> tuple[str, ...]:
        return SAC_OUT_KEYS

    def sample(self, observation: Tensor) -> tuple[Tensor, Tensor]:
        td = TensorDict({"observation": observation}, observation.shape[:-1])
        with (
            set_exploration_type(ExplorationType.RANDOM),
            self.actor_network_params.to_module(self.actor_network, preserve_module_state=False),
        ):
            return compute_rsample_log_prob(self.actor_network.get_dist(td))

    def next_state_value(self, tensordict: TensorDictBase) -> tuple[Tensor, Info]:
        next_obs = tensordict["next", "observation"]
        action, log_prob = self.sample(next_obs)
        with self.bind(self.target_qvalue_network_params):
            q = self.qvalue_network(next_obs, action).amin(0)
        return q - self.alpha * log_prob, {}

    def actor_phase(self, tensordict: TensorDictBase, critic_info: Info) -> dict[str, Tensor]:
        obs = tensordict["observation"]
        action, log_prob = self.sample(obs)
        with self.bind(self.qvalue_network_params.detach()):
            q = self.qvalue_network(obs, action).amin(0)
        loss_alpha, _ = self.alpha_loss(log_prob.unsqueeze(-1), tensordict)
        return {
            "loss_actor": self._reduce_loss(self.alpha * log_prob - q, tensordict),
            "loss_alpha": loss_alpha,
            "alpha": self.alpha,
            "entropy": -log_prob.detach().mean(),
        }


def twin_losses(**options) -> tuple[SACLoss, GaussianSACLoss]:
    """TorchRL's SACLoss and SAC on CriticLoss over the same actor, critics and targets."""
    actor, critic = tanh_normal_actor(), q_value_module()
    sac = SACLoss(actor, critic, loss_function="l2", **options)
    ours = GaussianSACLoss(actor, critic, loss_function="l2", **options)
    for loss in (sac, ours):
        loss.make_value_estimator(gamma=GAMMA)
        SoftUpdate(loss, tau=0.1)  # before the targets are read: TorchRL warns otherwise
    with torch.no_grad():  # SACLoss draws its own twin critics: take them
        for name in ("qvalue_network_params", "target_qvalue_network_params"):
            for key, value in getattr(sac, name).items(True, True):
                getattr(ours, name)[("module", *key)].copy_(value)
    return sac, ours


def batch() -> TensorDict:
    g = torch.Generator().manual_seed(2)
    td = mock_replay_batch(B, OBS, ACT, terminated=torch.rand(B, 1, generator=g) < 0.3, generator=g)
    td["next", "done"] = td["next", "terminated"] | (torch.rand(B, 1, generator=g) < 0.2)
    return td


def test_sac_on_the_critic_base_is_torchrl_sac() -> None:
    sac, ours = twin_losses()
    with torch.no_grad():
        sac.target_qvalue_network_params.apply_(lambda x: x.add_(0.1))  # targets ≠ online
        ours.target_qvalue_network_params.apply_(lambda x: x.add_(0.1))
    td_sac, td_ours = batch(), batch()
    torch.manual_seed(4)
    expected = sac(td_sac)
    torch.manual_seed(4)
    got = ours(td_ours)
    for key in SAC_OUT_KEYS:
        torch.testing.assert_close(got[key], expected[key], msg=key)
    torch.testing.assert_close(td_ours["td_error"], td_sac["td_error"])
    params = [sac.actor_network_params, sac.qvalue_network_params]
    for key in ("loss_actor", "loss_qvalue", "loss_alpha"):
        want = torch.autograd.grad(
            expected[key], [sac.log_alpha, *_leaves(params)], allow_unused=True
        )
        mine = [ours.actor_network_params, ours.qvalue_network_params["module"]]
        have = torch.autograd.grad(got[key], [ours.log_alpha, *_leaves(mine)], allow_unused=True)
        for w, h in zip(want, have, strict=True):
            assert (w is None) == (h is None), key
            if w is not None:
                torch.testing.assert_close(h, w, msg=key)


def _leaves(tds: list[TensorDictBase]) -> list[Tensor]:
    return [value for td in tds for _, value in sorted(td.items(True, True))]


def test_phases_are_the_critic_then_the_actor() -> None:
    _, ours = twin_losses()
    phases = list(ours.loss_phases(batch()))
    assert set(phases[0].keys()) == {"loss_qvalue"}
    assert set(phases[1].keys()) == set(SAC_OUT_KEYS) - {"loss_qvalue"}


# ----------------------------------------------------------------------------- value estimators
def trajectories() -> TensorDict:
    """Two 8-step trajectories ``[2, 8]`` (time last, as TorchRL's estimators read it), the
    first terminated at step 5 and restarted, the second truncated at its end."""
    g = torch.Generator().manual_seed(3)
    td = mock_replay_batch(16, OBS, ACT, generator=g).reshape(2, 8)
    done = torch.zeros(2, 8, 1, dtype=torch.bool)
    done[0, 5] = done[1, 7] = True
    td["next", "done"] = done
    td["next", "terminated"] = done.clone()
    td["next", "terminated"][1, 7] = False
    return td


ESTIMATORS = {
    ValueEstimators.TD0: (TD0Estimator, {}),
    ValueEstimators.TD1: (TD1Estimator, {}),
    ValueEstimators.TDLambda: (TDLambdaEstimator, {"lmbda": 0.7}),
}


def constant_critic_loss(kind: str, estimator: ValueEstimators) -> CriticLoss:
    critic = QEnsemble(OBS, ACT, hidden_sizes=(8,))
    options = {"alpha_init": 0.5, "loss_function": "l2"}
    if kind == "sql":
        actor = SVGDActor(OBS, [-1.0] * ACT, [1.0] * ACT, init="fixed", amortized=True)
        loss: CriticLoss = SQLLoss(actor, critic, value_particles=4, **options)
    else:
        actor = SVGDActor(OBS, [-1.0] * ACT, [1.0] * ACT, num_particles=4, hidden_sizes=(8,))
        loss = S2ACLoss(actor, critic, **options)
    with_target_updater(loss)
    set_constant_critic(loss.qvalue_network_params, 0.7)
    set_constant_critic(loss.target_qvalue_network_params, 0.7)
    _, hyperparams = ESTIMATORS[estimator]
    return loss.make_value_estimator(estimator, gamma=GAMMA, **hyperparams)


@pytest.mark.parametrize("kind", ["s2ac", "sql"])
@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_td_targets_are_torchrl_estimators_on_the_same_values(kind: str, estimator) -> None:
    """Constant critics Q ≡ c: V(s') is c + α log vol (SQL) or c - α·mean log π of the
    next-state particles (S2AC), and the target is TorchRL's estimator on those values."""
    loss = constant_critic_loss(kind, estimator)
    data = trajectories()
    loss_q, info = loss.critic_loss(data)
    c, alpha = 0.7, 0.5
    if kind == "sql":
        next_value = torch.full((2, 8), c + alpha * ACT * math.log(2.0))
    else:
        next_value = c - alpha * info["next_log_prob"].mean(-1)
    cls, hyperparams = ESTIMATORS[estimator]
    reference = cls(gamma=GAMMA, value_network=None, **hyperparams)
    ref_td = data.clone()
    ref_td["next", "state_value"] = next_value.unsqueeze(-1)
    target = reference.value_estimate(ref_td).squeeze(-1)
    torch.testing.assert_close(loss_q, 2 * (c - target).pow(2).mean())
    torch.testing.assert_close(data["td_error"], (c - target).abs())
    if estimator != ValueEstimators.TD0:  # the estimator really combines the steps
        td0 = TD0Estimator(gamma=GAMMA, value_network=None).value_estimate(ref_td).squeeze(-1)
        assert not torch.allclose(target, td0)


@pytest.mark.parametrize("estimator", [ValueEstimators.GAE, ValueEstimators.VTrace])
def test_on_policy_estimators_are_refused(estimator) -> None:
    loss = constant_critic_loss("s2ac", ValueEstimators.TD0)
    with pytest.raises(NotImplementedError, match="Supported value types"):
        loss.make_value_estimator(estimator)


def test_set_keys_reach_the_value_estimator() -> None:
    loss = constant_critic_loss("sql", ValueEstimators.TDLambda)
    loss.set_keys(reward="r", done=("d", "x"), terminated="t", value="v")
    keys = loss.value_estimator.tensor_keys
    assert (keys.reward, keys.done, keys.terminated, keys.value) == ("r", ("d", "x"), "t", "v")


# ----------------------------------------------------------------------------- SACLoss keywords
SHARED = (
    "loss_function",
    "alpha_init",
    "min_alpha",
    "max_alpha",
    "action_spec",
    "fixed_alpha",
    "target_entropy",
    "delay_actor",
    "delay_qvalue",
    "reduction",
    "use_prioritized_weights",
)


def test_s2ac_takes_sacloss_keywords_with_its_defaults() -> None:
    sac = inspect.signature(SACLoss).parameters
    s2ac = inspect.signature(S2ACLoss).parameters
    for name in SHARED:
        expected = "mean" if name == "reduction" else sac[name].default  # SACLoss: None → mean
        assert s2ac[name].default == expected, name
    # num_qvalue_nets: SACLoss's 2 for a Q-value module, else the ensemble's or list's K.
    loss = S2ACLoss(tanh_normal_actor(), q_value_module())
    assert loss.num_qvalue_nets == 2
    assert isinstance(loss.log_alpha, nn.Parameter) and loss.alpha.item() == pytest.approx(1.0)
    assert loss.target_entropy.item() == -ACT


@pytest.mark.parametrize("loss_class", [S2ACLoss, SQLLoss])
def test_sacloss_keywords_without_meaning_are_refused_with_a_reason(loss_class) -> None:
    own = set(inspect.signature(loss_class).parameters)
    for name in set(inspect.signature(SACLoss).parameters) - own:
        with pytest.raises(TypeError, match=rf"does not accept {name}: \w+"):
            loss_class(tanh_normal_actor(), q_value_module(), **{name: None})
    with pytest.raises(TypeError, match="not a keyword of"):
        loss_class(tanh_normal_actor(), q_value_module(), num_critics=2)


@pytest.mark.parametrize("loss_function", ["l2", "smooth_l1", "l1"])
def test_loss_function_is_the_per_sample_regression(loss_function: str) -> None:
    loss = constant_critic_loss("sql", ValueEstimators.TD0)
    loss.loss_function = loss_function
    td = batch()
    loss_q, info = loss.critic_loss(td)
    target = info["target_value"]  # a mean: recompute y from the constant critics instead
    y = td["next", "reward"].squeeze(-1) + GAMMA * (~td["next", "terminated"]).squeeze(-1) * (
        0.7 + 0.5 * ACT * math.log(2.0)
    )
    assert target.item() == pytest.approx(y.mean().item(), rel=1e-5)
    q = torch.full_like(y, 0.7)
    per_sample = {"l2": F.mse_loss, "smooth_l1": F.smooth_l1_loss, "l1": F.l1_loss}[loss_function](
        q, y, reduction="none"
    )
    torch.testing.assert_close(loss_q, 2 * per_sample.mean())


def test_unknown_loss_function_is_refused() -> None:
    with pytest.raises(ValueError, match=r"loss_function 'huber'.*allowed"):
        S2ACLoss(tanh_normal_actor(), q_value_module(), loss_function="huber")


def test_alpha_is_held_within_min_and_max_alpha() -> None:
    loss = S2ACLoss(tanh_normal_actor(), q_value_module(), min_alpha=0.1, max_alpha=2.0)
    policy = loss.policy()
    for raw, expected in ((5.0, 2.0), (-9.0, 0.1), (0.0, 1.0)):
        with torch.no_grad():
            loss.log_alpha.fill_(raw)
        assert policy.sampler_temperature().item() == pytest.approx(expected, rel=1e-6)
        assert loss.alpha.item() == pytest.approx(expected, rel=1e-6)
        assert loss.log_alpha.item() == pytest.approx(math.log(expected), rel=1e-6)


def test_without_delay_qvalue_the_target_is_the_online_critics() -> None:
    """Shifting the online critics by δ shifts y by γδ on live transitions (SQL: V = c + ...)."""
    loss = constant_critic_loss("sql", ValueEstimators.TD0)
    online = SQLLoss(
        loss.actor_network,
        QEnsemble(OBS, ACT, hidden_sizes=(8,)),
        alpha_init=0.5,
        value_particles=4,
        delay_qvalue=False,
    ).make_value_estimator(gamma=GAMMA)
    assert "target_qvalue_network_params" not in dict(online.named_modules())
    td = batch()
    targets = []
    for c in (0.7, 1.7):
        set_constant_critic(online.qvalue_network_params, c)
        targets.append(online.critic_loss(td.clone())[1]["target_value"])
    live = (~td["next", "terminated"]).float().mean()
    torch.testing.assert_close(targets[1] - targets[0], GAMMA * live)


def test_delay_actor_samples_the_next_states_with_the_target_actor() -> None:
    actor = tanh_normal_actor()
    loss = S2ACLoss(actor, q_value_module(), delay_actor=True).make_value_estimator(gamma=GAMMA)
    updater = SoftUpdate(loss, tau=0.5)
    td = batch()
    torch.manual_seed(0)
    before = loss.critic_loss(td.clone())[1]["next_log_prob"]
    with torch.no_grad():  # move the online actor only: the target's samples stay the same
        for param in loss.actor_network_params.values(True, True):
            if isinstance(param, nn.Parameter):
                param.add_(0.3)
    torch.manual_seed(0)
    torch.testing.assert_close(loss.critic_loss(td.clone())[1]["next_log_prob"], before)
    updater.step()  # now the target actor moves halfway
    torch.manual_seed(0)
    assert not torch.allclose(loss.critic_loss(td.clone())[1]["next_log_prob"], before)


def test_sql_alpha_is_fixed_and_has_no_target_actor() -> None:
    with pytest.raises(ValueError, match="SQL's α is fixed"):
        SQLLoss(tanh_normal_actor(), q_value_module(), fixed_alpha=False)
    with pytest.raises(TypeError, match="target_entropy: SQL's α is fixed"):
        SQLLoss(tanh_normal_actor(), q_value_module(), target_entropy=-1.0)
    with pytest.raises(ValueError, match="delay_actor=True"):
        SQLLoss(tanh_normal_actor(), q_value_module(), delay_actor=True)


# ----------------------------------------------------------------------------- interruptions
@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_a_stop_inside_bound_parameters_leaves_them_restored_and_goes_on(stop) -> None:
    """A signal that lands while the loss's parameters are bound (the policy acting in an
    evaluation) reaches the caller as itself, with the modules' own parameters back: tensordict
    alone would turn it into "Converting a tensordict to boolean value is not permitted"."""
    loss = S2ACLoss(
        SVGDActor(OBS, [-1.0] * ACT, [1.0] * ACT, hidden_sizes=(8,)),
        QEnsemble(OBS, ACT, hidden_sizes=(8,)),
    )
    before = TensorDict.from_module(loss.qvalue_network).clone()
    with pytest.raises(stop), loss.bind():
        raise stop()
    after = TensorDict.from_module(loss.qvalue_network)
    assert (after == before).all()
    with loss.bind():  # and it binds again
        pass
