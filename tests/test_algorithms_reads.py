"""The registry's declared keys check themselves: each algorithm is built through a config that
records which keys are read, and what it reads is what its entry declares."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from s2ac_lit.algorithms import ALGORITHM_KEYS, ALGORITHMS, _covered, make_optimizer
from s2ac_lit.config import Config, load_config


class Recording:
    """A read-only view of a config dataclass that records the dotted keys read from it."""

    def __init__(self, node: Any, seen: set[str], prefix: str = "") -> None:
        object.__setattr__(self, "_node", node)
        object.__setattr__(self, "_seen", seen)
        object.__setattr__(self, "_prefix", prefix)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._node, name)
        key = f"{self._prefix}{name}"
        if dataclasses.is_dataclass(value):
            return Recording(value, self._seen, key + ".")
        if callable(value) and getattr(value, "__self__", None) is self._node:
            return value.__func__.__get__(self)  # a method of the section reads through us
        self._seen.add(key)
        return value


def _leaves(prefix: str = "") -> set[str]:
    def walk(node: Any, at: str) -> set[str]:
        out: set[str] = set()
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            out |= (
                walk(value, f"{at}{f.name}.") if dataclasses.is_dataclass(value) else {at + f.name}
            )
        return out

    return {key for key in walk(Config(), "") if key.startswith(prefix)}


# Read outside the builders and the optimiser: by the trainer (s2ac_lit/trainer/module.py).
READ_BY_THE_TRAINER = {"trainer.compile"}


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
@pytest.mark.parametrize("learn_alpha", [False, True])
def test_declared_keys_are_exactly_the_keys_read(algo: str, learn_alpha: bool) -> None:
    spec = ALGORITHMS[algo]
    overrides = [f"algo={algo}"]
    if spec.reads_key("loss.learn_alpha"):
        overrides.append(f"loss.learn_alpha={str(learn_alpha).lower()}")
    cfg = load_config(overrides=overrides)
    seen: set[str] = set()
    algorithm = spec.build(Recording(cfg, seen), 3, [-1.0, -1.0], [1.0, 1.0])
    make_optimizer(algorithm.loss, Recording(cfg.optim, seen, "optim."))
    read = {key for key in seen if _covered(key, ALGORITHM_KEYS)} | (
        READ_BY_THE_TRAINER
        & {k for k in _leaves() if spec.reads_key(k) and _covered(k, spec.reads)}
    )
    declared = {key for key in _leaves() if _covered(key, ALGORITHM_KEYS) and spec.reads_key(key)}
    if not (learn_alpha and spec.reads_key("loss.learn_alpha")):
        declared.discard("optim.alpha_lr")  # only an α that is a parameter has a learning rate
    assert read == declared
