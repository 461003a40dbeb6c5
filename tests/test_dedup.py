"""Dedup: datasketch-compatible signatures, planted near-duplicates, determinism, a result per input."""

from __future__ import annotations

import json
import os
import random
import threading
from pathlib import Path

import numpy as np
import pytest
from datasketch import LeanMinHash, MinHash, MinHashLSH

from corpus.curate import text as T
from corpus.curate.dedup import DedupError, DedupResult, cluster, exact_dedup
from corpus.curate.minhash import (
    DedupConfig,
    SignatureStore,
    SignatureStoreError,
    lean_minhash,
    shingle_hashes32,
    signature,
    signatures,
)

CFG = DedupConfig()


def _paper(seed: int, n_words: int = 3000) -> str:
    """A synthetic paper: random words from a large vocabulary, so two seeds are unrelated."""
    rng = random.Random(seed)
    vocab = [f"w{rng.randrange(10**6)}" for _ in range(5000)]
    return " ".join(rng.choice(vocab) for _ in range(n_words))


def _edit(text: str, rate: float, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(f"edit{rng.randrange(10**9)}" if rng.random() < rate else w for w in text.split())


@pytest.fixture(scope="module")
def pdf_texts(fixtures):
    import pymupdf

    out = {}
    for p in sorted((fixtures / "pdf").glob("*.pdf")):
        with pymupdf.open(p) as d:
            out[p.stem] = "\n".join(page.get_text() for page in d)
    return out


def test_signature_is_datasketch_minhash_bit_for_bit(pdf_texts):
    text = pdf_texts["legwork_wagg2022_aastex631_twocol"]
    h = shingle_hashes32(text, CFG)
    m = MinHash(num_perm=CFG.num_perm, seed=CFG.seed, hashfunc=lambda x: x)
    m.update_batch([int(v) for v in h])
    assert np.array_equal(m.hashvalues, signature(text, CFG))
    # ... so datasketch's LSH indexes it and its estimate matches ours
    lsh = MinHashLSH(threshold=0.7, num_perm=CFG.num_perm)
    lsh.insert("a", lean_minhash(signature(text, CFG), CFG))
    assert lsh.query(LeanMinHash(m)) == ["a"]


def test_signature_estimates_jaccard(pdf_texts):
    text = pdf_texts["hwobows_vaughan2023_mnras"]
    edited = _edit(text, 0.01, 1)
    exact = T.jaccard(T.shingles(text), T.shingles(edited))
    est = lean_minhash(signature(text), CFG).jaccard(lean_minhash(signature(edited), CFG))
    assert 0.8 < exact < 0.97
    assert abs(est - exact) < 0.12


def test_normalisation_ignores_case_punctuation_ligatures():
    assert T.words("The ﬁrst  Galaxy, (z=2)!") == [b"the", b"first", b"galaxy", b"z", b"2"]
    assert T.content_hash("Dark  matter.\n") == T.content_hash("dark matter")
    assert T.content_hash("dark matter") != T.content_hash("dark energy")


def test_word_hash_cache_is_bounded_and_stable():
    small = T.WordHasher(max_cache=5)
    ws = [b"a", b"b", b"c", b"d"]
    first = small.hash(ws)
    again = small.hash([b"e", b"f", b"a", b"b"])  # overflows the cache: it is dropped and refilled
    assert len(small._cache) <= 5
    assert again[2:].tolist() == first[:2].tolist()
    assert np.array_equal(T.WordHasher().hash(ws), first)


def test_signatures_parallel_equals_serial():
    texts = [_paper(i, 400) for i in range(6)]
    assert np.array_equal(signatures(texts, CFG, workers=2, chunk=2), signatures(texts, CFG))


def test_planted_near_duplicates_found_and_unrelated_never_clustered():
    base = [_paper(s) for s in range(8)]
    ids, texts = [], []
    for k, t in enumerate(base):
        for rate in (0.0, 0.005, 0.01, 0.2):
            ids.append(f"p{k}-{rate}")
            texts.append(t if rate == 0 else _edit(t, rate, 100 * k + int(rate * 1000)))
    lengths = [len(t) for t in texts]
    sigs = signatures(texts, CFG)
    by_id = dict(zip(ids, texts))
    results = cluster(ids, lengths, sigs, CFG, shingles_of=lambda i: T.shingles(by_id[i]))
    assert [r.item_id for r in results] == ids  # one result per input, in order
    res = {r.item_id: r for r in results}
    for k in range(8):
        group = [f"p{k}-{r}" for r in (0.0, 0.005, 0.01)]
        clusters = {res[i].cluster_id for i in group}
        assert len(clusters) == 1 and None not in clusters, [res[i] for i in group]
        assert sum(res[i].action == "kept" for i in group) == 1
        # the 20%-edited copy (Jaccard ~0.2) stays on its own
        far = res[f"p{k}-0.2"]
        assert far.action == "kept" and far.cluster_id is None
    kept_of = {r.item_id: r.kept_id for r in results if r.action == "dropped"}
    for i, k in kept_of.items():
        assert i.split("-")[0] == k.split("-")[0]  # never across unrelated papers
        assert T.jaccard(T.shingles(by_id[i]), T.shingles(by_id[k])) >= CFG.threshold
        r = res[i]
        assert r.reason == "near_duplicate" and r.score >= CFG.threshold


def test_representative_is_longest_then_smallest_id():
    t = _paper(1)
    texts = {"b": t, "a": t, "c": t + " extra words at the end"}
    ids = list(texts)
    sigs = signatures(texts.values(), CFG)
    res = {r.item_id: r for r in cluster(ids, [len(x) for x in texts.values()], sigs, CFG)}
    assert res["c"].action == "kept" and res["c"].reason == "cluster_representative"
    assert res["a"].kept_id == res["b"].kept_id == "c"
    # equal lengths: the smallest id wins, whatever the input order
    for order in (["b", "a"], ["a", "b"]):
        out = cluster(order, [len(t)] * 2, signatures([t, t], CFG), CFG)
        kept = [r.item_id for r in out if r.action == "kept"]
        assert kept == ["a"]


def test_dropped_always_at_threshold_against_kept_even_through_chains():
    # A ~ B ~ C with A and C below the threshold: C must not be dropped against A.
    a = _paper(3, 4000)
    b = _edit(a, 0.02, 1)
    c = _edit(b, 0.02, 2)
    texts = {"a": a + " longest", "b": b, "c": c}
    ids = list(texts)
    shingles = {i: T.shingles(x) for i, x in texts.items()}
    sigs = signatures(texts.values(), CFG)
    cfg = DedupConfig(threshold=0.8, candidate_threshold=0.6)
    out = cluster(ids, [len(x) for x in texts.values()], sigs, cfg, shingles_of=shingles.__getitem__)
    for r in out:
        if r.action == "dropped":
            assert T.jaccard(shingles[r.item_id], shingles[r.kept_id]) >= 0.8
    assert any(r.action == "kept" for r in out)


def test_empty_texts_are_kept_and_not_clustered():
    out = cluster(["x", "y"], [0, 0], signatures(["", "  ...  "], CFG), CFG)
    assert [(r.action, r.reason) for r in out] == [("kept", "empty_text")] * 2


def test_bad_inputs_raise_clear_errors():
    sigs = signatures([_paper(1, 50), _paper(2, 50)], CFG)
    with pytest.raises(DedupError, match="unique"):
        cluster(["a", "a"], [1, 1], sigs, CFG)
    with pytest.raises(DedupError, match="lengths"):
        cluster(["a", "b"], [1], sigs, CFG)
    with pytest.raises(DedupError, match="uint32"):
        cluster(["a", "b"], [1, 1], sigs.astype(np.uint64), CFG)
    with pytest.raises(ValueError, match="candidate_threshold"):
        DedupConfig(threshold=0.8, candidate_threshold=0.9)


def test_exact_dedup():
    texts = {"a": "Dark matter halo.", "b": "dark  matter halo", "c": "Something else entirely"}
    ids = list(texts)
    out = exact_dedup(ids, [T.content_hash(t) for t in texts.values()], [len(t) for t in texts.values()])
    assert [(r.item_id, r.action, r.reason) for r in out] == [
        ("a", "kept", "cluster_representative"), ("b", "dropped", "exact_duplicate"), ("c", "kept", "unique")]
    assert out[1].kept_id == "a" and out[1].score == 1.0
    row = out[1].decision("dedup_exact")
    assert row["cluster_id"] == out[0].cluster_id and json.loads(row["detail"])["content_hash"]


def test_decision_rows_validate_against_schema(tmp_path):
    from schemas.io import read_table, write_table
    from schemas.tables import DECISION

    t = _paper(5)
    ids = ["x", "y", "z"]
    texts = [t, _edit(t, 0.005, 9), _paper(6)]
    out = cluster(ids, [300, 200, 100], signatures(texts, CFG), CFG)
    write_table(DECISION, [r.decision("dedup") for r in out], tmp_path / "d.parquet")
    back = read_table(tmp_path / "d.parquet", DECISION).to_pylist()
    assert [(r["item_id"], r["action"]) for r in back] == [("x", "kept"), ("y", "dropped"), ("z", "kept")]
    assert back[1]["kept_id"] == "x" and back[1]["cluster_id"] == back[0]["cluster_id"] == "minhash:x"


def test_signature_store_round_trip_and_config_guard(tmp_path):
    texts = [_paper(i, 300) for i in range(5)]
    sigs = signatures(texts, CFG)
    store = SignatureStore(tmp_path / "sigs", CFG)
    store.write_shard("00001", ["d3", "d4"], [3, 4], sigs[3:])
    store.write_shard("00000", ["d0", "d1", "d2"], [0, 1, 2], sigs[:3])
    ids, lengths, back = store.load()
    assert ids == ["d0", "d1", "d2", "d3", "d4"] and list(lengths) == [0, 1, 2, 3, 4]
    assert np.array_equal(back, sigs)
    with pytest.raises(SignatureStoreError, match="num_perm"):
        SignatureStore(tmp_path / "sigs", DedupConfig(num_perm=64, seed=1))
    with pytest.raises(SignatureStoreError, match="uint32"):
        store.write_shard("bad", ["a"], [1], sigs[:1].astype(np.int64))


def test_parallel_shard_writers_touch_only_their_own_files(tmp_path, monkeypatch):
    sigs = signatures([_paper(i, 300) for i in range(4)], CFG)
    renames: dict[str, list[tuple[str, str]]] = {}
    real_replace = os.replace

    def recording_replace(src, dst):
        renames.setdefault(threading.current_thread().name, []).append((Path(src).name, Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    errors = []
    for round_ in range(30):  # two writers open one fresh store and write their shards at the same moment
        barrier = threading.Barrier(2)

        def write(name, lo, root=tmp_path / f"store{round_}"):
            try:
                barrier.wait()
                SignatureStore(root, CFG).write_shard(name, [f"{name}-a", f"{name}-b"], [1, 2], sigs[lo:lo + 2])
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(f"{name}: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=write, args=(n, lo), name=n) for n, lo in (("00000", 0), ("00002", 2))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ids, _, back = SignatureStore(tmp_path / f"store{round_}", CFG).load()
        assert ids == ["00000-a", "00000-b", "00002-a", "00002-b"] and np.array_equal(back, sigs)
    assert errors == []
    for name in ("00000", "00002"):  # every file a writer created or renamed is its own shard's
        assert renames[name] and all(src.startswith(name) and dst.startswith(name) for src, dst in renames[name])


def test_a_shard_written_with_other_settings_is_refused_when_loaded(tmp_path):
    sigs = signatures([_paper(1, 300)], CFG)
    SignatureStore(tmp_path / "s", CFG).write_shard("00000", ["a"], [1], sigs)
    other = DedupConfig(ngram=3)
    SignatureStore(tmp_path / "s", other).write_shard("00001", ["b"], [1], signatures([_paper(2, 300)], other))
    with pytest.raises(SignatureStoreError, match="00001.ids.parquet.*ngram"):
        SignatureStore(tmp_path / "s", CFG).load()


def test_results_are_dedup_results():
    out = cluster(["a"], [10], signatures([_paper(1, 20)], CFG), CFG)
    assert isinstance(out[0], DedupResult) and out[0].action == "kept" and out[0].reason == "unique"
