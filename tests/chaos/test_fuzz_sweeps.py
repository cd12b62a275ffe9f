"""Thousands of malformed sweep files against the parser `candle validate` and `candle plan`
use (`candle.spec.load_sweep`), then against planning.

Property: a file either parses to a Sweep, or raises UserError whose text is ONE line that
starts with the file it blames; planning a parsed sweep (points, jobs, their JSON records,
the allocation `candle plan` prints) raises nothing but UserError either. Three sources of
input: (a) arbitrary text and bytes, (b) YAML dumps of random structures built from the
parser's own key names with random-typed values, (c) mutations of the real example sweeps
in workflows/. The last test runs a set of hostile files through the real commands.
"""

from __future__ import annotations

import itertools
import json
import string
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candle.cli import allocation_info
from candle.errors import UserError
from candle.plan import count_points, iter_jobs
from candle.spec import Sweep, load_sweep
from candle.spec.parse import (
    CV_KEYS,
    DISTRIBUTIONS,
    METHODS,
    MODES,
    RESOURCE_KEYS,
    SCHEDULERS,
    SEARCH_KEYS,
    TOP_KEYS,
    UQ_KEYS,
)
from tests.conftest import ROOT, candle_cmd

# Examples per strategy (>= 3000 in all); the file runs in about a minute on 2 cores.
TEXT_EXAMPLES = 500
BYTES_EXAMPLES = 300
STRUCTURED_EXAMPLES = 1400
MUTATION_EXAMPLES = 1200
JOBS_CHECKED = 200  # jobs of each parsed sweep that are made and serialised

FUZZ = settings(deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

EXAMPLES = sorted(p for p in (ROOT / "workflows").rglob("*.yaml") if "runs" not in p.parts)
NT3_PARAMS = ("epochs", "batch_size", "learning_rate", "optimizer", "dense", "conv", "pool",
              "dropout", "features", "samples", "data", "rng_seed", "activation")


def check_one_line(exc: UserError, path: Path) -> str:
    """The contract of every user-facing error: one line, naming the file it blames."""
    text = str(exc)
    assert text.splitlines() == [text], f"not one line: {text!r}"
    assert "\r" not in text and "\x00" not in text, text
    assert exc.file == str(path), f"does not name {path}: {text!r}"
    assert text.startswith(f"{path}:"), text
    return text


def plan_like_the_cli(sweep: Sweep) -> int:
    """What `candle validate` and `candle plan` do after parsing (bounded: a fuzzed grid can
    be large, so only the first JOBS_CHECKED jobs are made)."""
    count_points(sweep)
    allocation_info(sweep.resources)
    made = 0
    for job in itertools.islice(iter_jobs(sweep), JOBS_CHECKED):
        record = json.loads(json.dumps(job.to_record(), sort_keys=True))
        assert record["id"] == job.id
        json.dumps(job.params, sort_keys=True).encode("utf-8")  # params.json, strict UTF-8
        made += 1
    return made


Outcome = tuple[str, str]


def check_file(path: Path) -> Outcome:
    """Parse and plan ``path``; return ("ok"|"error", detail). Anything else propagates."""
    try:
        sweep = load_sweep(path)
    except UserError as exc:
        return "error", check_one_line(exc, path)
    try:
        made = plan_like_the_cli(sweep)
    except UserError as exc:
        return "error", check_one_line(exc, path)
    return "ok", f"{made} jobs"


class Workspace:
    """One temp directory per test; every example overwrites the same file."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="candle-fuzz-")
        self.path = Path(self._dir.name) / "sweep.yaml"
        self.outcomes: dict[str, int] = {"ok": 0, "error": 0}

    def check_bytes(self, data: bytes) -> Outcome:
        self.path.write_bytes(data)
        outcome = check_file(self.path)
        self.outcomes[outcome[0]] += 1
        return outcome

    def close(self) -> None:
        self._dir.cleanup()


@pytest.fixture(scope="module")
def workspace() -> Iterator[Workspace]:
    ws = Workspace()
    yield ws
    ws.close()


# -- (a) arbitrary text and bytes ---------------------------------------------------------
YAML_NOISE = st.sampled_from([*":-[]{},&*!|>'\"#%@`?\n\t ",
    "name: ", "benchmark: ", "search:\n  ", "space:\n    ", "&a ", "*a", "!!python/object ",
    "!!binary ", "!!set ", "? ", "--- ", "...", "\\u", "\\ud800", "~", "0x", ".inf", ".nan",
    "1e9999", "<<: *a", "%YAML 1.1\n", "\ufeff"])
TEXT = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(YAML_NOISE, st.text(string.ascii_letters + string.digits, max_size=6)),
             max_size=60).map("".join),
    st.integers(1, 1000).map(lambda n: "a: " + "[" * n + "]" * n),  # deep nesting
    st.integers(1, 400).map(lambda n: "a: " + "{b: " * n + "1" + "}" * n),
)


def test_arbitrary_text(workspace: Workspace) -> None:
    started = time.time()

    @settings(FUZZ, max_examples=TEXT_EXAMPLES)
    @given(TEXT)
    def run(text: str) -> None:
        workspace.check_bytes(text.encode("utf-8", errors="surrogatepass"))

    run()
    print(f"(a) text: {TEXT_EXAMPLES} examples, {time.time() - started:.1f} s, "
          f"{workspace.outcomes}")


def test_arbitrary_bytes(workspace: Workspace) -> None:
    @settings(FUZZ, max_examples=BYTES_EXAMPLES)
    @given(st.binary(max_size=400) | st.builds(
        lambda head, tail: head + tail,
        st.sampled_from([b"name: x\nbenchmark: nt3\n", b"\xef\xbb\xbf", b"\xff\xfe", b""]),
        st.binary(max_size=100)))
    def run(data: bytes) -> None:
        workspace.check_bytes(data)

    run()


# -- (b) random structures over the real key names -----------------------------------------
EXTREME_INTS = st.sampled_from([0, -1, 1, 2, 2**31, 2**32, 2**32 - 1, 2**62, 2**63, 2**64,
                                10**30, -(2**70), 10**7, 10**9])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-1000, 1000), EXTREME_INTS,
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["", " ", "~", "~nobody-here/x", "a\x00b", "a\nb", "\ud800", "x" * 200,
                     "$(touch pwned)", "`id`", "a;b", "'", '"', "1e-4", "1e400", "00:10:00",
                     "1-00:00:00", "99:99:99", *METHODS, *SCHEDULERS, *MODES, "pbs", "nt3",
                     "tc1", "p1b3", "m:f", "quadratic:objective", "local-slurm", "tpe", "gp",
                     "cmaes", "random", "qmc", "nsga2", "none", "median", "hyperband",
                     "percentile", "minimize", "maximize", "val_loss", *DISTRIBUTIONS]),
    st.dates(), st.binary(max_size=6), st.sets(st.integers(0, 3), max_size=3),
)
KEYS = st.one_of(st.sampled_from([*TOP_KEYS, *SEARCH_KEYS, *RESOURCE_KEYS, *CV_KEYS,
                                  *UQ_KEYS, *DISTRIBUTIONS, "log", "step", "name",
                                  *NT3_PARAMS]),
                 st.text(max_size=6), st.integers(-3, 3))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)), max_leaves=10)


def section(keys: tuple[str, ...], plausible: dict[str, st.SearchStrategy[Any]]
            ) -> st.SearchStrategy[dict[str, Any]]:
    """A mapping over ``keys``: half the time every value is plausible (so the parser gets
    deep and the planner gets work), else each is, with odds 3:1, and may be anything."""
    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        wild = draw(st.booleans())
        chosen = draw(st.lists(st.sampled_from(keys), unique=True, max_size=len(keys)))
        out = {}
        for key in chosen:
            strategy = plausible.get(key, VALUES)
            out[key] = draw(st.one_of(strategy, strategy, strategy, VALUES) if wild
                            else strategy)
        if wild and draw(st.integers(0, 9)) == 7:
            out[draw(st.text(max_size=8))] = draw(VALUES)  # an unknown key
        return out

    return build()


SMALL_INT = st.integers(-2, 12)
NUMBER = st.one_of(st.integers(-5, 1000), st.floats(-1e3, 1e3), st.sampled_from(
    ["1e-4", "1e-2", 0.0, 1e-300, float("nan"), float("inf")]))
DIST = st.one_of(
    st.fixed_dictionaries({"uniform": st.lists(NUMBER, max_size=3)},
                          optional={"log": st.booleans(), "step": SMALL_INT}),
    st.fixed_dictionaries({"loguniform": st.lists(NUMBER, max_size=3)}),
    st.fixed_dictionaries({"int": st.lists(st.one_of(SMALL_INT, EXTREME_INTS), max_size=3)},
                          optional={"log": st.booleans() | VALUES,
                                    "step": SMALL_INT | VALUES}),
    st.fixed_dictionaries({"choice": st.lists(SCALARS, max_size=4)}),
)
PARAM_NAME = st.one_of(st.sampled_from(NT3_PARAMS), st.text(max_size=8))
SPACE = st.dictionaries(PARAM_NAME, st.one_of(st.lists(SCALARS | VALUES, max_size=5), DIST,
                                              VALUES), max_size=4)
OPTIONS = st.one_of(st.sampled_from(["tpe", "random", "median", "none", "qmc", "nsga2"]),
                    st.fixed_dictionaries(
                        {"name": st.sampled_from(["tpe", "random", "median", "percentile",
                                                  "hyperband", "nsga2", "qmc", "cmaes"])},
                        optional={"n_startup_trials": SMALL_INT | VALUES,
                                  "n_warmup_steps": SMALL_INT | VALUES,
                                  "percentile": NUMBER, "seed": VALUES,
                                  "population_size": SMALL_INT}))
SEARCH_ANY = section(SEARCH_KEYS, {
    "method": st.sampled_from(METHODS), "space": SPACE,
    "points": st.lists(st.one_of(st.dictionaries(PARAM_NAME, SCALARS | VALUES, max_size=3),
                                 st.none()), max_size=4),
    "trials": st.one_of(SMALL_INT, EXTREME_INTS), "seed": st.one_of(SMALL_INT, EXTREME_INTS),
    "metric": st.one_of(st.sampled_from(["val_loss", "loss"]),
                        st.lists(st.sampled_from(["val_loss", "loss", "acc"]), max_size=3)),
    "direction": st.one_of(st.sampled_from(["minimize", "maximize"]),
                           st.lists(st.sampled_from(["minimize", "maximize"]), max_size=3)),
    "sampler": OPTIONS, "pruner": OPTIONS, "batch": SMALL_INT,
})


@st.composite
def coherent_search(draw: st.DrawFn) -> dict[str, Any]:
    """A method with the key it needs, and optuna's own keys only for optuna."""
    method = draw(st.sampled_from(METHODS))
    out = {k: v for k, v in draw(SEARCH_ANY).items()
           if method == "optuna" or k not in ("sampler", "pruner", "batch")}
    out["method"] = method
    if method == "list":
        out["points"] = draw(st.lists(st.dictionaries(PARAM_NAME, SCALARS, max_size=3),
                                      min_size=1, max_size=4))
    else:
        out["space"] = draw(st.dictionaries(
            PARAM_NAME, st.lists(SCALARS, min_size=1, max_size=4) if method == "grid"
            else st.one_of(st.lists(SCALARS, min_size=1, max_size=4), DIST),
            min_size=1, max_size=4))
    return out


SEARCH = st.one_of(SEARCH_ANY, *[coherent_search()] * 3)
RESOURCES = section(RESOURCE_KEYS, {
    "scheduler": st.sampled_from([*SCHEDULERS, "pbs"]), "mode": st.sampled_from(MODES),
    "ranks_per_job": st.one_of(SMALL_INT, EXTREME_INTS),
    "max_concurrent": SMALL_INT, "nodes": st.one_of(SMALL_INT, EXTREME_INTS),
    "slots_per_node": st.one_of(SMALL_INT, EXTREME_INTS),
    "gpus_per_node": st.one_of(SMALL_INT, EXTREME_INTS), "oversubscribe": st.booleans(),
    "walltime": st.sampled_from(["00:10:00", "1-00:00:00", "10:00", "00:00:00"]),
    "array_throttle": SMALL_INT, "site": st.sampled_from(["local-slurm", "nope", "../x"]),
})
SWEEP = section(TOP_KEYS, {
    "name": st.one_of(*[st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z")] * 4,
                      st.sampled_from(["-x", "a/b", "..", "a b", "$(touch x)", "x" * 101])),
    "benchmark": st.sampled_from(["nt3", "tc1", "p1b3", "m:f", "quadratic:objective", "m:f",
                                  "pkg.mod:fn", "x"]),
    "params": st.dictionaries(PARAM_NAME, SCALARS | VALUES, max_size=5),
    "search": SEARCH,
    "cv": section(CV_KEYS, {"folds": st.one_of(SMALL_INT, EXTREME_INTS),
                            "seed": st.one_of(SMALL_INT, EXTREME_INTS),
                            "stratify": st.booleans()}),
    "uq": section(UQ_KEYS, {"replicas": st.one_of(SMALL_INT, EXTREME_INTS)}),
    "resources": RESOURCES, "retries": SMALL_INT,
    "store": st.sampled_from(["runs", "", "~nobody-here/runs", "/tmp/x", "a\x00b"]),
}).map(lambda d: {"name": "fuzz", "benchmark": "m:f", **d})


def dump(data: Any) -> bytes:
    text: str = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return text.encode("utf-8", errors="surrogatepass")


def test_random_structures(workspace: Workspace) -> None:
    started = time.time()
    before = dict(workspace.outcomes)

    @settings(FUZZ, max_examples=STRUCTURED_EXAMPLES)
    @given(SWEEP)
    def run(data: dict[str, Any]) -> None:
        workspace.check_bytes(dump(data))

    run()
    ok = workspace.outcomes["ok"] - before["ok"]
    print(f"(b) structures: {STRUCTURED_EXAMPLES} examples, {time.time() - started:.1f} s, "
          f"{ok} parsed")
    assert ok > 0  # the strategy reaches the planner, not only the first checks


# -- (c) mutations of the real example sweeps ---------------------------------------------
def _lines_op(draw: st.DrawFn, lines: list[str]) -> list[str]:
    if not lines:
        return lines
    i = draw(st.integers(0, len(lines) - 1))
    j = draw(st.integers(0, len(lines) - 1))
    op = draw(st.sampled_from(["delete", "duplicate", "swap", "value", "indent", "insert",
                               "truncate"]))
    out = list(lines)
    if op == "delete":
        del out[i]
    elif op == "duplicate":
        out.insert(j, out[i])
    elif op == "swap":
        out[i], out[j] = out[j], out[i]
    elif op == "value":
        line = out[i]
        head = line.split(":", 1)[0] if ":" in line else line.split("-", 1)[0]
        scalar = draw(SCALARS)
        rendered = draw(st.one_of(
            st.just(json.dumps(scalar, default=str)),
            st.just(yaml.safe_dump(scalar, default_flow_style=True).splitlines()[0]
                    if not isinstance(scalar, bytes | set) else "!!binary AAAA"),
            st.text(max_size=10)))
        out[i] = f"{head}: {rendered}"
    elif op == "indent":
        stripped = out[i].lstrip(" ")
        out[i] = " " * draw(st.integers(0, 8)) + stripped
    elif op == "insert":
        out.insert(i, draw(st.one_of(st.text(max_size=20), st.sampled_from(
            [f"{k}: {{}}" for k in TOP_KEYS] + ["  - 1", "&a x: *a", "? [a]", "---"]))))
    else:
        cut = draw(st.integers(0, max(0, len(out[i]))))
        out = [*out[:i], out[i][:cut]]
    return out


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    source = draw(st.sampled_from(EXAMPLES))
    lines = source.read_text().splitlines()
    for _ in range(draw(st.integers(1, 4))):
        lines = _lines_op(draw, lines)
    return source.name, ("\n".join(lines) + "\n").encode("utf-8", errors="surrogatepass")


def test_mutated_examples(workspace: Workspace) -> None:
    assert len(EXAMPLES) >= 8, EXAMPLES
    for example in EXAMPLES:  # unmutated, every example parses and plans
        workspace.path.write_bytes(example.read_bytes())
        assert check_file(workspace.path)[0] == "ok", example
    started = time.time()
    seen: dict[str, int] = {}

    @settings(FUZZ, max_examples=MUTATION_EXAMPLES)
    @given(mutated())
    def run(example: tuple[str, bytes]) -> None:
        seen[example[0]] = seen.get(example[0], 0) + 1
        workspace.check_bytes(example[1])

    run()
    print(f"(c) mutations: {MUTATION_EXAMPLES} examples of {len(seen)} sweeps, "
          f"{time.time() - started:.1f} s")
    assert len(seen) == len(EXAMPLES)


# -- hostile files the parser once crashed on (and the real commands) ----------------------
HOSTILE = {
    "deep-list": "name: x\nbenchmark: nt3\nparams: " + "[" * 3000 + "]" * 3000 + "\n",
    "deep-map": "name: x\nbenchmark: 'm:f'\nparams:\n  a: " + "{b: " * 400 + "1" + "}" * 400,
    "recursive-alias": "name: x\nbenchmark: 'm:f'\nparams: &a {k: *a}\n",
    "recursive-space": "name: x\nbenchmark: 'm:f'\nsearch: {method: grid, space: {k: &a [*a]}}\n",
    "billion-laughs": "name: x\nbenchmark: 'm:f'\nparams:\n  a: &a [x,x,x,x,x,x,x,x,x,x]\n"
                      + "".join(f"  {c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n"
                                for p, c in itertools.pairwise("abcdefghij")),
    "unknown-home": "name: x\nbenchmark: 'm:f'\nstore: '~nobody-here/runs'\n",
    "nul-store": "name: x\nbenchmark: 'm:f'\nstore: \"runs\\0x\"\n",
    "endless-random": "name: x\nbenchmark: 'm:f'\nsearch: {method: random, trials: 100000000,"
                      " space: {a: {uniform: [1, 1]}}}\n",
    "giant-grid": "name: x\nbenchmark: 'm:f'\nsearch:\n  method: grid\n  space:\n"
                  + "".join(f"    p{i}: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n" for i in range(10)),
    "nan-bound": "name: x\nbenchmark: 'm:f'\nsearch: {method: random, trials: 2, space: "
                 "{a: {uniform: [.nan, 1]}}}\n",
    "date-value": "name: x\nbenchmark: 'm:f'\nparams: {when: 2020-01-01}\n",
    "mixed-keys": "name: x\nbenchmark: 'm:f'\nparams: {m: {1: a, b: c}}\n",
    "surrogate": "name: x\nbenchmark: 'm:f'\nparams: {s: \"\\ud800\"}\n",
    "cr-in-key": "name: x\nbenchmark: 'm:f'\n\"bad\\rkey\": 1\n",
    "user-seed": "name: x\nbenchmark: 'm:f'\nparams: {rng_seed: abc}\n",
    "huge-gpus": "name: x\nbenchmark: 'm:f'\nresources: {gpus_per_node: 100000000000}\n",
    "huge-nodes": "name: x\nbenchmark: 'm:f'\nresources: {scheduler: slurm, "
                  "nodes: 100000000000}\n",
    "optuna-seed": "name: x\nbenchmark: 'm:f'\nsearch: {method: optuna, seed: 100000000000000,"
                   " space: {a: {uniform: [0, 1]}}}\n",
    "cv-seed": "name: x\nbenchmark: 'm:f'\ncv: {folds: 2, seed: 100000000000000}\n",
    "binary": "name: x\nbenchmark: 'm:f'\nsearch: {method: grid, space: {a: [!!binary AAAA]}}\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_file_in_process(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(HOSTILE[name], encoding="utf-8")
    started = time.time()
    outcome, detail = check_file(path)
    assert outcome == "error", f"{name} accepted: {detail}"
    assert time.time() - started < 10, f"{name}: {time.time() - started:.1f} s"


def _command(args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(candle_cmd(*args), capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


@pytest.mark.slow
def test_hostile_files_through_the_real_commands(tmp_path: Path) -> None:
    """The 20 hostile files above through `candle validate` and `candle plan`: exit 2, one
    line on stderr naming the file, no traceback."""
    runs: list[tuple[str, tuple[str, ...]]] = []
    for name, text in sorted(HOSTILE.items()):
        path = tmp_path / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        runs += [(name, ("validate", str(path))), (name, ("plan", str(path)))]
    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = list(pool.map(_command, [args for _, args in runs]))
    assert len(procs) >= 40
    for (name, args), proc in zip(runs, procs, strict=True):
        where = f"{name} {args[0]}: {proc.stderr[-2000:]}"
        assert proc.returncode == 2, where
        assert "Traceback" not in proc.stderr, where
        assert proc.stderr.count("\n") == 1 and proc.stderr.endswith("\n"), where
        assert proc.stderr.startswith(args[1] + ":"), where
        assert proc.stdout == "", where

