"""What ``tools/fit.py`` checks before a run folder exists: :func:`resolve`.

The config (a new run's presets and overrides, or a resumed run's ``config.yaml`` and
overrides), what the algorithm would refuse, the env's id and spaces, the devices, strategy and
precision against this machine, the memory, the run directory and the replay options; for a
resume, that the checkpoint fits the config's networks and its replay dump is whole. A bad value
is a :class:`~s2ac_lit.config.ConfigError` or a
:class:`~s2ac_lit.trainer.checkpoints.CheckpointError` naming it, before anything is written;
``--print-config`` refuses what a run would.
"""

from __future__ import annotations

import argparse
import difflib
import os
from pathlib import Path

import torch
from lightning.pytorch.strategies import StrategyRegistry
from omegaconf import OmegaConf

from s2ac_lit.algorithms import check_config, without_unread
from s2ac_lit.config import Config, ConfigError, TrainerConfig, load_yaml, merge_config, to_config
from s2ac_lit.envs import EnvError, check_env_spaces
from s2ac_lit.trainer.callbacks import check_replay_dump
from s2ac_lit.trainer.checkpoints import (
    CheckpointError,
    check_compatible,
    find_checkpoint,
    latest_run,
    read_checkpoint,
    run_folder_of,
)
from s2ac_lit.trainer.data import check_replay
from s2ac_lit.trainer.layout import CONFIG_FILE, REPLAY_DIR
from s2ac_lit.trainer.memory import check_memory
from s2ac_lit.trainer.module import RLModule


def resolve(args: argparse.Namespace) -> tuple[Config, Path | None]:
    """The config to run and, when resuming, the checkpoint to continue from.

    Everything that can be checked before a run folder exists is checked here: the env's id
    and spaces, the devices and precision against this machine, and the run directory.
    """
    cfg, checkpoint = _resolve(args)
    check_config(cfg)  # what the run would refuse, --print-config refuses too
    try:
        check_env_spaces(cfg.env.id)
    except EnvError as error:
        raise ConfigError(f"env.id: {error}") from None
    check_machine(cfg.trainer)
    check_memory(cfg)
    check_run_dir(Path(cfg.run_dir))
    check_replay(cfg.replay)
    return cfg, checkpoint


def check_machine(t: TrainerConfig) -> None:
    """Raise :class:`ConfigError` if accelerator, devices or precision do not fit this machine."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = torch.backends.mps.is_available()
    available = ["cpu"] + [f"gpu ({gpus} CUDA devices)"] * bool(gpus) + ["mps"] * mps
    accelerator = str(t.accelerator)
    if accelerator in ("gpu", "cuda") and not gpus and not mps:
        raise ConfigError(
            f"trainer.accelerator={accelerator!r} but this machine has no GPU; available: "
            f"{', '.join(available)} (use trainer.accelerator=cpu or auto)"
        )
    if accelerator == "mps" and not mps:
        raise ConfigError(
            f"trainer.accelerator='mps' but this machine has no Apple GPU; available: "
            f"{', '.join(available)}"
        )
    uses_cuda = gpus > 0 and accelerator in ("gpu", "cuda", "auto")
    if isinstance(t.devices, int) and uses_cuda and t.devices > gpus:
        raise ConfigError(f"trainer.devices={t.devices} but this machine has {gpus} CUDA devices")
    strategies = ["auto", *StrategyRegistry.available_strategies()]
    if t.strategy not in strategies:
        hint = difflib.get_close_matches(t.strategy, strategies, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(
            f"trainer.strategy={t.strategy!r} is not a Lightning strategy{extra}; allowed: "
            "'auto', 'ddp', 'ddp_spawn', 'fsdp', ... (lightning.pytorch.strategies)"
        )
    if t.cudagraphs and not uses_cuda:
        raise ConfigError(
            "trainer.cudagraphs=true needs a CUDA GPU (CUDA graphs capture GPU kernels); "
            f"available: {', '.join(available)}"
        )
    if t.precision == "16-mixed" and not uses_cuda:
        raise ConfigError(
            "trainer.precision='16-mixed' needs a CUDA GPU; on the CPU Lightning would quietly "
            "switch to bf16-mixed. Allowed here: '32', '64', 'bf16-mixed', 'bf16-true'"
        )


def check_run_dir(run_dir: Path) -> None:
    """Raise :class:`ConfigError` if run folders cannot be created under ``run_dir``."""
    existing = run_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"run_dir={str(run_dir)!r}: {str(existing)!r} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"run_dir={str(run_dir)!r}: folder {str(existing)!r} is not writable")


def _resolve(args: argparse.Namespace) -> tuple[Config, Path | None]:
    if not args.resume:
        return to_config(merge_config(yaml_path=args.config, overrides=args.overrides)), None
    if args.resume == "auto":
        run_dir = to_config(merge_config(yaml_path=args.config, overrides=args.overrides)).run_dir
        checkpoint = find_checkpoint(latest_run(Path(run_dir)))
    else:
        checkpoint = find_checkpoint(args.resume)
    saved = run_folder_of(checkpoint) / CONFIG_FILE
    if not saved.is_file():
        raise CheckpointError(f"run folder of {str(checkpoint)!r} has no config.yaml")
    # Keys the algorithm does not read go back to their defaults, so that runs from before
    # the registry refused them resume.
    run_config = load_yaml(saved, "run config")
    base = OmegaConf.structured(without_unread(to_config(merge_config(base=run_config))))
    cfg = to_config(merge_config(base=base, overrides=args.overrides))
    check_resumable(cfg, checkpoint)
    return cfg, checkpoint


def check_resumable(cfg: Config, path: Path) -> None:
    """Raise :class:`CheckpointError` unless the networks of ``cfg`` take the weights of the
    checkpoint at ``path`` (the algorithm and every key that shapes them unchanged)."""
    checkpoint = read_checkpoint(path)
    saved = checkpoint["hyper_parameters"]
    trained = saved.get("config", {}).get("algo")
    if trained is not None and trained != cfg.algo:
        raise CheckpointError(
            f"checkpoint {str(path)!r} was trained with algo={trained!r}, the run's config "
            f"(config.yaml and the overrides) says algo={cfg.algo!r}; a run keeps its algorithm"
        )
    module = RLModule(cfg, saved["observation_dim"], saved["action_low"], saved["action_high"])
    check_compatible(checkpoint, module, path)
    dump = checkpoint.get("replay_dir")
    if cfg.replay.checkpoint and dump is not None:
        dump_folder = run_folder_of(path) / REPLAY_DIR / dump
        for rank_dump in sorted(dump_folder.glob("rank-*")) or [dump_folder]:
            check_replay_dump(rank_dump)
