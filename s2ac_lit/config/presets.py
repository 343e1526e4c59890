"""Reading YAML presets and overrides into a :class:`~s2ac_lit.config.schema.Config`.

``load_config(yaml_path, overrides)`` merges ``OmegaConf.structured(Config)``, YAML presets from
``conf/`` (one, or several in order: a task's, then an algorithm's; a preset may name its
``base:`` presets and hold ``for_algo:`` sections) and ``key=value`` overrides, then validates
(:func:`~s2ac_lit.config.checks.validate`). Every YAML file a user gives is read by
:func:`load_yaml`; a failed merge is one line naming the key (with a full-key hint for typos).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from pathlib import Path
from types import UnionType
from typing import Any, NamedTuple, Union, get_args, get_origin

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from s2ac_lit.config.checks import algorithm_names, get_dotted, validate
from s2ac_lit.config.schema import Config, ConfigError


def _friendly(
    error: OmegaConfBaseException, source: str, base: DictConfig, layer: Any
) -> ConfigError:
    """The one-line message of a failed merge of ``layer`` into ``base``, naming the key."""
    key = getattr(error, "full_key", None) or failing_key(base, layer)
    first_line = str(error).splitlines()[0]
    if "not in" in first_line and "Key" in first_line:
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        node = OmegaConf.structured(Config)
        allowed = list(get_dotted(node, parent).keys()) if parent else list(node.keys())
        leaf = key.rsplit(".", 1)[-1]
        hint = difflib.get_close_matches(leaf, allowed, n=1)
        full = [f"{parent}.{h}" if parent else h for h in hint]  # the key to type
        extra = f" (did you mean {full[0]!r}?)" if full else ""
        return ConfigError(f"unknown config key {key!r} in {source}{extra}; allowed: {allowed}")
    section = OmegaConf.select(base, key) if key != "?" else None
    if isinstance(section, DictConfig):
        value = OmegaConf.select(OmegaConf.create(layer), key) if _is_mapping(layer) else layer
        return ConfigError(
            f"{key!r} in {source} must be a mapping of its keys {list(section.keys())}, got "
            f"{value!r}"
        )
    return ConfigError(f"bad value for {key!r} in {source}: {first_line}")


def _is_mapping(layer: Any) -> bool:
    return isinstance(layer, dict | DictConfig)


def failing_key(base: DictConfig, layer: Any, prefix: str = "") -> str:
    """The dotted key of ``layer`` whose merge into ``base`` fails, for OmegaConf errors that
    do not name it (a section given a scalar: ``env: 5``); ``'?'`` if none fails alone."""
    if not _is_mapping(layer):
        return prefix.rstrip(".") or "?"
    for key, value in layer.items():
        try:
            OmegaConf.merge(base, OmegaConf.create({key: value}))
        except OmegaConfBaseException:
            inner = OmegaConf.select(base, str(key))
            if _is_mapping(value) and isinstance(inner, DictConfig):
                found = failing_key(inner, value, f"{prefix}{key}.")
                if found != "?":
                    return found
            return f"{prefix}{key}"
    return "?"


def load_yaml(path: str | Path, what: str = "config file") -> DictConfig:
    """A YAML file that must hold a mapping, or a :class:`ConfigError` naming the file and why
    not (syntax error with line and column, unreadable, not a mapping, an alias of itself).

    Every YAML file a user gives (presets, a run's ``config.yaml``, benchmark suites) is read
    here; ``what`` names it in the message.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        # The root node's kind: OmegaConf would read a lone scalar as a key.
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        loaded = OmegaConf.load(path)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        raise ConfigError(
            f"YAML syntax error in {what} {str(path)!r} at {where}: {error.problem or error}"
        ) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read {what} {str(path)!r}: {error}") from None
    except RecursionError:
        raise ConfigError(
            f"cannot read {what} {str(path)!r}: it nests too deeply or refers to itself"
        ) from None
    if root is not None and not isinstance(root, yaml.MappingNode):
        kind = "a list" if isinstance(root, yaml.SequenceNode) else f"the scalar {root.value!r}"
        raise ConfigError(
            f"{what} {str(path)!r} must hold a mapping of keys (e.g. 'algo: s2ac'), not {kind}"
        )
    assert isinstance(loaded, DictConfig)
    return loaded


YamlPaths = str | Path | Sequence[str | Path] | None
"""One YAML preset, or several merged in order (later wins), or none."""

BASE_KEY = "base"
"""In a preset: the presets it includes (paths relative to it), merged before its own keys."""
FOR_ALGO_KEY = "for_algo"
"""In a preset: settings for one algorithm only, applied when the run's ``algo`` is that one
(``for_algo: {s2ac: {svgd: {steps: 10}}}``), after every preset's own keys and before the
command line. A task preset keeps its algorithm-specific choices here, so that any algorithm
runs on it."""


class Preset(NamedTuple):
    """A preset file's own keys and its per-algorithm sections."""

    source: str
    keys: DictConfig
    for_algo: dict[str, DictConfig]


def read_presets(path: str | Path, *, _chain: tuple[Path, ...] = ()) -> list[Preset]:
    """The preset at ``path`` preceded by those it includes (``base:``, depth first).

    Raises:
        ConfigError: a missing or unreadable file, a preset that includes itself, a ``base``
            that is not a list of paths, or a ``for_algo`` that is not a mapping of the
            registry's algorithms to mappings of keys.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    if path.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a folder; give a YAML file")
    if path.resolve() in _chain:
        cycle = " → ".join(str(p) for p in (*_chain, path.resolve()))
        raise ConfigError(f"preset {str(path)!r} includes itself: {cycle}")
    data = load_yaml(path)
    base = data.pop(BASE_KEY, None)
    sections = data.pop(FOR_ALGO_KEY, None)
    included = [base] if isinstance(base, str) else base or []
    if not isinstance(included, Sequence | ListConfig) or not all(
        isinstance(item, str) for item in included
    ):
        raise ConfigError(
            f"{BASE_KEY} in {str(path)!r} must be a preset path or a list of them, got {base!r}"
        )
    presets = []
    for item in included:
        presets += read_presets(path.parent / item, _chain=(*_chain, path.resolve()))
    for_algo: dict[str, DictConfig] = {}
    if sections is not None:
        names = algorithm_names()
        if not isinstance(sections, DictConfig):
            raise ConfigError(
                f"{FOR_ALGO_KEY} in {str(path)!r} must map algorithms {names} to settings"
            )
        for algo, section in sections.items():
            if algo not in names:
                raise ConfigError(
                    f"{FOR_ALGO_KEY}.{algo} in {str(path)!r}: unknown algorithm; allowed: {names}"
                )
            if not isinstance(section, DictConfig):
                raise ConfigError(
                    f"{FOR_ALGO_KEY}.{algo} in {str(path)!r} must be a mapping of keys"
                )
            for_algo[str(algo)] = section
    return [*presets, Preset(str(path), data, for_algo)]


def merge_config(
    base: DictConfig | Config | None = None,
    yaml_path: YamlPaths = None,
    overrides: list[str] | None = None,
) -> DictConfig:
    """Schema ← base ← YAML preset(s) in order (each after those it includes) ← the presets'
    sections for the run's algorithm ← ``key=value`` overrides, type-checked by OmegaConf."""
    paths = [yaml_path] if isinstance(yaml_path, (str, Path)) else list(yaml_path or [])
    presets = [preset for path in paths for preset in read_presets(path)]
    if overrides:
        bad = [item for item in overrides if "=" not in item]
        if bad:
            raise ConfigError(f"overrides must look like key=value, got {bad}")
        empty = [item for item in overrides if item.endswith("=")]
        if empty:
            key = empty[0][:-1]
            raise ConfigError(
                f"override {empty[0]!r} has no value; give one ({key}=null means none and "
                f"{key}='' an empty string, where {key} allows them)"
            )
    command_line = [("command line", OmegaConf.from_dotlist(overrides or []))]
    layers = [("defaults", base)] if base is not None else []
    layers += [(preset.source, preset.keys) for preset in presets]
    merged = _merge(OmegaConf.structured(Config), layers + command_line)
    algo_layers = [
        (f"{preset.source} ({FOR_ALGO_KEY}.{merged.algo})", preset.for_algo[merged.algo])
        for preset in presets
        if merged.algo in preset.for_algo
    ]
    if algo_layers:  # the command line comes last again: it wins over the sections
        merged = _merge(merged, algo_layers + command_line)
    return merged


def _integral_floats(base: DictConfig, layer: Any) -> Any:
    """``layer`` with each integral float (``1e4``, ``100.0``: YAML and the command line read
    ``1e4`` as a float) made an int where ``base`` holds an integer key or a list of them;
    other values stay for OmegaConf to check."""
    if not isinstance(layer, DictConfig):
        return layer
    for key, value in layer.items_ex(resolve=False):
        node = base._get_node(key) if key in base else None
        if isinstance(value, DictConfig) and isinstance(node, DictConfig):
            _integral_floats(node, value)
        elif _takes_int(node) and _integral(value):
            layer[key] = int(value)
        elif _int_list(node) and isinstance(value, ListConfig):
            layer[key] = [int(v) if _integral(v) else v for v in value]
    return layer


def _takes_int(node: Any) -> bool:
    """A value node whose type admits an int but no float (``int``, ``int | None``,
    ``int | str``)."""
    if node is None or isinstance(node, DictConfig | ListConfig):
        return False
    hint = node._metadata.ref_type
    types = get_args(hint) if get_origin(hint) in (Union, UnionType) else (hint,)
    return int in types and float not in types


def _int_list(node: Any) -> bool:
    return isinstance(node, ListConfig) and node._metadata.element_type is int


def _integral(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()


def _merge(merged: DictConfig, layers: list[tuple[str, Any]]) -> DictConfig:
    for source, layer in layers:
        try:
            layer = _integral_floats(merged, layer)
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as error:
            raise _friendly(error, source, merged, layer) from None
    return merged


def load_config(yaml_path: YamlPaths = None, overrides: list[str] | None = None) -> Config:
    """The validated, typed :class:`Config` for preset(s) and overrides."""
    return to_config(merge_config(yaml_path=yaml_path, overrides=overrides))


def to_config(merged: DictConfig) -> Config:
    """A typed, validated :class:`Config` from a merged ``DictConfig``."""
    try:
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:  # an interpolation that does not resolve
        key = getattr(error, "full_key", None) or "?"
        raise ConfigError(f"bad value for {key!r}: {str(error).splitlines()[0]}") from None
    assert isinstance(cfg, Config)
    return validate(cfg)


def to_yaml(cfg: Config) -> str:
    """The resolved config as YAML (what the run folder keeps)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
