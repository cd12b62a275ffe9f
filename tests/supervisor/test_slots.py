"""Slot accounting: packing, whole-node jobs, GPUs, and never more ranks than slots."""

from __future__ import annotations

import random

import pytest

from candle.supervisor.slots import Node, SlotPool


def pool(nodes: int, slots: int, gpus: int = 0, **kw: bool) -> SlotPool:
    return SlotPool([Node(f"n{i}", slots, gpus) for i in range(1, nodes + 1)], **kw)


def test_packs_jobs_onto_one_node_before_the_next() -> None:
    p = pool(2, 4)
    a, b = p.place(2), p.place(2)
    assert a is not None and b is not None
    assert a.hosts == (("n1", 2),) and b.hosts == (("n1", 2),)  # best fit keeps n2 whole
    c = p.place(4)
    assert c is not None and c.hosts == (("n2", 4),)
    assert p.place(1) is None  # full: 8 of 8 slots
    p.release(a)
    d = p.place(2)
    assert d is not None and d.hosts == (("n1", 2),)


def test_wide_job_holds_whole_idle_nodes() -> None:
    p = pool(3, 4)
    small = p.place(1)
    wide = p.place(6)  # 2 nodes of 3 ranks, both must be idle
    assert small is not None and wide is not None
    assert wide.hosts == (("n2", 3), ("n3", 3))
    assert p.place(1) is not None  # n1 still has room
    assert p.place(2) is not None
    assert p.place(1) is None  # n2/n3 are held whole even with a free slot each
    p.release(wide)
    assert p.used_slots == 4


def test_gpus_one_per_rank_and_released() -> None:
    p = pool(1, 16, gpus=4)
    a, b = p.place(2), p.place(2)
    assert a is not None and b is not None
    assert (a.gpus, b.gpus) == ((0, 1), (2, 3))
    assert p.place(1) is None  # 12 free cores but no GPU left
    p.release(a)
    c = p.place(1)
    assert c is not None and c.gpus == (0,)


def test_never_fits_is_known_up_front() -> None:
    assert not pool(1, 2).fits_ever(3)
    assert pool(2, 2).fits_ever(4)
    assert not pool(2, 8, gpus=2).fits_ever(5)  # GPUs bound it, not cores
    assert pool(1, 2, oversubscribe=True).fits_ever(8)


def test_oversubscribe_only_when_asked() -> None:
    p = pool(1, 2, oversubscribe=True)
    placements = [p.place(2) for _ in range(3)]
    assert all(x is not None for x in placements)
    assert p.used_slots == 6


def test_random_churn_never_exceeds_capacity() -> None:
    rng = random.Random(7)
    p = pool(4, 8, gpus=4)
    held = []
    for _ in range(2000):
        if held and rng.random() < 0.45:
            p.release(held.pop(rng.randrange(len(held))))
        else:
            placement = p.place(rng.choice([1, 2, 3, 4, 6, 8]))
            if placement is not None:
                held.append(placement)
        for node in p.nodes:
            assert 0 <= node.used_slots <= node.slots
            assert len(set(node.free_gpus)) == len(node.free_gpus)
        gpus_in_use = sum(len(pl.gpus) * len(pl.hosts) for pl in held)
        assert gpus_in_use == sum(4 - len(n.free_gpus) for n in p.nodes)
    for placement in held:
        p.release(placement)
    assert p.used_slots == 0 and all(n.idle for n in p.nodes)


def test_empty_allocation_is_refused() -> None:
    with pytest.raises(ValueError):
        SlotPool([])


def test_plan_reports_how_jobs_sit_in_the_allocation(tmp_path, cli) -> None:  # type: ignore[no-untyped-def]
    import json

    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: s\nbenchmark: nt3\nresources:\n  ranks_per_job: 2\n"
                     "  slots_per_node: 8\n  gpus_per_node: 4\n")
    result = cli("plan", str(sweep), "--format", "json")
    assert result.code == 0, result.err
    alloc = json.loads(result.out)["allocation"]
    assert alloc == {"ranks_per_job": 2, "nodes": 1, "slots_per_node": 8, "gpus_per_node": 4,
                     "jobs_at_once": 2, "launcher": "mpirun"}  # 4 GPUs bound it, not 8 cores


def test_plan_counts_every_node_of_a_slurm_allocation(tmp_path, cli) -> None:  # type: ignore[no-untyped-def]
    import json

    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: s\nbenchmark: nt3\nresources:\n  scheduler: slurm\n  nodes: 2\n"
                     "  site: local-slurm\n  ranks_per_job: 2\n")  # 2 cores per node
    result = cli("plan", str(sweep), "--format", "json")
    assert result.code == 0, result.err
    alloc = json.loads(result.out)["allocation"]
    assert (alloc["nodes"], alloc["slots_per_node"], alloc["jobs_at_once"]) == (2, 2, 2)
    assert alloc["launcher"] == "srun"
