"""`candle summary` and `candle report` of a population-based training run: one row per
member (best first, lineage depth), the best member's schedule, and two plots (the
population's score over epochs with its exploits; the best member's schedule).

The run is a real `candle run` of a user model that trains a simulated loss in segments:
its state a JSON file in its job_dir, loaded from ``init_from``, at ``start_epoch``
(~3 s). The lineage-only tests feed hand-written records."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest

from candle.adaptive.pbt import PbtConfig, read_lineage
from candle.reporting import page, plots
from candle.reporting.pbt import FAILED, FINISHED, RUNNING, summarise_lineage
from candle.store import RunStore
from tests.conftest import run_candle, write
from tests.reporting.test_report import assert_images_sound, embedded_images

EPOCHS = 6

# The loss shrinks by exp(-lr) an epoch (lr in [0.001, 1]: the larger the better), from
# the state of the checkpoint it is given; every epoch saved, then reported.
MODEL = '''
import json, math
from pathlib import Path

import candle


def f(params):
    job_dir = Path(params["job_dir"])
    loss = 1.0
    if params.get("init_from"):
        loss = json.loads((Path(params["init_from"]) / "state.json").read_text())["loss"]
    for epoch in range(int(params.get("start_epoch") or 0) + 1, int(params["epochs"]) + 1):
        loss *= math.exp(-float(params["lr"]))
        (job_dir / "state.json").write_text(json.dumps({"loss": loss, "epoch": epoch}))
        candle.report(epoch, {"val_loss": loss})
    return {"val_loss": loss}
'''

# seed 5: the best member exploits twice (any seed works; this one shows more).
SWEEP = f"""
name: pbt
benchmark: "model:f"
search:
  method: pbt
  population: 4
  ready: 2
  exploit: {{truncate: 0.25}}
  space: {{lr: {{loguniform: [0.001, 1.0]}}}}
  metric: val_loss
  seed: 5
params: {{epochs: {EPOCHS}}}
resources: {{scheduler: local, max_concurrent: 4}}
store: runs
"""


@pytest.fixture(scope="module")
def pbt_run(tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    tmp = tmp_path_factory.mktemp("pbt")
    write(tmp / "model.py", MODEL)
    sweep = write(tmp / "pbt.yaml", SWEEP)
    proc = run_candle("run", str(sweep), timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return RunStore(tmp / "runs" / "pbt").require()


def lineage_of(store: RunStore) -> list[dict[str, Any]]:
    return read_lineage(store.root)


def reference_depth(lineage: list[dict[str, Any]], member: int, epoch: int) -> int:
    """The brief's definition, by members and epochs: the member's latest copy at or
    before ``epoch`` counts one, plus the source's depth at the epoch of the checkpoint it
    copied (the segment ``from_job``, which ended at that epoch)."""
    ended = {r.get("done_job"): int(r["epoch"]) for r in lineage if r["event"] == "ready"}
    copies = [r for r in lineage if r["event"] == "ready" and r["member"] == member
              and r["copied_from"] is not None and int(r["epoch"]) <= epoch]
    if not copies:
        return 0
    last = max(copies, key=lambda r: int(r["epoch"]))
    # The checkpoint at epoch E holds the weights from before any copy decided at E.
    return 1 + reference_depth(lineage, int(last["copied_from"]), ended[last["from_job"]] - 1)


def summary_json(cli: Any, store: RunStore) -> dict[str, Any]:
    result = cli("summary", str(store.root), "--format", "json")
    assert result.code == 0, result.err
    data: dict[str, Any] = json.loads(result.out)
    return data


# -- a real run --------------------------------------------------------------------------
@pytest.mark.slow
def test_summary_has_one_row_per_member_best_first_with_lineage_depth(
        pbt_run: RunStore, cli: Any) -> None:
    lineage = lineage_of(pbt_run)
    ends = {r["member"]: r for r in lineage if r["event"] == "end"}
    exploits = [r for r in lineage if r["event"] == "ready" and r["copied_from"] is not None]
    assert len(ends) == 4 and exploits, "the run should finish and exploit at least once"

    data = summary_json(cli, pbt_run)
    rows = data["population"]
    assert [r["member"] for r in rows] == sorted(ends, key=lambda m: ends[m]["score"])
    assert sorted(r["member"] for r in rows) == [0, 1, 2, 3]
    assert [r["best"] for r in rows] == [True, False, False, False]
    for row in rows:
        member = row["member"]
        assert row["score"] == ends[member]["score"]
        assert row["epochs"] == EPOCHS and row["state"] == FINISHED
        readies = [r for r in lineage if r["event"] == "ready" and r["member"] == member]
        assert row["params"] == readies[-1]["params_after"]
        assert row["depth"] == reference_depth(lineage, member, EPOCHS), member
        copied = any(r["copied_from"] is not None for r in readies)
        assert (row["depth"] > 0) == copied
    assert max(r["depth"] for r in rows) <= len(exploits)
    assert any(r["depth"] > 0 for r in rows)


@pytest.mark.slow
def test_best_schedule_covers_every_epoch_with_the_lineages_params(
        pbt_run: RunStore, cli: Any) -> None:
    lineage = lineage_of(pbt_run)
    data = summary_json(cli, pbt_run)
    best = data["best"]
    assert best["member"] == data["population"][0]["member"]
    assert best["score"] == data["population"][0]["score"]
    schedule = best["schedule"]
    assert schedule[0]["start"] == 0 and schedule[-1]["end"] == EPOCHS
    assert all(a["end"] == b["start"] for a, b in itertools.pairwise(schedule))
    assert all(s["end"] - s["start"] == 2 for s in schedule)

    mine = [r for r in lineage if r["member"] == best["member"]]
    start = next(r for r in mine if r["event"] == "start")
    readies = {int(r["epoch"]): r for r in mine if r["event"] == "ready"}
    end = next(r for r in mine if r["event"] == "end")
    assert schedule[0]["params"] == {"lr": start["params"]["lr"]}
    assert schedule[0]["copied_from"] is None and schedule[0]["job"] == start["job"]
    for segment in schedule[1:]:
        ready = readies[segment["start"]]
        assert segment["params"] == {"lr": ready["params_after"]["lr"]}
        assert segment["job"] == ready["job"]
        assert segment["copied_from"] == ready["copied_from"]
    for segment in schedule[:-1]:
        assert segment["score"] == readies[segment["end"]]["score"]
    assert schedule[-1]["score"] == end["score"] == best["score"]

    table = cli("summary", str(pbt_run.root))
    assert table.code == 0, table.err
    assert "population of 4" in table.out and f"best: member {best['member']}'s" in table.out
    for segment in schedule:
        assert f"{segment['start']}-{segment['end']}" in table.out
        if segment["copied_from"] is not None:
            assert (f"copied from member {segment['copied_from']} at epoch "
                    f"{segment['copied_epoch']}") in table.out
    csv_rows = cli("summary", str(pbt_run.root), "--format", "csv").out.splitlines()
    assert csv_rows[0].startswith("best,member,") and len(csv_rows) == 5


@pytest.mark.slow
def test_report_draws_population_and_schedule_and_lists_them(
        pbt_run: RunStore, cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = cli("report", str(pbt_run.root), "--out", str(out))
    assert result.code == 0, result.err
    html = (out / "index.html").read_text(encoding="utf-8")
    files = assert_images_sound(out, html)
    assert {"pbt_population.png", "pbt_schedule.png"} <= files
    assert {"pbt_population.png", "pbt_schedule.png"} <= set(embedded_images(html))
    assert "learning_curves.png" not in files  # per segment from epoch 1: misleading
    assert "<h2>Population</h2>" in html and "schedule (best)" in html


@pytest.mark.slow
def test_population_plot_lines_at_absolute_epochs_and_exploits_marked(
        pbt_run: RunStore) -> None:
    data = page.collect(pbt_run)
    assert data.pbt is not None
    results = {view.job.id: view.result for view in data.jobs}
    fig = plots.pbt_population(data.pbt, results)
    ax = fig.axes[0]
    labelled = [line for line in ax.lines if not line.get_label().startswith("_")]
    assert [line.get_label() for line in labelled] == \
        [f"member {r.member}" for r in data.pbt.rows]
    drawn = [line for line in ax.lines if line.get_gid() != plots.EXPLOIT]
    epochs = sorted(int(x) for line in drawn for x in line.get_xdata())
    assert epochs == sorted(list(range(1, EPOCHS + 1)) * 4)  # every member, every epoch
    exploits = sum(s.copied_from is not None for s in data.pbt.segments())
    dashed = [line for line in ax.lines if line.get_gid() == plots.EXPLOIT]
    assert len(dashed) == exploits > 0
    # From the source's checkpoint (its epoch and score) to the member's next epoch.
    scores = {s.job: s.score for s in data.pbt.segments()}
    expected = sorted((s.copied_epoch, scores[s.parent or ""], s.start + 1)
                      for s in data.pbt.segments() if s.copied_from is not None)
    got = sorted((int(line.get_xdata()[0]), float(line.get_ydata()[0]),
                  int(line.get_xdata()[1])) for line in dashed)
    assert got == expected


@pytest.mark.slow
def test_schedule_plot_steps_through_the_best_members_values_on_a_log_axis(
        pbt_run: RunStore) -> None:
    data = page.collect(pbt_run)
    assert data.pbt is not None and data.pbt.best is not None
    fig = plots.pbt_schedule(data.pbt)
    [ax] = fig.axes
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "lr"
    [step] = [line for line in ax.lines if line.get_gid() != plots.EXPLOIT]
    segments = data.pbt.best.segments
    assert list(step.get_xdata()) == [s.start for s in segments] + [EPOCHS]
    values = [s.params["lr"] for s in segments]
    assert list(step.get_ydata()) == [*values, values[-1]]
    marks = [line for line in ax.lines if line.get_gid() == plots.EXPLOIT]
    assert len(marks) == sum(s.copied_from is not None for s in segments)


# -- hand-written lineages ---------------------------------------------------------------
CONFIG = PbtConfig(population=3, epochs=6, ready=2, truncate=0.34, perturb=(0.8, 1.2),
                   resample=0.25, metric="acc", direction="maximize", seed=0,
                   space={"lr": {"uniform": [0.001, 1.0], "log": True},
                          "batch": {"choice": [16, 32]}},
                   mutable=("lr",))


def start(member: int, lr: float) -> dict[str, Any]:
    return {"event": "start", "member": member, "epoch": 0, "params": {"lr": lr, "batch": 16},
            "job": f"m{member}e0"}


def ready(member: int, epoch: int, score: float, lr: float, source: int | None = None,
          source_epoch: int | None = None) -> dict[str, Any]:
    done = f"m{member}e{epoch - 2}"
    origin = done if source is None else f"m{source}e{(source_epoch or epoch) - 2}"
    return {"event": "ready", "member": member, "epoch": epoch, "score": score,
            "copied_from": source, "from_job": origin, "done_job": done,
            "params_before": {}, "params_after": {"lr": lr, "batch": 16},
            "job": f"m{member}e{epoch}"}


def test_depth_follows_the_weights_through_each_copy() -> None:
    """1 copies 0 at 2 (depth 1); 2 copies 1 at 4 (depth 2, through 1's copy); 0 copies 2
    at 4 from 2's checkpoint at epoch 2, trained before 2 copied (depth 0 + 1)."""
    lineage = [start(0, 0.1), start(1, 0.01), start(2, 0.5),
               ready(0, 2, 0.6, 0.1), ready(1, 2, 0.2, 0.12, source=0),
               ready(2, 2, 0.5, 0.5), ready(1, 4, 0.7, 0.12),
               ready(2, 4, 0.3, 0.1, source=1), ready(0, 4, 0.4, 0.6, source=2,
                                                       source_epoch=2)]
    summary = summarise_lineage(lineage, CONFIG)
    depth = {r.member: r.depth for r in summary.rows}
    assert depth == {0: 1, 1: 1, 2: 2}
    assert [r.member for r in summary.rows] == [1, 0, 2]  # maximize: 0.7, 0.4, 0.3
    assert all(r.state == RUNNING and r.epochs == 4 for r in summary.rows)
    zero = next(r for r in summary.rows if r.member == 0)
    assert zero.segments[-1].copied_epoch == 2 and zero.segments[-1].start == 4
    assert zero.segments[-1].end == 6  # from the config: the records have no job_record
    assert summary.mutable == ("lr",) and summary.log == ("lr",)


def test_failed_and_unscored_members_rank_last_and_a_schedule_has_only_mutables() -> None:
    lineage = [start(0, 0.1), start(1, 0.01), start(2, 0.5),
               {"event": "failed", "member": 2, "epoch": 0, "job": "m2e0", "error": "boom"},
               ready(0, 2, 0.6, 0.1), ready(1, 2, math.nan, 0.01),
               ready(0, 4, 0.65, 0.1),
               {"event": "end", "member": 0, "epoch": 6, "score": 0.9, "job": "m0e4"}]
    summary = summarise_lineage(lineage, CONFIG)
    assert [(r.member, r.state) for r in summary.rows] == \
        [(0, FINISHED), (1, RUNNING), (2, FAILED)]
    assert summary.error == {2: "boom"}
    data = summary.to_dict()
    assert data["best"]["member"] == 0 and data["best"]["score"] == 0.9
    schedule = data["best"]["schedule"]
    assert [(s["start"], s["end"], s["score"]) for s in schedule] == \
        [(0, 2, 0.6), (2, 4, 0.65), (4, 6, 0.9)]
    assert all(set(s["params"]) == {"lr"} for s in schedule)
    assert data["population"][1]["score"] is None  # NaN: strict JSON has none
    json.loads(json.dumps(data, allow_nan=False))


def test_no_scores_yet_means_no_best_and_an_empty_population_plot() -> None:
    summary = summarise_lineage([start(0, 0.1), start(1, 0.2)], CONFIG)
    assert summary.best is None and summary.to_dict()["best"] is None
    assert len(plots.pbt_population(summary, {}).axes[0].lines) == 0
