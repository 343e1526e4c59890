"""Shared test setup: one CPU thread (2-vCPU machines spin-wait with two) and fixed seeds."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
