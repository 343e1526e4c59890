"""One training update, the same for every trainer: losses, backward, guard, clip, step, targets.

The Lightning module (:mod:`s2ac_lit.trainer.module`), ``tools/train_torchrl.py`` and
``tools/bench.py`` all call :class:`Update`. One call on one replay batch:

1. the loss terms: all at once (``update_order="joint"``: one backward of their sum, exact
   because each ``loss_*`` reaches only its own parameter group), or in the loss's phases
   (``"critic_first"``, the authors' code: the critics step before the actor's losses are
   computed, so those see the updated critics);
2. per phase: backward, the gradient norm of each parameter group, the finite guard, optional
   clipping of the global norm, the optimiser step;
3. the target critics' Polyak step (``SoftUpdate``).

No host synchronisation (docs/performance.md §GPU): a non-finite loss or gradient does not stop
the update on the spot. The optimiser's step is masked on the device instead (fused Adam's
``found_inf``, the mechanism AMP's gradient scaler uses), from the first bad update on, and
:class:`NonFiniteGuard` records that update and its terms in device tensors. The caller reads
the guard (:meth:`Update.raise_if_non_finite`) at its log interval and before every
checkpoint: the run then stops, naming the update and the terms, with weights that never saw a
non-finite value. The group norms, computed on the device for the guard and the clipping, reach
the host only when an update is asked to ``log``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Literal, NamedTuple, get_args

import torch
from tensordict import TensorDictBase
from torch import Tensor
from torchrl.objectives import LossModule, SoftUpdate

from s2ac_lit.objectives.common import merge_phases

LOSS_PREFIX = "loss_"
UpdateOrder = Literal["joint", "critic_first"]
"""``joint``: all losses at the same critics, one backward and one step; ``critic_first``: the
critics step before the actor's losses are computed (the authors' code)."""
UPDATE_ORDERS: tuple[UpdateOrder, ...] = get_args(UpdateOrder)

Phases = Callable[[TensorDictBase], Iterable[TensorDictBase]]
"""Batch → the loss's outputs phase by phase, critic first (``S2ACLoss.loss_phases``)."""


class NonFiniteError(RuntimeError):
    """A loss or gradient became NaN or infinite; no optimiser step used it."""


def total_loss(out: TensorDictBase) -> Tensor:
    """Sum of the ``loss_*`` entries of a loss module's output (TorchRL's convention)."""
    return sum(value for key, value in out.items() if key.startswith(LOSS_PREFIX))


class Stepper:
    """How an update runs backward and steps the optimiser: plain PyTorch.

    The Lightning module substitutes its own (its precision plugin's loss scaling, its
    strategy's step and step counter); see ``s2ac_lit.trainer.module``.
    """

    def backward(self, loss: Tensor) -> None:
        loss.backward()

    def step(self, optimizer: torch.optim.Optimizer, *, last: bool) -> None:
        """One optimiser step; ``last`` is the update's final phase."""
        optimizer.step()

    def grad_scale(self, optimizer: torch.optim.Optimizer) -> Tensor | None:
        """The factor the gradients are scaled by (AMP's loss scale), or None."""
        return None


class NonFiniteGuard:
    """Device record of the first update whose loss terms or gradients were not finite.

    Args:
        names: what each flag of :meth:`record` stands for (loss terms, gradient groups).
        device: where the record lives.
    """

    def __init__(self, names: Sequence[str], device: torch.device) -> None:
        self.names = tuple(names)
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.flags = torch.zeros(len(self.names), dtype=torch.bool, device=device)

    def record(self, update: Tensor, bad: Tensor) -> Tensor:
        """Note ``bad`` (``[len(names)]`` bool) at ``update``; True where a step may be taken:
        nothing is bad now and nothing was before."""
        clean_so_far = self.first_bad < 0
        any_bad = bad.any()
        first = clean_so_far & any_bad
        self.first_bad.copy_(torch.where(first, update, self.first_bad))
        self.flags.copy_(torch.where(first, bad, self.flags))
        return clean_so_far & ~any_bad

    def first(self) -> tuple[int, list[str]] | None:
        """The first bad update (1-based) and what was bad there, or None (reads the device)."""
        update = int(self.first_bad)
        if update < 0:
            return None
        return update, [
            name for name, bad in zip(self.names, self.flags.tolist(), strict=True) if bad
        ]


def group_grad_norms(optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
    """L2 norm of the gradients of each named parameter group (``critic``, ``actor``, ...).

    Groups without gradients (not reached by this phase) are left out.
    """
    norms = {}
    for group in optimizer.param_groups:
        grads = [p.grad for p in group["params"] if p.grad is not None]
        if grads:
            norms[group["name"]] = torch.nn.utils.get_total_norm(grads)
    return norms


class UpdateOutput(NamedTuple):
    """What one update returns: the loss module's outputs (detached) and, on log updates, the
    gradient norm of each parameter group (else None)."""

    out: TensorDictBase
    grad_norms: dict[str, Tensor] | None


class Update:
    """One training update on a replay batch; see the module docstring.

    Args:
        loss: the loss module (its ``loss_*`` outputs are summed per phase).
        optimizer: one optimiser over named parameter groups
            (:func:`s2ac_lit.algorithms.make_optimizer`): fused Adam, whose step the guard
            masks on the device. Under AMP's gradient scaler (``Stepper.grad_scale``) the
            scaler masks it instead.
        target_updater: the Polyak averaging of the target critics, stepped once per update.
        update_order: ``"joint"`` or ``"critic_first"`` (:data:`UpdateOrder`).
        phases: the loss's phases (needed by ``"critic_first"``).
        max_grad_norm: clip the global gradient norm of each phase to this (None: no clipping).
        stepper: backward and step (default: plain PyTorch).
    """

    def __init__(
        self,
        loss: LossModule,
        optimizer: torch.optim.Optimizer,
        target_updater: SoftUpdate | None,
        *,
        update_order: UpdateOrder = "joint",
        phases: Phases | None = None,
        max_grad_norm: float | None = None,
        stepper: Stepper | None = None,
    ) -> None:
        if update_order not in UPDATE_ORDERS:
            raise ValueError(f"unknown update_order {update_order!r}; allowed: {UPDATE_ORDERS}")
        if update_order == "critic_first" and phases is None:
            raise ValueError("update_order='critic_first' needs the loss's phases")
        require_masked_steps(optimizer)
        self.loss = loss
        self.optimizer = optimizer
        self.target_updater = target_updater
        self.update_order = update_order
        self.phases = phases
        self.max_grad_norm = max_grad_norm
        self.stepper = stepper or Stepper()
        device = next(iter(loss.parameters())).device
        terms = [key for key in loss.out_keys if str(key).startswith(LOSS_PREFIX)]
        self.groups = [group["name"] for group in optimizer.param_groups]
        self.guard = NonFiniteGuard(
            [*terms, *(f"gradient of {group}" for group in self.groups)], device
        )
        self.count = torch.zeros((), dtype=torch.long, device=device)

    def start_at(self, updates: int) -> None:
        """Continue counting from ``updates`` done (a resumed run)."""
        self.count.fill_(updates)

    def __call__(self, batch: TensorDictBase, *, log: bool = False) -> UpdateOutput:
        """One update on ``batch``; the group gradient norms come back when ``log``."""
        self.count += 1
        if self.update_order == "joint":
            phases: Iterable[TensorDictBase] = [self.loss(batch)]
        else:
            assert self.phases is not None
            phases = self.phases(batch)
        outs, norms = [], {}
        for index, out in enumerate(phases):
            last = self.update_order == "joint" or index == 1
            norms.update(self._backward_and_step(out, last=last))
            outs.append(out)
        if self.target_updater is not None:
            self.target_updater.step()
        merged = merge_phases(outs).detach()
        return UpdateOutput(merged, norms if log else None)

    def _backward_and_step(self, out: TensorDictBase, *, last: bool) -> dict[str, Tensor]:
        optimizer, stepper = self.optimizer, self.stepper
        optimizer.zero_grad(set_to_none=True)
        stepper.backward(total_loss(out))
        scale = stepper.grad_scale(optimizer)
        norms = group_grad_norms(optimizer)
        if scale is not None:  # norms of the true gradients (the scaled ones are scale × them)
            norms = {group: norm / scale for group, norm in norms.items()}
        bad = torch.stack([self._bad(name, out, norms, scale) for name in self.guard.names])
        may_step = self.guard.record(self.count, bad)
        if self.max_grad_norm is not None and norms:
            total = torch.linalg.vector_norm(torch.stack(list(norms.values())))
            limit = self.max_grad_norm if scale is None else self.max_grad_norm * scale
            params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grads_with_norm_(
                params, limit, total if scale is None else total * scale
            )
        if scale is None:  # AMP's scaler masks its own steps (non-finite scaled gradients)
            optimizer.found_inf = (~may_step).float()  # type: ignore[attr-defined]
        stepper.step(optimizer, last=last)
        return norms

    def _bad(
        self, name: str, out: TensorDictBase, norms: dict[str, Tensor], scale: Tensor | None
    ) -> Tensor:
        """Whether ``name`` (a loss term or ``gradient of <group>``) is non-finite now."""
        if name.startswith("gradient of "):
            norm = norms.get(name.removeprefix("gradient of "))
            # Under AMP overflowing scaled gradients are the scaler's business, not a failure.
            if norm is None or scale is not None:
                return torch.zeros((), dtype=torch.bool, device=self.count.device)
            return ~torch.isfinite(norm)
        value = out.get(name, None)
        if value is None:
            return torch.zeros((), dtype=torch.bool, device=self.count.device)
        return ~torch.isfinite(value).all()

    def raise_if_non_finite(self, newest_checkpoint: str | None = None) -> None:
        """Raise :class:`NonFiniteError` if an update so far was not finite (reads the device).

        Args:
            newest_checkpoint: named in the message as the point to resume from.
        """
        first = self.guard.first()
        if first is None:
            return
        update, terms = first
        resume = (
            f"newest checkpoint with finite weights: {newest_checkpoint} (resume with "
            f"`python tools/fit.py --resume {newest_checkpoint}` and changed settings, e.g. a "
            "lower learning rate or optim.max_grad_norm)"
            if newest_checkpoint is not None
            else "no checkpoint was written yet"
        )
        raise NonFiniteError(
            f"non-finite {', '.join(terms)} at update {update}; the weights were not updated "
            f"from that update on; {resume}"
        )


def require_masked_steps(optimizer: torch.optim.Optimizer) -> None:
    """Raise ValueError unless ``optimizer`` can skip a step on the device (``found_inf``)."""
    if not getattr(optimizer, "_step_supports_amp_scaling", False) or not all(
        group.get("fused") for group in optimizer.param_groups
    ):
        raise ValueError(
            f"{type(optimizer).__name__} cannot skip a step on the device; use "
            "torch.optim.Adam(..., fused=True) (s2ac_lit.algorithms.make_optimizer)"
        )


class GraphedUpdate:
    """An update captured once in a CUDA graph and replayed: no Python, no kernel launches.

    The first ``warmup`` calls run eagerly on a side stream (what capture requires: the
    allocator and the optimiser's state settle); the next call copies its batch into a static
    buffer and captures one update on it; every later call copies the batch into that buffer
    and replays. The update must read nothing on the host (:class:`Update` does not), have
    static shapes (the replay batch size is fixed) and step a capturable optimiser
    (``torch.optim.Adam(fused=True, capturable=True)``). Random draws inside the graph (the
    sampler's) advance the CUDA generator at every replay, as eager calls would.

    The returned outputs live in the graph's memory: the next call overwrites them, so a
    caller that keeps them clones them (the trainer reads them at once, at its log points).

    Args:
        update: the update to capture (or a compiled version of it).
        warmup: eager calls before the capture.
    """

    def __init__(self, update: Callable[..., UpdateOutput], *, warmup: int = 3) -> None:
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA graphs need a CUDA device")
        self.update = update
        self.warmup = warmup
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_batch: TensorDictBase | None = None
        self.static_out: UpdateOutput | None = None

    def __call__(self, batch: TensorDictBase, *, log: bool = False) -> UpdateOutput:
        self.calls += 1
        if self.calls <= self.warmup:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                result = self.update(batch, log=True)
            torch.cuda.current_stream().wait_stream(stream)
            return UpdateOutput(result.out, result.grad_norms if log else None)
        if self.graph is None:
            self.static_batch = batch.clone()
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                # log=True: the norms are computed at every update anyway (the finite guard).
                self.static_out = self.update(self.static_batch, log=True)
        else:
            self.static_batch.update_(batch)  # type: ignore[union-attr]
        self.graph.replay()
        out = self.static_out
        assert out is not None
        return UpdateOutput(out.out, out.grad_norms if log else None)
