"""The loop that keeps slots full, retries failures and resumes from the store."""

from candle.supervisor.loop import Interrupted, Outcome, Supervisor
from candle.supervisor.run import run_sweep

__all__ = ["Interrupted", "Outcome", "Supervisor", "run_sweep"]
