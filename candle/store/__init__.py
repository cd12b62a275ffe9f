"""The run directory: plan, per-job params, logs and atomically written results."""

from candle.store.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json
from candle.store.run_store import RunStore

__all__ = ["RunStore", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "read_json"]
