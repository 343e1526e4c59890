"""Evaluate a checkpoint: ``python tools/evaluate.py RUN_DIR_OR_CKPT --episodes 10``.

Prints the mean ± std return over N episodes with the chosen action selection (S2AC and SQL:
``softmax``, ``max``, ``random``, and ``amortized`` where the run trained an amortised sampler:
SQL always, S2AC with ``actor.amortized=true``; without ``--selection``, the run's
``actor.eval_selection`` or the algorithm's own deterministic mode, the only one SAC has).
``--json`` prints one JSON object instead. A long evaluation prints its progress on stderr
every :data:`PROGRESS_EVERY_S` seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
from torchrl.envs.utils import ExplorationType

from s2ac_lit.actor import SELECTIONS
from s2ac_lit.algorithms import ALGORITHMS, Policy, policy_with_selection
from s2ac_lit.envs import check_env_spaces, env_dims, make_env
from s2ac_lit.errors import UsageError, cli, positive_int, seed_int
from s2ac_lit.trainer.checkpoints import find_checkpoint
from s2ac_lit.trainer.evaluation import EvalResult, evaluate_policy
from s2ac_lit.trainer.module import RLModule

PROGRESS_EVERY_S = 10.0
"""Seconds between two progress lines of a long evaluation."""


def evaluate_with_progress(env, policy, episodes: int, exploration: ExplorationType) -> EvalResult:
    """:func:`evaluate_policy` episode by episode (the same episodes), with a progress line on
    stderr every :data:`PROGRESS_EVERY_S` seconds."""
    returns: list[float] = []
    lengths: list[int] = []
    last = time.monotonic()
    while len(returns) < episodes:
        episode = evaluate_policy(env, policy, 1, exploration=exploration)
        returns += episode.returns.tolist()
        lengths += episode.lengths.tolist()
        if time.monotonic() - last >= PROGRESS_EVERY_S and len(returns) < episodes:
            print(
                f"{len(returns)}/{episodes} episodes, mean return so far {np.mean(returns):.2f}",
                file=sys.stderr,
                flush=True,
            )
            last = time.monotonic()
    return EvalResult(np.asarray(returns), np.asarray(lengths))


def selection_policy(module: RLModule, selection: str, path) -> Policy:
    """The run's policy acting with ``selection``, or a :class:`UsageError` naming the
    selections this run offers (``amortized`` needs a run that trained the amortised sampler)."""
    offered = []
    for name in ALGORITHMS[module.cfg.algo].selections:
        try:
            built = policy_with_selection(module.cfg.algo, module.loss_module, name)
        except ValueError:  # the loss refuses what its actor was not built for
            continue
        if name == selection:
            policy = built
        offered.append(name)
    if "random" not in offered:  # the stochastic policy itself (main samples it): every sampler
        offered.append("random")
    if selection not in offered:
        why = " (an amortised sampler: actor.amortized=true)" if selection == "amortized" else ""
        raise UsageError(
            f"--selection {selection!r} needs what the run of {str(path)!r} "
            f"({module.cfg.algo}) did not train{why}; this run offers {offered}"
        )
    return policy


@cli
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="a run folder (its last.ckpt) or a .ckpt file")
    parser.add_argument("--episodes", type=positive_int, default=10)
    parser.add_argument("--selection", choices=SELECTIONS, help="S2AC and SQL action selection")
    parser.add_argument("--env", help="evaluate on another env id (e.g. an obstacle variant)")
    parser.add_argument("--seed", type=seed_int, default=12345)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    path = find_checkpoint(args.target)
    module = RLModule.load(path)
    env_id = args.env or module.cfg.env.id
    check_env_spaces(env_id)
    env = make_env(env_id, seed=args.seed)
    trained = (module.hparams["observation_dim"], len(module.hparams["action_low"]))
    dims = env_dims(env)
    if (dims.observation_dim, dims.action_dim) != trained:
        raise UsageError(
            f"--env {env_id!r} has observation and action sizes "
            f"{(dims.observation_dim, dims.action_dim)}, the checkpoint was trained on {trained}"
        )
    if args.selection is not None and not ALGORITHMS[module.cfg.algo].selections:
        with_selections = [name for name, spec in ALGORITHMS.items() if spec.selections]
        raise UsageError(f"--selection applies to {with_selections}, not {module.cfg.algo}")
    torch.manual_seed(args.seed)
    policy = module.policy()
    exploration = ExplorationType.DETERMINISTIC
    if args.selection == "random":
        exploration = ExplorationType.RANDOM
    elif args.selection is not None:
        policy = selection_policy(module, args.selection, path)
    result = evaluate_with_progress(env, policy, args.episodes, exploration)
    report = {
        "checkpoint": str(path),
        "env": args.env or module.cfg.env.id,
        "selection": args.selection or "default",
        "episodes": args.episodes,
        "return_mean": result.mean,
        "return_std": result.std,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{report['env']}: return {result.mean:.2f} ± {result.std:.2f} over "
            f"{args.episodes} episodes (selection: {report['selection']})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
