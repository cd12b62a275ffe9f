"""The loop that keeps slots full, retries failures and resumes from the store."""

from candle.supervisor.loop import Outcome, RunStopped, Supervisor
from candle.supervisor.run import run_sweep

__all__ = ["Outcome", "RunStopped", "Supervisor", "run_sweep"]
