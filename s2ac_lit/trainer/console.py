"""The console shows our progress and messages, not the third-party noise we trigger knowingly.

:func:`quiet_third_party` is the one place where warnings and log lines of Lightning, PyTorch,
TorchRL and Ray are silenced; each filter says why it is safe. Filters match one message each, so
every other warning (a real problem) still reaches the user.
"""

from __future__ import annotations

import logging
import os
import re
import warnings

# Lightning's info lines that are advertisements, false for our loop (the epoch is ours), or
# said in our own words by the run's start line (s2ac_lit.trainer.train.start_line).
_LIGHTNING_INFO_DROPPED = (
    # Advertises a cloud logger; the run already logs to TensorBoard and CSV in its folder.
    "💡 Tip:",
    # "GPU available: True (cuda), used: True": the start line names the device the run uses.
    "GPU available",
    # We never use TPUs or HPUs.
    "TPU available",
    "HPU available",
    # "Restoring states from the checkpoint path at ..." and "Restored all states from the
    # checkpoint at ...": the start line says which run resumes from which update.
    "Restoring states from the checkpoint",
    "Restored all states from the checkpoint",
    # DDP's "distributed_backend=gloo / All distributed processes registered. Starting with 2
    # processes" between two rules: the start line names the processes ("2 × cpu"). Each rank's
    # own "Initializing distributed: GLOBAL_RANK ..." stays: it is what a user sees while a node
    # waits for the others.
    f"{'-' * 100}\ndistributed_backend=",
    # The single epoch ends when collector.total_frames are collected; "max_epochs=1 reached"
    # misleads (our own final line states frames and updates).
    "`Trainer.fit` stopped: `max_epochs=1` reached",
)

# (message regex, category, why): warnings that our design triggers on purpose.
_WARNINGS_IGNORED: tuple[tuple[str, type[Warning], str], ...] = (
    (
        "You are using the `dataloader_iter` step flavor",
        Warning,
        "RLModule.training_step takes the iterator on purpose: each step draws exactly one "
        "batch, so batch_idx stays right (docs of s2ac_lit.trainer.module).",
    ),
    (
        "Found `dataloader_iter` argument in the `training_step`",
        Warning,
        "the same deliberate dataloader_iter signature, announced a second time",
    ),
    (
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        Warning,
        "raised inside Lightning's own pytree helper with this torch; nothing in our code",
    ),
    (
        r"torch._dynamo.config.inline_inbuilt_nn_modules is deprecated",
        FutureWarning,
        "tensordict reads this torch flag while torch.compile traces the update "
        "(trainer.compile); the flag does nothing in this torch, and nothing of ours sets it",
    ),
    (
        r"torch.distributed.nn.functional.all_gather is deprecated",
        FutureWarning,
        "Lightning's strategy.all_gather calls it; a DDP run gathers once, at its end, each "
        "rank's parameter sum (check_ranks_agree), and the deprecated call gathers the same",
    ),
    (
        r"Checkpoint directory .* exists and is not empty",
        Warning,
        "a resumed run continues in its own folder, beside its earlier checkpoints, on purpose",
    ),
    (
        "Using ModelCheckpoint with manual optimization",
        Warning,
        "manual optimisation checkpoints the state after each update, which is what we want",
    ),
)


_RANK_PREFIX = re.compile(r"^\[rank: \d+\] ")


class _DropMessages(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        # Lightning marks some messages with the rank: "[rank: 0] Received SIGTERM: 15".
        message = _RANK_PREFIX.sub("", str(record.getMessage()), count=1)
        return not message.startswith(self.prefixes)


_LIGHTNING_FILTER = _DropMessages(_LIGHTNING_INFO_DROPPED)

# TorchRL marks its loss calls with profiler ranges (torch.autograd.profiler.record_function);
# torch.compile (trainer.compile) leaves them out of the compiled update and says so once per
# function. The ranges only label profiles; the update is the same.
_DYNAMO_PROFILER_LOGGER = "torch._dynamo.variables.ctx_manager"
_DYNAMO_FILTER = _DropMessages(("Profiler record function",))

# Ray announces that a local instance it starts has token authentication on, which is its secure
# default and needs nothing from the user; the opposite warning (authentication disabled) stays.
_RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
_RAY_FILTER = _DropMessages(("Token authentication is enabled",))

# "[rank: 0] Received SIGTERM: 15": Lightning's own SIGTERM handler, active from the fit's start
# until the trainer's callbacks put ours back (s2ac_lit.trainer.callbacks.GracefulStop), says
# so; the run's own line says how the signal ended the run.
_LIGHTNING_SIGNAL_LOGGER = "lightning.pytorch.trainer.connectors.signal_connector"
_LIGHTNING_SIGNAL_FILTER = _DropMessages(("Received SIGTERM",))


def quiet_third_party() -> None:
    """Install the filters above (idempotent; call before building the Trainer)."""
    for message, category, _why in _WARNINGS_IGNORED:
        warnings.filterwarnings("ignore", message=message, category=category)
    # rank_zero_info logs through the logger of whichever rank_zero module set it last.
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        log = logging.getLogger(name)
        if _LIGHTNING_FILTER not in log.filters:
            log.addFilter(_LIGHTNING_FILTER)
    for name, dropped in (
        (_RAY_AUTH_LOGGER, _RAY_FILTER),
        (_DYNAMO_PROFILER_LOGGER, _DYNAMO_FILTER),
        (_LIGHTNING_SIGNAL_LOGGER, _LIGHTNING_SIGNAL_FILTER),
    ):
        log = logging.getLogger(name)
        if dropped not in log.filters:
            log.addFilter(dropped)
    # TorchRL logs INFO lines (worker start, closing envs) with ANSI colour codes, which end up
    # raw in redirected log files; keep its warnings and errors. RL_LOGGING_LEVEL, TorchRL's own
    # switch, still wins when the user sets it.
    if "RL_LOGGING_LEVEL" not in os.environ:
        torchrl_log = logging.getLogger("torchrl")
        torchrl_log.setLevel(logging.WARNING)
        for handler in torchrl_log.handlers:
            handler.setLevel(logging.WARNING)
