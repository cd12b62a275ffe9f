"""From a sweep to a model: `candle best` picks the point `candle summary` ranks first,
`candle train --from` trains it on all the data as an ensemble through the supervisor and
writes model.json, and re-running it resumes instead of training again. The quickstart's own
sweep (workflows/nt3_grid_small.yaml) is the run, as in the README."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_candle, write

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quickstart sweep, run once for this module (8 NT3 jobs, ~30 s)."""
    where = tmp_path_factory.mktemp("demo")
    sweep = where / "nt3_grid_small.yaml"
    shutil.copy(ROOT / "workflows" / "nt3_grid_small.yaml", sweep)
    done = run_candle("run", str(sweep))
    assert done.returncode == 0, done.stderr
    return where / "runs" / "nt3-grid-small"


@pytest.fixture(scope="module")
def final_model(demo_run: Path) -> Path:
    out = demo_run.parent.parent / "models" / "nt3"
    done = run_candle("train", "--from", str(demo_run), "--best", "--replicas", "3",
                      "--out", str(out))
    assert done.returncode == 0, done.stderr + done.stdout
    assert f"model: {out / 'model.json'} (3 member(s)" in done.stdout
    return out


def best_of(run_dir: Path) -> dict:  # type: ignore[type-arg]
    done = run_candle("best", str(run_dir), "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_best_is_the_point_the_summary_ranks_first(demo_run: Path) -> None:
    best = best_of(demo_run)
    summary = json.loads(run_candle("summary", str(demo_run), "--format", "json").stdout)
    first = summary[0]
    assert first["best"] and best["point"] == first["point"]
    assert best["params"] == first["params"]
    assert best["mean"] == pytest.approx(first["mean"])
    assert best["n"] == 2  # its two folds
    means = [row["mean"] for row in summary]
    assert best["mean"] == min(means)  # val_loss, minimize
    assert set(best["metrics"]) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    table = run_candle("best", str(demo_run)).stdout
    assert table.startswith(f"best point {best['point']} of {demo_run} (val_loss, minimize)")


# What a finished job keeps (issue 18: at most 5 files): its input, its log, its result,
# the model `candle predict` loads (its final checkpoint state inside it), and its
# TensorBoard events. Checkpoints of the epochs and their state.json are gone.
KEPT_FILES = ["ckpt/model.keras", "log.txt", "params.json", "result.json",
              "tb/events.out.tfevents.candle"]


def test_a_finished_job_keeps_five_files(demo_run: Path) -> None:
    folders = sorted((demo_run / "jobs").iterdir())
    assert len(folders) == 8
    for folder in folders:
        kept = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        assert kept == KEPT_FILES, folder


def test_final_model_card(final_model: Path, demo_run: Path) -> None:
    best = best_of(demo_run)
    card = json.loads((final_model / "model.json").read_text())
    assert card["benchmark"] == "nt3"
    assert card["source"]["run"] == str(demo_run.resolve())
    assert card["source"]["point"] == best["point"]
    assert card["source"]["value"] == pytest.approx(best["mean"])
    for name, value in best["params"].items():
        assert card["params"][name] == value
    assert card["params"]["classes"] == 2  # resolved: the benchmark's defaults are in it
    members = card["members"]
    assert [m["replica"] for m in members] == [0, 1, 2]
    assert len({m["seed"] for m in members}) == 3
    for member in members:
        assert (final_model / member["model"]).is_file()
        job = json.loads((final_model / "jobs" / member["job_id"] / "params.json").read_text())
        assert job["fold"] is None and job["folds"] is None  # all the data: no held-out fold
    assert card["metrics"]["val_loss"]["n"] == 3
    digests = {m["data_digest"] for m in members}
    assert len(digests) == 1 and card["data_digest"] in digests
    assert len(card["data_digest"]) == 64
    assert card["candle_version"]


def test_training_it_again_resumes(final_model: Path, demo_run: Path) -> None:
    before = json.loads((final_model / "model.json").read_text())
    again = run_candle("train", "--from", str(demo_run), "--best", "--replicas", "3",
                       "--out", str(final_model))
    assert again.returncode == 0, again.stderr
    assert "0 done, 0 failed, 3 already done" in again.stdout
    after = json.loads((final_model / "model.json").read_text())
    assert after["members"] == before["members"]


def test_a_smaller_ensemble_keeps_only_its_members(final_model: Path, demo_run: Path,
                                                   tmp_path: Path) -> None:
    """Replica k is the same job in an ensemble of 3 or 2: nothing trains, and the card and
    members/ hold the 2 (the third's link is removed, its job stays in jobs/)."""
    smaller = tmp_path / "nt3-2"
    shutil.copytree(final_model, smaller, symlinks=True)
    (smaller / "sweep.yaml").write_text((smaller / "sweep.yaml").read_text().replace(
        "name: nt3", "name: nt3-2"))
    done = run_candle("train", "--from", str(demo_run), "--best", "--replicas", "2",
                      "--out", str(smaller))
    assert done.returncode == 0, done.stderr
    assert "0 done, 0 failed, 2 already done" in done.stdout
    card = json.loads((smaller / "model.json").read_text())
    assert [m["replica"] for m in card["members"]] == [0, 1]
    assert sorted(p.name for p in (smaller / "members").iterdir()) == [
        "replica-0.keras", "replica-1.keras"]


def test_a_named_point_as_a_single_model(demo_run: Path) -> None:
    best = best_of(demo_run)
    other = (best["point"] + 1) % 4
    out = demo_run.parent.parent / "models" / "single"
    done = run_candle("train", "--from", str(demo_run), "--point", str(other), "--out",
                      str(out))
    assert done.returncode == 0, done.stderr
    card = json.loads((out / "model.json").read_text())
    assert card["source"]["point"] == other and len(card["members"]) == 1
    assert card["uq"] is None


@pytest.mark.parametrize(("args", "message"), [
    (["--best"], "--best and --point choose a point of a run: add --from RUN_DIR"),
    (["--from", "{run}"], "--from needs exactly one of --best or --point N"),
    (["--from", "{run}", "--best", "--point", "1"], "--from needs exactly one of --best"),
    (["--from", "{run}", "--best"], "--from needs --out MODEL_DIR"),
    (["--from", "{run}", "--point", "99", "--out", "{tmp}/m"], "no point 99 in this run"),
    (["--from", "{run}", "--best", "--out", "{tmp}/full"], "--out exists and is not empty"),
    (["nt3", "--from", "{run}", "--best", "--out", "{tmp}/m"], "drop BENCHMARK"),
])
def test_bad_requests_are_one_line(demo_run: Path, tmp_path: Path, args: list[str],
                                   message: str) -> None:
    write(tmp_path / "full" / "notes.txt", "someone else's files\n")
    argv = [a.format(run=demo_run, tmp=tmp_path) for a in args]
    done = run_candle("train", *argv)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "m").exists()


def test_best_needs_a_finished_job(tmp_path: Path) -> None:
    write(tmp_path / "broken.py", """
        def f(params):
            raise RuntimeError("no")
    """)
    sweep = write(tmp_path / "sweep.yaml", """
        name: broken
        benchmark: "broken:f"
        search: {method: grid, space: {x: [1, 2]}}
        retries: 0
    """)
    assert run_candle("run", str(sweep)).returncode == 1
    done = run_candle("best", str(tmp_path / "runs" / "broken"))
    assert done.returncode == 2
    assert "no point has a finished job with val_loss yet" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_predict_with_the_final_model(final_model: Path, tmp_path: Path) -> None:
    """The README's last step: the final ensemble on the held-out synthetic test file. Its
    members agree where the model is sure and disagree where it is not."""
    import csv

    data = tmp_path / "data"
    made = run_candle("data", "synth", "nt3", "--out", str(data), "--set", "features=400",
                      "--set", "samples=800")
    assert made.returncode == 0, made.stderr
    out = tmp_path / "predictions.csv"
    done = run_candle("predict", str(final_model), "--data", str(data / "nt_test2.csv"),
                      "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "3 member model(s)" in done.stdout
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 160  # test_fraction 0.2 of 800 samples
    confidence = sorted(rows, key=lambda r: abs(float(r["prob_1"]) - 0.5))
    quarter = len(rows) // 4
    hard = [float(r["std"]) for r in confidence[:quarter]]
    easy = [float(r["std"]) for r in confidence[-quarter:]]
    assert all(float(r["std"]) >= 0 for r in rows) and max(hard) > 0
    assert sum(hard) / quarter > sum(easy) / quarter  # disagreement where it is unsure
    accuracy = sum(int(r["correct"]) for r in rows) / len(rows)
    assert accuracy > 0.75  # the demo's best point learns the synthetic signal


def test_a_user_models_final_model_is_its_jobs(tmp_path: Path) -> None:
    """A user's training function keeps its own models: the card lists its members (seeds,
    metrics, job directories) and `candle predict` says it predicts with built-ins only."""
    write(tmp_path / "quadratic.py", """
        def f(params):
            return {"val_loss": (params["x"] - 2) ** 2 + 0.001 * params["seed"] % 7}
    """)
    sweep = write(tmp_path / "sweep.yaml", """
        name: quad
        benchmark: "quadratic:f"
        search: {method: grid, space: {x: [1, 2, 3]}}
    """)
    assert run_candle("run", str(sweep)).returncode == 0
    out = tmp_path / "final"
    done = run_candle("train", "--from", str(tmp_path / "runs" / "quad"), "--best",
                      "--replicas", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    card = json.loads((out / "model.json").read_text())
    assert card["source"]["params"] == {"x": 2}
    assert [m["model"] for m in card["members"]] == ["", ""]
    assert all((out / "jobs" / m["job_id"] / "result.json").is_file() for m in card["members"])
    data = write(tmp_path / "new.csv", "1,2\n")
    refused = run_candle("predict", str(out), "--data", str(data), "--out",
                         str(tmp_path / "p.csv"))
    assert refused.returncode == 2
    assert "its members saved no model files" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "p.csv").exists()
