"""Benchmark: ``qa select`` at a few sizes, projected to 8.8M pairs (time on N cores, peak memory).

For each size N (default 20k, 100k, 300k pairs) a child process writes synthetic ``qa/pairs.parquet``
and ``qa/grades.parquet`` (questions of 12-20 words from a 5,000-word vocabulary, answers of 30; 10%
of the questions one-word edits of an earlier one and 1% exact copies; 3% template pairs, 2%
generation errors, 3% unparseable grades, scores mostly 4-5), then runs the stage's own phases in
order, each in a fresh process as on Slurm: ``prepare`` (the grade summary, the benchmark index from
the fixture questions when present), ``process`` over ``--tasks`` shards (one after the other: on a
cluster they run side by side) and ``finish`` (clustering and writing). The wall time and the peak
resident memory (``ru_maxrss``, imports included) of each phase are measured; each phase's time and
memory are fitted as ``a + b * N`` over the sizes (a shard's memory over its own size) and evaluated
at 8.8M.

Figures (JSON lines at the end, as every bench; then ``metric name=value`` lines):

* ``select_wall_s_8_8m_1core`` / ``select_wall_s_8_8m_16cores`` — prepare + shards / cores + finish.
* ``select_peak_gib_8_8m`` — the largest phase peak at 8.8M (shards at 8.8M / 64 pairs each).
* ``select_fits_24gib`` — 1 when that peak is below 24 GiB (one machine), else 0.
* ``measured_*`` — the figures of the largest size measured.

Usage: ``python bench/qa_select.py [--sizes 20000 100000 300000] [--tasks 8] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIXTURES = Path(os.environ.get("SAGECORPUS_FIXTURES", ROOT.parent / "shared" / "fixtures"))
from _emit import emit as emit_figure  # noqa: E402

NAME = "qa_select"
TARGET_PAIRS = 8_800_000
SHARDS_AT_TARGET = 64
GIB = 1024**3


emit = partial(emit_figure, NAME, better="lower")


# ----------------------------------------------------------------------------------------- data


def write_inputs(out: Path, n: int, seed: int = 0) -> None:
    """Synthetic pairs and grades, written in blocks so the bench never holds them all as Python rows."""
    import pyarrow as pa

    from schemas import GRADE, QA_PAIR, TableWriter

    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{k}" for k in range(5000)])
    questions: list[str] = []
    block = 50_000
    with TableWriter(QA_PAIR, out / "qa/pairs.parquet") as pw, TableWriter(GRADE, out / "qa/grades.parquet") as gw:
        for lo in range(0, n, block):
            m = min(block, n - lo)
            qs, answers, kinds, errors, ids = [], [], [], [], []
            for i in range(lo, lo + m):
                r = rng.random()
                if questions and r < 0.10:  # a one-word edit of an earlier question
                    words = questions[rng.integers(len(questions))].split()
                    words[rng.integers(len(words))] = vocab[rng.integers(len(vocab))]
                    q = " ".join(words)
                elif questions and r < 0.11:  # an exact copy
                    q = questions[rng.integers(len(questions))]
                else:
                    q = " ".join(vocab[rng.integers(0, len(vocab), rng.integers(12, 21))])
                questions.append(q) if len(questions) < 200_000 else None
                kind = "template" if rng.random() < 0.03 else "llm"
                error = "reply is not JSON" if kind == "llm" and rng.random() < 0.02 else None
                ids.append(f"p{i // 40}#{i // 4 % 10}/{i % 4}" if kind == "llm" else f"p{i}/meta/title")
                qs.append(None if error else q + "?")
                answers.append(None if error else " ".join(vocab[rng.integers(0, len(vocab), 30)]) + ".")
                kinds.append(kind)
                errors.append(error)
            llm = [k == "llm" for k in kinds]
            pw.write(pa.table({
                "pair_id": ids, "chunk_id": [pid.split("/")[0] if k else None for pid, k in zip(ids, llm)],
                "paper_id": [pid.split("#")[0].split("/")[0] for pid in ids], "kind": kinds,
                "question_type": ["factual" if k else "title" for k in llm], "question": qs, "answer": answers,
                "model": ["gen" if k else "template" for k in llm],
                "template": ["generate@1" if k else "metadata@1" for k in llm],
                "request_key": ["k" if k else None for k in llm], "raw": ["{}" if k else None for k in llm],
                "error": errors, "prompt_tokens": [500 if k else None for k in llm],
                "completion_tokens": [300 if k else None for k in llm]}))
            gids = [pid for pid, k, e in zip(ids, llm, errors) if k and e is None]
            g = len(gids)
            scores = rng.choice([2, 3, 4, 5], size=(g, 4), p=[0.05, 0.15, 0.4, 0.4]).astype(np.int8)
            bad = rng.random(g) < 0.03
            col = lambda j: pa.array(np.where(bad, 0, scores[:, j]), pa.int8(), mask=bad)
            gw.write(pa.table({
                "pair_id": gids, "model": ["grader"] * g, "template": ["grade@1"] * g, "correctness": col(0),
                "standalone": col(1), "pertinence": col(2), "overall": col(3), "request_key": ["g"] * g,
                "raw": ["{}"] * g, "error": pa.array(["no JSON in reply" if b else None for b in bad], pa.large_string()),
                "prompt_tokens": [800] * g, "completion_tokens": [20] * g}))


# ----------------------------------------------------------------------------------------- one size


def stage_for(base: Path):
    from qa_synth.select import Select

    questions = [str(FIXTURES / "qa" / f) for f in ("astro_qa_en_single_choice4_sample50.jsonl",
                                                    "astromlab1_astrobench_mcq_v1_public_en_sample50.json")
                 if (FIXTURES / "qa" / f).exists()]
    stage = Select({"questions": questions}).bind(base)
    stage.work_dir, stage.quiet = base / "_work", True
    stage.work_dir.mkdir(exist_ok=True)
    return stage


def run_phase(phase: str, base: Path, tasks: int) -> dict:
    """Child process: one phase of the stage, as the executor runs it (on Slurm each is its own job):
    its wall time and this process's peak resident memory (imports included)."""
    stage = stage_for(base)
    t = time.perf_counter()
    result = {}
    if phase == "prepare":
        stage.validate()
        stage.prepare()
    elif phase == "shards":  # one after the other; on a cluster they run side by side
        items = stage.plan()
        bounds = np.linspace(0, len(items), tasks + 1).astype(int)
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            list(stage.process(items[lo:hi]))
    else:
        stats = stage.finish({"items": len(stage.plan())})
        result = {k: stats.get(k) for k in ("selected", "decisions.dropped", "reason.near_duplicate")}
    return result | {"phase": phase, "wall_s": time.perf_counter() - t,
                     "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def child(*argv: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *argv], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_size(n: int, tasks: int) -> dict:
    base = Path(tempfile.mkdtemp(prefix=f"bench-select-{n}-"))
    t = time.perf_counter()
    child("--generate", str(n), str(base))
    generate_s = time.perf_counter() - t
    phases = {p: child("--phase", p, str(base), "--tasks", str(tasks)) for p in ("prepare", "shards", "finish")}
    shutil.rmtree(base, ignore_errors=True)
    return {"n": n, "tasks": tasks, "generate_s": generate_s,
            "times": {p: r["wall_s"] for p, r in phases.items()}, "peaks": {p: r["maxrss"] for p, r in phases.items()},
            "selected": phases["finish"]["selected"], "near_duplicates": phases["finish"]["reason.near_duplicate"]}


# ----------------------------------------------------------------------------------------- projection


def fit(ns, ys, at):
    """Least-squares ``a + b * n`` evaluated at ``at`` (b >= 0)."""
    b, a = np.polyfit(np.asarray(ns, float), np.asarray(ys, float), 1)
    b = max(b, 0.0)
    if b == 0.0:
        a = max(ys)
    return a + b * at


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000, 300_000])
    ap.add_argument("--tasks", type=int, default=8, help="shards of each run")
    ap.add_argument("--cores", type=int, default=16, help="cores of the projected machine")
    ap.add_argument("--quick", action="store_true", help="sizes 5k, 20k, 50k")
    ap.add_argument("--generate", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--phase", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate:
        write_inputs(Path(args.generate[1]), int(args.generate[0]))
        print(json.dumps({"ok": True}))
        return
    if args.phase:
        print(json.dumps(run_phase(args.phase[0], Path(args.phase[1]), args.tasks)))
        return
    sizes = [5_000, 20_000, 50_000] if args.quick else sorted(args.sizes)
    runs = []
    for n in sizes:
        r = run_size(n, args.tasks)
        runs.append(r)
        print(f"{n:>9,} pairs: prepare {r['times']['prepare']:.1f} s, shards {r['times']['shards']:.1f} s "
              f"({r['tasks']} one after the other), finish {r['times']['finish']:.1f} s; peak MiB prepare "
              f"{r['peaks']['prepare'] / 2**20:.0f}, shards {r['peaks']['shards'] / 2**20:.0f}, finish "
              f"{r['peaks']['finish'] / 2**20:.0f}; selected {r['selected']:,}, "
              f"near-duplicates {r['near_duplicates']:,}; inputs made in {r['generate_s']:.0f} s", file=sys.stderr)
    ns = [r["n"] for r in runs]
    t = {p: fit(ns, [r["times"][p] for r in runs], TARGET_PAIRS) for p in ("prepare", "shards", "finish")}
    # memory: prepare and finish hold the whole step's summary; a shard holds its own pairs only
    peak = {p: fit(ns, [r["peaks"][p] for r in runs], TARGET_PAIRS) for p in ("prepare", "finish")}
    per_shard = [r["n"] / r["tasks"] for r in runs]
    peak["shards"] = fit(per_shard, [r["peaks"]["shards"] for r in runs], TARGET_PAIRS / SHARDS_AT_TARGET)
    wall_1 = t["prepare"] + t["shards"] + t["finish"]
    wall_n = t["prepare"] + t["shards"] / args.cores + t["finish"]
    peak_gib = max(peak.values()) / GIB
    worst = max(peak, key=peak.get)
    print(f"8.8M pairs: prepare {t['prepare'] / 60:.1f} min, shards {t['shards'] / 3600:.2f} core-hours, finish "
          f"{t['finish'] / 60:.1f} min -> {wall_1 / 3600:.2f} h on 1 core, {wall_n / 3600:.2f} h on {args.cores}; peak "
          f"{peak_gib:.1f} GiB ({worst}; prepare {peak['prepare'] / GIB:.1f}, shards of {TARGET_PAIRS // SHARDS_AT_TARGET:,} "
          f"{peak['shards'] / GIB:.2f}, finish {peak['finish'] / GIB:.1f}): "
          + ("fits one 24 GiB machine" if peak_gib < 24 else "does NOT fit one 24 GiB machine"), file=sys.stderr)
    last = runs[-1]
    figures = [
        ("select_wall_s_8_8m_1core", round(wall_1), "s"),
        (f"select_wall_s_8_8m_{args.cores}cores", round(wall_n), "s"),
        ("select_peak_gib_8_8m", round(peak_gib, 2), "GiB"),
        ("select_fits_24gib", int(peak_gib < 24), "bool"),
        ("measured_pairs", last["n"], "pairs"),
        ("measured_wall_s", round(sum(last["times"].values()), 1), "s"),
        ("measured_peak_gib", round(max(last["peaks"].values()) / GIB, 3), "GiB"),
        ("measured_pairs_per_s_per_core_shards", round(last["n"] / last["times"]["shards"]), "pairs/s"),
    ]
    for metric, value, unit in figures:
        emit(metric, value, unit, target=24 if metric == "select_peak_gib_8_8m" else None,
             better="higher" if unit == "pairs/s" else "lower")
    for metric, value, _ in figures:
        print(f"metric {metric}={value}")


if __name__ == "__main__":
    main()
