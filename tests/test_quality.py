"""The fastText quality classifier trains and predicts in the installed environment.

This guards against a predict-only fastText build: ``train_supervised`` must work here.
"""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpus.curate.quality import (
    QualityClassifier,
    QualityModelError,
    QualityParams,
    manifest_path,
    train_classifier,
    train_from_parquet,
)

OFF_TOPIC = ("recipe butter sugar flour oven bake minutes chocolate cookies dough sale discount shipping "
             "cart checkout coupon celebrity fashion dress shoes handbag football match goal referee "
             "holiday beach hotel booking cheap flights lottery casino bonus click subscribe newsletter").split()


def _windows(text: str, size: int = 80) -> list[str]:
    ws = text.split()
    return [" ".join(ws[i : i + size]) for i in range(0, len(ws) - size, size)]


def _off_topic(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(OFF_TOPIC) for _ in range(60)) for _ in range(n)]


@pytest.fixture(scope="module")
def astro(fixtures):
    papers = {}
    for line in (fixtures / "metadata" / "unarxive_2212_astro_subset4.jsonl").read_text().splitlines():
        rec = json.loads(line)
        papers[rec["paper_id"]] = "\n".join(p["text"] for p in rec["body_text"])
    return papers


def test_train_and_predict(tmp_path, astro):
    held_out = "2212.11899"
    pos = [w for pid, t in astro.items() if pid != held_out for w in _windows(t)]
    neg = _off_topic(300, 1)
    assert len(pos) > 200
    model = train_classifier(pos, neg, tmp_path / "q.bin", QualityParams(epoch=5, thread=1))
    clf = QualityClassifier.load(model)
    astro_scores = [clf.score(w) for w in _windows(astro[held_out])[:30]]
    junk_scores = [clf.score(t) for t in _off_topic(30, 2)]
    assert sum(s > 0.5 for s in astro_scores) >= 27, astro_scores
    assert sum(s < 0.5 for s in junk_scores) >= 27, junk_scores
    assert all(0.0 <= s <= 1.0 for s in astro_scores + junk_scores)
    keep, reason, score = clf.check(_off_topic(1, 3)[0], threshold=0.5)
    assert (keep, reason) == (False, "low_quality") and score < 0.5

    manifest = json.loads(manifest_path(model).read_text())
    assert manifest["n_positive"] == len(pos) and manifest["n_negative"] == 300
    assert manifest["params"]["epoch"] == 5 and len(manifest["train_file_sha256"]) == 64
    assert manifest["versions"]["fasttext-numpy2-wheel"]


def test_train_from_parquet_records_inputs(tmp_path, astro):
    pos_path, neg_path = tmp_path / "pos.parquet", tmp_path / "neg.parquet"
    pq.write_table(pa.table({"text": [w for t in astro.values() for w in _windows(t)]}), pos_path)
    pq.write_table(pa.table({"text": _off_topic(300, 4)}), neg_path)
    model = train_from_parquet([pos_path], [neg_path], tmp_path / "m" / "q.bin", QualityParams(epoch=3))
    manifest = json.loads(manifest_path(model).read_text())
    assert manifest["inputs"]["positive"][0]["path"] == str(pos_path)
    assert len(manifest["inputs"]["negative"][0]["sha256"]) == 64
    assert QualityClassifier.load(model).score(next(iter(astro.values()))) > 0.5


def test_errors_name_the_file(tmp_path):
    with pytest.raises(QualityModelError, match="need positive and negative"):
        train_classifier(["some text"], [], tmp_path / "q.bin")
    with pytest.raises(QualityModelError, match="not found"):
        QualityClassifier.load(tmp_path / "missing.bin")
    bogus = tmp_path / "bogus.bin"
    bogus.write_bytes(b"not a model")
    with pytest.raises(QualityModelError, match="no manifest"):
        QualityClassifier.load(bogus)
    with pytest.raises(QualityModelError, match="cannot read column"):
        train_from_parquet([bogus], [bogus], tmp_path / "q.bin")
