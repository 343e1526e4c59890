"""The LightningModule: one gradient update of S2AC (or SAC, SQL) per training step.

Manual optimisation with one fused Adam over three parameter groups (critic, actor, α); each
training step is one :class:`s2ac_lit.update.Update` (the same update tools/train_torchrl.py
and tools/bench.py run): by default one backward of the summed losses, exact because each loss
reaches only its own group, so ``global_step`` counts updates and DDP sees a single backward
per step. The target critics follow with ``SoftUpdate`` after every update.

The training step takes ``dataloader_iter`` so that Lightning does not prefetch: the replay
feeder's counters then describe exactly the updates done when a checkpoint is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import OmegaConf
from tensordict import TensorDictBase
from torchrl.objectives import SoftUpdate

from s2ac_lit.algorithms import (
    ALGORITHMS,
    Policy,
    build_algorithm,
    make_optimizer,
    make_update,
    without_unread,
)
from s2ac_lit.config import Config, merge_config, to_config
from s2ac_lit.trainer.checkpoints import (
    CheckpointError,
    check_compatible,
    find_checkpoint,
    fuse_saved_adam,
    read_checkpoint,
    reopen_finished_run,
)
from s2ac_lit.trainer.data import planned_updates
from s2ac_lit.update import (
    LOSS_PREFIX,
    GraphedUpdate,
    NonFiniteError,
    Stepper,
    UpdateOutput,
)

COMPILE_MIN_UPDATES = 20_000
"""``trainer.compile='auto'`` compiles runs with at least this many updates: compiling the
whole update takes minutes on a CPU and repays itself after a few thousand updates
(docs/performance.md §Compilation)."""

LOGGED = ("alpha", "entropy", "q_value", "target_value")


def _logged(key: str) -> bool:
    # Namespaced keys ("svgd/...", "actor/...") are diagnostics the losses return detached.
    return key.startswith(LOSS_PREFIX) or key in LOGGED or "/" in key


def non_finite_state(state_dict: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold NaN or infinity."""
    return [
        name
        for name, value in state_dict.items()
        if torch.is_tensor(value)
        and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    ]


class LightningStepper(Stepper):
    """Backward and steps through Lightning: the precision plugin scales the loss (16-mixed)
    and the strategy steps. Lightning's step counter (``global_step``) counts an optimiser
    step as an update, so every phase of an update but the last steps through the strategy
    directly (what ``LightningOptimizer.step`` calls, minus the counter)."""

    def __init__(self, module: RLModule) -> None:
        self.module = module

    def backward(self, loss: torch.Tensor) -> None:
        self.module.manual_backward(loss)

    def step(self, optimizer: torch.optim.Optimizer, *, last: bool) -> None:
        if last:
            self.module.optimizers().step()
        else:
            self.module.trainer.strategy.optimizer_step(
                optimizer, closure=lambda: None, model=self.module
            )

    def grad_scale(self, optimizer: torch.optim.Optimizer) -> torch.Tensor | None:
        scaler = getattr(self.module.trainer.precision_plugin, "scaler", None)
        # The scale as a device tensor: get_scale() would read it on the host every update.
        return None if scaler is None else scaler._get_scale_async()


def compiles(cfg: Config) -> bool:
    """Whether a run compiles its whole update: ``trainer.compile``, and for 'auto': the
    algorithm reads the key (S2AC, SQL), the sampler does not differentiate twice through the
    critic (any ``svgd.self_term`` but ``'exact'``: Hutchinson's probe takes a difference of two
    closed-form ∇ₐQ calls), the run makes at least :data:`COMPILE_MIN_UPDATES` updates, and
    torch's compiler backend finds a C++ compiler (a fresh CPU machine may have none)."""
    if cfg.trainer.compile != "auto":
        return bool(cfg.trainer.compile)
    return (
        ALGORITHMS[cfg.algo].reads_key("trainer.compile")
        and cfg.svgd.self_term != "exact"
        and planned_updates(cfg.collector) >= COMPILE_MIN_UPDATES
        and _cpp_compiler_found()
    )


def _cpp_compiler_found() -> bool:
    from torch._inductor.cpp_builder import get_cpp_compiler  # private: no public probe yet

    try:
        get_cpp_compiler()
    except Exception:  # InvalidCxxCompiler, or an internal change in a later torch
        return False
    return True


class RLModule(L.LightningModule):
    """Loss, optimiser and target updates for ``cfg.algo``; data comes from the feeder.

    Args:
        cfg: the run's config.
        observation_dim: O.
        action_low, action_high: ``[A]`` action bounds.
    """

    def __init__(
        self,
        cfg: Config,
        observation_dim: int,
        action_low: Sequence[float],
        action_high: Sequence[float],
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            {
                "config": OmegaConf.to_container(OmegaConf.structured(cfg)),
                "observation_dim": observation_dim,
                "action_low": list(map(float, action_low)),
                "action_high": list(map(float, action_high)),
            }
        )
        self.cfg = cfg
        self.automatic_optimization = False
        algorithm = build_algorithm(cfg, observation_dim, action_low, action_high)
        self.loss_module = algorithm.loss
        # Policy and updater stay outside the module tree: the policy only references the
        # loss's networks, and collectors may move or copy what they are given.
        self.__dict__["_policy"] = algorithm.policy
        self.__dict__["target_updater"] = SoftUpdate(self.loss_module, tau=cfg.optim.tau)
        self.__dict__["_update"] = None
        self.__dict__["_update_call"] = None

    @classmethod
    def from_hparams(cls, hparams: dict[str, Any]) -> RLModule:
        """Rebuild an untrained module from a checkpoint's ``hyper_parameters``.

        Keys its algorithm does not read go back to their defaults: runs from before the
        registry refused them (a suite's shared preset) still load.
        """
        cfg = without_unread(to_config(merge_config(base=OmegaConf.create(hparams["config"]))))
        return cls(cfg, hparams["observation_dim"], hparams["action_low"], hparams["action_high"])

    @classmethod
    def load(cls, path: Path) -> RLModule:
        """A trained module from a checkpoint file (CPU), with clear errors for bad files."""
        checkpoint = read_checkpoint(path)
        module = cls.from_hparams(checkpoint["hyper_parameters"])
        check_compatible(checkpoint, module, path)
        module.load_state_dict(checkpoint["state_dict"])
        return module

    def policy(self) -> Policy:
        """The policy acting with the trained networks, from the registry.

        It samples under ``ExplorationType.RANDOM`` (collectors, MaxEnt rollouts) and acts
        with ``actor.eval_selection`` (or the algorithm's own deterministic mode) otherwise.
        """
        return self._policy

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """One fused Adam with groups ``critic``, ``actor`` (absent for S2AC(φ)) and ``alpha``
        (capturable under ``trainer.cudagraphs``)."""
        return make_optimizer(
            self.loss_module, self.cfg.optim, capturable=self.cfg.trainer.cudagraphs
        )

    def update_step(self) -> Callable[..., UpdateOutput]:
        """The update of this fit, as it runs: eager, compiled (``trainer.compile``: the whole
        update, graph breaks at the backward and the fused step) and/or captured in a CUDA
        graph (``trainer.cudagraphs``). Built at the first step, after a resume restored the
        optimiser and the step counter."""
        if self._update is None:
            graphed = self.cfg.trainer.cudagraphs
            self._update = make_update(
                self.cfg,
                self.loss_module,
                self.optimizers().optimizer,
                target_updater=self.target_updater,
                # Under a CUDA graph, Python does not run at replay: no Lightning hooks there.
                stepper=None if graphed else LightningStepper(self),
            )
            self._update.start_at(self.global_step)
            call: Callable[..., UpdateOutput] = self._update
            if compiles(self.cfg):
                call = torch.compile(self._update.__call__)
            self.__dict__["_update_call"] = GraphedUpdate(call) if graphed else call
        return self._update_call

    def training_step(self, dataloader_iter: Iterator) -> None:
        """One update on one replay batch; the feeder ending (StopIteration) ends training.

        No host synchronisation but at the log interval, where the non-finite guard is read
        (s2ac_lit.update).
        """
        batch, _, _ = next(dataloader_iter)
        batch: TensorDictBase = batch.to(self.device)
        log = (self.global_step + 1) % self.cfg.trainer.log_every_updates == 0
        result = self.update_step()(batch, log=log)
        if self.cfg.trainer.cudagraphs:
            # The replayed graph stepped the optimiser without Lightning: count the update
            # as LightningOptimizer.step would (the manual loop's progress hooks).
            optimizer = self.optimizers()
            optimizer._on_before_step()
            optimizer._on_after_step()
        if log:
            self._update.raise_if_non_finite(self._newest_checkpoint())
            self._log(result.out, result.grad_norms or {})

    def _newest_checkpoint(self) -> Path | None:
        """The newest loadable checkpoint of this run (RUN/checkpoints), if any."""
        callback = self.trainer.checkpoint_callback if self._trainer is not None else None
        try:
            return find_checkpoint(Path(callback.dirpath).parent) if callback else None
        except CheckpointError:
            return None

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A finished run resumed with a raised ``collector.total_frames`` trains on; an
        optimiser saved before Adam was fused resumes fused (the update masks its steps)."""
        reopen_finished_run(checkpoint, self.cfg.collector.total_frames)
        fuse_saved_adam(checkpoint)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Stop a run whose updates went non-finite since the last log (the guard), and refuse
        to write weights holding NaN or infinity (they could never be resumed)."""
        if self._update is not None:
            self._update.raise_if_non_finite(self._newest_checkpoint())
        bad = non_finite_state(checkpoint["state_dict"])
        if bad:
            raise NonFiniteError(
                f"refusing to write a checkpoint with non-finite weights in {bad[:3]}"
            )

    def _log(self, out: TensorDictBase, grad_norms: dict[str, torch.Tensor]) -> None:
        """What the update produced (losses, diagnostics, gradient norms), at the log interval.

        The data side's progress (frames, update rate, episode returns) is logged by the
        ``TrainingProgress`` callback (``s2ac_lit.trainer.callbacks``).
        """
        metrics = {
            f"train/{key}": value.detach().float() for key, value in out.items() if _logged(key)
        }
        metrics.update({f"train/grad_norm/{g}": n.float() for g, n in grad_norms.items()})
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=1)
