"""Who owns a run folder: global rank 0, on every path (README §GPUs and several devices).

A process with ``S2AC_RUN_FOLDER`` set is rank 0 unless Lightning's environment numbers it
otherwise: alone, it is a whole run in that folder; started as node 1 of two (``NODE_RANK``),
it trains in rank 0's folder. Two gloo processes on this machine play the README's two nodes
through a SIGTERM and a resume.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import torch
from conftest import assert_bit_identical, expected_updates, run_fit, tiny

from s2ac_lit.config import load_config
from s2ac_lit.trainer import train as train_module
from s2ac_lit.trainer.layout import (
    CONFIG_FILE,
    LOCK_NAME,
    RANK_STATE_FILE,
    RUN_FOLDER_ENV,
    SUMMARY_FILE,
)
from s2ac_lit.trainer.runfolder import RunLock
from s2ac_lit.trainer.train import train


def test_one_process_with_the_folder_variable_is_a_whole_run(tmp_path: Path, monkeypatch) -> None:
    """The single-node case of the README's instruction: the variable names the run folder,
    and the process owns it (lock, config.yaml, summary.json), as any run owns its own."""
    folder = tmp_path / "shared" / "run"
    monkeypatch.setenv(RUN_FOLDER_ENV, str(folder))
    locked = []
    enter = RunLock.__enter__

    def note_and_enter(self: RunLock) -> RunLock:
        locked.append(self.path)
        return enter(self)

    monkeypatch.setattr(RunLock, "__enter__", note_and_enter)
    cfg = load_config(overrides=tiny(tmp_path, "collector.total_frames=150", "eval.every_frames=0"))
    summary = train(cfg)
    assert summary["run_folder"] == str(folder) and locked == [folder / LOCK_NAME]
    assert load_config(folder / CONFIG_FILE) == cfg
    assert json.loads((folder / SUMMARY_FILE).read_text())["finished"]
    assert not (folder / LOCK_NAME).exists() and not (tmp_path / "runs").exists()
    assert os.environ[RUN_FOLDER_ENV] == str(folder)  # the caller's value, left as it was


def test_ranks_come_from_lightnings_environment(monkeypatch) -> None:
    """Node 1 of two is rank 1 whatever else is set; a one-node config is rank 0 even where
    NODE_RANK is set; the rank-zero utilities are left to the real Trainer."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    trainer = load_config(overrides=["trainer.accelerator=cpu"]).trainer
    monkeypatch.setenv("NODE_RANK", "1")
    assert train_module.global_rank(trainer) == 0
    trainer.num_nodes = 2
    assert train_module.global_rank(trainer) == 1
    assert rank_zero_only.rank == 0
    monkeypatch.setenv("NODE_RANK", "0")
    assert train_module.global_rank(trainer) == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_node(node_rank: int, port: int, folder: Path, *args: str) -> subprocess.Popen:
    """``tools/fit.py args`` as node ``node_rank`` of two, each with one CPU device, as the
    README tells multi-node users to start them."""
    rendezvous = {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "NODE_RANK": str(node_rank),
        "WORLD_SIZE": "2",
        RUN_FOLDER_ENV: str(folder),
    }
    return run_fit(*args, env=rendezvous)


def finish(nodes: list[subprocess.Popen], timeout: float = 300) -> list[str]:
    """The nodes' outputs once they exit, or once killed after ``timeout`` seconds."""
    outputs = []
    for node in nodes:
        try:
            outputs.append(node.communicate(timeout=timeout)[0])
        except subprocess.TimeoutExpired:
            timeout = 0  # the others are stuck too: kill them at once
            node.kill()
            outputs.append(node.communicate()[0])
    return outputs


NODES_ARGS = [
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.num_nodes=2",
    "trainer.strategy=ddp",
    "collector.total_frames=400",
    "eval.every_frames=200",
    "trainer.checkpoint_every_updates=10",
]
"""Two one-process nodes over 400 frames (70 updates per rank), a checkpoint every 10."""


def run_nodes(folder: Path, *args: str) -> list[str]:
    """Both nodes of a run in ``folder`` until they exit; their outputs (exit 0 asserted)."""
    port = free_port()
    nodes = [start_node(rank, port, folder, *args) for rank in (0, 1)]
    outputs = finish(nodes)
    for node, output in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, output
    return outputs


def test_two_nodes_share_rank_zeros_folder_through_sigterm_and_resume(tmp_path: Path) -> None:
    """Two processes as the README's two nodes, the same S2AC_RUN_FOLDER: node 0 creates,
    locks and describes the folder; SIGTERM to node 0 stops both at the same update with a
    checkpoint of each rank's buffer, and rank 1's env and random state beside its buffer;
    both resume with --resume and end bit-identical to the two nodes never interrupted
    (docs/checkpoints.md)."""
    folder = tmp_path / "shared-run"
    args = tiny(tmp_path, *NODES_ARGS)
    port = free_port()
    nodes = [start_node(rank, port, folder, *args) for rank in (0, 1)]
    try:
        deadline = time.time() + 300
        while not list(folder.glob("checkpoints/step=*.ckpt")):
            assert all(node.poll() is None for node in nodes), "a node stopped"
            assert time.time() < deadline, "no checkpoint"
            time.sleep(0.05)
        assert (folder / LOCK_NAME).read_text().split()[0] == str(nodes[0].pid)
        assert (folder / CONFIG_FILE).is_file()
    except BaseException:
        print(finish(nodes, timeout=0))
        raise
    nodes[0].send_signal(signal.SIGTERM)
    outputs = finish(nodes)
    for node, output in zip(nodes, outputs, strict=True):
        assert node.returncode == 128 + signal.SIGTERM, output
        assert "Traceback" not in output, output
    assert f"resume with: python tools/fit.py --resume {folder}" in outputs[0]
    stopped = json.loads((folder / SUMMARY_FILE).read_text())
    last = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert not stopped["finished"] and stopped["updates"] == last["global_step"]
    assert last["global_step"] < expected_updates(400), "the run ended before the signal"
    dump = folder / "replay" / last["replay_dir"]
    assert sorted(p.name for p in dump.iterdir()) == ["rank-0", "rank-1"]
    assert (dump / "rank-1" / RANK_STATE_FILE).is_file()
    assert not (dump / "rank-0" / RANK_STATE_FILE).exists()  # rank 0's is the checkpoint's
    assert not (folder / LOCK_NAME).exists()

    outputs = run_nodes(folder, "--resume", str(folder))
    assert "resume is not bit-exact" not in outputs[0], outputs[0]
    summary = json.loads((folder / SUMMARY_FILE).read_text())
    assert summary["finished"] and summary["updates"] == expected_updates(400)
    (resume,) = summary["resumes"]
    assert resume["exact"] and resume["updates"] == last["global_step"]
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == [
        "last.ckpt",
        f"step={expected_updates(400)}.ckpt",
    ]
    assert [p.name for p in (folder / "replay").iterdir()] == [f"step-{expected_updates(400)}"]
    assert not (folder / LOCK_NAME).exists()

    reference = tmp_path / "uninterrupted"
    run_nodes(reference, *tiny(tmp_path / "reference", *NODES_ARGS))
    assert_bit_identical(folder, reference)
    for rank in ("rank-0.json", "rank-1.json"):  # each rank's frames and episodes
        got, want = ((f / "ranks" / rank).read_text() for f in (folder, reference))
        assert got == want, rank
