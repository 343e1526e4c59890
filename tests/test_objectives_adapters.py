"""The networks a TorchRL SAC user has, as S2AC's and SQL's networks (objectives/adapters.py).

Ground truth: TorchRL's own modules. K stacked Q-value modules give each module's values;
S2AC with no SVGD steps around a ``ProbabilisticActor(TanhNormal)`` is that actor's
tanh-Gaussian (same samples, same log π); and the losses give the same values and gradients
with TorchRL critics (∇ₐQ by autograd) as with a ``QEnsemble`` holding the same weights (∇ₐQ in
closed form). Anything else is refused at construction, naming what was given.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from conftest import mock_replay_batch, with_target_updater
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import InteractionType, NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.data import Bounded, Unbounded
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import MLP, ProbabilisticActor, TanhNormal, ValueOperator

from s2ac_lit.actor import DEFAULT_SVGD, SVGDActor
from s2ac_lit.networks import QEnsemble
from s2ac_lit.objectives import S2ACLoss, SQLLoss
from s2ac_lit.objectives.adapters import (
    TensorDictGaussian,
    as_critic,
    as_gaussian_actor,
)

OBS, ACT, HIDDEN = 3, 2, 8
LOW, HIGH = torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 1.0])


def tanh_normal_actor(spec=None, **kwargs) -> ProbabilisticActor:
    spec = spec if spec is not None else Bounded(LOW, HIGH, shape=(ACT,))
    net = nn.Sequential(
        MLP(in_features=OBS, out_features=2 * ACT, num_cells=[HIDDEN]), NormalParamExtractor()
    )
    return ProbabilisticActor(
        TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"],
        spec=spec,
        distribution_class=TanhNormal,
        distribution_kwargs={"low": LOW, "high": HIGH, "tanh_loc": False},
        default_interaction_type=InteractionType.RANDOM,
        **kwargs,
    )


def q_module(in_keys=("observation", "action")) -> ValueOperator:
    mlp = MLP(in_features=OBS + ACT, out_features=1, num_cells=[HIDDEN], activation_class=nn.ELU)
    return ValueOperator(mlp, in_keys=list(in_keys))


def values_of(module: ValueOperator, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    batch = torch.broadcast_shapes(obs.shape[:-1], action.shape[:-1])
    td = TensorDict(
        {"observation": obs.expand(*batch, OBS), "action": action.expand(*batch, ACT)}, batch
    )
    return module(td)["state_action_value"].squeeze(-1)


# ----------------------------------------------------------------------------- critics
def test_stacked_critics_give_each_module_its_values() -> None:
    modules = [q_module(), q_module()]
    critics = as_critic(modules, None, "action")
    obs, action = torch.randn(4, 1, OBS), torch.rand(4, 5, ACT)  # particles share a state
    q = critics(obs, action)
    assert q.shape == (2, 4, 5)
    for k, module in enumerate(modules):
        torch.testing.assert_close(q[k], values_of(module, obs, action))


def test_one_module_becomes_k_independently_drawn_critics() -> None:
    module = q_module(in_keys=("action", "observation"))  # the SAC example's order
    critics = as_critic(module, 3, "action")
    obs, action = torch.randn(6, OBS), torch.rand(6, ACT)
    q = critics(obs, action)
    torch.testing.assert_close(q[0], values_of(module, obs, action))  # the user's weights
    assert not torch.allclose(q[1], q[0]) and not torch.allclose(q[2], q[1])


def test_reset_redraws_every_critic_and_the_actor() -> None:
    loss = S2ACLoss(tanh_normal_actor(), q_module())
    before = TensorDict.from_module(loss).clone()
    loss.reset_parameters_recursive()
    after = TensorDict.from_module(loss)
    for prefix in ("actor_network_params", "qvalue_network_params"):
        for key, value in before[prefix].items(True, True):
            if isinstance(loss.get_submodule(prefix)[key], nn.Parameter):
                assert not torch.equal(value, after[prefix][key]), (prefix, key)
    weight = after["qvalue_network_params"]["module", "module", "0", "weight"]
    assert not torch.equal(weight[0], weight[1])


@pytest.mark.parametrize(
    ("critic", "given"),
    [
        (nn.Linear(OBS + ACT, 1), "Linear"),
        ([q_module(), nn.Linear(OBS + ACT, 1)], r"list of \['ValueOperator', 'Linear'\]"),
    ],
)
def test_a_critic_of_another_kind_is_refused_naming_it(critic, given: str) -> None:
    with pytest.raises(TypeError, match=rf"qvalue_network={given} is not a critic; accepted: a"):
        S2ACLoss(tanh_normal_actor(), critic)


def test_a_q_module_must_read_an_observation_and_the_action() -> None:
    extra = ValueOperator(
        MLP(in_features=2 * OBS + ACT, out_features=1, num_cells=[HIDDEN]),
        in_keys=["observation", "action", "goal"],
    )
    with pytest.raises(TypeError, match=r"reads \['observation', 'action', 'goal'\]"):
        as_critic(extra, None, "action")


def test_lazy_networks_must_be_run_first() -> None:
    lazy = ValueOperator(MLP(out_features=1, num_cells=[HIDDEN]), in_keys=["observation", "action"])
    with pytest.raises(ValueError, match="fake_tensordict"):
        S2ACLoss(tanh_normal_actor(), lazy)


def test_num_qvalue_nets_must_agree_with_the_networks() -> None:
    with pytest.raises(ValueError, match="num_critics=2"):
        as_critic(QEnsemble(OBS, ACT), 3, "action")
    with pytest.raises(ValueError, match="2 Q-value modules"):
        as_critic([q_module(), q_module()], 3, "action")


# ----------------------------------------------------------------------------- actors
def test_the_gaussian_is_the_actors_distribution_parameters() -> None:
    actor = tanh_normal_actor()
    given = as_gaussian_actor(actor, None, "S2ACLoss", "...")
    assert isinstance(given.gaussian, TensorDictGaussian)
    assert (given.observation_key, given.action_key) == ("observation", "action")
    torch.testing.assert_close(given.low, LOW)
    torch.testing.assert_close(given.high, HIGH)
    obs = torch.randn(5, OBS)
    with set_exploration_type(ExplorationType.RANDOM):
        params = actor.get_dist_params(TensorDict({"observation": obs}, [5]))
    loc, scale = given.gaussian(obs)
    torch.testing.assert_close(loc, params["loc"])
    torch.testing.assert_close(scale, params["scale"])


@pytest.mark.parametrize(
    ("actor", "match"),
    [
        (nn.Linear(OBS, ACT), "actor_network=Linear; accepted: an SVGDActor"),
        (
            TensorDictModule(nn.Linear(OBS, ACT), in_keys=["observation"], out_keys=["action"]),
            r"writing \['action'\]; accepted",
        ),
    ],
)
def test_an_actor_of_another_kind_is_refused_naming_it(actor, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        S2ACLoss(actor, q_module())
    with pytest.raises(TypeError, match=match.replace("an SVGDActor", "an SVGDActor built")):
        SQLLoss(actor, q_module())


def test_the_action_box_comes_from_action_spec_or_the_actor() -> None:
    unbounded = tanh_normal_actor(spec=Unbounded(shape=(ACT,)))
    with pytest.raises(ValueError, match="give action_spec"):
        S2ACLoss(unbounded, q_module())
    loss = S2ACLoss(unbounded, q_module(), action_spec=Bounded(-3.0, 3.0, shape=(ACT,)))
    torch.testing.assert_close(loss.actor_network.action_scale, torch.full((ACT,), 3.0))
    svgd_actor = SVGDActor(OBS, LOW, HIGH)
    with pytest.raises(ValueError, match="differs from the actor's"):
        S2ACLoss(svgd_actor, q_module(), action_spec=Bounded(-1.0, 1.0, shape=(ACT,)))


def test_without_svgd_steps_s2ac_is_the_actors_tanh_gaussian() -> None:
    """L = 0 and an untruncated start: S2AC(φ,θ)'s particles are draws of the actor's
    TanhNormal(loc, scale) on the box, and their log π is TanhNormal's log-density."""
    actor = tanh_normal_actor().double()
    given = as_gaussian_actor(actor, None, "S2ACLoss", "...")
    svgd_actor = SVGDActor(
        None,
        LOW,
        HIGH,
        init_net=given.gaussian,
        num_particles=50,
        truncation=30.0,  # erf(30/√2) = 1 in float64: the truncated normal is the normal
        svgd=replace(DEFAULT_SVGD, steps=0),
    ).double()
    obs = torch.randn(4, OBS, dtype=torch.float64)
    sample = svgd_actor.sample(obs, QEnsemble(OBS, ACT).double(), 1.0)
    td = TensorDict({"observation": obs.unsqueeze(-2).expand(4, 50, OBS)}, [4, 50])
    with set_exploration_type(ExplorationType.RANDOM):
        dist = actor.get_dist(td)
    torch.testing.assert_close(sample.log_prob, dist.log_prob(sample.action), rtol=1e-6, atol=1e-6)
    loc, scale = given.gaussian(obs)
    z = (sample.particles - loc.unsqueeze(-2)) / scale.unsqueeze(-2)
    # 200 standard normal draws per coordinate: mean within 4/√200, variance within 4·√(2/200).
    assert z.mean((0, 1)).abs().max() < 4 / 200**0.5
    assert (z.var((0, 1)) - 1).abs().max() < 4 * (2 / 200) ** 0.5


def test_sql_samples_the_actors_gaussian() -> None:
    actor = tanh_normal_actor()
    loss = SQLLoss(actor, q_module())
    obs = torch.randn(5, OBS)
    torch.manual_seed(1)
    u = loss.actor_network.sample_amortized(obs, 7)
    torch.manual_seed(1)
    noise = torch.randn(5, 7, ACT)
    loc, scale = as_gaussian_actor(actor, None, "SQLLoss", "...").gaussian(obs)
    torch.testing.assert_close(u, loc.unsqueeze(-2) + scale.unsqueeze(-2) * noise)
    assert loss.actor_network.squash_correction and loss.actor_network.init_net is None


# ----------------------------------------------------------------------------- fast path
def ensemble_into_stacked(ensemble: TensorDictBase, stacked: TensorDictBase) -> None:
    """Write a QEnsemble's parameters into K stacked TorchRL MLPs' (Linear: weight transposed)."""
    linears = sorted({key[2] for key in stacked.keys(True, True)}, key=int)  # MLP indices
    with torch.no_grad():
        for layer, index in enumerate(linears):
            weights = ensemble["layers", str(layer)]
            stacked["module", "module", index, "weight"].copy_(weights["weight"].transpose(-1, -2))
            stacked["module", "module", index, "bias"].copy_(weights["bias"].squeeze(-2))


def make_pair(kind: str) -> tuple:
    """The same loss twice: with a QEnsemble and with TorchRL modules of the same weights."""
    if kind == "sql":
        actor = SVGDActor(OBS, LOW, HIGH, init="fixed", amortized=True, squash_correction=True)
        options = {"value_particles": 5}
    else:
        actor = SVGDActor(
            OBS,
            LOW,
            HIGH,
            num_particles=4,
            hidden_sizes=(HIDDEN,),
            amortized=True,
            svgd=replace(DEFAULT_SVGD, steps=2),
        )
        options = {}
    loss_class = SQLLoss if kind == "sql" else S2ACLoss
    fast = loss_class(
        actor, QEnsemble(OBS, ACT, hidden_sizes=(HIDDEN,)), amortized_particles=4, **options
    )
    slow = loss_class(actor, q_module(), amortized_particles=4, **options)
    for loss in (fast, slow):  # before the targets are read: TorchRL warns otherwise
        with_target_updater(loss).make_value_estimator(gamma=0.9)
    with torch.no_grad():
        fast.target_qvalue_network_params.apply_(lambda x: x.add_(0.05))  # targets ≠ online
    ensemble_into_stacked(fast.qvalue_network_params, slow.qvalue_network_params)
    ensemble_into_stacked(fast.target_qvalue_network_params, slow.target_qvalue_network_params)
    return fast, slow


@pytest.mark.parametrize("kind", ["s2ac", "sql"])
def test_torchrl_critics_give_the_qensembles_losses_and_gradients(kind: str) -> None:
    fast, slow = make_pair(kind)
    batch = mock_replay_batch(6, OBS, ACT, action_range=(0.0, 1.0))
    outs = []
    for loss in (fast, slow):
        torch.manual_seed(3)
        outs.append(loss(batch.clone()))
    for key in fast.out_keys:
        torch.testing.assert_close(outs[1][key], outs[0][key], rtol=1e-5, atol=1e-5, msg=key)
    actor_params = list(fast.actor_network_params.values(True, True))
    trainable = [p for p in actor_params if p.requires_grad]
    trained = [k for k in fast.out_keys if k.startswith("loss_") and outs[0][k].requires_grad]
    for key in trained:
        want = torch.autograd.grad(outs[0][key], trainable, allow_unused=True, retain_graph=True)
        got = torch.autograd.grad(outs[1][key], trainable, allow_unused=True, retain_graph=True)
        for w, g in zip(want, got, strict=True):
            assert (w is None) == (g is None), key
            if w is not None:
                torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6, msg=key)


def test_policy_weights_are_the_losss_with_torchrl_networks() -> None:
    loss = S2ACLoss(tanh_normal_actor(), [q_module(), q_module()])
    weights = TensorDict.from_module(loss.policy())
    for key, value in loss.qvalue_network_params.items(True, True):
        assert weights["qvalue_params"][key] is value
    for key, value in loss.actor_network_params.items(True, True):
        assert weights["actor_params"][key] is value
    assert weights["log_alpha"] is loss.log_alpha  # SACLoss's default: α is learned
    obs = torch.randn(7, OBS)
    for exploration in (ExplorationType.RANDOM, ExplorationType.DETERMINISTIC):
        with set_exploration_type(exploration), torch.no_grad():
            action = loss.policy()(TensorDict({"observation": obs}, [7]))["action"]
        assert torch.all(action >= LOW) and torch.all(action <= HIGH)


def test_the_users_actor_is_trained_in_place() -> None:
    """As with SACLoss, the loss trains the actor it was given (its parameters are the loss's);
    the critics are the loss's own copies."""
    actor = tanh_normal_actor()
    before = copy.deepcopy(actor)
    loss = with_target_updater(S2ACLoss(actor, q_module())).make_value_estimator(gamma=0.9)
    out = loss(mock_replay_batch(6, OBS, ACT, action_range=(0.0, 1.0)))
    out["loss_actor"].backward()
    with torch.no_grad():
        for p in loss.actor_network_params.values(True, True):
            if p.grad is not None:
                p.sub_(0.1 * p.grad)
    moved = [
        not torch.equal(a, b) for a, b in zip(actor.parameters(), before.parameters(), strict=True)
    ]
    assert all(moved)
