"""Load YAML safely and remember the line of every key, so errors can point at it.

Besides ``safe_load``'s own checks, a sweep file may not be nested deeper than
MAX_DEPTH levels (PyYAML recurses per level and would die with RecursionError), may not
hold an alias inside the node it names (a recursive structure), and may not expand to more
than MAX_VALUES values through its aliases (the "billion laughs" file: ten lines that
expand to 10^10 values). Each is a one-line error at the offending line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from candle.errors import UserError

KeyPath = tuple[str | int, ...]

MAX_DEPTH = 64
MAX_VALUES = 250_000
_SURROGATE = re.compile("[\ud800-\udfff]")


class LineMap:
    """Maps a key path (``("search", "space", "lr")``) to its 1-based line in the file."""

    def __init__(self, lines: dict[KeyPath, int]) -> None:
        self._lines = lines

    def line(self, path: KeyPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        while True:
            if path in self._lines:
                return self._lines[path]
            if not path:
                return None
            path = path[:-1]


def _walk(node: yaml.Node, path: KeyPath, out: dict[KeyPath, int], seen: set[int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if id(node) in seen:  # an alias: its lines are those of the anchored node, walked once
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            child = (*path, key)
            out[child] = key_node.start_mark.line + 1
            _walk(value_node, child, out, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            out[(*path, index)] = item.start_mark.line + 1
            _walk(item, (*path, index), out, seen)


class _Shape:
    """Checks a composed document's depth, aliases and size before it is constructed."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.done: dict[int, tuple[int, int]] = {}  # node id -> (expanded values, height)
        self.open: set[int] = set()

    def fail(self, node: yaml.Node, message: str) -> UserError:
        return UserError(message, file=self.file, line=node.start_mark.line + 1)

    def visit(self, node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in self.open:
            raise self.fail(node, "a YAML alias (*name) refers to a node that contains it; "
                                  "a sweep cannot be a recursive structure")
        if key not in self.done:
            if depth > MAX_DEPTH:
                raise self.fail(node, f"nested more than {MAX_DEPTH} levels deep")
            if isinstance(node, yaml.ScalarNode):
                if isinstance(node.value, str) and _SURROGATE.search(node.value):
                    raise self.fail(node, "a \\uD800-\\uDFFF escape is half a character (a "
                                          "lone surrogate); write the character itself or "
                                          "\\U0001XXXX")
                self.done[key] = (1, 0)
            else:
                children: list[yaml.Node] = (
                    [n for pair in node.value for n in pair]
                    if isinstance(node, yaml.MappingNode) else list(node.value))
                self.open.add(key)
                size, height = 1, 0
                for child in children:
                    child_size, child_height = self.visit(child, depth + 1)
                    size += child_size
                    height = max(height, child_height + 1)
                    if size > MAX_VALUES:
                        raise self.fail(node, f"the file holds more than {MAX_VALUES:,} values "
                                              "once its aliases (*name) are expanded")
                self.open.discard(key)
                self.done[key] = (size, height)
        size, height = self.done[key]
        if depth + height > MAX_DEPTH:
            raise self.fail(node, f"nested more than {MAX_DEPTH} levels deep")
        return size, height


class _Loader(yaml.SafeLoader):
    """``SafeLoader`` whose constructors report a bad value (``2020-13-45``, ``!!int x``)
    as a YAML error at its node instead of a bare ValueError."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value: {exc}", node.start_mark) from None


def load_yaml(path: Path) -> tuple[Any, LineMap, str]:
    """Parse ``path`` with ``safe_load`` semantics; return (data, line map, raw text)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("no such file", file=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read: {exc}", file=path) from None
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # a control character: say which, and where
        at = text.count("\n", 0, exc.position or 0) + 1
        raise UserError(f"invalid YAML: unacceptable character #x{exc.character:04x} "
                        f"({exc.reason})", file=path, line=at) from None
    try:
        node = loader.get_single_node()
        if node is not None:
            _Shape(path).visit(node, 0)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise UserError(f"invalid YAML: {problem}", file=path, line=line) from None
    except yaml.YAMLError as exc:
        raise UserError(f"invalid YAML: {exc}", file=path) from None
    except RecursionError:
        raise UserError(f"invalid YAML: nested more than {MAX_DEPTH} levels deep",
                        file=path) from None
    finally:
        loader.dispose()
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _walk(node, (), lines, set())
    return data, LineMap(lines), text


def key_line(path: Path, key: KeyPath) -> int | None:
    """The line of ``key`` in the YAML file ``path`` (or of its nearest ancestor there), for
    a located error about a file that already validated (e.g. a command-line flag that does
    not fit the sweep's settings)."""
    return load_yaml(path)[1].line(key)
