"""The located checks every sweep and site file shares: each failure is a UserError that
names the file, the line and the key (``FILE:LINE: KEY: message``)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from candle.errors import UserError
from candle.spec.yaml_lines import KeyPath, LineMap

SCIENTIFIC_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def printable(text: str) -> str:
    """``text`` with control characters escaped, for error messages that must stay one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class Ctx:
    """Carries the file and line map so every check can raise a located error."""

    def __init__(self, file: Path, lines: LineMap) -> None:
        self.file = file
        self.lines = lines

    def fail(self, path: KeyPath, message: str) -> UserError:
        key = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path)
        key = printable(key.replace(".[", "["))
        return UserError(message, file=self.file, line=self.lines.line(path), key=key or None)

    def mapping(self, value: Any, path: KeyPath, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a mapping, got {kind_of(value)}")
        for key in value:
            if not isinstance(key, str):
                raise self.fail(path, f"keys must be strings, got {key!r}")
            if key not in allowed:
                raise self.fail(
                    (*path, key), f"unknown key; valid keys: {', '.join(allowed)}"
                )
        return dict(value)

    def integer(self, value: Any, path: KeyPath, minimum: int,
                maximum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected an integer, got {kind_of(value)} {value!r}")
        if value < minimum:
            raise self.fail(path, f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.fail(path, f"must be <= {maximum:,}, got {value:,}")
        return value

    def number(self, value: Any, path: KeyPath) -> float:
        """A finite number (a bound: NaN or infinity would make every draw NaN)."""
        if isinstance(value, str) and SCIENTIFIC_RE.match(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, f"expected a number, got {kind_of(value)} {value!r}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise self.fail(path, f"expected a finite number, got {value!r}")
        return number

    def plain(self, value: Any, path: KeyPath) -> Any:
        """A value that is written to JSON files and read back as it was: null, booleans,
        numbers, strings, and lists and mappings (with string keys) of those."""
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, list):
            return [self.plain(v, (*path, i)) for i, v in enumerate(value)]
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, str):
                    raise self.fail(path, f"keys must be strings, got {kind_of(key)} {key!r}")
            return {k: self.plain(v, (*path, k)) for k, v in value.items()}
        raise self.fail(path, f"expected a number, string, boolean, list or mapping, got "
                              f"{kind_of(value)} {value!r} (quote it to pass it as a string)")

    def string(self, value: Any, path: KeyPath, choices: tuple[str, ...] | None = None) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {kind_of(value)} {value!r}")
        if choices is not None and value not in choices:
            raise self.fail(path, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def boolean(self, value: Any, path: KeyPath) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {kind_of(value)} {value!r}")
        return value


def kind_of(value: Any) -> str:
    return {
        dict: "a mapping", list: "a list", str: "a string", int: "an integer",
        float: "a number", bool: "a boolean", type(None): "nothing",
    }.get(type(value), type(value).__name__)
