"""The swap: TorchRL's SAC example (``sota-implementations/sac``) with ``SACLoss`` replaced.

The example's pipeline, rebuilt here the way its factories build it (``utils.py``): the env
behind ``ParallelEnv`` with its transforms, the actor (``MLP`` + ``NormalParamExtractor`` +
``ProbabilisticActor(TanhNormal)``) and the critic (``ValueOperator(MLP)``) initialised lazily
through ``fake_tensordict``, the loss with the example's keywords, ``SoftUpdate(eps=...)``, three
Adams over ``actor_network_params``, ``qvalue_network_params`` and ``log_alpha`` joined by
``group_optimizers``, the collector, the replay buffer, and ``sac.py``'s update and loop (loss
selection, logging, deterministic evaluation). The only differences between the three runs
are the loss class and where the acting policy comes from: ``model[0]`` for SAC,
``loss_module.policy()`` for S2AC and SQL (docs/torchrl.md).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import InteractionType, TensorDictModule
from tensordict.nn.distributions import NormalParamExtractor
from torch import nn, optim
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
from torchrl.envs import Compose, DoubleToFloat, EnvCreator, ParallelEnv, TransformedEnv
from torchrl.envs.libs.gym import GymEnv
from torchrl.envs.transforms import InitTracker, RewardSum, StepCounter
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import MLP, ProbabilisticActor, ValueOperator
from torchrl.modules.distributions import TanhNormal
from torchrl.objectives import SACLoss, SoftUpdate, group_optimizers

from s2ac_lit.objectives import S2ACLoss, SQLLoss

# The example's config.yaml, scaled down to a few updates on Pendulum-v1.
CFG = {
    "env": {"name": "Pendulum-v1", "max_episode_steps": 200, "seed": 42},
    "collector": {"total_frames": 150, "init_random_frames": 50, "frames_per_batch": 50},
    "replay_buffer": {"size": 1000},
    "optim": {
        "utd_ratio": 0.1,
        "gamma": 0.99,
        "loss_function": "l2",
        "lr": 3.0e-4,
        "weight_decay": 0.0,
        "batch_size": 32,
        "target_update_polyak": 0.995,
        "alpha_init": 1.0,
        "adam_eps": 1.0e-8,
    },
    "network": {
        "hidden_sizes": [16, 16],
        "activation": nn.ReLU,
        "default_policy_scale": 1.0,
        "scale_lb": 0.1,
    },
}

# The swap: the loss class, and the acting policy (collector and evaluation).
SWAPS: dict[str, tuple[type, Callable]] = {
    "sac": (SACLoss, lambda loss_module, model: model[0]),
    "s2ac": (S2ACLoss, lambda loss_module, model: loss_module.policy()),
    "sql": (SQLLoss, lambda loss_module, model: loss_module.policy()),
}


def make_environment():
    def env_maker():
        return GymEnv(CFG["env"]["name"])

    def with_transforms(env):
        return TransformedEnv(
            env,
            Compose(
                InitTracker(),
                StepCounter(CFG["env"]["max_episode_steps"]),
                DoubleToFloat(),
                RewardSum(),
            ),
        )

    parallel_env = ParallelEnv(1, EnvCreator(env_maker), serial_for_single=True)
    parallel_env.set_seed(CFG["env"]["seed"])
    train_env = with_transforms(parallel_env)
    eval_env = with_transforms(ParallelEnv(1, EnvCreator(env_maker), serial_for_single=True))
    return train_env, eval_env


def make_sac_agent(train_env, eval_env) -> nn.ModuleList:
    net_cfg = CFG["network"]
    action_spec = train_env.action_spec_unbatched
    actor_net = MLP(
        num_cells=net_cfg["hidden_sizes"],
        out_features=2 * action_spec.shape[-1],
        activation_class=net_cfg["activation"],
    )
    extractor = NormalParamExtractor(
        scale_mapping=f"biased_softplus_{net_cfg['default_policy_scale']}",
        scale_lb=net_cfg["scale_lb"],
    )
    actor = ProbabilisticActor(
        spec=action_spec,
        in_keys=["loc", "scale"],
        module=TensorDictModule(
            nn.Sequential(actor_net, extractor), in_keys=["observation"], out_keys=["loc", "scale"]
        ),
        distribution_class=TanhNormal,
        distribution_kwargs={
            "low": action_spec.space.low,
            "high": action_spec.space.high,
            "tanh_loc": False,
        },
        default_interaction_type=InteractionType.RANDOM,
        return_log_prob=False,
    )
    qvalue = ValueOperator(
        in_keys=["action", "observation"],
        module=MLP(
            num_cells=net_cfg["hidden_sizes"],
            out_features=1,
            activation_class=net_cfg["activation"],
        ),
    )
    model = nn.ModuleList([actor, qvalue])
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):  # lazy init
        td = eval_env.fake_tensordict()
        for net in model:
            net(td)
    return model


def make_loss_module(loss_class: type, model: nn.ModuleList):
    o = CFG["optim"]
    loss_module = loss_class(
        actor_network=model[0],
        qvalue_network=model[1],
        num_qvalue_nets=2,
        loss_function=o["loss_function"],
        delay_actor=False,
        delay_qvalue=True,
        alpha_init=o["alpha_init"],
    )
    loss_module.make_value_estimator(gamma=o["gamma"])
    return loss_module, SoftUpdate(loss_module, eps=o["target_update_polyak"])


def make_sac_optimizer(loss_module):
    o = CFG["optim"]
    critic_params = list(loss_module.qvalue_network_params.flatten_keys().values())
    actor_params = list(loss_module.actor_network_params.flatten_keys().values())
    kwargs = {"lr": o["lr"], "weight_decay": o["weight_decay"], "eps": o["adam_eps"]}
    return (
        optim.Adam(actor_params, **kwargs),
        optim.Adam(critic_params, **kwargs),
        optim.Adam([loss_module.log_alpha], lr=3.0e-4),
    )


@pytest.mark.parametrize("name", sorted(SWAPS))
def test_the_sac_example_runs_with_the_loss_swapped(name: str) -> None:
    loss_class, acting_policy = SWAPS[name]
    torch.manual_seed(CFG["env"]["seed"])
    train_env, eval_env = make_environment()
    model = make_sac_agent(train_env, eval_env)
    loss_module, target_net_updater = make_loss_module(loss_class, model)
    policy = acting_policy(loss_module, model)
    c = CFG["collector"]
    collector = Collector(
        train_env,
        policy,
        init_random_frames=c["init_random_frames"],
        frames_per_batch=c["frames_per_batch"],
        total_frames=c["total_frames"],
        device=torch.device("cpu"),
        compile_policy=False,
        cudagraph_policy=False,
    )
    collector.set_seed(CFG["env"]["seed"])
    replay_buffer = TensorDictReplayBuffer(
        pin_memory=False,
        prefetch=3,
        storage=LazyTensorStorage(CFG["replay_buffer"]["size"]),
        batch_size=CFG["optim"]["batch_size"],
    )
    optimizer = group_optimizers(*make_sac_optimizer(loss_module))
    critics_before = loss_module.qvalue_network_params.detach().clone()
    targets_before = loss_module.target_qvalue_network_params.detach().clone()
    actor_before = [p.detach().clone() for p in model[0].parameters()]

    def update(sampled_tensordict):  # sac.py's, unchanged
        loss_td = loss_module(sampled_tensordict)
        actor_loss = loss_td["loss_actor"]
        q_loss = loss_td["loss_qvalue"]
        alpha_loss = loss_td["loss_alpha"]
        (actor_loss + q_loss + alpha_loss).sum().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        target_net_updater.step()
        return loss_td.detach()

    num_updates = int(c["frames_per_batch"] * CFG["optim"]["utd_ratio"])
    collected_frames, logged = 0, []
    try:
        for tensordict in collector:
            collector.update_policy_weights_()
            tensordict = tensordict.reshape(-1)
            replay_buffer.extend(tensordict)
            collected_frames += tensordict.numel()
            if collected_frames >= c["init_random_frames"]:
                losses = TensorDict(batch_size=[num_updates])
                for i in range(num_updates):
                    loss_td = update(replay_buffer.sample()).clone()
                    losses[i] = loss_td.select("loss_actor", "loss_qvalue", "loss_alpha")
                losses = losses.mean()
                logged.append(
                    {
                        "train/q_loss": losses.get("loss_qvalue"),
                        "train/actor_loss": losses.get("loss_actor"),
                        "train/alpha_loss": losses.get("loss_alpha"),
                        "train/alpha": loss_td["alpha"],
                        "train/entropy": loss_td["entropy"],
                    }
                )
        with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
            eval_rollout = eval_env.rollout(
                CFG["env"]["max_episode_steps"],
                policy,
                auto_cast_to_device=True,
                break_when_any_done=True,
            )
    finally:
        collector.shutdown()
        for env in (eval_env, train_env):
            if not env.is_closed:
                env.close()

    assert collected_frames == c["total_frames"] and len(logged) == 3
    for metrics in logged:
        for key, value in metrics.items():
            assert torch.isfinite(value).all(), (name, key)
    assert eval_rollout["action"].abs().max() <= 2.0  # Pendulum's box
    assert torch.isfinite(eval_rollout["next", "reward"]).all()
    # Every part moved: the actor the user built, the critics, their targets (towards them).
    assert _moved(list(model[0].parameters()), actor_before)
    for key, value in loss_module.qvalue_network_params.items(True, True):
        assert not torch.equal(value, critics_before[key]), key
        assert not torch.equal(loss_module.target_qvalue_network_params[key], targets_before[key])
    alpha = logged[-1]["train/alpha"].item()
    if name == "sql":  # SQL's α is fixed
        assert alpha == pytest.approx(CFG["optim"]["alpha_init"])
    else:  # learned, as SACLoss's default
        assert alpha != pytest.approx(CFG["optim"]["alpha_init"], abs=1e-4)


def _moved(params: list[torch.Tensor], before: list[torch.Tensor]) -> bool:
    return all(not torch.equal(p, b) for p, b in zip(params, before, strict=True))
