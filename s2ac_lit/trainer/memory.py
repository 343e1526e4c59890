"""Will a run fit its device? A closed-form estimate of a process's memory, checked before the
run folder exists.

The dominant term is the training update's activations: the critics evaluated on every
particle of every state of a batch, once per SVGD step plus the passes every algorithm makes
(the critic loss's own evaluation and the target's), all kept for the backward pass. Measured
on the CPU (``tests/test_trainer_memory.py``, torch's profiler), one update's peak is about
:data:`BYTES_PER_UNIT` bytes per hidden unit evaluated, at 32-bit precision. The replay buffer
lives on the same device, and the weights with their gradients, Adam moments and target copy
are added. The estimate is meant to catch what cannot fit by far (``svgd.num_particles=100000``
would need tens of GB), not to predict a peak to the megabyte.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import NamedTuple

import gymnasium

from s2ac_lit.algorithms import ALGORITHMS
from s2ac_lit.config import Config, ConfigError

BYTES_PER_UNIT = 10
"""Peak bytes of an update per unit evaluated (float32): measured 7 (S2AC), 9 (SAC) and 14
(SQL) at small and Walker2d sizes (``tests/test_trainer_memory.py``)."""

PARTICLE_KEYS = ("svgd.num_particles", "loss.value_particles", "loss.amortized_particles")
"""Keys that set how many actions per state an update evaluates (the largest read counts;
S2AC's amortised particles only with ``actor.amortized``)."""

WEIGHT_COPIES = 5
"""Each weight is held as the value, its gradient, Adam's two moments and the target copy."""

GiB = 2**30


class MemoryEstimate(NamedTuple):
    """Bytes one training process needs on its device, by what needs them."""

    activations: int
    replay: int
    weights: int

    @property
    def total(self) -> int:
        return self.activations + self.replay + self.weights

    def __str__(self) -> str:
        return (
            f"about {self.total / GiB:.1f} GiB (update activations {self.activations / GiB:.1f}, "
            f"replay buffer {self.replay / GiB:.1f}, weights and optimiser "
            f"{self.weights / GiB:.1f})"
        )


def element_bytes(precision: str) -> int:
    """Bytes of one activation at ``trainer.precision`` (mixed precision counted as 32-bit)."""
    return {"64": 8, "64-true": 8, "bf16-true": 2}.get(precision, 4)


def estimate(cfg: Config, observation_dim: int, action_dim: int) -> MemoryEstimate:
    """The memory one training process of ``cfg`` needs on its device.

    Activations: batch × particles × critics × (Σ hidden widths + input) × (SVGD steps + 2)
    units of :data:`BYTES_PER_UNIT` (scaled by the precision). Replay: capacity transitions of
    two observations, an action and a few scalars (float32). Weights: the critics' and, at the
    critics' sizes or the actor's, the actor's (:data:`WEIGHT_COPIES` each).
    """
    spec = ALGORITHMS[cfg.algo]
    counted = [key for key in PARTICLE_KEYS if spec.reads_key(key)]
    if spec.reads_key("actor.amortized") and not cfg.actor.amortized:
        counted.remove("loss.amortized_particles")  # no amortised sampler to train
    particles = max([1] + [_value(cfg, key) for key in counted])
    steps = cfg.svgd.steps if spec.reads_key("svgd.steps") else 0
    widths = cfg.critic.hidden_sizes
    units = (
        cfg.replay.batch_size
        * particles
        * cfg.critic.num_critics
        * (sum(widths) + observation_dim + action_dim)
        * (steps + 2)
    )
    scale = element_bytes(cfg.trainer.precision) / 4
    activations = int(units * BYTES_PER_UNIT * scale)
    replay = cfg.replay.capacity * (2 * observation_dim + action_dim + 8) * 4
    actor_widths = cfg.actor.hidden_sizes if spec.reads_key("actor.hidden_sizes") else widths
    weights = cfg.critic.num_critics * _dense_weights(
        [observation_dim + action_dim, *widths, 1]
    ) + _dense_weights([observation_dim, *actor_widths, 2 * action_dim])
    return MemoryEstimate(activations, replay, int(weights * WEIGHT_COPIES * 4 * scale))


def _value(cfg: Config, dotted: str) -> int:
    section, key = dotted.split(".")
    return getattr(getattr(cfg, section), key)


def _dense_weights(sizes: list[int]) -> int:
    return sum((a + 1) * b for a, b in itertools.pairwise(sizes))


def host_memory() -> int:
    """Bytes of RAM this process may use: the machine's, or its cgroup's limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = int(Path("/sys/fs/cgroup/memory.max").read_text())
    except (OSError, ValueError):  # no cgroup v2, or "max"
        return total
    return min(total, limit)


def device_memory(cfg: Config) -> tuple[int, str]:
    """The memory one process of ``cfg`` may fill, and its name in a message: a CUDA GPU's
    (each DDP rank has its own), or the host's RAM shared by this node's CPU ranks."""
    import torch

    t = cfg.trainer
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus and str(t.accelerator) in ("auto", "gpu", "cuda"):
        memory = min(torch.cuda.get_device_properties(i).total_memory for i in range(gpus))
        return memory, f"the GPU's memory ({memory / GiB:.1f} GiB)"
    ranks = t.devices if isinstance(t.devices, int) and t.devices > 0 else 1
    memory = host_memory() // ranks
    share = f", shared by {ranks} CPU ranks" if ranks > 1 else ""
    return memory, f"this machine's RAM ({host_memory() / GiB:.1f} GiB{share})"


def env_sizes(env_id: str) -> tuple[int, int]:
    """Observation and action sizes of a gymnasium env (checked flat and continuous before)."""
    env = gymnasium.make(env_id)
    try:
        return int(env.observation_space.shape[0]), int(env.action_space.shape[0])
    finally:
        env.close()


def check_memory(cfg: Config) -> None:
    """Raise :class:`ConfigError` if a training process of ``cfg`` cannot fit its device."""
    needed = estimate(cfg, *env_sizes(cfg.env.id))
    limit, where = device_memory(cfg)
    if needed.total > limit:
        raise ConfigError(
            f"this run needs {needed} per process, more than {where}; lower "
            "replay.batch_size, svgd.num_particles (or the other particle counts), "
            "critic.hidden_sizes or replay.capacity"
        )
