"""Parameter precedence, as candle_lib: defaults < --config file < sweep params < search
point < --set. Unknown names are errors that name the benchmark's parameters."""

from __future__ import annotations

import ast
import configparser
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from candle.benchmark import Benchmark, ParamError
from candle.errors import UserError


def parse_set(item: str) -> tuple[str, Any]:
    """``name=value`` with the value read as YAML (``2``, ``0.1``, ``[200, 20]``, ``adam``)."""
    name, sep, raw = item.partition("=")
    if not sep or not name.strip():
        raise UserError(f"--set {item!r}: expected NAME=VALUE")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return name.strip(), value


def read_config_file(path: Path) -> dict[str, Any]:
    """A YAML mapping, or an upstream ``*_default_model.txt`` ([Global_Params] key=value)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror or exc}", file=path) from None
    if path.suffix in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"invalid YAML: {exc}".splitlines()[0], file=path) from None
        if not isinstance(data, dict):
            raise UserError("expected a mapping of parameters", file=path)
        return {str(k): v for k, v in data.items()}
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise UserError(f"invalid config: {exc}".splitlines()[0], file=path) from None
    out: dict[str, Any] = {}
    for section in parser.sections():
        for key, raw in parser.items(section):
            try:
                out[key] = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                out[key] = raw  # upstream writes bare words too (activation=relu)
    return out


def resolve(
    definition: Benchmark,
    layers: Iterable[tuple[str, Mapping[str, Any]]],
) -> dict[str, Any]:
    """Defaults overlaid by each (source name, values) layer in order, type-checked."""
    params = definition.defaults()
    for source, values in layers:
        for name, value in values.items():
            param = definition.param(name)
            if param is None:
                known = ", ".join(sorted(p.name for p in definition.params))
                raise UserError(f"benchmark {definition.name} has no parameter {name!r}; "
                                f"its parameters: {known}", file=source)
            try:
                params[name] = param.coerce(value)
            except ParamError as exc:
                raise UserError(str(exc), file=source, key=name) from None
    return params
