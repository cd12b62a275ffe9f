"""Slot accounting for a packed allocation: which ranks of which job sit where.

Each rank takes one slot (a core, or a core group the site defines) and, on GPU nodes,
one GPU. A job that fits on one node is packed onto the fullest node that still holds it
(keeps whole nodes free for wide jobs); a wider job holds whole idle nodes. Nothing is
oversubscribed unless the sweep asks for it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from candle.launch._base import Placement


@dataclass
class Node:
    name: str
    slots: int
    gpus: int = 0
    used_slots: int = 0
    free_gpus: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.free_gpus = list(range(self.gpus))

    @property
    def free_slots(self) -> int:
        return self.slots - self.used_slots

    @property
    def capacity(self) -> int:
        """Ranks the node holds at once: slots, or GPUs when it has fewer of those."""
        return min(self.slots, self.gpus) if self.gpus else self.slots

    @property
    def idle(self) -> bool:
        return self.used_slots == 0 and len(self.free_gpus) == self.gpus


@dataclass
class _Hold:
    node: Node
    slots: int
    gpus: list[int]


class SlotPool:
    def __init__(self, nodes: list[Node], *, oversubscribe: bool = False) -> None:
        if not nodes:
            raise ValueError("an allocation needs at least one node")
        self.nodes = nodes
        self.oversubscribe = oversubscribe
        self._held: dict[int, list[_Hold]] = {}
        self._tokens = itertools.count(1)

    @property
    def total_slots(self) -> int:
        return sum(n.slots for n in self.nodes)

    @property
    def used_slots(self) -> int:
        return sum(n.used_slots for n in self.nodes)

    def fits_ever(self, ranks: int) -> bool:
        """Could a job of ``ranks`` run on this allocation when it is empty?"""
        return self.oversubscribe or ranks <= sum(n.capacity for n in self.nodes)

    def place(self, ranks: int) -> Placement | None:
        """Reserve slots (and GPUs) for one job, or None if they are not free now."""
        if self.oversubscribe:
            return self._place_oversubscribed(ranks)
        single = [n for n in self.nodes if n.free_slots >= ranks
                  and (not n.gpus or len(n.free_gpus) >= ranks)]
        if single:
            node = min(single, key=lambda n: (n.free_slots, n.name))  # best fit
            return self._hold([(node, ranks, ranks, node.free_gpus[:ranks] if node.gpus else [])])
        capacity = min(n.capacity for n in self.nodes)
        wanted = math.ceil(ranks / capacity)
        idle = [n for n in self.nodes if n.idle]
        if wanted > len(idle):
            return None
        per_node = math.ceil(ranks / wanted)
        parts = []
        for i, node in enumerate(idle[:wanted]):
            count = min(per_node, ranks - i * per_node)
            parts.append((node, count, node.slots, list(node.free_gpus)))  # whole node
        return self._hold(parts)

    def release(self, placement: Placement) -> None:
        for hold in self._held.pop(placement.token, []):
            hold.node.used_slots -= hold.slots
            hold.node.free_gpus = sorted(set(hold.node.free_gpus) | set(hold.gpus))

    def _hold(self, parts: list[tuple[Node, int, int, list[int]]]) -> Placement:
        """parts: (node, ranks there, slots held there, GPUs held there)."""
        token = next(self._tokens)
        holds = []
        for node, _, slots, gpus in parts:
            node.used_slots += slots
            node.free_gpus = [g for g in node.free_gpus if g not in gpus]
            holds.append(_Hold(node, slots, list(gpus)))
        self._held[token] = holds
        gpu_ids = tuple(parts[0][3]) if parts else ()  # the same ids on every node held
        return Placement(tuple((node.name, count) for node, count, _, _ in parts),
                         gpu_ids, token)

    def _place_oversubscribed(self, ranks: int) -> Placement:
        """Asked for: spread over the least loaded nodes, ignoring capacity (no GPU ids:
        oversubscribed ranks would share them anyway)."""
        order = sorted(self.nodes, key=lambda n: (n.used_slots / max(1, n.slots), n.name))
        width = min(len(order), ranks)
        per_node = math.ceil(ranks / width)
        parts = [(order[i], min(per_node, ranks - i * per_node)) for i in range(width)]
        return self._hold([(node, count, count, []) for node, count in parts if count > 0])
