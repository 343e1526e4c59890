"""The names of a run folder and the environment variables that place a run: torch-free.

One source for the trainer (which writes them) and the benchmark driver (which reads them
without importing torch, Lightning or TorchRL). README §Quick start lists what a run folder
holds.
"""

from __future__ import annotations

CONFIG_FILE = "config.yaml"
"""The resolved config of the run (what ``--resume`` reads)."""
SUMMARY_FILE = "summary.json"
"""Frames, updates, wall time and the evaluation history; ``"finished": false`` while partial."""
MACHINE_PACKAGES = ("torch", "torchrl", "tensordict", "lightning", "gymnasium", "mujoco", "numpy")
"""The libraries whose version can change a run's numbers: recorded in every checkpoint and in
``summary.json``'s ``machine`` (read back by the harness's ``software.csv``)."""
LOCK_NAME = ".lock"
"""Held by the process that trains in the folder (pid and host)."""
GOAL_MAP_JSON = "goal_map.json"
"""Multigoal runs: the final policy's hit rate per goal over sampled episodes (the goal map)."""
CHECKPOINTS_DIR = "checkpoints"
"""Lightning checkpoints: ``last.ckpt`` and ``step=N.ckpt``, the newest checkpoint."""
LAST_CHECKPOINT = "last.ckpt"
"""The newest checkpoint, written after its ``step=N.ckpt``: once it is, the checkpoint is
complete."""
REPLAY_DIR = "replay"
"""Replay buffer dumps: ``step-N/rank-R/``, the newest checkpoint's."""
RANK_STATE_FILE = "feeder.pt"
"""In a DDP rank's replay dump (``step-N/rank-R/``, R > 0): that rank's replay feeder state
(its env, collector and random streams); the checkpoint holds rank 0's."""

RUN_FOLDER_ENV = "S2AC_RUN_FOLDER"
"""The run folder of a DDP run, shared by its ranks. Global rank 0 creates, locks and owns it
(``config.yaml``, ``summary.json``); the other ranks train in it. Rank 0 sets it for the ranks
Lightning starts on its node; across nodes the user sets it, the same, on every node. A single
process with it set is a whole run in that folder."""
FIXED_RUN_FOLDER_ENV = "S2AC_FIXED_RUN_FOLDER"
"""A new run goes into this folder instead of a new one under ``run_dir`` (the benchmark
harness's run folders), as with :data:`RUN_FOLDER_ENV`."""
