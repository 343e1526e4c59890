"""Config schema: every preset loads, and bad input fails naming the key and what is allowed."""

from __future__ import annotations

import os
from dataclasses import asdict, fields
from pathlib import Path

import pytest
from conftest import ROOT

from s2ac_lit import actor, kernels, networks
from s2ac_lit.config import Config, ConfigError, SVGDConfig, load_config
from s2ac_lit.trainer.train import cpu_threads, main

CONF = ROOT / "conf"
# conf/suites/ holds benchmark suites, not presets (tests/test_benchmark.py loads those).
PRESETS = sorted(p for p in CONF.glob("**/*.yaml") if p.parent.name != "suites")


def test_presets_exist() -> None:
    names = {p.stem for p in PRESETS}
    assert {
        "walker",
        "hopper",
        "halfcheetah",
        "ant",
        "humanoid",
        "multigoal",
        "quickstart",
    } <= names


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_every_preset_loads_into_the_schema(preset: Path) -> None:
    cfg = load_config(preset)
    assert isinstance(cfg, Config)


def test_walker_has_the_authors_settings() -> None:
    cfg = load_config(CONF / "walker.yaml")
    assert cfg.env.id == "Walker2d-v5"
    assert (cfg.svgd.num_particles, cfg.svgd.steps, cfg.svgd.step_size) == (10, 3, 0.1)
    assert (cfg.replay.batch_size, cfg.collector.init_random_frames) == (100, 10_000)
    assert (cfg.collector.update_after, cfg.collector.updates_per_batch) == (1_000, 50)
    assert cfg.svgd.bandwidth == "mean_half" and cfg.actor.init == "learned"


def test_required_keys_and_overrides() -> None:
    cfg = load_config(
        CONF / "walker.yaml",
        [
            "seed=7",
            "run_dir=elsewhere",
            "collector.total_frames=2000",
            "collector.init_random_frames=10",
            "eval.every_frames=500",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.precision=bf16-mixed",
            "svgd.bandwidth=5.0",
            "critic.hidden_sizes=[64,64]",
        ],
    )
    assert (cfg.seed, cfg.run_dir, cfg.collector.total_frames) == (7, "elsewhere", 2000)
    assert (cfg.trainer.accelerator, cfg.trainer.devices) == ("cpu", 2)
    assert cfg.trainer.precision == "bf16-mixed"
    assert cfg.svgd.bandwidth == 5.0
    assert cfg.critic.hidden_sizes == [64, 64]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("colector.total_frames=5", r"unknown config key 'colector'.*did you mean 'collector'"),
        ("svgd.stepz=3", r"unknown config key 'svgd.stepz'.*did you mean 'steps'"),
        ("seed=abc", r"bad value for 'seed'"),
        ("critic.hidden_sizes=[a]", r"bad value for 'critic.hidden_sizes"),
        ("algo=ppo", r"algo='ppo' is not allowed; allowed: \('s2ac', 'sac', 'sql'\)"),
        ("svgd.bandwidth=medain", r"svgd.bandwidth='medain' is not allowed"),
        ("svgd.bandwidth=-1.0", r"svgd.bandwidth=-1.0 must be > 0"),
        ("actor.bound=every", r"actor.bound='every' is not allowed"),
        ("actor.bound=none", r"actor.bound='none' is no longer allowed: it ran the same"),
        ("svgd.steps=-1", r"svgd.steps=-1 must be >= 0"),
        ("svgd.self_term=hessian", r"svgd.self_term='hessian' is not allowed"),
        ("trainer.precision=8", r"trainer.precision='8' is not allowed"),
        ("collector.total_frames=0", r"collector.total_frames=0 must be > 0"),
        ("optim.gamma=1.5", r"optim.gamma=1.5 must lie in \[0, 1\]"),
        ("actor.eval_selection=amortized", r"needs actor.amortized=true"),
        ("seed", r"overrides must look like key=value"),
        ("trainer.threads=all", r"trainer.threads='all' is not allowed; allowed: \('auto',\)"),
        ("trainer.threads=0", r"trainer.threads=0 must be > 0"),
        ("trainer.compile=maybe", r"trainer.compile='maybe' is not allowed; allowed: true, false"),
        (
            "trainer.profiler=fast",
            r"trainer.profiler='fast' is not allowed; allowed: \(None, 'simple', 'advanced'\)",
        ),
    ],
)
def test_bad_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(CONF / "walker.yaml", [override])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.devices=2"], r"trainer.cudagraphs=true with trainer.devices=2.*DDP"),
        (["trainer.num_nodes=2"], r"trainer.num_nodes=2: DDP"),
        (["trainer.precision=16-mixed"], r"'16-mixed': AMP's gradient scaler"),
        (["replay.prioritized=true"], r"replay.prioritized=true: the priorities"),
        (["svgd.self_term=exact"], r"svgd.self_term='exact'"),
    ],
)
def test_what_cuda_graphs_cannot_capture_is_refused(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(CONF / "walker.yaml", ["trainer.cudagraphs=true", *overrides])


def test_critic_first_order_needs_one_device() -> None:
    with pytest.raises(ConfigError, match=r"critic_first.*DDP cannot reduce"):
        load_config(CONF / "walker.yaml", ["optim.update_order=critic_first", "trainer.devices=2"])


def test_missing_yaml_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("conf/nope.yaml")


def test_every_choice_is_implemented() -> None:
    """Each vocabulary is one Literal; the code behind it covers exactly its values."""
    assert set(kernels._RULES) == set(kernels.BANDWIDTH_RULES)
    assert set(networks._ACTIVATIONS) == set(networks.ACTIVATIONS)


def test_svgd_section_is_the_actors_sampler_options() -> None:
    """Same keys as SVGDOptions (plus num_particles) and the actor's defaults, so make_actor
    passes the section through unchanged."""
    defaults = {key.name: key.default for key in fields(SVGDConfig)}
    assert defaults.pop("num_particles") == 10
    assert defaults == asdict(actor.DEFAULT_SVGD)
    assert Config().svgd.options() == actor.DEFAULT_SVGD


def test_cli_prints_config_and_reports_errors(capsys) -> None:
    assert main(["--config", str(CONF / "walker.yaml"), "--print-config", "seed=3"]) == 0
    printed = capsys.readouterr().out
    assert "seed: 3" in printed and "id: Walker2d-v5" in printed
    assert main(["--config", str(CONF / "walker.yaml"), "--print-config", "nope=1"]) == 2
    assert "unknown config key 'nope'" in capsys.readouterr().err
    assert main(["--print-config", "env.id=Walker2d-v9"]) == 2
    assert "unknown environment id 'Walker2d-v9'" in capsys.readouterr().err


def test_auto_threads_split_this_process_cpus_among_local_ranks(monkeypatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4})
    monkeypatch.delenv("OMP_NUM_THREADS")  # conftest pins it for the whole suite
    trainer = load_config(CONF / "walker.yaml", ["trainer.threads=auto"]).trainer
    assert cpu_threads(trainer) == 5
    trainer.accelerator, trainer.devices = "cpu", 2
    assert cpu_threads(trainer) == 2  # 5 CPUs, 2 DDP ranks on this node
    trainer.devices = 8
    assert cpu_threads(trainer) == 1
    trainer.threads = 3
    assert cpu_threads(trainer) == 3


def test_auto_threads_take_omp_num_threads_when_set(monkeypatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4})
    trainer = load_config(CONF / "walker.yaml", ["trainer.threads=auto"]).trainer
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert cpu_threads(trainer) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "")  # set but empty: ignored, as OpenMP does
    assert cpu_threads(trainer) == 5


# ------------------------------------------------------------------ presets that compose
TASK_PRESETS = [p for p in PRESETS if p.parent == CONF]


def _leaves(cfg: Config) -> dict[str, object]:
    flat: dict[str, object] = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            walk(value, f"{prefix}{key}.") if isinstance(value, dict) else flat.update(
                {prefix + key: value}
            )

    walk(asdict(cfg), "")
    return flat


@pytest.mark.parametrize("algo", ["s2ac", "sac", "sql"])
@pytest.mark.parametrize("preset", TASK_PRESETS, ids=lambda p: p.stem)
def test_every_task_preset_runs_with_every_algorithm(preset: Path, algo: str) -> None:
    """A task preset holds task keys (and per-algorithm sections): nothing is left that the
    chosen algorithm would refuse."""
    from s2ac_lit.algorithms import check_config

    cfg = check_config(load_config(preset, [f"algo={algo}"]))
    assert cfg.algo == algo


def test_quickstart_is_multigoal_plus_its_differences() -> None:
    quick, full = (
        _leaves(load_config(CONF / "quickstart.yaml")),
        _leaves(load_config(CONF / "multigoal.yaml")),
    )
    differ = {key for key in quick if quick[key] != full[key]}
    assert differ == {
        "collector.total_frames",
        "critic.hidden_sizes",
        "trainer.checkpoint_every_updates",
        "eval.every_frames",
    }


def test_for_algo_sections_apply_to_their_algorithm_only_and_yield_to_the_command_line() -> None:
    s2ac = load_config(CONF / "multigoal.yaml")
    assert (s2ac.svgd.steps, s2ac.actor.init) == (10, "fixed")  # the paper's S2AC(φ), L = 10
    sql = load_config(CONF / "multigoal.yaml", ["algo=sql"])
    assert (sql.svgd.steps, sql.actor.init) == (Config().svgd.steps, Config().actor.init)
    assert sql.loss.alpha_init == s2ac.loss.alpha_init == 10.0  # a task key: every algorithm
    cli = load_config(CONF / "multigoal.yaml", ["svgd.steps=4"])
    assert cli.svgd.steps == 4


def test_several_presets_merge_in_order(tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("seed: 1\nreplay:\n  batch_size: 50\n")
    second.write_text("seed: 2\n")
    cfg = load_config([first, second])
    assert (cfg.seed, cfg.replay.batch_size) == (2, 50)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("base: [self.yaml]\n", "includes itself"),
        ("base: 3\n", "must be a preset path or a list"),
        ("for_algo:\n  td3: {seed: 1}\n", "unknown algorithm"),
        ("for_algo: [s2ac]\n", "must map algorithms"),
        ("for_algo:\n  sac: 3\n", "must be a mapping of keys"),
        ("for_algo:\n  sac:\n    svgd: {stepz: 1}\n", "unknown config key 'svgd.stepz'"),
        ("base: [missing.yaml]\n", "does not exist"),
    ],
)
def test_bad_composition_names_the_file_and_what_is_allowed(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "self.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, ["algo=sac"])


def test_every_unread_key_is_named_at_once() -> None:
    from s2ac_lit.algorithms import check_config

    cfg = load_config(
        CONF / "multigoal.yaml", ["algo=sac", "svgd.num_particles=7", "actor.init=fixed"]
    )
    with pytest.raises(ConfigError) as error:
        check_config(cfg)
    assert "svgd.num_particles=7" in str(error.value) and "actor.init='fixed'" in str(error.value)


def test_print_config_refuses_what_a_run_would_refuse(capsys) -> None:
    assert main(["--config", str(CONF / "multigoal.yaml"), "algo=sac", "--print-config"]) == 0
    assert "algo: sac" in capsys.readouterr().out
    argv = ["--config", str(CONF / "multigoal.yaml"), "algo=sac", "svgd.num_particles=7"]
    assert main([*argv, "--print-config"]) == 2
    assert "svgd.num_particles=7" in capsys.readouterr().err
