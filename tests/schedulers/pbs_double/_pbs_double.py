"""PBS DOUBLE: an offline stand-in for OpenPBS's qsub/qstat/qdel, for tests. It is NOT PBS.

No PBS server can be installed where candle's tests run, so this double emulates the three
commands a user calls, modelled on REAL OpenPBS 23.06.06 outputs kept in
/work/shared/pbs-samples/ (qstat -f -F json documents, qsub stdout, qdel exit codes, the
walltime line). Its documents have the keys, value types and formats of those samples; where
the samples are silent the choice is the double's own and is marked "double" below.

State lives in $PBS_DOUBLE_HOME (required): jobs/<seq>.json per submission, the sequence
counter, script copies, node files, a runner log. Every change happens under one flock and
every file is written atomically (tmp + fsync + rename). qsub starts one detached runner per
submission (``python _pbs_double.py run <seq>``): it waits for dependencies, starts the script
(``bash <copy>``, new session, cwd $HOME) within the CPUs of the ONE emulated host, enforces the
walltime and records the outcome. README.md beside this file gives the whole contract
(commands, flags, environment variables). Differences from a real PBS, on purpose:

* one host (``socket.gethostname()``) with $PBS_DOUBLE_NCPUS cpus (default os.cpu_count());
  every select chunk lands on it, and a job that asks for more cpus than that runs when the
  host is otherwise idle (a real one-host server would keep it queued for ever);
* jobs inherit qsub's whole environment (``-V`` is implied; real PBS passes only Variable_List);
* output is appended to the -o/-e files while the job runs (real PBS copies them at the end);
  a file that cannot be opened goes to $PBS_DOUBLE_HOME/undelivered/;
* PBS_NODEFILE holds the host once per MPI rank: ``mpiprocs`` of each chunk, default 1 when the
  chunk has ncpus > 0 (the PBS Professional reference default), 0 otherwise;
* ``qsub -- command``, ``-I``, ``qrls``, ``qrerun``, ``qhold`` and the text ``qstat -f`` are
  not emulated; errors name the double;
* a runner that dies leaves no job R for ever: any qstat/qdel/qsub marks its jobs F (substate
  93, Exit_status -1, comment "double: job lost ...") and kills their process groups.

Exit statuses follow PBS's convention, pbs_errno & 0xff: 153 unknown job id (PBSE_UNKJOBID),
35 finished job (PBSE_HISTJOBID) are in the samples; 166 (PBSE_BADATVAL), 3
(PBSE_MaxArraySize) and 38 (PBSE_ENTLIMCT) for qsub refusals follow the same rule (double).
"""

from __future__ import annotations

import contextlib
import fcntl
import getopt
import json
import os
import pwd
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

VERSION = "23.06.06"
POLL = 0.1
Rec = dict[str, Any]
USAGE = {
    "qsub": "usage: qsub [-A account] [-e path] [-h] [-J range] [-j oe|eo|n] [-l resource_list]"
            " [-N name] [-o path] [-q queue] [-r y|n] [-v variable_list] [-V]"
            " [-W depend=...|max_run_subjobs=N] [script]",
    "qstat": "usage: qstat [-f -F json] [-x] [-t] [job_identifier...] | qstat -B -f -F json",
    "qdel": "usage: qdel [-W force|suppress_email=N] job_identifier...",
}
# Key order of the real documents (attributes absent from a job are left out).
ORDER = (
    "Job_Name", "Job_Owner", "resources_used", "job_state", "queue", "server", "Account_Name",
    "Checkpoint", "ctime", "depend", "Error_Path", "exec_host", "exec_vnode", "Hold_Types",
    "Join_Path", "Keep_Files", "Mail_Points", "mtime", "Output_Path", "Priority", "qtime",
    "Rerunable", "Resource_List", "stime", "obittime", "session_id", "jobdir", "substate",
    "Variable_List", "comment", "etime", "run_count", "Stageout_status", "Exit_status",
    "Submit_arguments", "array", "array_state_count", "array_indices_submitted",
    "array_indices_remaining", "max_run_subjobs", "array_id", "array_index", "history_timestamp",
    "project", "Submit_Host",
)
PARENT_ONLY = {"array", "array_state_count", "array_indices_submitted", "array_indices_remaining",
               "max_run_subjobs", "project", "Submit_Host", "history_timestamp", "obittime"}
ID_RE = re.compile(r"(\d+)(?:\[(\d*)\])?(?:\.(.+))?")


class Refused(Exception):
    """A refusal: the message for stderr and the exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------- environment and storage
def home() -> Path:
    path = os.environ.get("PBS_DOUBLE_HOME")
    if not path:
        raise Refused("double: PBS_DOUBLE_HOME is not set (the PBS double keeps its state there)",
                      2)
    return Path(path)


def server() -> str:
    return os.environ.get("PBS_DOUBLE_SERVER", "pbsdouble")


def host() -> str:
    return socket.gethostname()


def user() -> str:
    return (os.environ.get("USER") or os.environ.get("LOGNAME")
            or pwd.getpwuid(os.getuid()).pw_name)


def user_home() -> str:
    return os.environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir


def env_number(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


@contextlib.contextmanager
def locked() -> Iterator[None]:
    with open(home() / "lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def rec_path(seq: int) -> Path:
    return home() / "jobs" / f"{seq}.json"


def load(seq: int) -> Rec | None:
    try:
        rec: Rec = json.loads(rec_path(seq).read_text())
    except FileNotFoundError:
        return None
    return rec


def save(rec: Rec) -> None:
    rec["mtime"] = time.time()
    write_atomic(rec_path(rec["seq"]), json.dumps(rec))


def load_all() -> list[Rec]:
    recs = [json.loads(p.read_text()) for p in (home() / "jobs").glob("*.json")]
    return sorted(recs, key=lambda r: int(r["seq"]))


# ---------------------------------------------------------------- formats
def ftime(t: float) -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(t))


def fshort(t: float) -> str:
    return time.strftime("%a %b %d at %H:%M", time.localtime(t))


def hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def json_name(name: str) -> str | int:
    """A numeric Job_Name comes back as a JSON number, as the real server prints it."""
    return int(name) if re.fullmatch(r"0|[1-9][0-9]*", name) else name


def ranges(indices: list[int], step: int) -> str:
    """PBS range text of sorted indices: "1-3", "0,4-8:2"; "-" when empty."""
    parts: list[str] = []
    i = 0
    while i < len(indices):
        j = i
        while j + 1 < len(indices) and indices[j + 1] - indices[j] == step:
            j += 1
        a, b = indices[i], indices[j]
        parts.append(str(a) if a == b else f"{a}-{b}" + (f":{step}" if step > 1 else ""))
        i = j + 1
    return ",".join(parts) or "-"


def job_id(rec: Rec, key: str | None = None) -> str:
    """`12.srv` for a plain job, `16[].srv` for an array (key None), `16[3].srv` a subjob."""
    if rec["array"] is None:
        return f"{rec['seq']}.{server()}"
    return f"{rec['seq']}[{key or ''}].{server()}"


def canonical(text: str) -> str:
    m = ID_RE.fullmatch(text)
    if not m or (m[3] and m[3] != server()):
        return text
    return m[1] + ("" if m[2] is None else f"[{m[2]}]") + f".{server()}"


def lookup(text: str, by_seq: dict[int, Rec]) -> tuple[Rec, str | None] | None:
    """(record, unit key) for an id: key "" a plain job, None an array parent, "3" a subjob."""
    m = ID_RE.fullmatch(text)
    if not m or (m[3] and m[3] != server()) or int(m[1]) not in by_seq:
        return None
    rec, sub = by_seq[int(m[1])], m[2]
    if rec["array"] is None:
        return (rec, "") if sub is None else None
    if sub is None:
        return None
    if sub == "":
        return rec, None
    key = str(int(sub))
    return (rec, key) if key in rec["units"] else None


def expand(path: str, key: str) -> str:
    """^array_index^ of a subjob's -o/-e path (key "" is a plain job: left as written)."""
    return path.replace("^array_index^", key) if key else path


# ---------------------------------------------------------------- job state helpers
def is_done(rec: Rec) -> bool:
    if rec["array"] is None:
        return bool(rec["units"][""]["state"] == "F")
    return bool(rec["parent"]["state"] == "F")


def outcome(rec: Rec) -> int:
    return int(rec["units"][""]["substate"] if rec["array"] is None else rec["parent"]["substate"])


def finish_unit(unit: Rec, substate: int, comment: str | None, exit_status: int | None) -> None:
    unit.update(state="F", substate=substate, obittime=time.time(), exit=exit_status)
    if comment is not None:
        unit["comment"] = comment


def finalize(rec: Rec) -> None:
    """An array ends F once every subjob has: Exit_status 0 even when a subjob failed."""
    parent = rec["parent"]
    if rec["array"] is None or parent["state"] == "F":
        return
    units = rec["units"].values()
    if any(u["state"] != "F" for u in units):
        return
    if rec["delete_by"] or all(u["substate"] == 91 for u in units):
        substate, word = 91, f"terminated by {rec['delete_by']}"  # double: wording guessed
    elif all(u["substate"] == 92 for u in units):
        substate, word = 92, "finished"
    else:
        substate, word = 93, "failed"
    parent.update(state="F", substate=substate, obittime=time.time())
    if parent["stime"] is not None and not (substate == 91 and not rec["delete_by"]):
        parent["comment"] = f"Job Array Began at {fshort(parent['stime'])} and {word}"


def proc_start(pid: int) -> str | None:
    """Start time of a live, non-zombie process (tells a pid from a reused one)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        if Path("/proc/self/stat").exists():
            return None
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return "?"
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


def kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, sig)


def sweep() -> list[Rec]:
    """All records, after marking F the jobs of runners that died (double: no job stays R)."""
    recs = load_all()
    for rec in recs:
        runner = rec.get("runner")
        if is_done(rec) or not runner or proc_start(runner[0]) == runner[1]:
            continue
        for unit in rec["units"].values():
            if unit["state"] == "R":
                if unit["pid"] and proc_start(unit["pid"]) == unit["pid_start"]:
                    kill_group(unit["pid"], signal.SIGKILL)
                finish_unit(unit, 93, f"double: job lost, its runner (pid {runner[0]}) died", -1)
            elif unit["state"] != "F":
                finish_unit(unit, 91, f"double: job lost, its runner (pid {runner[0]}) died", None)
        finalize(rec)
        save(rec)
    return recs


# ---------------------------------------------------------------- qsub
def parse_options(args: list[str]) -> tuple[Rec, list[str]]:
    try:
        pairs, rest = getopt.getopt(args, "A:e:hJ:j:l:N:o:q:r:v:VW:")
    except getopt.GetoptError as exc:  # worded like glibc's getopt, which qsub uses
        said = "option requires an argument" if "requires" in exc.msg else "invalid option"
        raise Refused(f"qsub: {said} -- '{exc.opt}'\n{USAGE['qsub']}", 2) from None
    opts: Rec = {"l": {}, "W": {}, "v": {}}
    for flag, value in pairs:
        letter = flag[1]
        if letter == "l":
            for item in value.split(","):
                name, eq, val = item.partition("=")
                if not (name and eq and val):
                    raise Refused(f"qsub: illegal -l value\n{USAGE['qsub']}", 2)
                opts["l"][name] = val
        elif letter == "W":
            name, eq, val = value.partition("=")
            if not (name and eq and val):
                raise Refused(f"qsub: illegal -W value\n{USAGE['qsub']}", 2)
            opts["W"][name] = val
        elif letter == "v":
            for item in value.split(","):
                name, eq, val = item.partition("=")
                if not eq and name not in os.environ:
                    raise Refused("qsub: cannot send environment with the job", 2)
                opts["v"][name] = val if eq else os.environ[name]
        else:
            opts[letter] = True if letter in "hV" else value
    return opts, rest


def directives(text: str) -> list[str]:
    """#PBS lines of the leading comment block (stops at the first command)."""
    args: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#PBS") and stripped[4:5] in (" ", "\t"):
            try:
                args += shlex.split(stripped[4:])
            except ValueError as exc:
                raise Refused(f"qsub: directive error: {stripped} ({exc})", 2) from None
        elif stripped and not stripped.startswith("#"):
            break
    return args


def bad_value(name: str) -> Refused:
    return Refused(f"qsub: Illegal attribute or resource value {name}", 166)


def walltime_seconds(text: str) -> int:
    m = re.fullmatch(r"(?:(?:(\d+):)?(\d+):)?(\d+)", text)
    if not m:
        raise bad_value("Resource_List.walltime")
    return int(m[1] or 0) * 3600 + int(m[2] or 0) * 60 + int(m[3])


def parse_select(text: str) -> list[tuple[int, dict[str, str]]]:
    chunks = []
    for part in text.split("+"):
        fields = part.split(":")
        count = 1
        if fields[0].isdigit():
            count = int(fields.pop(0))
        res: dict[str, str] = {}
        for field in fields:
            m = re.fullmatch(r"([A-Za-z_][\w.-]*)=([^=]+)", field)
            if not m or (m[1] in ("ncpus", "mpiprocs", "ngpus", "ompthreads")
                         and not m[2].isdigit()):
                raise bad_value("Resource_List.select")
            res[m[1]] = m[2]
        if count < 1:
            raise bad_value("Resource_List.select")
        chunks.append((count, res))
    return chunks


def build_resources(requested: dict[str, str]) -> tuple[Rec, list[Any], int | None]:
    req = dict(requested)
    ncpus = req.pop("ncpus", "1")
    select = req.pop("select", None) or f"1:ncpus={ncpus}"
    chunks = parse_select(select)
    res: Rec = {k: v for k, v in req.items() if k not in ("walltime", "place")}
    res["select"] = select
    res["ncpus"] = sum(n * int(r.get("ncpus", 1)) for n, r in chunks)
    res["nodect"] = sum(n for n, _ in chunks)
    if any("ngpus" in r for _, r in chunks):
        res["ngpus"] = sum(n * int(r.get("ngpus", 0)) for n, r in chunks)
    res["place"] = req.get("place", "free")
    walltime = None
    if "walltime" in req:
        walltime = walltime_seconds(req["walltime"])
        res["walltime"] = hms(walltime)
    return dict(sorted(res.items())), [[n, r] for n, r in chunks], walltime


def parse_depend(text: str, by_seq: dict[int, Rec]) -> list[Any]:
    depend = []
    for part in text.split(","):
        kind, _, ids = part.partition(":")
        if kind not in ("afterany", "afterok", "afternotok"):
            raise Refused(f"qsub: double: dependency type {kind!r} is not emulated "
                          "(afterany, afterok, afternotok are)", 2)
        seqs = []
        for text_id in filter(None, ids.split(":")):
            m = ID_RE.fullmatch(text_id.split("@")[0])
            if not m or (m[3] and m[3] != server()) or int(m[1]) not in by_seq or (
                    m[2] is None) != (by_seq[int(m[1])]["array"] is None) or m[2]:
                raise Refused(f"qsub: Unknown Job Id {canonical(text_id)}", 153)
            seqs.append(int(m[1]))
        if not seqs:
            raise Refused(f"qsub: illegal -W value\n{USAGE['qsub']}", 2)
        depend.append([kind, seqs])
    return depend


def output_path(given: str | None, default: str, workdir: str) -> str:
    if not given:
        return default
    if re.match(r"[^/]+:", given):
        given = given.split(":", 1)[1]
    return os.path.normpath(os.path.join(workdir, given))


def queued_count(recs: list[Rec], owner: str) -> int:
    return sum(sum(u["state"] != "F" for u in r["units"].values())
               for r in recs if r["user"] == owner and not is_done(r))


def qsub(argv: list[str]) -> int:
    if "--" in argv:
        raise Refused("qsub: double: 'qsub -- command' is not emulated; submit a script", 2)
    cli, rest = parse_options(argv)
    if len(rest) > 1:
        raise Refused(f"qsub: double: one script expected, got {rest}\n{USAGE['qsub']}", 2)
    workdir = os.getcwd()
    if rest:
        script = Path(workdir, rest[0])
        try:
            text = script.read_text()
        except OSError as exc:
            raise Refused(f"qsub: script file:: {exc.strerror}", 2) from None
    else:
        script, text = Path("STDIN"), sys.stdin.read()
    from_script, extra = parse_options(directives(text))
    if extra:
        raise Refused(f"qsub: directive error: unexpected {extra}", 2)
    opts = {**from_script, **cli}
    for merged in ("l", "W", "v"):
        opts[merged] = {**from_script[merged], **cli[merged]}

    name = opts.get("N") or script.name
    if re.search(r"[\s/:@]", name) or len(name) > 236:
        raise Refused(f"qsub: illegal -N value\n{USAGE['qsub']}", 2)
    join = opts.get("j", "n")
    if join not in ("oe", "eo", "n"):
        raise Refused(f"qsub: illegal -j value\n{USAGE['qsub']}", 2)
    rerun = opts.get("r", "y")
    if rerun not in ("y", "n"):
        raise Refused(f"qsub: illegal -r value\n{USAGE['qsub']}", 2)
    indices, spec = None, None
    if "J" in opts:
        m = re.fullmatch(r"(\d+)-(\d+)(?::(\d+))?", opts["J"])
        step = int(m[3] or 1) if m else 0
        if not m or step < 1 or len(range(int(m[1]), int(m[2]) + 1, step)) < 2:
            raise Refused("qsub: illegal -J value (double: an array needs start-end[:step] "
                          "with at least 2 subjobs)\n" + USAGE["qsub"], 2)
        indices = list(range(int(m[1]), int(m[2]) + 1, step))
        spec = f"{m[1]}-{m[2]}" + (f":{step}" if step > 1 else "")
        if len(indices) > env_number("PBS_DOUBLE_MAX_ARRAY_SIZE", 10000):
            raise Refused("qsub: Array job exceeds server or queue size limit", 3)
    resources, chunks, walltime = build_resources(opts["l"])
    attrs = dict(opts["W"])
    max_run = None
    if "max_run_subjobs" in attrs:
        if not attrs["max_run_subjobs"].isdigit() or int(attrs["max_run_subjobs"]) < 1:
            raise bad_value("max_run_subjobs")
        max_run = int(attrs.pop("max_run_subjobs"))
    depend_text = attrs.pop("depend", None)
    if attrs:
        raise Refused(f"qsub: double: -W {', '.join(attrs)} is not emulated", 2)

    queue, owner, now, h = opts.get("q", "workq"), user(), time.time(), host()
    env = os.environ
    var_list = {f"PBS_O_{k}": env[k] for k in ("HOME", "LANG") if k in env}
    var_list["PBS_O_LOGNAME"] = env.get("LOGNAME", owner)
    var_list |= {f"PBS_O_{k}": env[k] for k in ("PATH", "MAIL", "SHELL") if k in env}
    var_list |= {"PBS_O_WORKDIR": workdir, "PBS_O_SYSTEM": os.uname().sysname,
                 "PBS_O_QUEUE": queue, "PBS_O_HOST": h, **opts["v"]}
    home().joinpath("jobs").mkdir(parents=True, exist_ok=True)
    home().joinpath("scripts").mkdir(exist_ok=True)
    with locked():
        recs = sweep()
        by_seq = {r["seq"]: r for r in recs}
        depend = parse_depend(depend_text, by_seq) if depend_text else []
        limit = os.environ.get("PBS_DOUBLE_MAX_QUEUED")
        if limit and queued_count(recs, owner) + len(indices or [0]) > int(limit):
            raise Refused("qsub: would exceed complex's per-user limit", 38)
        seq_file = home() / "seq"
        seq = int(seq_file.read_text()) + 1 if seq_file.exists() else 0  # PBS starts at 0
        write_atomic(seq_file, str(seq))
        suffix = ".^array_index^" if indices else ""
        copy = home() / "scripts" / f"{seq}.sh"
        write_atomic(copy, text)
        unit = {"state": "Q", "substate": 10, "stime": None, "obittime": None, "exit": None,
                "comment": None, "pid": None, "pid_start": None, "exec_host": None,
                "exec_vnode": None, "run_count": 0, "used": None, "delete_by": None}
        hold = "u" if opts.get("h") else ("s" if depend else "n")
        rec: Rec = {
            "seq": seq, "name": name, "user": owner, "queue": queue, "account": opts.get("A"),
            "resources": resources, "chunks": chunks, "walltime": walltime,
            "submit_args": " ".join(argv), "script": str(copy), "workdir": workdir,
            "jobdir": user_home(),
            "out": output_path(opts.get("o"), f"{workdir}/{name}.o{seq}{suffix}", workdir),
            "err": output_path(opts.get("e"), f"{workdir}/{name}.e{seq}{suffix}", workdir),
            "join": join, "rerun": "True" if rerun == "y" else "False", "vars": opts["v"],
            "var_list": var_list, "hold": hold, "depend": depend, "max_run": max_run,
            "array": indices, "array_spec": spec, "ctime": now, "qtime": now,
            "etime": now if hold == "n" else None, "runner": None, "delete_by": None,
            "units": {str(i): dict(unit) for i in indices} if indices else {"": unit},
            "parent": {"state": "Q", "substate": 10, "stime": None, "obittime": None,
                       "comment": None},
        }
        if hold != "u":  # a user hold waits for qrls, which the double does not have
            with open(home() / "runner.log", "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, os.path.realpath(__file__), "run", str(seq)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
            rec["runner"] = [proc.pid, proc_start(proc.pid)]
        save(rec)
    print(job_id(rec))
    return 0


# ---------------------------------------------------------------- the runner
def open_append(path: str) -> IO[bytes]:
    try:
        return open(path, "ab")
    except OSError:  # like PBS: what cannot be delivered is kept aside
        (home() / "undelivered").mkdir(exist_ok=True)
        return open(home() / "undelivered" / Path(path).name, "ab")


def spawn(rec: Rec, key: str, children: dict[str, subprocess.Popen[bytes]]) -> None:
    unit, now, h = rec["units"][key], time.time(), host()
    jid = job_id(rec, key)
    aux, tmp = home() / "aux", home() / "tmp" / jid
    aux.mkdir(exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    ranks = []
    for count, res in rec["chunks"]:
        per = int(res.get("mpiprocs", 1 if int(res.get("ncpus", 1)) > 0 else 0))
        ranks += [h] * (count * per)
    write_atomic(aux / jid, "".join(f"{r}\n" for r in ranks))
    first = rec["chunks"][0][1]
    env = {**os.environ, **rec["vars"], **{k: v for k, v in rec["var_list"].items()
                                           if k.startswith("PBS_O_")}}
    env.update(PBS_JOBID=jid, PBS_JOBNAME=rec["name"], PBS_QUEUE=rec["queue"],
               PBS_ENVIRONMENT="PBS_BATCH", PBS_NODEFILE=str(aux / jid), PBS_JOBDIR=rec["jobdir"],
               PBS_TASKNUM="1", NCPUS=first.get("ncpus", "1"), TMPDIR=str(tmp),
               OMP_NUM_THREADS=first.get("ompthreads", first.get("ncpus", "1")))
    if rec["array"] is not None:
        env.update(PBS_ARRAY_INDEX=key, PBS_ARRAY_ID=job_id(rec))
    if rec["join"] == "n":
        out, err = open_append(expand(rec["out"], key)), open_append(expand(rec["err"], key))
    else:
        out = err = open_append(expand(rec["out" if rec["join"] == "oe" else "err"], key))
    vnodes, hosts, slot = [], [], 0
    for count, res in rec["chunks"]:
        for _ in range(count):
            n = int(res.get("ncpus", 1))
            extra = "".join(f":{k}={res[k]}" for k in ("mem", "ngpus") if k in res)
            vnodes.append(f"({h}:ncpus={n}{extra})")
            hosts.append(f"{h}/{slot}" + (f"*{n}" if n > 1 else ""))
            slot += 1
    vnode = "+".join(vnodes)
    try:
        proc = subprocess.Popen(["bash", rec["script"]], cwd=rec["jobdir"], env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
    except OSError as exc:
        finish_unit(unit, 93, f"double: could not start the job: {exc}", -1)
        return
    finally:
        out.close()
        err.close()
    children[key] = proc
    said = "was sent for execution" if rec["array"] is not None else "run"
    unit.update(state="R", substate=41, stime=now, pid=proc.pid, pid_start=proc_start(proc.pid),
                exec_host="+".join(hosts), exec_vnode=vnode, run_count=unit["run_count"] + 1,
                comment=f"Job {said} at {fshort(now)} on {vnode}")
    if rec["array"] is not None and rec["parent"]["stime"] is None:
        rec["parent"].update(stime=now, comment=f"Job Array Began at {fshort(now)}")


def release(rec: Rec, by_seq: dict[int, Rec]) -> None:
    """A dependency hold ("s") ends when the jobs named are done, or deletes the job."""
    waiting = False
    for kind, seqs in rec["depend"]:
        for seq in seqs:
            other = by_seq.get(seq)
            if other is not None and not is_done(other):
                waiting = True
                continue
            ok = other is not None and outcome(other) == 92
            if (kind == "afterok" and not ok) or (kind == "afternotok" and ok):
                name = job_id(other) if other else f"{seq}.{server()}"
                why = f"Job deleted as result of dependency on job {name}"
                for unit in rec["units"].values():
                    if unit["state"] != "F":
                        finish_unit(unit, 91, why, None)
                rec["parent"]["comment"] = why
                return
    if not waiting:
        rec["hold"], rec["etime"] = "n", time.time()


def start_units(rec: Rec, children: dict[str, subprocess.Popen[bytes]],
                recs: list[Rec]) -> None:
    queued = [k for k, u in rec["units"].items() if u["state"] == "Q"]
    if rec["hold"] != "n" or not queued:
        return
    need = int(rec["resources"]["ncpus"])
    running = sum(u["state"] == "R" for u in rec["units"].values())
    others = sum(int(r["resources"]["ncpus"]) * sum(u["state"] == "R" for u in r["units"].values())
                 for r in recs if r["seq"] != rec["seq"])
    total = env_number("PBS_DOUBLE_NCPUS", os.cpu_count() or 1)
    for key in queued:
        if running >= (rec["max_run"] or len(queued) + running):
            break
        used = others + running * need
        if used and used + need > total:
            if rec["array"] is None:
                rec["units"][key]["comment"] = "Not Running: Insufficient amount of resource: ncpus"
            break
        spawn(rec, key, children)
        running += 1


def reap(rec: Rec, key: str, proc: subprocess.Popen[bytes], kill: Rec | None) -> None:
    _, status, usage = os.wait4(proc.pid, 0)
    code = proc.returncode = os.waitstatus_to_exitcode(status)
    exit_status = 256 - code if code < 0 else code  # killed by signal s: 256 + s
    unit, now = rec["units"][key], time.time()
    wall = now - unit["stime"]
    cput = usage.ru_utime + usage.ru_stime
    unit["used"] = {"cpupercent": int(100 * cput / max(wall, 1e-3)), "cput": hms(cput),
                    "mem": f"{usage.ru_maxrss}kb", "ncpus": rec["resources"]["ncpus"],
                    "vmem": f"{usage.ru_maxrss}kb", "walltime": hms(wall)}
    said = f"Job run at {fshort(unit['stime'])} on {unit['exec_vnode']} and"
    why = kill["why"] if kill else ("delete" if unit["delete_by"] else None)
    if why == "walltime":
        assert kill is not None
        errfile = rec["out"] if rec["join"] == "oe" else rec["err"]
        with open_append(expand(errfile, key)) as fh:
            fh.write(f"=>> PBS: job killed: walltime {kill['used']} exceeded limit "
                     f"{rec['walltime']}\n".encode())
        finish_unit(unit, 93, f"{said} exceeded resource walltime", -29)
    elif why == "delete":
        finish_unit(unit, 91, f"{said} terminated by {unit['delete_by']}", exit_status)
    else:
        word = "finished" if exit_status == 0 else "failed"
        finish_unit(unit, 92 if exit_status == 0 else 93, f"{said} {word}", exit_status)
    jid = job_id(rec, key)
    with contextlib.suppress(OSError):
        (home() / "aux" / jid).unlink()
        (home() / "tmp" / jid).rmdir()


def exited(pid: int) -> bool:
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def police(rec: Rec, children: dict[str, subprocess.Popen[bytes]], kills: dict[str, Rec]) -> None:
    """qdel and walltime: SIGTERM to the process group, SIGKILL after the kill delay."""
    now, delay = time.time(), env_number("PBS_DOUBLE_KILL_DELAY", 10)
    for key, proc in children.items():
        unit, kill = rec["units"][key], kills.get(key)
        if kill is None:
            if unit["delete_by"]:
                kills[key] = {"why": "delete", "at": now}
            elif rec["walltime"] is not None and now - unit["stime"] >= rec["walltime"]:
                kills[key] = {"why": "walltime", "at": now, "used": int(now - unit["stime"])}
            else:
                continue
            kill_group(proc.pid, signal.SIGTERM)
        elif now - kill["at"] >= delay and not kill.get("hard"):
            kill["hard"] = True
            kill_group(proc.pid, signal.SIGKILL)


def run(seq: int) -> None:
    """The runner of one submission: lives until its job (every subjob) is F."""
    children: dict[str, subprocess.Popen[bytes]] = {}
    kills: dict[str, Rec] = {}
    with locked():  # qsub holds the lock until the record is saved
        pass
    try:
        while rec_path(seq).exists():
            rec = load(seq)
            assert rec is not None
            ready = [k for k, p in children.items() if exited(p.pid)]
            queued = any(u["state"] == "Q" for u in rec["units"].values())
            if ready or rec["hold"] == "s" or (queued and rec["hold"] == "n") or (
                    not children and not is_done(rec)):
                with locked():
                    rec = load(seq)
                    if rec is None:
                        break
                    before = json.dumps(rec)
                    for key in ready:
                        reap(rec, key, children.pop(key), kills.pop(key, None))
                    recs = sweep()
                    if rec["hold"] == "s":
                        release(rec, {r["seq"]: r for r in recs})
                    start_units(rec, children, recs)
                    finalize(rec)
                    if json.dumps(rec) != before:
                        save(rec)
            if is_done(rec) and not children:
                return
            police(rec, children, kills)
            time.sleep(POLL if children else 2 * POLL)
    finally:
        for proc in children.values():
            kill_group(proc.pid, signal.SIGKILL)


# ---------------------------------------------------------------- documents
def ordered(doc: Rec) -> Rec:
    return {**{k: doc[k] for k in ORDER if k in doc}, **{k: v for k, v in doc.items()
                                                        if k not in ORDER}}


def common(rec: Rec) -> Rec:
    h = host()
    doc: Rec = {
        "Job_Name": json_name(rec["name"]), "Job_Owner": f"{rec['user']}@{server()}",
        "queue": rec["queue"], "server": server(), "Checkpoint": "u", "ctime": ftime(rec["ctime"]),
        "Error_Path": f"{h}:{rec['err']}", "Hold_Types": rec["hold"], "Join_Path": rec["join"],
        "Keep_Files": "n", "Mail_Points": "a", "mtime": ftime(rec["mtime"]),
        "Output_Path": f"{h}:{rec['out']}", "Priority": 0, "qtime": ftime(rec["qtime"]),
        "Rerunable": rec["rerun"], "Resource_List": rec["resources"],
        "Variable_List": rec["var_list"], "Submit_arguments": rec["submit_args"],
        "project": "_pbs_project_default", "Submit_Host": h,
    }
    if rec["account"]:
        doc["Account_Name"] = rec["account"]
    if rec["depend"]:
        doc["depend"] = ",".join(kind + "".join(f":{s}.{server()}@{server()}" for s in seqs)
                                 for kind, seqs in rec["depend"])
    if rec["etime"]:
        doc["etime"] = ftime(rec["etime"])
    return doc


def ran_fields(rec: Rec, unit: Rec) -> Rec:
    """What a job that ran and ended shows (the finished_* samples)."""
    doc: Rec = {"stime": ftime(unit["stime"]), "obittime": ftime(unit["obittime"]),
                "session_id": unit["pid"], "jobdir": rec["jobdir"], "Stageout_status": 1,
                "Exit_status": unit["exit"]}
    if unit["used"]:
        doc["resources_used"] = unit["used"]
    return doc


def held(rec: Rec) -> tuple[str, int]:
    return "H", 22 if rec["hold"] == "s" else 20


def render_plain(rec: Rec) -> Rec:
    unit, doc = rec["units"][""], common(rec)
    state, substate = unit["state"], unit["substate"]
    if state == "Q" and rec["hold"] != "n":
        state, substate = held(rec)
    doc.update(job_state=state, substate=substate)
    if unit["comment"]:
        doc["comment"] = unit["comment"]
    if unit["stime"] is not None:
        doc.update(exec_host=unit["exec_host"], exec_vnode=unit["exec_vnode"],
                   stime=ftime(unit["stime"]), run_count=unit["run_count"])
        if state == "F":
            doc.update(ran_fields(rec, unit))
    if state == "F":
        doc["history_timestamp"] = int(unit["obittime"])
    return ordered(doc)


def render_parent(rec: Rec) -> Rec:
    parent, units, doc = rec["parent"], rec["units"], common(rec)
    if parent["state"] == "F":
        state, substate = "F", parent["substate"]
    elif rec["hold"] != "n":
        state, substate = held(rec)
    else:
        state, substate = ("B", 70) if parent["stime"] else ("Q", 10)
    doc.update(job_state=state, substate=substate)
    if parent["stime"]:
        doc["stime"] = ftime(parent["stime"])
    if parent["comment"]:
        doc["comment"] = parent["comment"]
    if any(u["state"] == "F" and u["stime"] for u in units.values()):
        doc.update(Stageout_status=1, Exit_status=0)
    queued = sorted(int(k) for k, u in units.items() if u["state"] == "Q")
    running = sum(u["state"] == "R" for u in units.values())
    expired = sum(u["state"] == "F" for u in units.values())
    if state == "F":
        queued, running, expired = [], 0, 0
        if parent["stime"]:
            doc["obittime"] = ftime(parent["obittime"])
        doc["history_timestamp"] = int(parent["obittime"])
    step = rec["array"][1] - rec["array"][0]
    doc.update(array="True", array_indices_submitted=rec["array_spec"],
               array_state_count=f"Queued:{len(queued)} Running:{running} Exiting:0 "
                                 f"Expired:{expired}",
               array_indices_remaining=ranges(queued, step))
    if rec["max_run"]:
        doc["max_run_subjobs"] = rec["max_run"]
    return ordered(doc)


def render_subjob(rec: Rec, key: str) -> Rec:
    unit, parent_doc, h = rec["units"][key], render_parent(rec), host()
    ended = "F" if rec["parent"]["state"] == "F" else "X"
    if unit["stime"] is None:  # never ran: the real server shows a copy of the parent
        doc = {k: v for k, v in parent_doc.items() if k not in PARENT_ONLY}
        if unit["state"] == "F":
            doc.update(job_state=ended, substate=unit["substate"],
                       history_timestamp=int(unit["obittime"]))
            if unit["comment"]:
                doc["comment"] = unit["comment"]
        else:
            doc.update(job_state="Q", substate=10)
        return ordered(doc)
    doc = {k: parent_doc[k] for k in (
        "Job_Name", "Job_Owner", "queue", "server", "Account_Name", "ctime", "Join_Path",
        "Keep_Files", "Mail_Points", "mtime", "Priority", "qtime", "Rerunable", "Resource_List",
        "Variable_List", "etime", "project", "Submit_Host") if k in parent_doc}
    doc.update(Error_Path=f"{h}:{expand(rec['err'], key)}",
               Output_Path=f"{h}:{expand(rec['out'], key)}", exec_host=unit["exec_host"],
               exec_vnode=unit["exec_vnode"], comment=unit["comment"],
               run_count=unit["run_count"], array_id=job_id(rec), array_index=int(key))
    if unit["state"] == "R":
        doc.update(job_state="R", substate=41)
    else:
        doc.update(ran_fields(rec, unit))
        doc.update(job_state=ended, substate=unit["substate"],
                   history_timestamp=int(unit["obittime"]))
    return ordered(doc)


def documents(rec: Rec, key: str | None, subjobs: bool) -> list[tuple[str, Rec]]:
    if rec["array"] is None:
        return [(job_id(rec), render_plain(rec))]
    if key is not None:
        return [(job_id(rec, key), render_subjob(rec, key))]
    docs = [(job_id(rec), render_parent(rec))]
    if subjobs:
        docs += [(job_id(rec, k), render_subjob(rec, k)) for k in rec["units"]]
    return docs


def header() -> Rec:
    return {"timestamp": int(time.time()), "pbs_version": VERSION, "pbs_server": server()}


def server_document(recs: list[Rec]) -> Rec:
    states = [render_plain(r)["job_state"] if r["array"] is None else render_parent(r)["job_state"]
              for r in recs]
    running = [r for r in recs for u in r["units"].values() if u["state"] == "R"]
    info: Rec = {
        "server_state": "Active", "server_host": host(), "scheduling": "True",
        "total_jobs": sum(s != "F" for s in states),
        "state_count": f"Transit:0 Queued:{states.count('Q')} Held:{states.count('H')} "
                       f"Waiting:0 Running:{states.count('R')} Exiting:0 "
                       f"Begun:{states.count('B')} ",
        "default_queue": "workq", "query_other_jobs": "True",
        "resources_default": {"ncpus": 1}, "default_chunk": {"ncpus": 1},
        "resources_assigned": {"ncpus": sum(int(r["resources"]["ncpus"]) for r in running),
                               "nodect": sum(int(r["resources"]["nodect"]) for r in running)},
        "scheduler_iteration": 600, "flatuid": "True",
        "max_array_size": int(env_number("PBS_DOUBLE_MAX_ARRAY_SIZE", 10000)),
        "pbs_version": VERSION, "job_history_enable": "True",
    }
    if os.environ.get("PBS_DOUBLE_MAX_QUEUED"):
        info["max_queued"] = f"[u:PBS_GENERIC={int(os.environ['PBS_DOUBLE_MAX_QUEUED'])}]"
    return {**header(), "Server": {server(): info}}


def table(entries: list[tuple[str, Rec]]) -> str:
    def cut(value: Any, width: int) -> str:
        text = str(value)
        return text if len(text) <= width else text[:width - 1] + "*"

    lines = ["Job id            Name             User              Time Use S Queue",
             "----------------  ---------------- ----------------  -------- - -----"]
    for jid, doc in entries:
        cput = doc.get("resources_used", {}).get("cput", "0")
        lines.append(f"{cut(jid, 16):<16}  {cut(doc['Job_Name'], 16):<16} "
                     f"{cut(doc['Job_Owner'].split('@')[0], 16):<16}  {cput:>8} "
                     f"{doc['job_state']} {cut(doc['queue'], 16):<16}")
    return "\n".join(lines) + "\n"


def qstat(argv: list[str]) -> int:
    flags: set[str] = set()
    form, ids, i = None, [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-") and len(arg) > 1:
            for j, letter in enumerate(arg[1:], 1):
                if letter == "F":
                    form = arg[j + 1:] or (argv[i + 1] if i + 1 < len(argv) else "")
                    i += 0 if arg[j + 1:] else 1
                    break
                if letter not in "fxtB":
                    raise Refused(f"qstat: invalid option -- '{letter}'\n{USAGE['qstat']}", 2)
                flags.add(letter)
        else:
            ids.append(arg)
        i += 1
    if (form is not None and form != "json") or (form and "f" not in flags):
        raise Refused(f"qstat: double: only -f -F json is emulated\n{USAGE['qstat']}", 2)
    if "f" in flags and form != "json":
        raise Refused("qstat: double: the text form of qstat -f is not emulated; use -F json", 2)
    if not home().joinpath("jobs").exists():
        home().joinpath("jobs").mkdir(parents=True)
    with locked():
        recs = sweep()
    if "B" in flags:
        if form != "json":
            raise Refused("qstat: double: only qstat -B -f -F json is emulated", 2)
        print(json.dumps(server_document(recs), indent=4, ensure_ascii=False))
        return 0
    by_seq = {r["seq"]: r for r in recs}
    entries: list[tuple[str, Rec]] = []
    code = 0
    for text in ids:
        hit = lookup(text, by_seq)
        if hit is None:
            print(f"qstat: Unknown Job Id {canonical(text)}", file=sys.stderr)
            code = 153  # double's choice: any unknown id makes it 153, the others are printed
            continue
        docs = documents(hit[0], hit[1], "t" in flags)
        if "x" not in flags and docs[0][1]["job_state"] == "F":
            print(f"qstat: {canonical(text)} Job has finished, use -x or -H to obtain historical "
                  "job information", file=sys.stderr)
            code = code or 35
            continue
        entries += docs
    if not ids:
        for rec in recs:
            docs = documents(rec, None if rec["array"] is not None else "", "t" in flags)
            entries += [d for d in docs if "x" in flags or d[1]["job_state"] != "F"]
    if form == "json":
        doc = header()
        if entries:
            doc["Jobs"] = dict(entries)
        print(json.dumps(doc, indent=4, ensure_ascii=False))
    elif entries:
        sys.stdout.write(table(entries))
    return code


# ---------------------------------------------------------------- qdel
def delete_unit(unit: Rec, by: str) -> None:
    if unit["state"] == "Q":
        finish_unit(unit, 91, None, None)
    elif unit["state"] == "R" and not unit["delete_by"]:
        unit["delete_by"] = by  # the runner finishes it and escalates to SIGKILL
        if unit["pid"] and proc_start(unit["pid"]) == unit["pid_start"]:
            kill_group(unit["pid"], signal.SIGTERM)


def qdel(argv: list[str]) -> int:
    try:  # -W force|suppress_email=N are accepted: the double deletes the same way
        pairs, argv = getopt.getopt(argv, "W:x")
    except getopt.GetoptError as exc:
        raise Refused(f"qdel: invalid option -- '{exc.opt}'\n{USAGE['qdel']}", 2) from None
    if ("-x", "") in pairs:
        raise Refused("qdel: double: -x (deleting job history) is not emulated", 2)
    if not argv:
        raise Refused(USAGE["qdel"], 2)
    by = f"{user()}@{server()}"
    code = 0
    if not home().joinpath("jobs").exists():
        home().joinpath("jobs").mkdir(parents=True)
    with locked():
        by_seq = {r["seq"]: r for r in sweep()}
        for text in argv:
            hit = lookup(text, by_seq)
            if hit is None:
                print(f"qdel: Unknown Job Id {canonical(text)}", file=sys.stderr)
                code = 153
                continue
            rec, key = hit
            done = is_done(rec) if key in ("", None) else rec["units"][key]["state"] == "F"
            if done:
                print(f"qdel: Job has finished {canonical(text)}", file=sys.stderr)
                code = 35
                continue
            if key is None:
                rec["delete_by"] = by
            for unit in rec["units"].values() if key is None else [rec["units"][key]]:
                delete_unit(unit, by)
            finalize(rec)
            save(rec)
    return code


def main(command: str, argv: list[str]) -> int:
    try:
        return {"qsub": qsub, "qstat": qstat, "qdel": qdel}[command](argv)
    except Refused as exc:
        print(str(exc), file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    if sys.argv[1:2] == ["run"]:
        run(int(sys.argv[2]))
