"""Plain TorchRL training of S2AC, SAC and SQL, without Lightning.

See docs/algorithm.md §Losses, §Amortised sampler, §Baselines.

Shows that the loss modules drop into any TorchRL pipeline. Laid out like TorchRL's SAC example
(``sota-implementations/sac``): env → loss + policy from the algorithm registry
(:mod:`s2ac_lit.algorithms`, the one the Lightning trainer uses; the flags become its config)
→ ``Collector`` → ``ReplayBuffer`` over a ``LazyTensorStorage`` → one Adam over the loss's
parameter groups and ``SoftUpdate``, stepped by the trainer's own update
(:class:`s2ac_lit.update.Update`) → a loop of collect, extend, update, and a deterministic
evaluation at the end.

Algorithms (``--algo``): ``s2ac`` (S2AC(φ,θ)), ``s2ac-phi`` (S2AC(φ), no actor parameters),
``sac`` (TorchRL's ``SACLoss``), ``sql`` (Soft Q-Learning) and ``random`` (uniform actions, the
floor of the learning table). ``--amortized`` also trains S2AC's amortised sampler
(``loss_amortized``); then (and always for SQL) the return and per-action latency of each
evaluation selection are reported, on the same evaluation episodes.

Networks (``--networks``): ``project`` (the config's: ``SVGDActor`` and ``QEnsemble`` critics,
∇ₐQ in closed form) or ``torchrl``, the networks of TorchRL's SAC example
(``MLP`` + ``NormalParamExtractor`` under a ``ProbabilisticActor(TanhNormal)``, ``ValueOperator``
critics, ∇ₐQ by autograd) given to the same losses (docs/torchrl.md).

Every run prints progress lines; the last line of a training run is exactly
``eval_return=<float>``, the mean return of ``--eval-episodes`` episodes under
``ExplorationType.DETERMINISTIC``. ``--benchmark-updates N`` instead times N updates of each of
``--benchmark-algos`` with each of ``--benchmark-networks`` in one process (same batch and
widths, one CPU thread) and exits.

Examples:
    python tools/train_torchrl.py --algo s2ac --frames 8000 --seed 0
    python tools/train_torchrl.py --algo s2ac --amortized --frames 8000
    python tools/train_torchrl.py --algo s2ac --networks torchrl --frames 8000
    python tools/train_torchrl.py --benchmark-updates 200 --benchmark-algos s2ac,sac
    python tools/train_torchrl.py --benchmark-updates 100 --benchmark-algos s2ac,sql \
        --benchmark-networks project,torchrl
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Sequence
from typing import NamedTuple, get_args

import torch
from tensordict import TensorDict
from tensordict.nn import InteractionType, NormalParamExtractor, TensorDictModule
from torch import nn
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import MLP, ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import LossModule

from s2ac_lit.actor import SELECTIONS
from s2ac_lit.algorithms import (
    ALGORITHMS,
    Networks,
    Policy,
    build_algorithm,
    make_optimizer,
    make_update,
    policy_with_selection,
)
from s2ac_lit.config import Config, load_config
from s2ac_lit.envs import EnvError, check_env_spaces, env_dims, make_env
from s2ac_lit.errors import cli, non_negative_int, positive_float, positive_int
from s2ac_lit.networks import Activation, activation_layer
from s2ac_lit.trainer.allocator import keep_freed_host_memory
from s2ac_lit.trainer.evaluation import evaluate_policy
from s2ac_lit.update import LOSS_PREFIX, Update

ALGOS = ("s2ac", "s2ac-phi", "sac", "sql", "random")
NETWORKS = ("project", "torchrl")


class Agent(NamedTuple):
    """The registry's loss and policy for one run, and its training update (one Adam over the
    loss's parameter groups, ``SoftUpdate``: :class:`s2ac_lit.update.Update`, the trainer's).

    All three are None for the uniform-random baseline.
    """

    loss: LossModule | None
    policy: Policy | None
    update: Update | None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags; defaults learn Pendulum-v1 on one CPU thread in minutes."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--algo", choices=ALGOS, default="s2ac")
    p.add_argument("--env", default="Pendulum-v1", help="gymnasium id")
    p.add_argument("--frames", type=positive_int, default=8000, help="environment steps to collect")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--init-random-frames", type=non_negative_int, default=1000, help="uniform-random steps"
    )
    p.add_argument("--frames-per-batch", type=positive_int, default=50, help="collector batch")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--utd", type=positive_float, default=1.0, help="updates per collected frame")
    p.add_argument("--buffer-size", type=positive_int, default=100_000)
    p.add_argument("--hidden", type=positive_int, default=64, help="width of the two hidden layers")
    p.add_argument(
        "--networks",
        choices=NETWORKS,
        default="project",
        help="torchrl: the SAC example's ProbabilisticActor and ValueOperator critics",
    )
    p.add_argument(
        "--activation",
        choices=get_args(Activation),
        default="elu",
        help="elu: S2AC's actor loss differentiates ∇ₐQ, so keep it smooth",
    )
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--gamma", type=float, default=0.99)
    p.add_argument(
        "--tau", type=positive_float, default=0.005, help="SoftUpdate weight of online params"
    )
    p.add_argument(
        "--alpha", type=positive_float, default=0.2, help="initial (or fixed) temperature α"
    )
    p.add_argument("--fixed-alpha", action="store_true", help="do not learn α (SQL never does)")
    p.add_argument(
        "--particles", type=positive_int, default=10, help="M particles (SQL: per state)"
    )
    p.add_argument("--steps", type=non_negative_int, default=3, help="L SVGD steps")
    p.add_argument("--step-size", type=positive_float, default=0.1, help="SVGD step ε")
    p.add_argument("--value-particles", type=positive_int, default=16, help="SQL uniform proposals")
    p.add_argument("--amortized", action="store_true", help="also train S2AC's amortised sampler")
    p.add_argument("--eval-episodes", type=positive_int, default=5)
    p.add_argument("--eval-selection", choices=SELECTIONS, default="softmax")
    p.add_argument("--eval-max-steps", type=positive_int, default=1000)
    p.add_argument(
        "--log-every", type=positive_int, default=1000, help="frames between progress lines"
    )
    p.add_argument(
        "--benchmark-updates", type=non_negative_int, default=0, help="time N updates and exit"
    )
    p.add_argument("--benchmark-algos", default="s2ac,sac")
    p.add_argument("--benchmark-networks", default="project", help="comma-separated --networks")
    args = p.parse_args(argv)
    if args.amortized and args.algo not in ("s2ac", "s2ac-phi"):
        p.error("--amortized applies to s2ac and s2ac-phi (SQL always uses its sampler)")
    s2ac_like = args.algo in ("s2ac", "s2ac-phi")
    if args.eval_selection == "amortized" and s2ac_like and not args.amortized:
        p.error("--eval-selection amortized needs --amortized")
    if args.batch_size > args.buffer_size:
        p.error(f"--batch-size {args.batch_size} is larger than --buffer-size {args.buffer_size}")
    if not 0 <= args.gamma <= 1:
        p.error(f"--gamma {args.gamma} must lie in [0, 1]")
    if args.tau > 1:
        p.error(f"--tau {args.tau} must lie in (0, 1]")
    if s2ac_like and args.particles < 2:
        p.error(f"--particles {args.particles} must be >= 2 (SVGD's kernel bandwidth needs pairs)")
    timed = [a for a in ALGOS if a != "random"]  # random has no update to time
    unknown = sorted(set(args.benchmark_algos.split(",")) - set(timed))
    if args.benchmark_updates and unknown:
        p.error(f"--benchmark-algos: unknown {unknown}; allowed: {timed}")
    unknown = sorted(set(args.benchmark_networks.split(",")) - set(NETWORKS))
    if args.benchmark_updates and unknown:
        p.error(f"--benchmark-networks: unknown {unknown}; allowed: {list(NETWORKS)}")
    torchrl_networks = args.networks == "torchrl" or (
        args.benchmark_updates and "torchrl" in args.benchmark_networks.split(",")
    )
    if torchrl_networks and "s2ac-phi" in (args.algo, *args.benchmark_algos.split(",")):
        p.error("s2ac-phi has no actor network: --networks torchrl applies to s2ac, sac and sql")
    try:
        check_env_spaces(args.env)
    except EnvError as error:
        p.error(f"--env: {error}")
    return args


def make_config(args: argparse.Namespace, algo: str) -> Config:
    """The flags as the config of ``algo`` (``s2ac-phi`` is S2AC with a fixed init).

    Widths and the activation go to every network; flags that ``algo`` does not read (e.g.
    ``--particles`` for SAC) are left out, as the registry would refuse them.
    """
    name = "s2ac" if algo == "s2ac-phi" else algo
    widths = f"[{args.hidden},{args.hidden}]"
    settings = {
        "algo": name,
        "critic.hidden_sizes": widths,
        "critic.activation": args.activation,
        "actor.hidden_sizes": widths,
        "actor.activation": args.activation,
        "actor.init": "fixed" if algo == "s2ac-phi" else "learned",
        "actor.amortized": args.amortized,
        "actor.eval_selection": args.eval_selection,
        "svgd.num_particles": args.particles,
        "svgd.steps": args.steps,
        "svgd.step_size": args.step_size,
        "loss.alpha_init": args.alpha,
        "loss.learn_alpha": not args.fixed_alpha,
        "loss.amortized_particles": args.particles,
        "loss.value_particles": args.value_particles,
        "optim.critic_lr": args.lr,
        "optim.actor_lr": args.lr,
        "optim.alpha_lr": args.lr,
        "optim.gamma": args.gamma,
        "optim.tau": args.tau,
    }
    spec = ALGORITHMS[name]
    overrides = [f"{key}={value}" for key, value in settings.items() if spec.reads_key(key)]
    return load_config(overrides=overrides)


def evaluate(
    env: EnvBase, policy: Policy | None, episodes: int, max_steps: int, *, seed: int
) -> list[float]:
    """Returns of ``episodes`` deterministic episodes (``policy=None``: uniform actions).

    The env is reseeded first, so that every policy evaluated with the same ``seed`` starts
    from the same initial states.
    """
    env.set_seed(seed)
    return evaluate_policy(env, policy, episodes, max_steps=max_steps).returns.tolist()


def action_latency_ms(policy: Policy, observation: torch.Tensor, repeats: int = 100) -> float:
    """Milliseconds per deterministic action for one state (after a short warm-up)."""
    td = TensorDict({"observation": observation}, [])
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        for _ in range(5):
            policy(td.clone())
        start = time.perf_counter()
        for _ in range(repeats):
            policy(td.clone())
    return 1e3 * (time.perf_counter() - start) / repeats


def torchrl_networks(env: EnvBase, hidden: int, activation: Activation) -> Networks:
    """The networks of TorchRL's SAC example (``sota-implementations/sac/utils.py``).

    An ``MLP`` with a ``NormalParamExtractor`` (biased softplus, scale ≥ 0.1) under a
    ``ProbabilisticActor(TanhNormal)`` onto the env's action box, and a ``ValueOperator(MLP)``
    critic, both with two hidden layers of ``hidden``; their lazy layers are initialised on the
    env's ``fake_tensordict()``, as the example does.
    """
    spec = env.action_spec_unbatched
    activation_class = functools.partial(activation_layer, activation)
    actor_net = nn.Sequential(
        MLP(
            num_cells=[hidden, hidden],
            out_features=2 * spec.shape[-1],
            activation_class=activation_class,
        ),
        NormalParamExtractor(scale_mapping="biased_softplus_1.0", scale_lb=0.1),
    )
    actor = ProbabilisticActor(
        TensorDictModule(actor_net, in_keys=["observation"], out_keys=["loc", "scale"]),
        spec=spec,
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": spec.space.low, "high": spec.space.high, "tanh_loc": False},
        default_interaction_type=InteractionType.RANDOM,
    )
    qvalue = ValueOperator(
        MLP(num_cells=[hidden, hidden], out_features=1, activation_class=activation_class),
        in_keys=["action", "observation"],
    )
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        td = env.fake_tensordict()
        actor(td)
        qvalue(td)
    return actor, qvalue


def setup(
    args: argparse.Namespace, algo: str, networks: str | None = None
) -> tuple[EnvBase, Agent]:
    """Seeded env and the registry's agent (γ set), with ``networks`` (default ``--networks``).

    torch is seeded before anything, so the project's networks are those the Lightning trainer
    builds for the same config and seed.
    """
    torch.manual_seed(args.seed)
    env = make_env(args.env, seed=args.seed)
    if algo == "random":
        return env, Agent(None, None, None)
    cfg = make_config(args, algo)
    dims = env_dims(env)
    given = None
    if (networks or args.networks) == "torchrl":
        given = torchrl_networks(env, args.hidden, args.activation)
    loss, policy = build_algorithm(
        cfg,
        dims.observation_dim,
        dims.action_low.tolist(),
        dims.action_high.tolist(),
        networks=given,
    )
    return env, Agent(loss, policy, make_update(cfg, loss, make_optimizer(loss, cfg.optim)))


def benchmark(args: argparse.Namespace, rounds: int = 5) -> dict[str, float]:
    """Median ms per update of each of ``--benchmark-algos`` with each of
    ``--benchmark-networks`` on random replay data; keyed ``algo`` (project networks) or
    ``algo/torchrl``.

    Same batch, widths and thread count for all. Rounds alternate between the agents so that
    load from other processes on a shared machine hits them alike.
    """
    agents = {}
    for algo in args.benchmark_algos.split(","):
        for networks in args.benchmark_networks.split(","):
            env, agent = setup(args, algo, networks)
            if agent.update is None:
                raise ValueError(f"nothing to time for --benchmark-algos {algo!r}")
            buffer = ReplayBuffer(storage=LazyTensorStorage(10 * args.batch_size))
            buffer.extend(env.rollout(10 * args.batch_size, break_when_any_done=False))
            for _ in range(5):  # warm-up: allocator, autograd caches
                agent.update(buffer.sample(args.batch_size))
            name = algo if networks == "project" else f"{algo}/{networks}"
            agents[name] = (agent.update, buffer)
    per_round = max(1, args.benchmark_updates // rounds)
    times: dict[str, list[float]] = {name: [] for name in agents}
    for _ in range(rounds):
        for name, (update, buffer) in agents.items():
            start = time.perf_counter()
            for _ in range(per_round):
                update(buffer.sample(args.batch_size))
            times[name].append(1e3 * (time.perf_counter() - start) / per_round)
    results = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        algo, _, networks = name.partition("/")
        print(
            f"benchmark algo={algo} networks={networks or 'project'} "
            f"updates={rounds * per_round} batch={args.batch_size} "
            f"hidden={args.hidden} particles={args.particles} steps={args.steps} "
            f"ms_per_update={results[name]:.2f} (min round {min(t):.2f})",
            flush=True,
        )
    return results


def collect_and_update(
    args: argparse.Namespace, env: EnvBase, agent: Agent, start: float
) -> tuple[int, int]:
    """The off-policy loop: collect, extend the buffer, ``--utd`` updates per frame, log.

    Returns:
        ``(frames, updates)``.
    """
    # torch and env were seeded in setup(), before the collector resets the env here.
    collector = Collector(
        env,
        agent.policy,
        frames_per_batch=args.frames_per_batch,
        total_frames=-1,  # a finite budget closes the env silently; stop ourselves
        init_random_frames=args.init_random_frames,
        # No recurrent state: TorchRL 0.14 would otherwise warn that InitTracker is missing.
        auto_register_policy_transforms=False,
    )
    buffer = ReplayBuffer(storage=LazyTensorStorage(args.buffer_size), batch_size=args.batch_size)
    frames = updates = 0
    owed, next_log, recent = 0.0, args.log_every, []
    for data in collector:
        data = data.reshape(-1)
        buffer.extend(data)
        frames += data.numel()
        done = data["next", "done"].squeeze(-1)
        recent += data["next", "episode_reward"][done].squeeze(-1).tolist()
        if frames >= args.init_random_frames:
            owed += args.utd * data.numel()
            while owed >= 1.0:
                losses = agent.update(buffer.sample()).out
                updates, owed = updates + 1, owed - 1.0
        if frames >= next_log or frames >= args.frames:
            next_log += args.log_every
            line = f"frames={frames} updates={updates} time={time.perf_counter() - start:.0f}s"
            if recent:
                line += f" train_return={sum(recent[-5:]) / len(recent[-5:]):.1f}"
            if updates:  # .item() only here, at the log interval
                agent.update.raise_if_non_finite()
                shown = ((k, v) for k, v in losses.items() if k.startswith(LOSS_PREFIX))
                line += "".join(f" {k}={v.item():.3g}" for k, v in shown)
                line += f" alpha={losses['alpha'].item():.3g}"
            print(line, flush=True)
        if frames >= args.frames:
            break
    collector.shutdown()
    return frames, updates


def compare_selections(
    args: argparse.Namespace, agent: Agent, eval_env: EnvBase, observation: torch.Tensor
) -> dict[str, float]:
    """Return and ms per action of each evaluation selection, amortised sampler included."""
    metrics = {}
    name = make_config(args, args.algo).algo
    for selection in ("softmax", "max", "amortized"):
        policy = policy_with_selection(name, agent.loss, selection)
        returns = evaluate(
            eval_env, policy, args.eval_episodes, args.eval_max_steps, seed=args.seed + 1
        )
        metrics[f"{selection}_eval_return"] = sum(returns) / len(returns)
        metrics[f"{selection}_ms_per_action"] = action_latency_ms(policy, observation)
        print(
            f"selection={selection} eval_return={metrics[f'{selection}_eval_return']:.1f} "
            f"ms_per_action={metrics[f'{selection}_ms_per_action']:.3f}",
            flush=True,
        )
    return metrics


def train(args: argparse.Namespace) -> dict[str, float]:
    """Train for ``--frames`` steps, then evaluate; the last line printed is the eval return."""
    start = time.perf_counter()
    env, agent = setup(args, args.algo)
    eval_env = make_env(args.env, seed=args.seed + 1)
    frames = updates = 0
    if agent.policy is not None:
        frames, updates = collect_and_update(args, env, agent, start)
    metrics = {"frames": frames, "updates": updates, "train_time_s": time.perf_counter() - start}
    observation = eval_env.reset()["observation"]
    if args.amortized or args.algo == "sql":
        metrics.update(compare_selections(args, agent, eval_env, observation))
    returns = evaluate(
        eval_env, agent.policy, args.eval_episodes, args.eval_max_steps, seed=args.seed + 1
    )
    if agent.policy is not None:
        metrics["ms_per_action"] = action_latency_ms(agent.policy, observation)
    metrics["eval_return"] = sum(returns) / len(returns)
    metrics["wall_time_s"] = time.perf_counter() - start
    print(
        f"done algo={args.algo} env={args.env} frames={frames} updates={updates} "
        f"wall_time={metrics['wall_time_s']:.1f}s "
        f"ms_per_action={metrics.get('ms_per_action', 0.0):.3f} "
        f"eval_returns={[round(r, 1) for r in returns]}",
        flush=True,
    )
    print(f"eval_return={metrics['eval_return']}", flush=True)
    return metrics


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Parse flags, pin one CPU thread (small ops spin-wait with two), keep freed host memory
    for reuse (as the trainer does, ``trainer.keep_freed_memory``), run."""
    torch.set_num_threads(1)
    keep_freed_host_memory()
    args = parse_args(argv)
    print(f"args {vars(args)}", flush=True)
    return benchmark(args) if args.benchmark_updates else train(args)


@cli
def run(argv: Sequence[str] | None = None) -> int:
    """The command line: :func:`main`, with usage errors as one line and exit status 2."""
    main(argv)
    return 0


if __name__ == "__main__":
    sys.exit(run())
