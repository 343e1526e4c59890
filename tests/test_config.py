"""Config schema: every preset loads, and bad input fails naming the key and what is allowed."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import get_args, get_type_hints

import pytest
from conftest import ROOT
from lightning.fabric.utilities.seed import seed_everything
from torchrl.data import PrioritizedSampler

from s2ac_lit import actor, kernels, networks
from s2ac_lit.config import RANGES, Config, ConfigError, SVGDConfig, load_config
from s2ac_lit.errors import MAX_SEED
from s2ac_lit.svgd import SVGDOptions
from s2ac_lit.trainer.data import prioritized_replay_unavailable
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
        ("svgd.stepz=3", r"unknown config key 'svgd.stepz'.*did you mean 'svgd.steps'"),
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
            "trainer.deterministic=mostly",
            r"trainer.deterministic='mostly' is not allowed; allowed: true, false, 'auto'",
        ),
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


# ------------------------------------------------------------ every numeric key has a range
def _numeric_keys(cls: type = Config, prefix: str = "") -> dict[str, type]:
    """Dotted key → ``int`` or ``float`` for every schema field that holds numbers (alone, in
    a union with a string or None, or in a list), from the dataclasses' type hints."""
    keys: dict[str, type] = {}
    hints = get_type_hints(cls)
    for item in fields(cls):
        hint = hints[item.name]
        if is_dataclass(hint):
            keys.update(_numeric_keys(hint, f"{prefix}{item.name}."))
            continue
        args = [hint]
        while any(get_args(a) for a in args):  # unions and list[...] down to their members
            args = [leaf for a in args for leaf in (get_args(a) or (a,))]
        kinds = [a for a in args if a in (int, float)]
        if kinds:
            keys[prefix + item.name] = float if float in kinds else int
    return keys


NUMERIC = _numeric_keys()


def test_every_numeric_key_has_a_range() -> None:
    assert set(NUMERIC) == set(RANGES)


def _boundaries(key: str) -> tuple[list[float], list[float]]:
    """The values just inside and just outside each finite end of ``key``'s range (for a
    float: the neighbouring doubles), and for a float NaN and ±infinity outside."""
    kind, allowed = NUMERIC[key], RANGES[key]
    inside, outside = [], []
    for end, is_open, outward in (
        (allowed.low, allowed.low_open, -math.inf),
        (allowed.high, allowed.high_open, math.inf),
    ):
        if end is None:
            continue
        if kind is int:
            step = 1 if outward > 0 else -1
            inside.append(end - step if is_open else end)
            outside.append(end if is_open else end + step)
        else:
            inside.append(math.nextafter(end, -outward) if is_open else float(end))
            outside.append(float(end) if is_open else math.nextafter(end, outward))
    outside = [value for value in outside if value not in allowed.special]
    if kind is float:
        outside += [math.nan, math.inf, -math.inf]
    return inside, outside


def _override(key: str, value: float) -> str:
    text = repr(value)
    return f"{key}=[{text}]" if key.endswith("hidden_sizes") else f"{key}={text}"


@pytest.mark.parametrize("key", sorted(RANGES))
def test_values_outside_a_range_stop_before_anything_is_written(
    key: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    """Each value just outside a numeric key's range (and NaN, ±infinity for a float) ends a
    real start of fit.py (no --print-config) with exit 2 and one line naming the key, and
    leaves the working directory empty; each value just inside passes the range check."""
    monkeypatch.chdir(tmp_path)
    preset = str(CONF / "quickstart.yaml")
    inside, outside = _boundaries(key)
    for value in outside:
        assert main(["--config", preset, f"run_dir={tmp_path}/runs", _override(key, value)]) == 2
        err = capsys.readouterr().err
        assert err.count("error:") == 1 and key in err, err
        assert list(tmp_path.iterdir()) == [], f"{key}={value} left files"
    for value in inside:
        try:
            load_config(CONF / "quickstart.yaml", [_override(key, value)])
        except ConfigError as error:  # another key's rule (a pair), never this range's
            assert f"must {RANGES[key]}" not in str(error), error


NEEDS_PER = pytest.mark.skipif(
    prioritized_replay_unavailable() is not None, reason="TorchRL's C++ extension is missing"
)


@pytest.mark.parametrize(
    ("accepts", "rejects"),
    [
        (lambda: seed_everything(MAX_SEED, verbose=False), lambda: seed_everything(MAX_SEED + 1)),
        (lambda: seed_everything(0, verbose=False), lambda: seed_everything(-1)),
        pytest.param(
            lambda: PrioritizedSampler(10, alpha=0.0, beta=0.0),
            lambda: PrioritizedSampler(10, alpha=-1e-9, beta=0.4),
            marks=NEEDS_PER,
        ),
        pytest.param(
            lambda: PrioritizedSampler(10, alpha=0.6, beta=0.0),
            lambda: PrioritizedSampler(10, alpha=0.6, beta=-1e-9),
            marks=NEEDS_PER,
        ),
        (
            lambda: networks.QEnsemble(3, 2, hidden_sizes=(1,)),
            lambda: networks.QEnsemble(3, 2, hidden_sizes=(0,)),
        ),
        (lambda: SVGDOptions(steps=0), lambda: SVGDOptions(steps=-1)),
        (lambda: SVGDOptions(step_size=1e-300), lambda: SVGDOptions(step_size=0.0)),
    ],
    ids=[
        "seed-max",
        "seed-min",
        "replay.alpha",
        "replay.beta",
        "hidden_sizes",
        "svgd.steps",
        "svgd.step_size",
    ],
)
def test_the_libraries_draw_the_boundaries_where_the_ranges_do(accepts, rejects) -> None:
    """Ground truth for the ranges: what numpy (Lightning's seeding), TorchRL's prioritised
    sampler, the networks and the sampler accept at the inside boundary and refuse outside."""
    accepts()
    with pytest.raises((ValueError, ZeroDivisionError, RuntimeError)):
        rejects()


def test_an_integral_float_sets_an_integer_key(tmp_path: Path) -> None:
    """``1e4`` is a float to YAML and to the command line; an integer key takes it as the
    integer it is (in a list of integers too), from an override and from a preset."""
    preset = tmp_path / "short.yaml"
    preset.write_text("collector:\n  init_random_frames: 1e3\n")
    cfg = load_config(
        preset, ["collector.total_frames=1e4", "seed=3.0", "critic.hidden_sizes=[64.0,3e1]"]
    )
    assert cfg.collector.total_frames == 10_000 and type(cfg.collector.total_frames) is int
    assert cfg.collector.init_random_frames == 1000
    assert type(cfg.collector.init_random_frames) is int
    assert cfg.seed == 3 and type(cfg.seed) is int
    assert cfg.critic.hidden_sizes == [64, 30]
    assert all(type(size) is int for size in cfg.critic.hidden_sizes)


@pytest.mark.parametrize("value", ["2.5", "1e-1", "inf", "nan"])
def test_a_fractional_float_for_an_integer_key_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=r"'collector.total_frames'"):
        load_config(overrides=[f"collector.total_frames={value}"])
