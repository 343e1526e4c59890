"""The algorithm registry: every config key acts for the chosen algorithm or is refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from conftest import mock_replay_batch, with_target_updater

from s2ac_lit.algorithms import (
    ALGORITHM_KEYS,
    ALGORITHMS,
    build_algorithm,
    check_config,
    parameter_groups,
    policy_with_selection,
    without_unread,
)
from s2ac_lit.config import Config, ConfigError, load_config
from s2ac_lit.objectives import make_sac_networks
from s2ac_lit.objectives.adapters import GaussianSampler, TensorDictGaussian

CONF = Path(__file__).resolve().parents[1] / "conf"
LOW, HIGH = [-1.0, -1.0], [1.0, 1.0]
TINY = ["critic.hidden_sizes=[8]"]


def build(*overrides: str):
    return build_algorithm(load_config(overrides=[*TINY, *overrides]), 3, LOW, HIGH)


def _schema_keys(node, prefix: str = "") -> set[str]:
    keys = set()
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        keys.add(prefix + f.name)
        if dataclasses.is_dataclass(value):
            keys |= _schema_keys(value, f"{prefix}{f.name}.")
    return keys


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_declared_keys_exist_in_the_schema(algo: str) -> None:
    keys = _schema_keys(Config())
    assert set(ALGORITHMS[algo].reads) <= keys
    assert set(ALGORITHM_KEYS) <= keys


@pytest.mark.parametrize(
    ("algo", "override"),
    [
        ("sac", "actor.init=fixed"),
        ("sac", "actor.hidden_sizes=[64,64]"),
        ("sac", "actor.eval_selection=max"),
        ("sac", "svgd.steps=5"),
        ("sac", "loss.temperature=1.0"),
        ("sac", "trainer.compile=true"),
        ("sql", "svgd.num_particles=5"),
        ("sql", "svgd.steps=5"),
        ("sql", "actor.init=fixed"),
        ("sql", "actor.amortized=true"),
        ("sql", "loss.learn_alpha=true"),
        ("sql", "optim.alpha_lr=0.1"),
        ("s2ac", "loss.value_particles=8"),
    ],
)
def test_a_key_the_algorithm_does_not_read_is_refused(algo: str, override: str) -> None:
    key = override.split("=")[0]
    cfg = load_config(overrides=[f"algo={algo}", override])
    with pytest.raises(ConfigError, match=rf"^{key}=.* has no effect with algo='{algo}'"):
        check_config(cfg)
    with pytest.raises(ConfigError, match=key):
        build_algorithm(cfg, 3, LOW, HIGH)


def test_sac_reads_the_critic_keys_for_both_networks() -> None:
    loss, policy = build("algo=sac", "critic.num_critics=3", "critic.activation=tanh")
    assert loss.num_qvalue_nets == 3
    actor_layers = [type(m).__name__ for m in policy.modules()]
    assert "Tanh" in actor_layers and "ELU" not in actor_layers
    widths = {p.shape[0] for n, p in policy.named_parameters() if n.endswith("0.weight")}
    assert widths == {8}


@pytest.mark.parametrize(
    ("algo", "selection", "expected"),
    [("s2ac", None, "softmax"), ("sql", None, "amortized"), ("sql", "softmax", "softmax")],
)
def test_eval_selection_reaches_the_policy(algo: str, selection, expected: str) -> None:
    extra = [] if selection is None else [f"actor.eval_selection={selection}"]
    _, policy = build(f"algo={algo}", *extra)
    assert policy.eval_selection == expected


def test_sql_reads_its_particle_counts_and_kernel() -> None:
    loss, _ = build(
        "algo=sql", "loss.amortized_particles=4", "loss.value_particles=3", "svgd.bandwidth=2.0"
    )
    assert (loss.amortized_particles, loss.value_particles) == (4, 3)
    assert loss.actor_network.svgd.bandwidth == 2.0
    assert loss.uniform_actions(torch.zeros(5, 3)).shape == (5, 3, 2)


def test_policy_with_selection_refuses_what_the_algorithm_lacks() -> None:
    loss, _ = build("algo=sac")
    with pytest.raises(ConfigError, match=r"selection 'max' does not apply to algo='sac'"):
        policy_with_selection("sac", loss, "max")
    sql, _ = build("algo=sql")
    assert policy_with_selection("sql", sql, "max").eval_selection == "max"


def test_shared_presets_load_for_every_algorithm_without_unread_keys() -> None:
    """A suite runs SAC with S2AC's multigoal preset: S2AC's keys go back to their defaults."""
    cfg = without_unread(load_config(CONF / "multigoal.yaml", ["algo=sac"]))
    check_config(cfg)
    assert cfg.svgd.steps == Config().svgd.steps and cfg.actor.init == Config().actor.init
    assert cfg.critic.hidden_sizes == [128, 128] and cfg.loss.alpha_init == 10.0


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_parameter_groups_cover_every_trainable_parameter(algo: str) -> None:
    loss, _ = build(f"algo={algo}", *(["loss.learn_alpha=true"] if algo != "sql" else []))
    groups = parameter_groups(loss, load_config().optim)
    grouped = {id(p) for g in groups for p in g["params"]}
    assert grouped == {id(p) for p in loss.parameters()}
    expected = {"critic", "actor"} | ({"alpha"} if algo != "sql" else set())
    assert {g["name"] for g in groups} == expected


def test_the_configs_alpha_and_squared_error_reach_the_losses() -> None:
    """The losses' own defaults are SACLoss's (a learned α from 1, a smooth-L1 critic loss); the
    registry passes the config's: the authors' fixed α = 0.2 and (Q - y)²."""
    s2ac, _ = build("algo=s2ac")
    assert s2ac.fixed_alpha and not isinstance(s2ac.log_alpha, torch.nn.Parameter)
    assert s2ac.alpha.item() == pytest.approx(0.2) and s2ac.loss_function == "l2"
    learned, _ = build("algo=s2ac", "loss.learn_alpha=true", "loss.alpha_init=0.5")
    assert isinstance(learned.log_alpha, torch.nn.Parameter)
    assert learned.alpha.item() == pytest.approx(0.5)
    sql, _ = build("algo=sql")
    assert sql.alpha.item() == pytest.approx(0.2) and sql.loss_function == "l2"


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_losses_are_built_around_given_torchrl_networks(algo: str) -> None:
    """TorchRL's SAC networks given to the registry: the loss trains that actor (its
    parameters are the loss's), and the config's sampler settings still act around it."""
    actor, critic = make_sac_networks(3, 2, LOW, HIGH, hidden_sizes=(8,))
    extra = {"s2ac": ["svgd.num_particles=5"], "sql": ["svgd.bandwidth=2.0"], "sac": []}[algo]
    cfg = load_config(overrides=[f"algo={algo}", *TINY, *extra])
    loss, policy = build_algorithm(cfg, 3, LOW, HIGH, networks=(actor, critic))
    with_target_updater(loss)
    own = {id(p) for p in loss.actor_network_params.values(True, True)}
    assert all(id(p) in own for p in actor.parameters())
    if algo == "s2ac":
        assert isinstance(loss.actor_network.init_net, TensorDictGaussian)
        assert loss.actor_network.num_particles == 5
    elif algo == "sql":
        assert isinstance(loss.actor_network.amortized, GaussianSampler)
        assert loss.actor_network.svgd.bandwidth == 2.0
    else:
        assert policy is actor
    out = loss(mock_replay_batch(6, 3, 2))
    assert all(torch.isfinite(out[key]).all() for key in loss.out_keys)
