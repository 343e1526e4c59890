"""The training bar: one bar over the run's environment frames, with its total and ETA.

``  42%|████▏     | 2100/5000 frames [01:10<01:37, 5.8 updates/s, episode -283.4, eval -129.5]``

Lightning's own bar counts batches of an epoch of unknown length (``Epoch 0: 5050/?``), shows
its logger's version and formats every metric as a float; a run here is one epoch whose length
is the frame budget, and a resumed run's bar starts where the run stands. Evaluations print
their own line above the bar (:class:`s2ac_lit.trainer.callbacks.PeriodicEvaluation`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm


class RunProgressBar(TQDMProgressBar):
    """One bar over frames: done/total, elapsed and remaining time, the update rate
    (``time/ups``), the mean return of the latest training episodes (``train/ep_return``) and
    the latest evaluation's mean return.

    Args:
        total_frames: the run's frame budget (per rank; rank 0's bar).
        refresh_every_updates: move the bar after this many updates.
        latest_evaluation: the latest evaluation's mean return (None before the first), read
            when the bar moves.
    """

    BAR_FORMAT = (
        "{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} frames [{elapsed}<{remaining}{postfix}]"
    )

    def __init__(
        self,
        total_frames: int,
        refresh_every_updates: int,
        latest_evaluation: Callable[[], float | None],
    ) -> None:
        super().__init__(refresh_rate=refresh_every_updates)
        self.total_frames = total_frames
        self.latest_evaluation = latest_evaluation

    def init_train_tqdm(self, initial: int = 0) -> Tqdm:
        return Tqdm(
            total=self.total_frames,
            initial=initial,
            disable=self.is_disabled,
            leave=True,
            dynamic_ncols=True,
            file=sys.stdout,
            smoothing=0.1,  # the rate of the latest batches: updates start after a fast phase
            bar_format=self.BAR_FORMAT,
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A resumed run's bar (and its rate, hence the ETA) starts from the restored frames.
        self.train_progress_bar = self.init_train_tqdm(initial=_frames(trainer))

    def on_train_epoch_start(self, *args: Any) -> None:
        """Nothing: the one bar spans the whole run (Lightning's resets it and names the
        epoch)."""

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step % self.refresh_rate == 0:
            self._redraw(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._redraw(trainer)
        self.train_progress_bar.refresh()  # the final state, whatever tqdm's print interval

    def on_exception(self, trainer: L.Trainer, *args: Any) -> None:
        """End the bar's line: the stop's one line (a signal's, an error's) starts its own."""
        if self._train_progress_bar is not None:
            self._train_progress_bar.close()

    def _redraw(self, trainer: L.Trainer) -> None:
        bar = self.train_progress_bar
        bar.set_postfix_str(self.postfix(trainer), refresh=False)
        bar.update(_frames(trainer) - bar.n)  # tqdm redraws at most every 0.1 s

    def postfix(self, trainer: L.Trainer) -> str:
        """``updates/s, episode return, eval return``, each once it exists."""
        metrics = trainer.progress_bar_metrics
        parts = []
        if "ups" in metrics:
            parts.append(f"{float(metrics['ups']):.1f} updates/s")
        if "ep_return" in metrics:
            parts.append(f"episode {float(metrics['ep_return']):.1f}")
        evaluation = self.latest_evaluation()
        if evaluation is not None:
            parts.append(f"eval {evaluation:.1f}")
        return ", ".join(parts)


def _frames(trainer: L.Trainer) -> int:
    return int(trainer.datamodule.feeder.frames)
