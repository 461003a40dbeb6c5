"""Benchmark: MinHash signature speed, dedup quality on a planted set, and a 250k-paper projection.

Figures (one JSON line each at the end):

* ``signatures_per_s`` (and ``stage_signatures_per_s``, the same through the dedup stage) — the project's signatures (``corpus.curate.minhash.signatures``: normalise,
  shingle, hash, permute), one process, 128 permutations, against a plain ``datasketch``
  ``MinHash(num_perm=128).update_batch`` loop over word 5-grams of the same texts (target ratio >= 2);
  ``rensa`` ``RMinHash`` over the same 5-gram strings is reported too (target null) when installed.
* ``precision`` / ``recall`` — planted set: every fixture paper's text plus copies with 0.5%, 1%, 5%
  and 20% random word edits, plus unrelated papers (each paper's words shuffled). Precision: of the
  papers dropped, the fraction whose exact 5-gram Jaccard with their cluster's kept paper is >= 0.8.
  Recall: of the pairs with exact Jaccard >= 0.8, the fraction placed in one cluster.
  ``unrelated_pairs_clustered``: pairs below Jaccard 0.3 that share a cluster (must be 0).
* ``projected_wall_s_250k`` / ``projected_peak_rss_mb_250k`` — the whole curation (clean, language,
  heuristics, quality score, decontamination, exact hash, signatures, then exact + near dedup) of
  N synthetic arXiv-length documents (fixture texts with 30% word edits, 10% of them near-copies),
  measured, then projected linearly to 250,000 (per-document work scales linearly; the LSH index
  and signatures are the only parts held in memory, so the memory above the process baseline is
  scaled by 250,000 / N). Documents are regenerated from their seed whenever needed, as a stage
  re-reads them from Parquet, so texts are never all in memory.

Usage: ``python bench/dedup.py [--quick] [--docs N] [--workers W]``. Timings on a shared machine are
noisy; run twice and compare.
"""

from __future__ import annotations

import argparse
import itertools
import json
from functools import partial
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIXTURES = Path(os.environ.get("SAGECORPUS_FIXTURES", ROOT.parent / "shared" / "fixtures"))

from corpus.curate import text as T  # noqa: E402
from corpus.curate.clean import CleanConfig, clean_text  # noqa: E402
from corpus.curate.decontaminate import load_index  # noqa: E402
from corpus.curate.dedup import cluster, exact_dedup  # noqa: E402
from corpus.curate.filters import heuristic_check, language_check  # noqa: E402
from corpus.curate.minhash import DedupConfig, signature, signatures  # noqa: E402
from corpus.curate.quality import QualityClassifier, QualityParams, train_classifier  # noqa: E402

from _emit import emit as emit_figure  # noqa: E402

NAME = "dedup"
CFG = DedupConfig()


emit = partial(emit_figure, NAME)


def base_texts() -> dict[str, str]:
    """ArXiv-length fixture texts: PDF text layers, LaTeX sources, unarXive full texts."""
    import pymupdf

    texts = {}
    for p in sorted((FIXTURES / "pdf").glob("*.pdf")):
        with pymupdf.open(p) as d:
            texts[p.stem] = "\n".join(page.get_text() for page in d)
    for p in sorted((FIXTURES / "latex").rglob("*.tex")):
        texts[p.stem + "_tex"] = p.read_text(errors="replace")
    for line in (FIXTURES / "metadata" / "unarxive_2212_astro_subset4.jsonl").read_text().splitlines():
        rec = json.loads(line)
        texts["unarxive_" + rec["paper_id"]] = "\n\n".join(p["text"] for p in rec["body_text"])
    return texts


def edit(text: str, rate: float, seed: int) -> str:
    """Replace each whitespace-separated word with a random token with probability ``rate``."""
    if rate <= 0:
        return text
    rng = random.Random(seed)
    return " ".join(f"zq{rng.randrange(36**6):x}" if rng.random() < rate else w for w in text.split())


def shuffled(text: str, seed: int) -> str:
    ws = text.split()
    random.Random(seed).shuffle(ws)
    return " ".join(ws)


# ----------------------------------------------------------------------------------------- speed


def datasketch_loop(texts):
    from datasketch import MinHash

    out = []
    for t in texts:
        ws = t.lower().split()
        m = MinHash(num_perm=128)
        m.update_batch([" ".join(ws[i : i + 5]).encode("utf-8") for i in range(max(1, len(ws) - 4))])
        out.append(m.hashvalues)
    return out


def rensa_loop(texts):
    import rensa

    out = []
    for t in texts:
        ws = t.lower().split()
        m = rensa.RMinHash(num_perm=128, seed=42)
        m.update([" ".join(ws[i : i + 5]) for i in range(max(1, len(ws) - 4))])
        out.append(m.digest())
    return out


def stage_signer(texts):
    """The dedup stage's shard work as a run does it: documents read from Parquet, signed, stored, hashed."""
    import tempfile
    from pathlib import Path

    from corpus.curate.stages import Dedup
    from schemas import DOCUMENT, write_table

    tmp = Path(tempfile.mkdtemp(prefix="bench-dedup-"))
    rows = [{"paper_id": f"d{i:06d}", "text": t, "extractor": "latex", "reason": "bench", "n_pages": 0,
             "n_chars": len(t), "pages": [], "input_sha256": None} for i, t in enumerate(texts)]
    write_table(DOCUMENT, rows, tmp / "docs.parquet")
    stage = Dedup({"documents": str(tmp / "docs.parquet"), "minhash": CFG}).bind(tmp)
    stage.work_dir = tmp / "work"
    stage.work_dir.mkdir()
    items = list(range(len(texts)))
    return lambda _texts: list(stage.process(items))


def best_rate(fn, texts, repeats):
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(texts)
        best = max(best, len(texts) / (time.perf_counter() - t0))
    return best


def bench_speed(base: dict[str, str], n: int, repeats: int):
    names = sorted(base)
    texts = [edit(base[names[i % len(names)]], 0.01, i) for i in range(n)]
    signatures(texts[:4], CFG)  # warm the permutation cache and the word-hash cache equally for all
    datasketch_loop(texts[:4])
    ours = best_rate(lambda ts: signatures(ts, CFG), texts, repeats)
    anchor = best_rate(datasketch_loop, texts, repeats)
    emit("signatures_per_s", round(ours, 1), "docs/s", "datasketch MinHash(num_perm=128).update_batch loop",
         round(anchor, 1), target=2.0, target_on="ratio")
    stage = best_rate(stage_signer(texts), texts, repeats)
    emit("stage_signatures_per_s", round(stage, 1), "docs/s",
         "datasketch MinHash(num_perm=128).update_batch loop (same run)", round(anchor, 1), target=2.0, target_on="ratio")
    try:
        import rensa  # noqa: F401

        r = best_rate(rensa_loop, texts, repeats)
        emit("signatures_per_s_rensa", round(r, 1), "docs/s", "rensa RMinHash(num_perm=128) loop", None)
    except ImportError:
        print("rensa is not installed: no rensa figure", file=sys.stderr)
        emit("signatures_per_s_rensa", None, "docs/s", "rensa (not installed)", None)


# ----------------------------------------------------------------------------------------- quality


def bench_quality(base: dict[str, str]):
    ids, texts = [], []
    for k, (name, t) in enumerate(sorted(base.items())):
        for rate in (0.0, 0.005, 0.01, 0.05, 0.2):
            ids.append(f"{name}@{rate}")
            texts.append(edit(t, rate, 1000 * k + int(rate * 10000)))
        ids.append(f"{name}@shuffled")
        texts.append(shuffled(t, k))
    sh = {i: T.shingles(t, CFG.ngram) for i, t in zip(ids, texts)}
    results = cluster(ids, [len(t) for t in texts], signatures(texts, CFG), CFG, shingles_of=sh.__getitem__)
    res = {r.item_id: r for r in results}
    dropped = [r for r in results if r.action == "dropped"]
    good = sum(T.jaccard(sh[r.item_id], sh[r.kept_id]) >= CFG.threshold for r in dropped)
    precision = good / len(dropped) if dropped else 1.0
    high = same = unrelated_together = 0
    for a, b in itertools.combinations(ids, 2):
        j = T.jaccard(sh[a], sh[b])
        together = res[a].cluster_id is not None and res[a].cluster_id == res[b].cluster_id
        if j >= CFG.threshold:
            high += 1
            same += together
        elif j < 0.3 and together:
            unrelated_together += 1
    recall = same / high if high else 1.0
    print(f"planted set: {len(ids)} docs, {len(dropped)} dropped, {high} pairs >= {CFG.threshold}", file=sys.stderr)
    emit("precision", round(precision, 4), "fraction", None, None, target=0.99)
    emit("recall", round(recall, 4), "fraction", None, None, target=0.98)
    emit("unrelated_pairs_clustered", unrelated_together, "pairs", None, None, target=0, better="lower")


# ----------------------------------------------------------------------------------------- projection

_BASE: list[str] = []
_INDEX = None
_CLF = None


def _init_worker(base_list, qa_paths, model_path):
    global _BASE, _INDEX, _CLF
    _BASE = base_list
    _INDEX = load_index(qa_paths)
    _CLF = QualityClassifier.load(model_path)


def synth_doc(i: int) -> str:
    """Document ``i``: one in ten is a near-copy (1% edits) of document ``i - 1``; the rest are fixture
    texts with 30% word edits (Jaccard ~0.1 with each other)."""
    if i % 10 == 9:
        return edit(synth_doc(i - 1), 0.01, 7 * i)
    return edit(_BASE[i % len(_BASE)], 0.3, i)


def per_doc(i: int):
    """The per-document curation work of one paper; returns what the set-level steps need, and the
    seconds spent making the synthetic text (a stage reads it from Parquet instead; not counted)."""
    t0 = time.perf_counter()
    raw = synth_doc(i)
    t_synth = time.perf_counter() - t0
    text, changes = clean_text(raw, CleanConfig(), extractor="pdf")
    lang_ok, _, _ = language_check(text)
    heur_ok, _, _ = heuristic_check(text)
    q = _CLF.score(text)
    decon_ok, _, _ = _INDEX.check(text)
    return i, len(text), T.content_hash(text), signature(text, CFG), lang_ok and heur_ok and decon_ok, q, t_synth


def rss_mb() -> float:
    """Current resident memory of this process (MB)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakRSS:
    """Samples this process's resident memory every 20 ms while running."""

    def __init__(self):
        import threading

        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def bench_projection(base: dict[str, str], n: int, workers: int):
    from concurrent.futures import ProcessPoolExecutor

    base_list = [base[k] for k in sorted(base)]
    qa = [FIXTURES / "qa" / "astromlab1_astrobench_mcq_v1_public_en_sample50.json",
          FIXTURES / "qa" / "astro_qa_en_single_choice4_sample50.jsonl"]
    with tempfile.TemporaryDirectory() as tmp:
        rng = random.Random(0)
        pos = [" ".join(t.split()[i : i + 80]) for t in base_list for i in range(0, len(t.split()) - 80, 80)]
        neg = [" ".join(rng.choice(["sale", "cheap", "click", "recipe", "hotel", "bonus", "shoes", "match"])
                        for _ in range(60)) for _ in range(300)]
        model = train_classifier(pos, neg, Path(tmp) / "q.bin", QualityParams(epoch=3))
        _init_worker(base_list, qa, model)  # for shingles_of in this process
        rss0 = rss_mb()
        synth_s = 0.0
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            lengths = np.zeros(n, dtype=np.int64)
            hashes = [""] * n
            sigs = np.empty((n, CFG.num_perm), dtype=np.uint32)
            if workers > 1:
                with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(base_list, qa, model)) as pool:
                    for i, length, h, sig, _, _, ts in pool.map(per_doc, range(n), chunksize=64):
                        lengths[i], hashes[i], sigs[i] = length, h, sig
                        synth_s += ts
            else:
                for i in range(n):
                    _, lengths[i], hashes[i], sigs[i], _, _, ts = per_doc(i)
                    synth_s += ts
            t_docs = time.perf_counter() - t0 - synth_s / workers
            ids = [f"doc{i:07d}" for i in range(n)]
            t1 = time.perf_counter()
            exact = exact_dedup(ids, hashes, lengths)
            results = cluster(ids, lengths, sigs, CFG, shingles_of=lambda item: T.shingles(
                clean_text(synth_doc(int(item[3:])), extractor="pdf")[0]))
            t_set = time.perf_counter() - t1
        peak = mem.peak
        child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if workers > 1 else 0.0
    n_dropped = sum(r.action == "dropped" for r in results)
    print(f"projection run: {n} docs, per-doc work {t_docs:.1f}s ({workers} workers), exact+near dedup "
          f"{t_set:.1f}s, {n_dropped} near-duplicates dropped (planted {n // 10}), exact dropped "
          f"{sum(r.action == 'dropped' for r in exact)}; synthetic-text generation {synth_s:.1f}s excluded; "
          f"main process RSS {rss0:.0f} MB -> peak {peak:.0f} MB; each worker peak {child_mb:.0f} MB",
          file=sys.stderr)
    scale = 250_000 / n
    emit("projected_wall_s_250k", round((t_docs + t_set) * scale, 1), "s", None, None, better="lower")
    emit("projected_peak_rss_mb_250k", round(rss0 + (peak - rss0) * scale + workers * child_mb, 1), "MB",
         None, None, better="lower")
    emit("measured_wall_s", round(t_docs + t_set, 1), "s", f"{n} documents, {workers} workers", None, better="lower")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run, about a minute)")
    ap.add_argument("--docs", type=int, default=None, help="documents in the projection run (default 20000)")
    ap.add_argument("--speed-docs", type=int, default=None, help="documents timed for signatures (default 300)")
    ap.add_argument("--workers", type=int, default=2, help="processes for the per-document work of the projection")
    args = ap.parse_args(argv)
    if not FIXTURES.is_dir():
        sys.exit(f"fixtures not found at {FIXTURES} (set SAGECORPUS_FIXTURES)")
    n_docs = args.docs or (1000 if args.quick else 20_000)
    n_speed = args.speed_docs or (60 if args.quick else 300)
    base = base_texts()
    bench_speed(base, n_speed, repeats=2 if args.quick else 3)
    bench_quality(base)
    bench_projection(base, n_docs, args.workers)


if __name__ == "__main__":
    main()
