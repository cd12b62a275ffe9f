"""What every versioned record candle writes (run.json, model.json) shares: its schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from candle.errors import UserError


def take_schema(data: dict[str, Any], newest: int, file: Path) -> int:
    """Pop the record's schema (0 when absent: written before it had one); a record from a
    newer candle is refused with one line naming ``file``."""
    schema = data.pop("schema", 0)
    if not isinstance(schema, int) or schema > newest:
        raise UserError(f"written by a newer candle (schema {schema}); upgrade candle",
                        file=file)
    return schema
