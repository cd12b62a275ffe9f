"""What ONE job asks of a batch scheduler when it is a submission of its own (an array task
or subjob): its ranks, the cores they run on and the GPUs they bind. Never the whole node
for a small job: on a cluster whose nodes are shared, a node-sized ask for a 1-rank job
lets one job run per node (a 2-core PBS node ran one subjob at a time under
max_run_subjobs=2). Sites whose nodes are never shared say so in their config (PBS
``place: ...:excl``); the renderers then hand the job the whole node's cores."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class JobShape:
    nodes: int
    ranks_per_node: int
    cpus_per_rank: int  # each rank's cores (threads); 1 where nothing better is known
    gpus_per_rank: int  # 0 or 1: a rank binds one GPU on GPU nodes

    @property
    def cpus_per_node(self) -> int:
        return self.ranks_per_node * self.cpus_per_rank

    @property
    def gpus_per_node(self) -> int:
        return self.ranks_per_node * self.gpus_per_rank


def job_shape(ranks: int, cores_per_node: int, gpus_per_node: int) -> JobShape:
    """``ranks`` ranks on nodes of ``cores_per_node`` cores (0: unknown) and
    ``gpus_per_node`` GPUs: as few nodes as hold them (a node holds as many ranks as it has
    cores, or GPUs where it has fewer of those), and on GPU nodes each rank gets its GPU's
    share of the cores, as a pack allocation gives it."""
    capacity = (min(cores_per_node, gpus_per_node) if cores_per_node and gpus_per_node
                else gpus_per_node or cores_per_node)
    nodes = math.ceil(ranks / capacity) if capacity else 1
    per_node = math.ceil(ranks / nodes)
    cpus = max(1, cores_per_node // gpus_per_node) if cores_per_node and gpus_per_node else 1
    return JobShape(nodes, per_node, cpus, 1 if gpus_per_node else 0)
