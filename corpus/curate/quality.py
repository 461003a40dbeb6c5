"""A trainable fastText quality/domain classifier (DCLM-style): positive vs negative example texts.

Train once from positive and negative examples (e.g. Parquet files of good astronomy papers and of
off-domain or low-quality text), save the model with a manifest next to it, then score each paper:
the probability of the positive label goes into the paper's ``Decision`` row and a configurable
threshold decides kept/dropped.

Texts are fed to fastText as their normalised words (:func:`corpus.curate.text.words`) on one line,
the same at training and scoring time. Training uses the ``fasttext`` module from
``fasttext-numpy2-wheel`` (a full build: ``train_supervised`` and ``predict``).
"""

from __future__ import annotations

import json
import os
import platform
import random
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from corpus.curate import text as T
from schemas import sha256_file

POSITIVE, NEGATIVE = "__label__pos", "__label__neg"


class QualityModelError(RuntimeError):
    """Training failed or a model file is unusable; the message names the file and the problem."""


@dataclass(frozen=True)
class QualityParams:
    """fastText ``train_supervised`` settings (see fastText's documentation)."""

    epoch: int = field(default=10, metadata={"help": "training epochs"})
    lr: float = field(default=0.1, metadata={"help": "learning rate"})
    dim: int = field(default=64, metadata={"help": "embedding size"})
    word_ngrams: int = field(default=2, metadata={"help": "word n-gram features"})
    min_count: int = field(default=1, metadata={"help": "minimum word count"})
    bucket: int = field(default=200_000, metadata={"help": "hash buckets for n-gram features"})
    thread: int = field(default=1, metadata={"help": "threads (1 makes training reproducible)"})
    seed: int = field(default=0, metadata={"help": "fastText seed and shuffle seed"})
    max_words: int = field(default=4000, metadata={"help": "words of each text used (from its start)"})


def _line(text: str, max_words: int) -> str:
    ws = T.words(text)[:max_words]
    return b" ".join(ws).decode("utf-8", "replace")


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("fasttext-numpy2-wheel", "numpy", "sagecorpus"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def manifest_path(model_path: str | os.PathLike) -> Path:
    p = Path(model_path)
    return p.with_name(p.name + ".manifest.json")


def train_classifier(pos_texts: Iterable[str], neg_texts: Iterable[str], out_path: str | os.PathLike,
                     params: QualityParams = QualityParams(), inputs: dict | None = None) -> Path:
    """Train a fastText classifier on positive and negative texts; save it to ``out_path``.

    Writes ``out_path`` (fastText ``.bin``) and ``<out_path>.manifest.json`` (training inputs and
    the training file's sha256, example counts, params, package versions). ``inputs`` describes
    where the texts came from (e.g. file paths and hashes, see :func:`train_from_parquet`).
    Returns the model path. Raises :class:`QualityModelError` on empty classes or a failed training.
    """
    import fasttext

    out_path = Path(out_path)
    pos = [_line(t, params.max_words) for t in pos_texts]
    neg = [_line(t, params.max_words) for t in neg_texts]
    pos, neg = [p for p in pos if p], [n for n in neg if n]
    if not pos or not neg:
        raise QualityModelError(
            f"{out_path}: need positive and negative examples with text, got {len(pos)} positive and "
            f"{len(neg)} negative")
    lines = [f"{POSITIVE} {p}" for p in pos] + [f"{NEGATIVE} {n}" for n in neg]
    random.Random(params.seed).shuffle(lines)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        train_file = Path(tmp) / "train.txt"
        train_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        train_sha = sha256_file(train_file)
        try:
            model = fasttext.train_supervised(
                input=str(train_file), epoch=params.epoch, lr=params.lr, dim=params.dim,
                wordNgrams=params.word_ngrams, minCount=params.min_count, bucket=params.bucket,
                thread=params.thread, seed=params.seed, loss="softmax", verbose=0)
        except (RuntimeError, ValueError) as e:
            raise QualityModelError(
                f"{out_path}: fastText training failed ({e}); with very few examples try more data, "
                "fewer epochs or a lower lr") from e
        tmp_model = Path(tmp) / "model.bin"
        model.save_model(str(tmp_model))
        os.replace(tmp_model, out_path)
    manifest = {
        "kind": "sagecorpus.quality_classifier",
        "model": out_path.name,
        "model_sha256": sha256_file(out_path),
        "labels": {"positive": POSITIVE, "negative": NEGATIVE},
        "n_positive": len(pos),
        "n_negative": len(neg),
        "train_file_sha256": train_sha,
        "inputs": inputs or {},
        "params": asdict(params),
        "versions": _versions(),
    }
    manifest_path(out_path).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return out_path


def _read_texts(paths: Sequence[str | os.PathLike], column: str) -> list[str]:
    import pyarrow.parquet as pq

    texts: list[str] = []
    for p in paths:
        try:
            t = pq.read_table(p, columns=[column])
        except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear message
            raise QualityModelError(f"{p}: cannot read column {column!r} as Parquet: {e}") from e
        texts.extend(x for x in t.column(column).to_pylist() if x)
    return texts


def train_from_parquet(pos_paths: Sequence[str | os.PathLike], neg_paths: Sequence[str | os.PathLike],
                       out_path: str | os.PathLike, params: QualityParams = QualityParams(),
                       text_column: str = "text") -> Path:
    """:func:`train_classifier` from Parquet files (any table with a text column, e.g. ``document``);
    the manifest records each file's path and sha256."""
    inputs = {
        "text_column": text_column,
        "positive": [{"path": str(p), "sha256": sha256_file(Path(p))} for p in pos_paths],
        "negative": [{"path": str(p), "sha256": sha256_file(Path(p))} for p in neg_paths],
    }
    return train_classifier(_read_texts(pos_paths, text_column), _read_texts(neg_paths, text_column),
                            out_path, params, inputs)


class QualityClassifier:
    """A trained model: ``QualityClassifier.load(path).score(text)`` is P(positive) in [0, 1]."""

    def __init__(self, model, path: Path, manifest: dict):
        self.model, self.path, self.manifest = model, path, manifest
        self.max_words = int(manifest.get("params", {}).get("max_words", QualityParams.max_words))

    @classmethod
    def load(cls, path: str | os.PathLike) -> QualityClassifier:
        import fasttext

        path = Path(path)
        if not path.is_file():
            raise QualityModelError(f"{path}: quality model not found")
        mpath = manifest_path(path)
        if not mpath.is_file():
            raise QualityModelError(f"{path}: no manifest at {mpath} (train with corpus.curate.quality)")
        manifest = json.loads(mpath.read_text())
        if manifest.get("model_sha256") != sha256_file(path):
            raise QualityModelError(f"{path}: sha256 differs from its manifest {mpath}; the model was replaced")
        try:
            model = fasttext.load_model(str(path))
        except ValueError as e:
            raise QualityModelError(f"{path}: not a fastText model: {e}") from e
        if set(model.get_labels()) != {POSITIVE, NEGATIVE}:
            raise QualityModelError(f"{path}: labels {model.get_labels()}, expected {POSITIVE} and {NEGATIVE}")
        return cls(model, path, manifest)

    def score(self, text: str) -> float:
        """Probability (0..1) that ``text`` belongs to the positive class."""
        line = _line(text, self.max_words)
        labels, probs = self.model.predict(line, k=2)
        p = dict(zip(labels, probs)).get(POSITIVE, 0.0)
        return float(min(1.0, max(0.0, p)))

    def check(self, text: str, threshold: float) -> tuple[bool, str | None, float]:
        """``(keep, reason, score)``; reason ``low_quality`` when below ``threshold``."""
        s = self.score(text)
        return (True, None, s) if s >= threshold else (False, "low_quality", s)
