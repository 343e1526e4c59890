"""Benchmarks in one process and one run: S2AC against SAC, updates and acting.

    python tools/bench.py                       # authors' settings, Walker2d dims, 1 CPU thread
    python tools/bench.py --modes eager,compiled
    python tools/bench.py --device cuda --modes eager,compiled,graphed --json
    python tools/bench.py --deterministic --skip-trainer

Measures, with warm-up and repeats (median of ``--repeats`` timings of ``--iters`` calls):
ms per update of S2AC(φ,θ) and of TorchRL's SACLoss on the same critic sizes, batch and
device, each way ``--modes`` names (eager, the whole update compiled, compiled and captured in
a CUDA graph), their ratios, and what compiling or capturing costs and when it repays itself;
with ``--deterministic``, what deterministic kernels (``trainer.deterministic``) cost per update;
the FLOPs of one update (counted by ``torch.utils.flop_counter``), the achieved GFLOP/s and the
FLOP floor at the machine's matmul speed; ms per acting step (full sampler, amortised sampler,
SAC; graphed with ``graphed``); frames/s of the whole Lightning trainer loop on the multigoal
env; peak memory. Where S2AC's sampler adds the entropy's self term (``--self-term``, by
default the config's), the same run also times the update without it and both of the update's
samplers (the actor's, differentiated, and the critic target's) with and without it. Numbers
are only comparable within one run: report ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from unittest import mock

import torch
from tensordict import TensorDict, TensorDictBase
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs.utils import ExplorationType, set_exploration_type

from s2ac_lit.algorithms import build_algorithm, make_optimizer, policy_with_selection
from s2ac_lit.algorithms import make_update as build_update
from s2ac_lit.config import load_config
from s2ac_lit.errors import cli, positive_int
from s2ac_lit.networks import QEnsemble
from s2ac_lit.objectives.common import SamplerLoss
from s2ac_lit.svgd import SELF_TERMS
from s2ac_lit.trainer.allocator import keep_freed_host_memory
from s2ac_lit.trainer.data import GraphedPolicy
from s2ac_lit.update import GraphedUpdate


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--batch", type=positive_int, default=100)
    p.add_argument("--particles", type=positive_int, default=10)
    p.add_argument("--steps", type=positive_int, default=3)
    p.add_argument("--obs-dim", type=positive_int, default=17, help="Walker2d: 17")
    p.add_argument("--act-dim", type=positive_int, default=6, help="Walker2d: 6")
    p.add_argument("--hidden", type=positive_int, default=256)
    p.add_argument("--precision", choices=("32", "bf16"), default="32")
    p.add_argument(
        "--modes",
        default="eager",
        help="comma-separated ways to run the update, timed interleaved: eager, compiled "
        "(torch.compile of the whole update), graphed (compiled and captured in a CUDA graph; "
        "CUDA only)",
    )
    p.add_argument(
        "--self-term",
        choices=SELF_TERMS,
        default=None,
        help="svgd.self_term of S2AC's sampler (default: the config's); not 'none': also time "
        "the update and both samplers without it",
    )
    p.add_argument("--iters", type=positive_int, default=10)
    p.add_argument("--repeats", type=positive_int, default=5)
    p.add_argument("--skip-trainer", action="store_true", help="skip the trainer-loop timing")
    p.add_argument(
        "--baseline", action="store_true", help="also time the naive S2AC update (before speed-ups)"
    )
    p.add_argument(
        "--system-allocator",
        action="store_true",
        help="leave malloc as it is (trainer.keep_freed_memory=false) to time its cost",
    )
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="also time each update with deterministic kernels (trainer.deterministic), "
        "interleaved with the default ones",
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.modes if m not in MODES] or ([] if args.modes else ["''"])
    if unknown:
        p.error(f"--modes {','.join(unknown)} is not allowed; allowed: {', '.join(MODES)}")
    if args.baseline and args.modes != ["eager"]:
        # The naive update differentiates twice through the critic, which compiled code
        # (AOTAutograd) does not support: time the baseline eagerly, in its own run.
        p.error("--baseline times the eager naive update; run it with --modes eager")
    if args.particles < 2:
        p.error(f"--particles {args.particles} must be >= 2 (SVGD's kernel bandwidth needs pairs)")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        p.error(f"--device {args.device!r} is not a device; allowed: cpu, cuda, cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error(f"--device {args.device!r} but this machine has no CUDA GPU; available: cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        p.error(f"--device {args.device!r}: this machine has {torch.cuda.device_count()} GPUs")
    if device.type not in ("cpu", "cuda"):
        p.error(f"--device {args.device!r} is not supported; allowed: cpu, cuda, cuda:N")
    if "graphed" in args.modes and device.type != "cuda":
        p.error("--modes graphed captures CUDA graphs: it needs --device cuda")
    return args


MODES = ("eager", "compiled", "graphed")
"""How an update runs: as is, torch.compile'd whole, or compiled and CUDA-graph captured."""


WARMUP_CALLS = 5
"""Calls before timing: the first compile (and capture, after the graph's own warm-up); the
others settle caches."""


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms_interleaved(
    fns: dict[str, Callable[[], object]], device: torch.device, iters: int, repeats: int
) -> dict[str, float]:
    """Per function, the median over ``repeats`` of the mean ms per call over ``iters`` calls.

    After warm-up, each repeat times every function in turn, so a change in the machine's
    load during the run hits all of them alike and their ratios stay fair.
    """
    for fn in fns.values():
        for _ in range(WARMUP_CALLS):
            fn()
    synchronize(device)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(iters):
                fn()
            synchronize(device)
            samples[name].append((time.perf_counter() - start) * 1000 / iters)
    return {name: statistics.median(values) for name, values in samples.items()}


def with_deterministic_kernels(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` under ``torch.use_deterministic_algorithms`` as ``trainer.deterministic`` sets it
    (Lightning's ``deterministic='warn'``), the default restored after each call."""

    def call() -> object:
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            return fn()
        finally:
            torch.use_deterministic_algorithms(False)

    return call


def time_ms(fn: Callable[[], object], device: torch.device, iters: int, repeats: int) -> float:
    """Median over ``repeats`` of the mean ms per call over ``iters`` calls, after warm-up."""
    return time_ms_interleaved({"fn": fn}, device, iters, repeats)["fn"]


def random_batch(args: argparse.Namespace, device: torch.device) -> TensorDictBase:
    """Replay-batch-shaped random transitions, drawn from specs (timings ignore the values)."""
    obs, act, one = (args.obs_dim,), (args.act_dim,), (1,)
    flag = Categorical(2, one, dtype=torch.bool)
    transition = Composite(
        observation=Unbounded(obs),
        action=Bounded(-1.0, 1.0, act),
        next=Composite(
            observation=Unbounded(obs), reward=Unbounded(one), done=flag, terminated=flag
        ),
    )
    return transition.rand((args.batch,)).to(device)


def make_update(
    algo: str,
    args: argparse.Namespace,
    device: torch.device,
    *,
    amortized: bool = False,
    mode: str = "eager",
    self_term: str | None = None,
):
    """The registry's loss and policy, and a closure doing one full update.

    One update is the trainer's own (:class:`s2ac_lit.update.Update`): losses, one backward of
    their sum, the finite guard, fused Adam over the parameter groups, target update; run as
    ``mode`` (:data:`MODES`). Both algorithms get ``--hidden``-wide critics (SAC's actor has
    the critic's widths); S2AC's init network has three such layers. Its sampler's self term is
    ``self_term``, else ``--self-term``, else the config's default.
    """
    h = args.hidden
    overrides = [f"algo={algo}", f"critic.hidden_sizes=[{h},{h}]"]
    if algo == "s2ac":
        overrides += [
            f"svgd.num_particles={args.particles}",
            f"svgd.steps={args.steps}",
            f"actor.hidden_sizes=[{h},{h},{h}]",
            f"actor.amortized={str(amortized).lower()}",
        ]
        self_term = self_term or args.self_term  # None: the config's default
        if self_term is not None:
            overrides.append(f"svgd.self_term={self_term}")
    cfg = load_config(overrides=overrides)
    low, high = [-1.0] * args.act_dim, [1.0] * args.act_dim
    algorithm = build_algorithm(cfg, args.obs_dim, low, high)
    loss = algorithm.loss.to(device)
    optimizer = make_optimizer(loss, cfg.optim, capturable=mode == "graphed")
    step: Callable = build_update(cfg, loss, optimizer)
    if mode in ("compiled", "graphed"):
        step = torch.compile(step.__call__)
    if mode == "graphed":
        step = GraphedUpdate(step)
    batch = random_batch(args, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def update() -> None:
        with autocast:  # as Lightning's bf16-mixed runs the training step
            step(batch)

    return loss, algorithm.policy, update


def sampler_calls(loss, args: argparse.Namespace, device: torch.device) -> dict[str, Callable]:
    """S2AC's two samplers in one update: the actor's (differentiable, with a backward to the
    init network) and the critic target's (detached), on a batch of states."""
    obs = torch.randn(args.batch, args.obs_dim, device=device)
    actor, critic, temperature = loss.actor_network, loss.qvalue_network, 0.2

    def actor_sampler() -> None:
        sample = actor.sample(obs, critic, temperature, differentiable=True)
        sample.log_prob.mean().backward()

    def target_sampler() -> None:
        actor.sample(obs, critic, temperature)

    return {"actor_sampler": actor_sampler, "target_sampler": target_sampler}


class FlopCounter(TorchDispatchMode):
    """Counts matmul-like FLOPs with torch's own formulas (``flop_registry``).

    ``torch.utils.flop_counter.FlopCounterMode`` also tracks modules, which fails on
    TensorDict parameter containers; the counting itself is the same.
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


@contextmanager
def naive_s2ac() -> Iterator[None]:
    """The S2AC update before the speed work, for before/after tables in one run.

    Undoes the two changes that cut its cost: ∇ₐQ by autograd (double backward in the actor
    loss) instead of the critic's explicit input gradient, and detached critic weights
    re-wrapped as fresh ``nn.Parameter``s (so every backward also computed weight gradients).
    """

    @contextmanager
    def rewrapping_bind(self, critic_params=None, *, actor_params=None):
        critic_params = self.qvalue_network_params if critic_params is None else critic_params
        actor_params = self.actor_network_params if actor_params is None else actor_params
        with (
            actor_params.to_module(self.actor_network),
            critic_params.to_module(self.qvalue_network),
        ):
            yield

    def no_explicit_grad(self):
        raise AttributeError("value_and_action_grad")  # makes hasattr() False

    with (
        mock.patch.object(QEnsemble, "value_and_action_grad", property(no_explicit_grad)),
        mock.patch.object(SamplerLoss, "bind", rewrapping_bind),
    ):
        yield


def matmul_probes(
    args: argparse.Namespace, device: torch.device
) -> dict[str, tuple[Callable[[], object], int]]:
    """Matmuls that measure the machine's peak GFLOP/s at the run's threads and precision.

    The update's own shape ([B·M, H] @ [H, H], plain and batched over the K = 2 critics) and
    a large square one; the fastest sets a floor that no update made of matmuls can beat.
    Returns name → (call, FLOPs per call).
    """
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    rows, h = args.batch * args.particles, args.hidden
    shapes = {
        "matmul_rows": ((rows, h), (h, h)),
        "matmul_batched": ((2, rows, h), (2, h, h)),
        "matmul_square": ((1024, 1024), (1024, 1024)),
    }
    probes = {}
    for name, (a_shape, b_shape) in shapes.items():
        a = torch.randn(a_shape, device=device, dtype=dtype)
        b = torch.randn(b_shape, device=device, dtype=dtype)
        probes[name] = (lambda a=a, b=b: a @ b, 2 * a.numel() * b_shape[-1])
    return probes


def count_flops(fn: Callable[[], object]) -> int:
    with FlopCounter() as counter:
        fn()
    return counter.total


def acting_ms(policy, args, device, exploration: ExplorationType) -> float:
    obs = TensorDict({"observation": torch.randn(args.obs_dim, device=device)}, [])

    def act() -> None:
        with set_exploration_type(exploration), torch.no_grad():
            policy(obs.clone(False))

    return time_ms(act, device, args.iters * 3, args.repeats)


def trainer_frames_per_s(args: argparse.Namespace) -> float:
    """Frames/s of the whole Lightning loop (collection + updates) on the multigoal env."""
    from s2ac_lit.trainer.train import train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(
            "conf/multigoal.yaml",
            [
                f"run_dir={tmp}",
                "collector.total_frames=1500",
                "collector.init_random_frames=500",
                "collector.update_after=500",
                "eval.every_frames=0",
                "eval.episodes=1",
                "replay.checkpoint=false",
                "trainer.progress_bar=false",
                f"trainer.threads={args.threads}",
                f"trainer.keep_freed_memory={str(not args.system_allocator).lower()}",
            ],
        )
        start = time.perf_counter()
        summary = train(cfg)
        return summary["frames"] / (time.perf_counter() - start)


@cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.system_allocator:
        keep_freed_host_memory()  # as the trainer does (trainer.keep_freed_memory)
    torch.manual_seed(0)
    device = torch.device(args.device)
    results: dict[str, float | str | int] = {
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "threads": args.threads,
        "batch": args.batch,
        "particles": args.particles,
        "steps": args.steps,
        "precision": args.precision,
        "modes": ",".join(args.modes),
        "keep_freed_memory": not args.system_allocator,
    }
    if args.self_term is None:
        args.self_term = load_config(overrides=["algo=s2ac"]).svgd.self_term
    results["self_term"] = args.self_term
    updates, first_calls_s, policies, losses = {}, {}, {}, {}
    for algo in ("s2ac", "sac"):
        for mode in args.modes:
            name = f"{algo}_{mode}"
            losses[name], policies[algo], updates[name] = make_update(algo, args, device, mode=mode)
            # What compiling (and capturing) costs: the first calls build it.
            start = time.perf_counter()
            for _ in range(WARMUP_CALLS):
                updates[name]()
            synchronize(device)
            first_calls_s[name] = time.perf_counter() - start
    s2ac_update = updates[f"s2ac_{args.modes[0]}"]
    compared = {}
    if args.self_term != "none":
        # The self term's cost: the same update and samplers without it, timed interleaved.
        plain_loss, _, compared["s2ac_no_self_term"] = make_update(
            "s2ac", args, device, mode=args.modes[0], self_term="none"
        )
        for name, call in sampler_calls(losses[f"s2ac_{args.modes[0]}"], args, device).items():
            compared[name] = call
        for name, call in sampler_calls(plain_loss, args, device).items():
            compared[f"{name}_no_self_term"] = call
    probes = matmul_probes(args, device)
    # The same updates with deterministic kernels, timed in turn with the default ones.
    deterministic = {
        f"{algo}_deterministic": with_deterministic_kernels(updates[f"{algo}_{args.modes[0]}"])
        for algo in ("s2ac", "sac")
        if args.deterministic
    }
    # Updates and matmul probes interleaved: the floor is measured under the same load.
    timed = time_ms_interleaved(
        updates | compared | deterministic | {name: call for name, (call, _) in probes.items()},
        device,
        args.iters,
        args.repeats,
    )
    for name in deterministic:
        algo = name.split("_")[0]
        results[f"{name}_update_ms"] = timed[name]
        results[f"{name}_cost"] = timed[name] / timed[f"{algo}_{args.modes[0]}"] - 1
    for name in updates:
        results[f"{name}_update_ms"] = timed[name]
    for mode in args.modes:
        results[f"s2ac_over_sac_{mode}"] = timed[f"s2ac_{mode}"] / timed[f"sac_{mode}"]
        for algo in ("s2ac", "sac"):
            if mode != "eager" and "eager" in args.modes:
                name, eager = f"{algo}_{mode}", f"{algo}_eager"
                results[f"{name}_speedup"] = timed[eager] / timed[name]
                results[f"{name}_setup_s"] = first_calls_s[name] - first_calls_s[eager]
                saved_s = (timed[eager] - timed[name]) / 1000
                results[f"{name}_break_even_updates"] = (
                    results[f"{name}_setup_s"] / saved_s if saved_s > 0 else float("inf")
                )
    results["s2ac_update_ms"] = timed[f"s2ac_{args.modes[0]}"]
    results["sac_update_ms"] = timed[f"sac_{args.modes[0]}"]
    results["update_ratio"] = results["s2ac_update_ms"] / results["sac_update_ms"]
    if compared:
        results["s2ac_no_self_term_update_ms"] = timed["s2ac_no_self_term"]
        results["self_term_update_cost"] = (
            timed[f"s2ac_{args.modes[0]}"] / timed["s2ac_no_self_term"]
        )
        for name in ("actor_sampler", "target_sampler"):
            results[f"{name}_ms"] = timed[name]
            results[f"{name}_no_self_term_ms"] = timed[f"{name}_no_self_term"]
            results[f"self_term_{name}_cost"] = timed[name] / timed[f"{name}_no_self_term"]
    if args.baseline:
        with naive_s2ac():
            results["naive_s2ac_update_ms"] = time_ms(s2ac_update, device, args.iters, args.repeats)
            results["naive_s2ac_update_gflop"] = count_flops(s2ac_update) / 1e9
        results["naive_update_ratio"] = results["naive_s2ac_update_ms"] / results["sac_update_ms"]
    flops = count_flops(s2ac_update)
    results["s2ac_update_gflop"] = flops / 1e9
    results["s2ac_update_gflops_per_s"] = flops / 1e6 / results["s2ac_update_ms"]
    for name, (_, flop) in probes.items():
        results[f"{name}_gflops_per_s"] = flop / 1e6 / timed[name]
    results["peak_gflops_per_s"] = max(results[f"{name}_gflops_per_s"] for name in probes)
    results["floor_ms"] = flops / 1e6 / results["peak_gflops_per_s"]
    results["s2ac_update_over_floor"] = results["s2ac_update_ms"] / results["floor_ms"]
    results["sac_update_gflop"] = count_flops(updates[f"sac_{args.modes[0]}"]) / 1e9
    random_mode = ExplorationType.RANDOM
    s2ac_policy, sac_policy = policies["s2ac"], policies["sac"]
    results["s2ac_act_ms"] = acting_ms(s2ac_policy, args, device, random_mode)
    if "graphed" in args.modes:
        results["s2ac_graphed_act_ms"] = acting_ms(
            GraphedPolicy(s2ac_policy), args, device, random_mode
        )
    amortized_loss, _, _ = make_update("s2ac", args, device, amortized=True)
    amortized = policy_with_selection("s2ac", amortized_loss, "amortized")
    results["amortized_act_ms"] = acting_ms(amortized, args, device, ExplorationType.DETERMINISTIC)
    results["sac_act_ms"] = acting_ms(sac_policy, args, device, random_mode)
    results["amortized_act_ratio"] = results["amortized_act_ms"] / results["sac_act_ms"]
    if not args.skip_trainer:
        results["trainer_frames_per_s"] = trainer_frames_per_s(args)
    if device.type == "cuda":
        results["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        results["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    width = max(map(len, results))
    for key, value in results.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
