"""Env-specific outputs a run writes when it ends (the multigoal goal map).

An env id may name a *run output*: a function ``(run_folder, env_id, policy) -> str`` that
writes its files into the run folder and returns one line for the console. It is registered as
an entry-point string (``"module:function"``, as gymnasium registers env classes) and imported
only when a run of that env ends, so the envs package loads no analysis code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

RunOutput = Callable[[Path, str, Any], str]
"""``(run_folder, env_id, policy) -> line``; ``policy`` is the trained TorchRL policy."""

_RUN_OUTPUTS: dict[str, str] = {}


def register_run_output(env_id: str, entry_point: str) -> None:
    """Have runs of ``env_id`` end with ``entry_point`` (``"package.module:function"``)."""
    if ":" not in entry_point:
        raise ValueError(f"entry_point must look like 'module:function', got {entry_point!r}")
    _RUN_OUTPUTS[env_id] = entry_point


def run_output(env_id: str) -> RunOutput | None:
    """The run output registered for ``env_id``, imported now, or None."""
    entry_point = _RUN_OUTPUTS.get(env_id)
    if entry_point is None:
        return None
    module, function = entry_point.split(":")
    return getattr(importlib.import_module(module), function)
