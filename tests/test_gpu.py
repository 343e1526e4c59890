"""Checks that need CUDA (``pytest -m gpu``; skipped without it): the graphed update equals the
eager one, mixed-precision fits run and checkpoint, runs resume across devices.

``tools/gpu_check.py`` runs these with the speed figures, in one command.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from conftest import expected_updates, mock_replay_batch, run_fit, tiny

from s2ac_lit.algorithms import build_algorithm, make_optimizer, make_update
from s2ac_lit.config import load_config
from s2ac_lit.trainer.checkpoints import find_checkpoint
from s2ac_lit.update import GraphedUpdate

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

OBS, ACT = 5, 2


def _update(cfg, loss, *, graphed: bool):
    optimizer = make_optimizer(loss, cfg.optim, capturable=graphed)
    update = make_update(cfg, loss, optimizer)
    return (GraphedUpdate(update) if graphed else update), optimizer


@pytest.mark.parametrize("algo", ["s2ac", "sac", "sql"])
def test_a_graphed_update_equals_the_eager_one_over_20_updates(algo: str) -> None:
    """Same weights, same batches, same CUDA generator state: the graph replays the eager
    update's kernels (random draws included) step for step."""
    cfg = load_config(overrides=[f"algo={algo}", "critic.hidden_sizes=[32,32]"])
    torch.manual_seed(0)
    loss = build_algorithm(cfg, OBS, [-1.0] * ACT, [1.0] * ACT).loss.cuda()
    twin = copy.deepcopy(loss)
    batches = [mock_replay_batch(64, OBS, ACT).cuda() for _ in range(20)]
    results = []
    for module, graphed in ((loss, False), (twin, True)):
        update, _ = _update(cfg, module, graphed=graphed)
        torch.cuda.manual_seed(1)
        outs = [update(batch.clone()).out["loss_qvalue"].clone() for batch in batches]
        torch.cuda.synchronize()
        results.append((torch.stack(outs), [p.detach().clone() for p in module.parameters()]))
    (eager_losses, eager_params), (graph_losses, graph_params) = results
    torch.testing.assert_close(graph_losses, eager_losses, rtol=1e-4, atol=1e-5)
    for a, b in zip(graph_params, eager_params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_fits_run_and_checkpoint(tmp_path: Path, precision: str) -> None:
    process = run_fit(
        *tiny(
            tmp_path,
            "collector.total_frames=300",
            "trainer.accelerator=gpu",
            f"trainer.precision={precision}",
            "eval.every_frames=0",
        )
    )
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    (run,) = (tmp_path / "runs").iterdir()
    checkpoint = torch.load(find_checkpoint(run), weights_only=True, map_location="cpu")
    assert checkpoint["global_step"] == expected_updates(300)


def test_a_graphed_fit_counts_every_update(tmp_path: Path) -> None:
    process = run_fit(
        *tiny(
            tmp_path,
            "collector.total_frames=400",
            "trainer.accelerator=gpu",
            "trainer.cudagraphs=true",
            "trainer.compile=false",
            "eval.every_frames=200",
        )
    )
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    (run,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["updates"] == expected_updates(400)


@pytest.mark.parametrize(("first", "then"), [("gpu", "cpu"), ("cpu", "gpu")])
def test_a_run_resumes_on_another_device(tmp_path: Path, first: str, then: str) -> None:
    start = run_fit(*tiny(tmp_path, "collector.total_frames=200", f"trainer.accelerator={first}"))
    output, _ = start.communicate(timeout=600)
    assert start.returncode == 0, output
    (run,) = (tmp_path / "runs").iterdir()
    resumed = run_fit(
        "--resume", str(run), "collector.total_frames=300", f"trainer.accelerator={then}"
    )
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["updates"] == expected_updates(300)
