"""qsub scripts, pack and array, from one template. As for Slurm: shell values are
`shlex.quote`d, directive values were checked by the site config (no spaces, quotes, $),
and no path appears in a directive (qsub runs in the run's pbs/ folder, which relative
-o paths resolve against).

PBS has no warning signal before the walltime (Slurm's --signal): the supervisor drains
``signal_lead`` seconds before the end by its own clock (qstat's stime + walltime), and
PBS's own SIGTERM at the walltime stops whatever is left."""

from __future__ import annotations

import shlex
from pathlib import Path
from string import Template

from candle.schedulers.batch.shape import job_shape
from candle.schedulers.batch.shell import python_of, shell_lines
from candle.spec.model import walltime_seconds
from candle.spec.site import SiteConfig

# -r y: a job PBS requeues (preemption, a node lost) runs again and resumes from the
# store; -j oe: one log per allocation; CANDLE_TAG: finds the job again by its tag.
HEADER = Template("""#!/bin/bash
#PBS -N $name
#PBS -l select=$select
#PBS -l walltime=$walltime
$resources#PBS -j oe
#PBS -o $output
#PBS -r y
#PBS -v CANDLE_TAG=$tag
$array$site_directives
# candle $kind script for run $run_id; written by `candle run`, safe to read, re-submittable.
# PBS sends no warning before the walltime: candle drains $lead s before it by its own clock.
set -eo pipefail
$modules$setup$exports""")

PACK_BODY = Template("""
# One allocation; the supervisor inside keeps its slots full, one mpiexec per job.
exec $python -m candle.cli supervise $run_dir
""")

ARRAY_BODY = Template("""
# Subjob i (PBS_ARRAY_INDEX) of this array runs job number i of $chunk (one id per line).
exec $python -m candle.cli array-task $run_dir $chunk
""")


def pbs_walltime(walltime: str) -> str:
    """candle's [D-]HH:MM:SS → PBS's HH:MM:SS (hours past 24 are fine in PBS)."""
    seconds = walltime_seconds(walltime)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def select(nodes: int, mpiprocs: int, ncpus: int, gpus: int, site: SiteConfig) -> str:
    """``N:ncpus=C:mpiprocs=P[:ngpus=G][:<site's extra chunk resources>]``."""
    chunk = [str(nodes), f"ncpus={ncpus}", f"mpiprocs={mpiprocs}"]
    if gpus:
        chunk.append(f"ngpus={gpus}")
    if site.select_extra:
        chunk.append(site.select_extra)
    return ":".join(chunk)


def exclusive(site: SiteConfig) -> bool:
    """Are the nodes the job's alone (``place=scatter:excl``, ``exclhost``)?"""
    return any(part in ("excl", "exclhost") for part in site.place.split(":"))


def _resources(site: SiteConfig) -> str:
    lines = [f"-l place={site.place or 'scatter'}"]
    if site.filesystems:
        lines.append(f"-l filesystems={site.filesystems}")
    if site.queue:
        lines.append(f"-q {site.queue}")
    if site.account:
        lines.append(f"-A {site.account}")
    return "".join(f"#PBS {line}\n" for line in lines)




def _header(kind: str, *, output: str, select_spec: str, array: str, run_id: str,
            tag: str, name: str, walltime: str, site: SiteConfig, lead: int) -> str:
    directives = "".join(f"#PBS {line}\n" for line in site.directives)
    return HEADER.substitute(
        name=f"candle-{name}", select=select_spec, walltime=pbs_walltime(walltime),
        resources=_resources(site), output=output, tag=tag, array=array,
        site_directives=directives, kind=kind, run_id=run_id, lead=lead,
        **shell_lines(site))


def render_pack(*, run_id: str, tag: str, run_dir: Path, name: str, walltime: str,
                nodes: int, tasks_per_node: int, gpus_per_node: int, site: SiteConfig,
                signal_lead: int = 0) -> str:
    """One allocation of ``nodes`` chunks, ``tasks_per_node`` MPI slots each (on GPU
    nodes one per GPU, so that each rank gets its share of the cores as threads)."""
    ncpus = site.cores_per_node or tasks_per_node
    slots = min(tasks_per_node, gpus_per_node) if gpus_per_node else tasks_per_node
    header = _header("pack", output="pack.out", array="",
                     select_spec=select(nodes, slots, ncpus, gpus_per_node, site),
                     run_id=run_id, tag=tag, name=name, walltime=walltime,
                     site=site, lead=signal_lead)
    return header + PACK_BODY.substitute(python=shlex.quote(python_of(site)),
                                         run_dir=shlex.quote(str(run_dir)))


def render_array(*, run_id: str, tag: str, run_dir: Path, name: str, walltime: str,
                 ranks: int, cores_per_node: int, gpus_per_node: int, count: int,
                 throttle: int, chunk: str, site: SiteConfig, signal_lead: int = 0) -> str:
    """``count`` subjobs (-J), each one job of ``ranks`` ranks; at most ``throttle`` at
    once (max_run_subjobs). A chunk of one job is a plain job: PBS arrays need two
    subjobs or more, and the task runs job 0 of its chunk.

    Each subjob asks for what its job uses (its ranks, their cores, one GPU per rank on
    GPU nodes), so subjobs share nodes where the site shares them; on a site whose nodes
    are the job's alone (``place`` with ``excl``) it is given the whole node's cores."""
    shape = job_shape(ranks, cores_per_node, gpus_per_node)
    ncpus = shape.cpus_per_node
    if exclusive(site) and cores_per_node:
        ncpus = max(ncpus, cores_per_node)
    array = ""
    if count > 1:
        array = f"#PBS -J 0-{count - 1}\n"
        if throttle:
            array += f"#PBS -W max_run_subjobs={throttle}\n"
    stem = Path(chunk).stem.replace("chunk", "array")
    header = _header("array", output=f"{stem}.^array_index^.out" if count > 1 else f"{stem}.out",
                     array=array, select_spec=select(shape.nodes, shape.ranks_per_node, ncpus,
                                                     shape.gpus_per_node, site),
                     run_id=run_id, tag=tag, name=name, walltime=walltime, site=site,
                     lead=signal_lead)
    return header + ARRAY_BODY.substitute(python=shlex.quote(python_of(site)),
                                          run_dir=shlex.quote(str(run_dir)),
                                          chunk=shlex.quote(chunk))
