"""The data side of training: a TorchRL collector feeding a TensorDict replay buffer.

:class:`ReplayFeeder` is the iterable Lightning trains on: each item is one replay batch, one
gradient update. Between rounds of updates it collects ``frames_per_batch`` environment steps
(the first ``init_random_frames`` with uniformly random actions). Its counters are exact at
every yield, so a checkpoint taken after update U holds exactly the frames and updates that
produced it: a resumed run neither loses nor repeats work.

:class:`ReplayDataModule` builds one feeder per rank in ``setup()``, seeded with
``seed + global_rank`` before the env and collector exist, and keeps env, collector and buffer
out of the LightningModule tree.

With ``replay.prioritized`` the buffer is TorchRL's ``TensorDictPrioritizedReplayBuffer``: its
batches carry the importance weights (``priority_weight``) that the losses apply, the feeder
anneals β over the run, and once an update has written the batch's TD errors (``td_error``)
the feeder hands them back to the buffer as the new priorities.

The feeder's state (:meth:`ReplayFeeder.state_dict`) is everything the data side's continuation
depends on besides the buffer: counters, the random generators, the collector's in-flight
tensordict (the observation, the step and return accumulators, the trajectory ids) and the
env's whole state (``s2ac_lit.envs.state``), so that a resumed run collects exactly what the
uninterrupted one would (docs/checkpoints.md).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import lightning as L
import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, ReplayBuffer, TensorDictPrioritizedReplayBuffer
from torchrl.envs import EnvBase
from torchrl.envs.utils import exploration_type

from s2ac_lit.config import CollectorConfig, Config, ConfigError, ReplayConfig
from s2ac_lit.envs import env_state, load_env_state, make_env, unreadable_reason
from s2ac_lit.trainer.checkpoints import machine_record

PolicyFactory = Callable[[], Callable[[TensorDictBase], TensorDictBase]]


def capture_rng() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) random states."""
    state = {
        "python": random.getstate(),
        # A tensor, not an ndarray: checkpoints must load with torch.load(weights_only=True).
        "numpy": _numpy_state_as_tensors(np.random.get_state()),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state_as_tensors(state: tuple) -> tuple:
    kind, keys, pos, has_gauss, cached = state
    return kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def rng_untouched() -> Iterator[None]:
    """Leave the Python, numpy and torch random states as they were before the block."""
    state = capture_rng()
    try:
        yield
    finally:
        restore_rng(state)


def planned_updates(schedule: CollectorConfig) -> int:
    """Updates a run with this collector schedule makes: ``updates_per_batch`` after each batch
    from the first one that brings the frames to ``update_after``."""
    rounds = schedule.total_frames // schedule.frames_per_batch
    first_due = -(-schedule.update_after // schedule.frames_per_batch)
    return max(0, rounds - max(first_due, 1) + 1) * schedule.updates_per_batch


class ReplayFeeder:
    """Iterable of replay batches, one per gradient update, collecting as it goes.

    Schedule (docs/algorithm.md §Defaults): collect ``frames_per_batch`` frames; once
    ``update_after`` frames have been collected, yield ``updates_per_batch`` batches; repeat
    until ``total_frames``.

    Args:
        env: the environment to collect from (kept outside any nn.Module tree).
        policy_factory: returns the exploration policy; called when iteration starts, so
            the policy's parameters are already on their device.
        buffer: the replay buffer (sampling returns ``batch_size`` transitions).
        schedule: the collector config.
        policy_device: where the policy runs.
        beta_annealing: for a prioritised buffer, β at the first and at the last update
            (linear in between); None keeps the buffer's β.
        profile: names a stage of the loop for a profiler (Lightning's ``profiler.profile``:
            "collect" and "replay_sample" here); by default nothing is recorded.
        rank: the DDP rank that owns this feeder; a state saved by another rank restores only
            the counters (each rank keeps its own env and random streams).
        world_size: the DDP ranks of the run (recorded in the state: a resume on another
            number of ranks cannot continue every rank's streams).
    """

    def __init__(
        self,
        env: EnvBase,
        policy_factory: PolicyFactory,
        buffer: ReplayBuffer,
        schedule: CollectorConfig,
        *,
        policy_device: torch.device | str = "cpu",
        beta_annealing: tuple[float, float] | None = None,
        profile: Callable[[str], AbstractContextManager[Any]] = nullcontext,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.env = env
        self.profile = profile
        self.policy_factory = policy_factory
        self.buffer = buffer
        self.schedule = schedule
        self.policy_device = torch.device(policy_device)
        self.beta_annealing = beta_annealing
        self.rank = rank
        self.world_size = world_size
        self.prioritized = isinstance(buffer, TensorDictPrioritizedReplayBuffer)
        self.frames = 0
        self.updates = 0
        self.episodes = 0
        self.return_history: list[tuple[int, float]] = []
        self._round_updates = 0
        self._round_target = 0
        self._collector: Collector | None = None
        self._collector_iter: Iterator[TensorDictBase] | None = None
        # A loaded state waiting for the collector: TorchRL's part and the in-flight part.
        self._pending: tuple[dict[str, Any] | None, dict[str, Any] | None] | None = None
        # The last batch yielded, until its TD errors are the buffer's priorities.
        self._unprioritized: TensorDictBase | None = None

    def _build_collector(self) -> None:
        # Building runs the policy once and resets the env: that must not shift the random
        # streams, or a resumed run, which builds it anew, would draw other numbers.
        with rng_untouched():
            self._collector = Collector(
                self.env,
                self.policy_factory(),
                frames_per_batch=self.schedule.frames_per_batch,
                total_frames=-1,  # a finite budget closes the env silently; we stop ourselves
                init_random_frames=self.schedule.init_random_frames,
                policy_device=self.policy_device,
                env_device="cpu",
                storing_device="cpu",
                auto_register_policy_transforms=False,
                trust_policy=True,  # the policy holds no parameters of its own to cast
            )
        if self._pending is not None:
            self._restore_collector(*self._pending)
            self._pending = None
        self._collector_iter = iter(self._collector)

    def _restore_collector(
        self, collector_state: dict[str, Any] | None, in_flight: dict[str, Any] | None
    ) -> None:
        """The loaded state into the collector just built (which reset the env)."""
        collector = self._collector
        assert collector is not None
        if collector_state is None:
            return
        collector.load_state_dict(collector_state, strict=False)
        if in_flight is None:  # the env goes on from that reset: a statistical continuation
            return
        # TorchRL's load_state_dict starts a new trajectory, as it cannot restore the env;
        # this one can, so the trajectory in flight and the id counter stay as they were.
        collector._traj_pool.load_state_dict(collector_state["traj_pool"])
        load_env_state(self.env, in_flight["env"])
        carrier = collector._carrier  # the tensordict the next step starts from
        collector._carrier = TensorDict(
            in_flight["carrier"], batch_size=carrier.batch_size, device=carrier.device
        )

    def _in_flight(self) -> dict[str, Any] | None:
        """The env's whole state and the collector's tensordict between two steps, or None
        where the env's state cannot be read."""
        collector = self._collector
        assert collector is not None
        state = env_state(self.env)
        if state is None:
            return None
        return {"env": state, "carrier": collector._carrier.clone().to_dict()}

    def _collect(self) -> None:
        if self._collector_iter is None:
            self._build_collector()
        data = next(self._collector_iter).reshape(-1)
        self.buffer.extend(data)
        self.frames += data.numel()
        finished = data["next", "done"].reshape(-1)
        if finished.any():
            returns = data["next", "episode_reward"].reshape(-1)[finished]
            self.return_history += [(self.frames, r) for r in returns.tolist()]
            self.episodes += int(finished.sum())
        due = self.frames >= self.schedule.update_after
        self._round_updates = 0
        self._round_target = self.schedule.updates_per_batch if due else 0

    def recent_return(self, episodes: int = 20) -> float | None:
        """Mean return of the last ``episodes`` finished training episodes (None if none)."""
        recent = self.return_history[-episodes:]
        return sum(r for _, r in recent) / len(recent) if recent else None

    @property
    def total_updates(self) -> int:
        """Updates the whole run will make."""
        return planned_updates(self.schedule)

    def __iter__(self) -> Iterator[TensorDictBase]:
        while True:
            self._write_priorities()  # a resumed run's last batch before its checkpoint
            while self._round_updates < self._round_target:
                # Count the batch before yielding: a checkpoint taken while suspended here,
                # after the update that consumed it, must already include it.
                self._round_updates += 1
                self.updates += 1
                with self.profile("replay_sample"):
                    batch = self._sample()
                self._unprioritized = batch if self.prioritized else None
                yield batch
                self._write_priorities()
            if self.frames >= self.schedule.total_frames:
                return
            with self.profile("collect"):
                self._collect()

    def _write_priorities(self) -> None:
        """The TD errors the update wrote into the last batch become its priorities."""
        if self._unprioritized is not None:
            self.buffer.update_tensordict_priority(self._unprioritized)
            self._unprioritized = None

    def _sample(self) -> TensorDictBase:
        if self.prioritized and self.beta_annealing is not None:
            start, end = self.beta_annealing
            progress = min(1.0, (self.updates - 1) / max(1, self.total_updates - 1))
            self.buffer.sampler.beta = start + (end - start) * progress
        return self.buffer.sample()

    def state_dict(self) -> dict[str, Any]:
        """Counters, the collector's state, the env's whole state, the random states and the
        machine that computed them (not the buffer; docs/checkpoints.md)."""
        if self._collector is None:
            collector_state, in_flight = self._pending or (None, None)
        else:
            # The policy's weights belong to the LightningModule's checkpoint, not here.
            collector_state = dict(self._collector.state_dict())
            collector_state.pop("policy_state_dict", None)
            in_flight = self._in_flight()
        unprioritized = None
        if self._unprioritized is not None:  # its TD errors are written, not yet handed back
            keys = ("index", self.buffer.priority_key)
            unprioritized = {
                "data": self._unprioritized.select(*keys, strict=False).clone().to_dict(),
                "batch_size": list(self._unprioritized.batch_size),
            }
        return {
            "frames": self.frames,
            "updates": self.updates,
            "episodes": self.episodes,
            "return_history": list(self.return_history),
            "round_updates": self._round_updates,
            "round_target": self._round_target,
            "collector": collector_state,
            "in_flight": in_flight,
            "env_unreadable": unreadable_reason(self.env),
            "unprioritized": unprioritized,
            "rank": self.rank,
            "world_size": self.world_size,
            "rng": capture_rng(),
            "machine": machine_record(self.policy_device),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`: the counters at once, the collector's and the env's
        state when the collector is built (at the next collection)."""
        self.frames = state["frames"]
        self.updates = state["updates"]
        self.episodes = state["episodes"]
        self.return_history = list(state["return_history"])
        self._round_updates = state["round_updates"]
        self._round_target = state["round_target"]
        own = state.get("rank", 0) == self.rank
        self._pending = (state["collector"], state.get("in_flight") if own else None)
        self._collector = self._collector_iter = None
        unprioritized = state.get("unprioritized") if own else None
        self._unprioritized = (
            None
            if unprioritized is None
            else TensorDict(unprioritized["data"], batch_size=unprioritized["batch_size"])
        )
        if own:
            restore_rng(state["rng"])

    def close(self) -> None:
        if self._collector is not None:
            self._collector.shutdown()
        elif not self.env.is_closed:
            self.env.close()


class GraphedPolicy:
    """The collector's policy captured in a CUDA graph: one replay per environment step.

    Per exploration mode and observation shape, the first ``warmup`` calls run eagerly; the
    next captures ``policy`` on a static copy of the input, and later calls copy the
    observation in, replay, and write a copy of the action out. The policy must read nothing
    on the host (the S2AC and SQL policies do not) and keep its parameters in place (the
    trainer's update writes them in place).

    Args:
        policy: a TensorDict policy with ``in_keys`` and ``out_keys``.
        warmup: eager calls before a capture.
    """

    def __init__(self, policy: Callable[[TensorDictBase], TensorDictBase], *, warmup: int = 3):
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA graphs need a CUDA device")
        self.policy = policy
        self.warmup = warmup
        self.in_keys = list(policy.in_keys)  # type: ignore[attr-defined]
        self.out_keys = list(policy.out_keys)  # type: ignore[attr-defined]
        self._calls: dict[Any, int] = {}
        self._graphs: dict[Any, tuple[torch.cuda.CUDAGraph, TensorDictBase]] = {}

    def __call__(self, tensordict: TensorDictBase) -> TensorDictBase:
        key = (exploration_type(), tuple(tensordict.shape))
        calls = self._calls[key] = self._calls.get(key, 0) + 1
        if calls <= self.warmup:
            return self.policy(tensordict)
        if key not in self._graphs:
            static = tensordict.select(*self.in_keys).clone()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.policy(static)
            self._graphs[key] = (graph, static)
        graph, static = self._graphs[key]
        static.update_(tensordict.select(*self.in_keys))
        graph.replay()
        for name in self.out_keys:
            tensordict.set(name, static.get(name).clone())
        return tensordict


def prioritized_replay_unavailable() -> str | None:
    """Why TorchRL's prioritised replay cannot be built here, or None when it can.

    Its samplers keep priorities in segment trees from TorchRL's C++ extension
    (``torchrl._torchrl``), which fails to load when the installed torch is not the build
    that torchrl wheel was compiled against.
    """
    try:
        from torchrl._torchrl import SumSegmentTreeFp32  # noqa: F401
    except ImportError as error:
        return str(error)
    return None


def check_replay(cfg: ReplayConfig) -> None:
    """Raise a :class:`ConfigError` for a replay buffer this machine cannot build
    (``replay.prioritized=true`` without TorchRL's C++ extension); a run checks it before its
    folder exists."""
    reason = prioritized_replay_unavailable() if cfg.prioritized else None
    if reason is not None:
        raise ConfigError(
            "replay.prioritized=true needs TorchRL's C++ extension (torchrl._torchrl, its "
            f"segment trees), which does not load here ({reason}); install torch and torchrl "
            "builds made for each other, or set replay.prioritized=false"
        )


def make_replay_buffer(cfg: ReplayConfig, device: torch.device | str = "cpu") -> ReplayBuffer:
    """A TensorDict replay buffer whose storage lives on ``device``: uniform, or prioritised.

    Raises:
        ConfigError: ``cfg.prioritized`` where TorchRL's C++ extension does not load.
    """
    storage = LazyTensorStorage(cfg.capacity, device=device)
    if not cfg.prioritized:
        return ReplayBuffer(storage=storage, batch_size=cfg.batch_size)
    check_replay(cfg)
    return TensorDictPrioritizedReplayBuffer(
        alpha=cfg.alpha, beta=cfg.beta, eps=cfg.eps, storage=storage, batch_size=cfg.batch_size
    )


class ReplayDataModule(L.LightningDataModule):
    """One env, collector and replay buffer per rank; ``train_dataloader`` is the feeder.

    The acting policy comes from the LightningModule (``policy()``).
    Lightning checkpoints the feeder's ``state_dict`` itself (it is the train dataloader);
    the buffer is dumped beside the checkpoint by
    :class:`s2ac_lit.trainer.callbacks.ReplayCheckpoint`, since it can be hundreds of MB.
    """

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.feeder: ReplayFeeder | None = None

    def setup(self, stage: str) -> None:
        if self.feeder is not None:
            return
        rank = self.trainer.global_rank if self.trainer is not None else 0
        seed = self.cfg.seed + rank
        # Seed before the env and collector exist: the collector resets the env on build.
        L.seed_everything(seed, workers=False, verbose=False)
        device = self.trainer.strategy.root_device if self.trainer is not None else "cpu"
        env = make_env(self.cfg.env.id, seed=seed, max_episode_steps=self.cfg.env.max_episode_steps)
        module = self.trainer.lightning_module
        self.feeder = ReplayFeeder(
            env,
            (lambda: GraphedPolicy(module.policy()))
            if self.cfg.trainer.cudagraphs
            else module.policy,
            make_replay_buffer(self.cfg.replay, device=device),
            self.cfg.collector,
            policy_device=device,
            beta_annealing=(
                (self.cfg.replay.beta, self.cfg.replay.beta_final)
                if self.cfg.replay.prioritized
                else None
            ),
            profile=self.trainer.profiler.profile if self.trainer is not None else nullcontext,
            rank=rank,
            world_size=self.trainer.world_size if self.trainer is not None else 1,
        )

    def train_dataloader(self) -> ReplayFeeder:
        assert self.feeder is not None, "setup() builds the feeder"
        return self.feeder

    def teardown(self, stage: str) -> None:
        if self.feeder is not None:
            self.feeder.close()
