"""A user model that trains in lock-step across its ranks like Horovod does: an allreduce
every epoch. If the ranks disagreed about stopping, one would wait in that allreduce for
ever; each rank writes where it stopped so the test can compare."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import candle


def train(params: dict[str, Any]) -> dict[str, float]:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    floor = float(params["floor"])
    epochs = int(params["epochs"])
    stopped: dict[str, Any] = {"rank": rank, "size": comm.Get_size()}
    loss = math.inf
    try:
        for epoch in range(1, epochs + 1):
            time.sleep(float(params.get("epoch_seconds", 0.1)))
            loss = comm.allreduce(floor + math.exp(-epoch), op=MPI.SUM) / comm.Get_size()
            candle.report(epoch, {"val_loss": loss})
            stopped["last_epoch"] = epoch
    except candle.Pruned as pruned:
        stopped["pruned_at"] = pruned.step
        raise
    finally:
        out = Path(params["job_dir"]) / f"rank-{rank}.json"
        out.write_text(json.dumps(stopped))
    return {"val_loss": loss}
