"""Configuration: typed dataclasses merged with YAML presets and CLI overrides.

``load_config(yaml_path, overrides)`` merges ``OmegaConf.structured(Config)``, YAML presets from
``conf/`` (one, or several in order: a task's, then an algorithm's) and ``key=value``
overrides, then validates. Unknown keys, wrong types, values outside the allowed choices and
numbers outside their range (:data:`RANGES`, every numeric key; NaN and infinity nowhere) fail
with a :class:`ConfigError` that names the key and what is allowed, before anything is built
or written. Keys that only make sense together (``replay.batch_size`` and ``replay.capacity``,
the frame budget and its schedules) are checked together, and the message names both. Which
keys each algorithm reads is the registry's knowledge: :func:`s2ac_lit.algorithms.check_config`
refuses the others when set away from their defaults, before anything is built.

- :mod:`~s2ac_lit.config.schema`: the sections and every key's type, default and doc;
- :mod:`~s2ac_lit.config.checks`: choices, ranges and combinations (:func:`validate`);
- :mod:`~s2ac_lit.config.presets`: YAML files, ``base:``/``for_algo:`` presets, merging.
"""

from s2ac_lit.config.checks import RANGES, Range, algorithm_names, validate
from s2ac_lit.config.presets import (
    failing_key,
    load_config,
    load_yaml,
    merge_config,
    read_presets,
    to_config,
    to_yaml,
)
from s2ac_lit.config.schema import (
    ActorConfig,
    CollectorConfig,
    Config,
    ConfigError,
    CriticConfig,
    EnvConfig,
    EvalConfig,
    LossConfig,
    OptimConfig,
    ReplayConfig,
    SVGDConfig,
    TrainerConfig,
)

__all__ = [
    "RANGES",
    "ActorConfig",
    "CollectorConfig",
    "Config",
    "ConfigError",
    "CriticConfig",
    "EnvConfig",
    "EvalConfig",
    "LossConfig",
    "OptimConfig",
    "Range",
    "ReplayConfig",
    "SVGDConfig",
    "TrainerConfig",
    "algorithm_names",
    "failing_key",
    "load_config",
    "load_yaml",
    "merge_config",
    "read_presets",
    "to_config",
    "to_yaml",
    "validate",
]
