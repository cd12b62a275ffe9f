"""search.seed_from for a grid: a new run seeded from an earlier one does not train a job
whose identical job is done there; it brings that job's result and files over, and trains
only the new points."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from candle.store.reuse import reuse_results
from candle.store.run_store import RunStore
from tests.adaptive.test_seed_from import MODEL, flat, trainings
from tests.conftest import run_candle, write

pytestmark = pytest.mark.slow


def grid(tmp_path: Path, name: str, xs: str, seed_from: str | None = None, *,
         ys: str = "[0.5, 0.9]", marker: Path | None = None) -> Path:
    (tmp_path / "quad.py").write_text(MODEL.read_text())
    seed = f"seed_from: {seed_from}" if seed_from else ""
    space = f"{{x: {xs}, y: {ys}}}" if ys else f"{{x: {xs}}}"
    fixed = "" if ys else ", y: 0.5"
    return write(tmp_path / f"{name}.yaml", f"""
        name: {name}
        benchmark: "quad:train"
        params: {{marker: {marker or tmp_path / "trained.log"}{fixed}}}
        search:
          method: grid
          {seed}
          space: {space}
        resources: {{scheduler: local, max_concurrent: 4}}
        store: runs
    """)


def results(run_dir: Path) -> dict[str, dict[str, object]]:
    return {p.parent.name: json.loads(p.read_text())
            for p in (run_dir / "jobs").glob("*/result.json")}


def test_a_grid_seeded_from_an_earlier_run_trains_only_the_new_points(tmp_path: Path) -> None:
    assert run_candle("run", str(grid(tmp_path, "first", "[0.1, 0.2, 0.3]"))).returncode == 0
    first = tmp_path / "runs" / "first"
    assert len(trainings(tmp_path / "trained.log")) == 6

    sweep = grid(tmp_path, "second", "[0.1, 0.2, 0.3, 0.4]", seed_from="runs/first")
    done = run_candle("run", str(sweep))
    assert done.returncode == 0, done.stderr
    assert f"reused 6 result(s) from {first}" in flat(done.stderr), done.stderr
    trained = trainings(tmp_path / "trained.log")[6:]
    assert sorted((t["x"], t["y"]) for t in trained) == [(0.4, 0.5), (0.4, 0.9)]

    second = tmp_path / "runs" / "second"
    before, after = results(first), results(second)
    assert len(after) == 8 and all(r["status"] == "done" for r in after.values())
    reused = {i: r for i, r in after.items() if "reused_from" in r}
    assert set(reused) == set(before)  # the identical jobs: the same ids in both runs
    assert all(r["reused_from"] == str(first) for r in reused.values())
    for job_id, result in reused.items():
        assert result["metrics"] == before[job_id]["metrics"]
        copied = second / "jobs" / job_id / "ckpt" / "model.txt"
        assert copied.read_text() == (first / "jobs" / job_id / "ckpt" / "model.txt").read_text()
        record = json.loads((second / "jobs" / job_id / "params.json").read_text())
        assert record["id"] == job_id
        log = second / "jobs" / job_id / "log.txt"  # appended to by a later attempt
        assert log.read_bytes() == (first / "jobs" / job_id / "log.txt").read_bytes()
        assert log.stat().st_nlink == 1  # a copy, never a link
        assert not (second / "jobs" / job_id / "running.json").exists()
    summary = json.loads(run_candle("summary", str(second), "--format", "json").stdout)
    assert len(summary) == 8 and all(row["mean"] is not None for row in summary)

    again = run_candle("run", str(sweep))
    assert again.returncode == 0, again.stderr
    assert "reused 0 result(s)" in flat(again.stderr)
    assert len(trainings(tmp_path / "trained.log")) == 8  # nothing trained again


def test_only_done_results_are_reused(tmp_path: Path) -> None:
    assert run_candle("run", str(grid(tmp_path, "first", "[0.1, 0.2]"))).returncode == 0
    first = RunStore(tmp_path / "runs" / "first")
    failed, *_ = [job.id for job in first.jobs()]
    first.write_result(failed, {"status": "failed", "error": "boom"})
    sweep = grid(tmp_path, "second", "[0.1, 0.2]", seed_from="runs/first")
    done = run_candle("run", str(sweep))
    assert done.returncode == 0, done.stderr
    assert f"reused 3 result(s) from {first.root}" in flat(done.stderr)
    assert len(trainings(tmp_path / "trained.log")) == 4 + 1  # the failed one trains
    second = RunStore(tmp_path / "runs" / "second")
    assert "reused_from" not in (second.result(failed) or {})
    assert reuse_results(second, first) == 0  # all done here now


def test_a_cluster_run_submits_only_what_it_cannot_reuse(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """On a cluster the login node reuses before it submits: the array holds the new jobs
    only (sbatch is a stand-in here; the same path submits to a live Slurm)."""
    from candle.schedulers.batch.submit import plan_and_submit
    from candle.schedulers.slurm import backend
    from candle.spec import load_sweep
    from candle.supervisor.run import run_meta

    assert run_candle("run", str(grid(tmp_path, "first", "[0.1, 0.2, 0.3]"))).returncode == 0
    submitted: list[str] = []

    def submit(script: Path, tag: str, after: str = "", ok: bool = False) -> str:
        submitted.append(str(script))
        return str(1000 + len(submitted))

    monkeypatch.setattr(backend, "submit", submit)
    monkeypatch.setattr(backend, "status", lambda ids: {})
    monkeypatch.setattr(backend, "cluster_limits", lambda: (1001, 10000))
    monkeypatch.setattr(backend, "tagged_jobs", lambda: {})
    site = Path(__file__).parents[2] / "configs" / "local-slurm.yaml"
    text = grid(tmp_path, "second", "[0.1, 0.2, 0.3, 0.4]", seed_from="runs/first").read_text()
    sweep_file = write(tmp_path / "second.yaml", text.replace(
        "resources: {scheduler: local, max_concurrent: 4}",
        f"resources: {{scheduler: slurm, mode: array, walltime: '00:10:00', site: {site}}}"))
    sweep = load_sweep(sweep_file)
    notices: list[str] = []
    _, new, _ = plan_and_submit(sweep, run_meta(sweep), dry_run=False,
                                on_notice=notices.append)
    assert notices == [f"reused 6 result(s) from {tmp_path / 'runs' / 'first'}"]
    store = RunStore(sweep.run_dir)
    chunk = [line for r in new
             for line in (store.root / "slurm" / str(r.chunk)).read_text().split()]
    assert sorted(chunk) == sorted(j.id for j in store.jobs() if j.params["x"] == 0.4)
    assert len(submitted) == 1


def test_a_user_model_in_another_folder_is_another_model(tmp_path: Path) -> None:
    assert run_candle("run", str(grid(tmp_path, "first", "[0.1, 0.2]"))).returncode == 0
    first = tmp_path / "runs" / "first"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    sweep = grid(elsewhere, "second", "[0.1, 0.2]", seed_from=str(first),
                 marker=tmp_path / "trained.log")
    done = run_candle("run", str(sweep))
    assert done.returncode == 0, done.stderr
    assert "its user model lives in another folder: nothing reused" in flat(done.stderr), \
        done.stderr
    assert len(trainings(tmp_path / "trained.log")) == 4 + 4  # all trained again
    assert not any("reused_from" in r for r in results(elsewhere / "runs" / "second").values())


def test_a_reused_jobs_tensorboard_session_holds_this_runs_point(tmp_path: Path) -> None:
    from tensorboard.plugins.hparams import metadata

    from candle.store.tensorboard import TB_DIR
    from tests.store.test_tensorboard import accumulate, hparams_content, session_values

    def session(job_dir: Path) -> dict[str, object]:
        start = metadata.parse_session_start_info_plugin_data(
            hparams_content(accumulate(job_dir / TB_DIR))[metadata.SESSION_START_INFO_TAG])
        return session_values(start)

    # y fixed first, searched then: the same jobs (ids), other point params.
    assert run_candle("run", str(grid(tmp_path, "first", "[0.1, 0.2]", ys=""))).returncode == 0
    sweep = grid(tmp_path, "second", "[0.1, 0.2]", seed_from="runs/first", ys="[0.5]")
    done = run_candle("run", str(sweep))
    assert done.returncode == 0, done.stderr
    assert "reused 2 result(s)" in flat(done.stderr), done.stderr
    first, second = tmp_path / "runs" / "first", RunStore(tmp_path / "runs" / "second")
    for job in second.jobs():
        assert job.point_params == {"x": job.params["x"], "y": 0.5}
        assert session(second.job_dir(job.id)) == job.point_params
        assert session(first / "jobs" / job.id) == {"x": job.params["x"]}  # untouched


def test_link_or_copy_links_else_copies_and_leaves_no_temp(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from candle.store.atomic import link_or_copy

    src = tmp_path / "src.bin"
    src.write_bytes(b"model")
    dest = tmp_path / "out" / "dest.bin"
    link_or_copy(src, dest)
    assert dest.read_bytes() == b"model" and os.path.samefile(src, dest)

    def no_link(a: object, b: object) -> None:
        raise OSError("cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    other = tmp_path / "other.bin"
    other.write_bytes(b"other")
    link_or_copy(other, dest)  # over the old file
    assert dest.read_bytes() == b"other" and not os.path.samefile(other, dest)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["dest.bin"]
    with pytest.raises(FileNotFoundError):
        link_or_copy(tmp_path / "missing", dest)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["dest.bin"]
