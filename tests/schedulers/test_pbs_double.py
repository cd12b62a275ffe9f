"""The PBS DOUBLE (tests/schedulers/pbs_double: qsub, qstat, qdel; NOT OpenPBS) against the
REAL OpenPBS 23.06.06 outputs in tests/schedulers/pbs_samples/ (copied from
/work/shared/pbs-samples/): real subprocess calls to the three executables with tiny bash
scripts, and a fidelity test that puts the double in each sampled situation and compares its
document's keys, value types and constant values with the real one."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

DOUBLE = Path(__file__).resolve().parent / "pbs_double"
SAMPLES = Path(__file__).resolve().parent / "pbs_samples"
SERVER = "pbsdouble"
OWNER = f"pbsuser@{SERVER}"
TIME_RE = re.compile(r"[A-Z][a-z]{2} [A-Z][a-z]{2} \d{2} \d{2}:\d{2}:\d{2} \d{4}")


@dataclass
class Pbs:
    """Runs the double's commands in a scratch working directory."""

    work: Path
    home: Path
    state: Path

    def run(self, *cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(cmd), cwd=self.work, capture_output=True, text=True,
                              timeout=30, env=None if env is None else {**os.environ, **env})

    def script(self, name: str, body: str) -> str:
        (self.work / name).write_text("#!/bin/bash\n" + body)
        return name

    def qsub(self, *args: str) -> str:
        proc = self.run("qsub", *args)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def jobs(self, *args: str) -> dict[str, Any]:
        proc = self.run("qstat", "-f", "-F", "json", *args)
        assert proc.returncode == 0, proc.stderr
        jobs: dict[str, Any] = json.loads(proc.stdout).get("Jobs", {})
        return jobs

    def job(self, jid: str) -> dict[str, Any]:
        return dict(self.jobs("-x", jid)[jid])

    def wait(self, jid: str, state: str = "F", timeout: float = 20) -> dict[str, Any]:
        doc: dict[str, Any] = until(
            lambda: (seen := self.job(jid))["job_state"] == state and seen, timeout)
        return doc


def until(check: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s")


@pytest.fixture
def pbs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pbs]:
    double = Pbs(tmp_path / "work", tmp_path / "user-home", tmp_path / "pbs-state")
    double.work.mkdir()
    double.home.mkdir()
    # python3 of this venv right after the double: quicker than a pyenv shim.
    path = os.pathsep.join([str(DOUBLE), str(Path(sys.executable).parent), os.environ["PATH"]])
    env = {"PATH": path, "PBS_DOUBLE_HOME": str(double.state), "HOME": str(double.home),
           "USER": "pbsuser", "LOGNAME": "pbsuser", "LANG": "C.UTF-8", "SHELL": "/bin/bash",
           "MAIL": "/var/mail/pbsuser", "PBS_DOUBLE_KILL_DELAY": "1", "PBS_DOUBLE_NCPUS": "16"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("PBS_DOUBLE_SERVER", "PBS_DOUBLE_MAX_QUEUED", "PBS_DOUBLE_MAX_ARRAY_SIZE"):
        monkeypatch.delenv(key, raising=False)
    yield double
    live = double.jobs()  # leave no runner behind: delete what is not finished
    if live:
        double.run("qdel", *live)
        until(lambda: not double.jobs(), 10)


def test_qsub_prints_ids_like_the_real_server(pbs: Pbs) -> None:
    real = (SAMPLES / "qsub_stdout.txt").read_text()
    assert re.search(r"^qsub stdout: 12\.vm$", real, re.M)
    assert re.search(r"^qsub array stdout: 16\[\]\.vm$", real, re.M)
    script = pbs.script("t.sh", "true\n")
    plain = pbs.qsub("-h", script)
    array = pbs.qsub("-h", "-J", "0-3", script)
    assert re.fullmatch(rf"\d+\.{SERVER}", plain)
    assert re.fullmatch(rf"\d+\[\]\.{SERVER}", array)
    assert int(array.split("[")[0]) == int(plain.split(".")[0]) + 1
    proc = pbs.run("qsub", "-h", script, env={"PBS_DOUBLE_SERVER": "vm"})
    assert re.fullmatch(r"\d+\.vm\n", proc.stdout)
    pbs.run("qdel", proc.stdout.strip(), env={"PBS_DOUBLE_SERVER": "vm"})


def test_concurrent_qsubs_get_distinct_ids(pbs: Pbs) -> None:
    script = pbs.script("t.sh", "true\n")
    procs = [subprocess.Popen(["qsub", "-h", script], cwd=pbs.work, stdout=subprocess.PIPE,
                              text=True) for _ in range(6)]
    ids = [p.communicate(timeout=30)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(ids)) == 6


def test_a_job_runs_in_home_with_the_pbs_environment(pbs: Pbs) -> None:
    script = pbs.script("job.sh", """\
#PBS -N runs
#PBS -l select=2:ncpus=1:mpiprocs=2+1:ncpus=4
seen="$PBS_O_WORKDIR/seen.txt"
echo "cwd=$(pwd)" > "$seen"
echo "jobid=$PBS_JOBID name=$PBS_JOBNAME env=$PBS_ENVIRONMENT seed=$SEED" >> "$seen"
echo "ranks=$(wc -l < "$PBS_NODEFILE") hosts=$(sort -u "$PBS_NODEFILE" | wc -l)" >> "$seen"
echo out-line
echo err-line >&2
""")
    jid = pbs.qsub("-v", "SEED=42", script)
    doc = pbs.wait(jid)
    assert (doc["substate"], doc["Exit_status"]) == (92, 0)
    assert doc["comment"].endswith("and finished")
    assert doc["Resource_List"]["ncpus"] == 6 and doc["Resource_List"]["nodect"] == 3
    assert doc["Variable_List"]["SEED"] == "42"
    assert doc["Variable_List"]["PBS_O_WORKDIR"] == str(pbs.work)
    seen = (pbs.work / "seen.txt").read_text().splitlines()
    assert seen[0] == f"cwd={pbs.home}"  # like PBS: the job starts in $HOME, not the qsub cwd
    assert seen[1] == f"jobid={jid} name=runs env=PBS_BATCH seed=42"
    assert seen[2] == "ranks=5 hosts=1"  # 2 chunks x mpiprocs 2, + 1 chunk (default mpiprocs 1)
    seq = jid.split(".")[0]
    assert (pbs.work / f"runs.o{seq}").read_text() == "out-line\n"
    assert (pbs.work / f"runs.e{seq}").read_text() == "err-line\n"
    assert doc["Output_Path"].endswith(f":{pbs.work}/runs.o{seq}")


def test_exit_3_is_substate_93(pbs: Pbs) -> None:
    doc = pbs.wait(pbs.qsub(pbs.script("f.sh", "exit 3\n")))
    assert (doc["job_state"], doc["substate"], doc["Exit_status"]) == ("F", 93, 3)
    assert doc["comment"].endswith("and failed")


def test_walltime_kills_with_minus_29_and_the_stderr_line(pbs: Pbs) -> None:
    jid = pbs.qsub("-N", "wt", "-l", "walltime=00:00:02", pbs.script("w.sh", "sleep 30\n"))
    started = time.monotonic()
    doc = pbs.wait(jid)
    assert time.monotonic() - started < 8
    assert (doc["substate"], doc["Exit_status"]) == (93, -29)
    assert doc["comment"].endswith("and exceeded resource walltime")
    real = (SAMPLES / "walltime_job.stderr.txt").read_text()
    assert re.fullmatch(r"=>> PBS: job killed: walltime \d+ exceeded limit \d+\n", real)
    err = (pbs.work / f"wt.e{jid.split('.')[0]}").read_text()
    assert re.fullmatch(r"=>> PBS: job killed: walltime [23] exceeded limit 2\n", err)


def test_qdel_running_held_unknown_finished(pbs: Pbs) -> None:
    running = pbs.qsub(pbs.script("s.sh", "sleep 30\n"))
    held = pbs.qsub("-h", "s.sh")
    pbs.wait(running, "R")
    assert pbs.job(held)["job_state"] == "H"
    assert pbs.run("qdel", running).returncode == 0
    assert pbs.run("qdel", held).returncode == 0
    doc = pbs.wait(running)
    assert (doc["substate"], doc["Exit_status"]) == (91, 271)
    assert doc["comment"].endswith(f"and terminated by {OWNER}")
    doc = pbs.wait(held)
    assert doc["substate"] == 91 and "Exit_status" not in doc and doc["Hold_Types"] == "u"
    real = (SAMPLES / "qdel_exit_codes.txt").read_text()
    assert "qdel unknown rc=153" in real and "qdel finished rc=35" in real
    proc = pbs.run("qdel", f"99999.{SERVER}")
    assert (proc.returncode, proc.stderr) == (153, f"qdel: Unknown Job Id 99999.{SERVER}\n")
    proc = pbs.run("qdel", running)
    assert (proc.returncode, proc.stderr) == (35, f"qdel: Job has finished {running}\n")


def test_qstat_unknown_and_finished(pbs: Pbs) -> None:
    real = json.loads((SAMPLES / "unknown_job.json").read_text())
    assert (SAMPLES / "unknown_job.stderr.txt").read_text().endswith("rc=153\n")
    proc = pbs.run("qstat", "-f", "-F", "json", f"99999.{SERVER}")
    assert proc.returncode == 153
    assert proc.stderr == f"qstat: Unknown Job Id 99999.{SERVER}\n"
    doc = json.loads(proc.stdout)
    assert doc.keys() == real.keys() and doc["pbs_version"] == "23.06.06"
    assert isinstance(doc["timestamp"], int) and doc["pbs_server"] == SERVER
    done = pbs.qsub(pbs.script("t.sh", "true\n"))
    pbs.wait(done)
    proc = pbs.run("qstat", "-f", "-F", "json", done)
    assert proc.returncode == 35
    assert proc.stderr == (f"qstat: {done} Job has finished, use -x or -H to obtain "
                           "historical job information\n")
    proc = pbs.run("qstat", "-xf", "-F", "json", done, "424242")  # the known one still printed
    assert proc.returncode == 153 and list(json.loads(proc.stdout)["Jobs"]) == [done]


def test_qstat_table_like_the_real_one(pbs: Pbs) -> None:
    real = (SAMPLES / "qstat_x_table.txt").read_text().splitlines()
    held = pbs.qsub("-h", "-N", "held_job", pbs.script("t.sh", "true\n"))
    lines = pbs.run("qstat").stdout.splitlines()
    assert lines[:2] == real[:2]
    assert re.fullmatch(rf"{re.escape(held)}\s+held_job\s+pbsuser\s+0 H workq\s+", lines[2])
    assert len(lines[2]) == len(real[2])


def test_array_with_a_failing_subjob(pbs: Pbs) -> None:
    script = pbs.script("arr.sh", 'echo "index $PBS_ARRAY_INDEX of $PBS_ARRAY_ID"\n'
                                  "exit $(( PBS_ARRAY_INDEX == 2 ? 7 : 0 ))\n")
    jid = pbs.qsub("-N", "array_job", "-J", "0-3", script)
    parent = pbs.wait(jid)
    seq = jid.split("[")[0]
    assert (parent["substate"], parent["Exit_status"]) == (93, 0)
    assert re.fullmatch(r"Job Array Began at .* and failed", parent["comment"])
    assert parent["array"] == "True" and parent["array_indices_submitted"] == "0-3"
    assert parent["array_state_count"] == "Queued:0 Running:0 Exiting:0 Expired:0"
    assert parent["array_indices_remaining"] == "-"
    assert parent["Output_Path"].endswith(f"array_job.o{seq}.^array_index^")
    jobs = pbs.jobs("-x", "-t", jid)
    assert list(jobs) == [jid] + [f"{seq}[{i}].{SERVER}" for i in range(4)]
    for i in range(4):
        sub = jobs[f"{seq}[{i}].{SERVER}"]
        assert (sub["array_id"], sub["array_index"], sub["job_state"]) == (jid, i, "F")
        assert (sub["substate"], sub["Exit_status"]) == ((93, 7) if i == 2 else (92, 0))
        assert sub["Output_Path"].endswith(f"array_job.o{seq}.{i}")
        out = (pbs.work / f"array_job.o{seq}.{i}").read_text()
        assert out == f"index {i} of {jid}\n"


def test_max_run_subjobs_runs_one_at_a_time(pbs: Pbs) -> None:
    script = pbs.script("one.sh", """\
mkdir "$PBS_O_WORKDIR/lock" || echo overlap >> "$PBS_O_WORKDIR/bad"
sleep 0.5
rmdir "$PBS_O_WORKDIR/lock"
""")
    jid = pbs.qsub("-J", "0-3", "-W", "max_run_subjobs=1", script)
    most = 0

    def finished() -> bool:
        nonlocal most
        jobs = pbs.jobs("-x", "-t", jid)
        most = max(most, sum(doc["job_state"] == "R" for doc in jobs.values()))
        return bool(jobs[jid]["job_state"] == "F")

    until(finished)
    assert most == 1
    assert not (pbs.work / "bad").exists()
    assert pbs.job(jid)["max_run_subjobs"] == 1


def test_dependencies_afterany_waits_and_afterok_deletes(pbs: Pbs) -> None:
    first = pbs.qsub(pbs.script("a.sh", 'sleep 1.5; touch "$PBS_O_WORKDIR/a_done"; exit 1\n'))
    after = pbs.qsub("-W", f"depend=afterany:{first}",
                     pbs.script("b.sh", 'test -e "$PBS_O_WORKDIR/a_done" && echo yes\n'))
    doomed = pbs.qsub("-W", f"depend=afterok:{first}", pbs.script("c.sh", "true\n"))
    pbs.wait(first, "R")
    waiting = pbs.job(after)
    assert (waiting["job_state"], waiting["Hold_Types"], waiting["substate"]) == ("H", "s", 22)
    assert waiting["depend"] == f"afterany:{first}@{SERVER}"
    doc = pbs.wait(after)
    assert (doc["substate"], doc["Exit_status"]) == (92, 0)
    assert (pbs.work / f"b.sh.o{after.split('.')[0]}").read_text() == "yes\n"
    doc = pbs.wait(doomed)
    assert doc["substate"] == 91 and "Exit_status" not in doc
    assert doc["comment"] == f"Job deleted as result of dependency on job {first}"


def test_qsub_directives_options_and_refusals(pbs: Pbs) -> None:
    script = pbs.script("d.sh", """\
#PBS -N fromscript
#PBS -l walltime=30:00:00
#PBS -v A=1
echo body
#PBS -q ignored_after_the_first_command
""")
    jid = pbs.qsub("-h", "-N", "42", "-v", "B=2", "-l", "select=1:ncpus=2,place=scatter", script)
    doc = pbs.job(jid)
    assert doc["Job_Name"] == 42  # a numeric name comes back as a JSON number, like PBS
    assert doc["queue"] == "workq"
    assert doc["Resource_List"] == {"ncpus": 2, "nodect": 1, "place": "scatter",
                                    "select": "1:ncpus=2", "walltime": "30:00:00"}
    assert (doc["Variable_List"]["A"], doc["Variable_List"]["B"]) == ("1", "2")
    assert doc["Submit_arguments"] == "-h -N 42 -v B=2 -l select=1:ncpus=2,place=scatter d.sh"
    assert pbs.job(pbs.qsub("-h", "-l", "walltime=90", script))["Resource_List"][
        "walltime"] == "00:01:30"
    refusals = {
        ("-l", "walltime=1:xx"): (166, "qsub: Illegal attribute or resource value "
                                       "Resource_List.walltime"),
        ("-l", "select=0:ncpus=1"): (166, "qsub: Illegal attribute or resource value "
                                         "Resource_List.select"),
        ("-J", "3-3"): (2, "qsub: illegal -J value (double:"),
        ("-Z",): (2, "qsub: invalid option -- 'Z'\nusage: qsub"),
    }
    for args, (code, message) in refusals.items():
        proc = pbs.run("qsub", *args, script)
        assert (proc.returncode, proc.stdout) == (code, ""), args
        assert proc.stderr.startswith(message), proc.stderr


def test_qstat_server_document_and_max_queued(pbs: Pbs) -> None:
    env = {"PBS_DOUBLE_MAX_QUEUED": "2"}
    proc = pbs.run("qstat", "-B", "-f", "-F", "json", env=env)
    doc = json.loads(proc.stdout)
    info = doc["Server"][SERVER]
    assert (doc["pbs_version"], info["server_state"]) == ("23.06.06", "Active")
    assert (info["max_queued"], info["max_array_size"]) == ("[u:PBS_GENERIC=2]", 10000)
    script = pbs.script("t.sh", "true\n")
    for _ in range(2):
        assert pbs.run("qsub", "-h", script, env=env).returncode == 0
    proc = pbs.run("qsub", "-h", script, env=env)
    assert (proc.returncode, proc.stderr) == (38, "qsub: would exceed complex's per-user limit\n")


def test_a_dead_runner_does_not_leave_the_job_running(pbs: Pbs) -> None:
    jid = pbs.qsub(pbs.script("s.sh", "sleep 30\n"))
    pbs.wait(jid, "R")
    # The double's own record says which runner and which bash it started.
    record = json.loads((pbs.state / "jobs" / f"{jid.split('.')[0]}.json").read_text())
    os.kill(record["runner"][0], signal.SIGKILL)
    doc = pbs.wait(jid)
    assert doc["comment"].startswith("double: job lost") and doc["Exit_status"] == -1
    pid = record["units"][""]["pid"]
    until(lambda: not Path(f"/proc/{pid}").exists() or
          Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z", 5)


# ---------------------------------------------------------------- fidelity with the samples
# Keys of the real documents the double does not produce, and why.
NOT_EMULATED = {
    "executable": "only `qsub -- command` submissions have it; the double takes scripts",
    "argument_list": "the arguments of a `qsub -- command` submission, likewise",
}
# Values that must be equal, not only of the same type (same request, same situation).
SAME_VALUE = ("job_state", "substate", "Exit_status", "Checkpoint", "Hold_Types", "Join_Path",
              "Keep_Files", "Mail_Points", "Priority", "Rerunable", "Resource_List", "queue",
              "run_count", "Stageout_status", "array", "array_state_count",
              "array_indices_submitted", "array_indices_remaining", "array_index", "project",
              "Job_Name")
TIMES = ("ctime", "mtime", "qtime", "stime", "obittime", "etime")


def shape(comment: str, owner: str) -> str:
    """A comment with its time, host and user@server masked."""
    comment = re.sub(r"[A-Z][a-z]{2} [A-Z][a-z]{2} \d{2} at \d{2}:\d{2}", "<when>", comment)
    return re.sub(r"\(\S+?:ncpus", "(<host>:ncpus", comment.replace(owner, "<owner>"))


def assert_like(real: dict[str, Any], double: dict[str, Any], where: str) -> None:
    missing = set(real) - set(double) - set(NOT_EMULATED)
    assert not missing, f"{where}: the double lacks {missing}"
    for key in real.keys() & double.keys():
        assert type(double[key]) is type(real[key]), f"{where}: {key}"
        if key in SAME_VALUE:
            assert double[key] == real[key], f"{where}: {key}"
        if key in TIMES:
            assert TIME_RE.fullmatch(double[key]), f"{where}: {key}={double[key]}"
    if "resources_used" in real:
        used = double["resources_used"]
        assert {k: type(v) for k, v in used.items()} == {
            k: type(v) for k, v in real["resources_used"].items()}, where
    real_vars = {k for k in real["Variable_List"] if k.startswith("PBS_O_")}
    assert real_vars <= set(double["Variable_List"]), where
    if "comment" in real:
        assert shape(double["comment"], OWNER) == shape(real["comment"], "pbsuser@vm"), where
    for key in ("Output_Path", "Error_Path"):
        assert re.fullmatch(r"[^:/]+:/\S+", double[key]), f"{where}: {key}"
    assert re.fullmatch(r"[^@]+@[^@]+", double["Job_Owner"]), where
    if "exec_host" in real:
        assert re.fullmatch(r"\S+/\d+", double["exec_host"]), where


def test_fidelity_with_every_real_sample(pbs: Pbs) -> None:
    def compare(name: str, double_jobs: dict[str, Any]) -> None:
        real: dict[str, Any] = json.loads((SAMPLES / name).read_text())
        assert real["pbs_version"] == "23.06.06"
        assert len(double_jobs) == len(real["Jobs"]), name
        for (real_id, real_doc), (double_id, double_doc) in zip(
                real["Jobs"].items(), double_jobs.items(), strict=True):
            # same kind of id: "12" / "16[]" / "16[2]" once the sequence numbers are dropped
            assert re.sub(r"^\d+", "", real_id.split(".")[0]) == re.sub(
                r"^\d+", "", double_id.split(".")[0]), name
            if name == "finished_walltime_exceeded.json":  # real: a 5 s limit; 2 s is quicker
                real_doc["Resource_List"]["walltime"] = "00:00:02"
            assert_like(real_doc, double_doc, f"{name} {real_id}")

    def qsub(name: str, walltime: str, body: str, *extra: str) -> str:
        script = pbs.script(f"{name}.sh", body)
        return pbs.qsub("-N", name, "-l", "select=1:ncpus=1", "-l", f"walltime={walltime}",
                        *extra, script)

    def array_at(count: str, *flags: str) -> dict[str, Any]:
        jobs: dict[str, Any] = until(lambda: (seen := pbs.jobs(*flags, array))[array][
            "array_state_count"] == count and seen)
        return jobs

    ok = qsub("ok_job", "00:02:00", "echo hi; exit 0\n")
    failing = qsub("failing_job", "00:02:00", "exit 3\n")
    walltime = qsub("walltime_job", "00:00:02", "sleep 60\n")
    running = qsub("running_job", "00:05:00", "sleep 30\n")
    held = qsub("held_job", "00:02:00", "true\n", "-h")
    # One subjob at a time, as on the real one-cpu host; subjob 2 exits 7.
    array = qsub("array_job", "00:02:00", "sleep 0.8; exit $(( PBS_ARRAY_INDEX == 2 ? 7 : 0 ))\n",
                 "-J", "0-3", "-W", "max_run_subjobs=1")
    compare("queued_held.json", pbs.jobs(held))
    compare("running.json", {running: pbs.wait(running, "R")})
    compare("array_parent_running.json", array_at("Queued:3 Running:1 Exiting:0 Expired:0"))
    compare("array_subjobs_running.json",
            array_at("Queued:2 Running:1 Exiting:0 Expired:1", "-t"))
    pbs.run("qdel", running, held)
    for name, jid in (("finished_deleted_while_running.json", running),
                      ("finished_deleted_while_held.json", held), ("finished_ok.json", ok),
                      ("finished_exit3.json", failing),
                      ("finished_walltime_exceeded.json", walltime)):
        compare(name, {jid: pbs.wait(jid)})
    pbs.wait(array)
    compare("array_finished_with_subjobs.json", pbs.jobs("-x", "-t", array))
