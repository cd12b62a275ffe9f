"""GPU binding per rank: one GPU per rank, chosen by the rank's index on its node.

The supervisor hands each job its GPUs in ``CANDLE_GPUS`` (same ids on every node the job
holds); every launcher exports a local rank under its own name. This runs in the job
before TensorFlow is imported, so each rank sees exactly its GPU.

``CANDLE_GPU_ORDER`` (site config ``env``) maps those ids to physical devices, for nodes
whose GPUs sit nearest the cores in another order: Polaris binds rank r of a node to GPU
3 - r (ALCF's affinity script), i.e. ``CANDLE_GPU_ORDER=3,2,1,0``.
"""

from __future__ import annotations

from collections.abc import MutableMapping

LOCAL_RANK_VARS = ("OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "PALS_LOCAL_RANKID",
                   "MPI_LOCALRANKID", "PMI_LOCAL_RANK")


def local_rank(env: MutableMapping[str, str]) -> int:
    for name in LOCAL_RANK_VARS:
        if env.get(name, "").isdigit():
            return int(env[name])
    return 0


def bind_gpu(env: MutableMapping[str, str]) -> str | None:
    """Set CUDA_VISIBLE_DEVICES to this rank's GPU; return it (None when no GPUs given)."""
    given = [g for g in env.get("CANDLE_GPUS", "").split(",") if g.strip()]
    if not given:
        return None
    chosen = given[local_rank(env) % len(given)].strip()
    order = [g.strip() for g in env.get("CANDLE_GPU_ORDER", "").split(",") if g.strip()]
    if order and chosen.isdigit() and int(chosen) < len(order):
        chosen = order[int(chosen)]
    env["CUDA_VISIBLE_DEVICES"] = chosen
    return chosen
