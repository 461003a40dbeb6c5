"""MinHash signatures of word n-gram shingles: fast, vectorised, and exactly datasketch's MinHash.

A signature here is *bit for bit* the ``hashvalues`` of
``datasketch.MinHash(num_perm, seed=seed, scheme="affine32", hashfunc=lambda h: h)`` updated with
the document's 32-bit shingle hashes: the same permutations (taken from datasketch itself), the same
MurmurHash3 pre-mix, the same ``a * h + b mod 2**32``. So a signature row can be handed to
``datasketch.LeanMinHash(seed=seed, hashvalues=row, scheme="affine32")`` and indexed by
``datasketch.MinHashLSH`` (or any storage it supports, Redis included).

What makes it faster than the plain ``MinHash.update_batch`` loop: words are hashed once each (with a
cache, since word frequencies are Zipfian) instead of SHA-1 over every 5-gram string, shingle hashes
are combined from word hashes with numpy arithmetic, duplicate shingles are removed before the
permutations, and the permutation-min runs over cache-sized blocks with preallocated buffers.

Signatures are ``uint32`` arrays of shape ``(n, num_perm)``: 250,000 papers x 128 permutations take
128 MB. :class:`SignatureStore` writes them as one ``.npy`` per shard beside a Parquet file of ids, so
the clustering step reads signatures (memory-mapped) and never the texts.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from corpus.curate import text as T

SCHEME = "affine32"
EMPTY = np.uint32(0xFFFFFFFF)
"""The value of every slot of a signature of a text with no words (datasketch's empty MinHash)."""
PARAMS_KEY = "sagecorpus.signature_params"
"""Where a shard's ``.ids.parquet`` holds the signature settings it was written with."""


@dataclass(frozen=True)
class DedupConfig:
    """Near-duplicate detection settings (MinHash over word n-gram shingles, LSH, verification)."""

    ngram: int = field(default=5, metadata={"help": "words per shingle"})
    num_perm: int = field(default=128, metadata={"help": "MinHash permutations (signature length)"})
    seed: int = field(default=1, metadata={"help": "seed of the MinHash permutations (datasketch's)"})
    threshold: float = field(
        default=0.8, metadata={"help": "target Jaccard: a paper is dropped only at or above it against the kept one"})
    candidate_threshold: float = field(
        default=0.7, metadata={"help": "LSH candidate threshold, below the target so near-threshold pairs are not missed"})
    lsh_weights: tuple[float, float] = field(
        default=(0.1, 0.9), metadata={"help": "datasketch (false-positive, false-negative) weights for choosing bands"})
    verify_margin: float = field(
        default=0.1, metadata={"help": "estimates within this of the threshold are re-checked on exact shingles when a shingle callback is given"})
    lsh_storage: dict | None = field(
        default=None, metadata={"help": "datasketch MinHashLSH storage_config (None: in memory; {'type': 'redis', ...} past one machine)"})
    block: int = field(default=2048, metadata={"help": "shingles per block in the vectorised permutation-min"})

    def __post_init__(self):
        if self.ngram < 1:
            raise ValueError(f"DedupConfig.ngram must be >= 1, got {self.ngram}")
        if self.num_perm < 2:
            raise ValueError(f"DedupConfig.num_perm must be >= 2, got {self.num_perm}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"DedupConfig.threshold must be in (0, 1], got {self.threshold}")
        if not 0.0 < self.candidate_threshold <= self.threshold:
            raise ValueError(
                f"DedupConfig.candidate_threshold ({self.candidate_threshold}) must be in (0, threshold={self.threshold}]")

    def signature_params(self) -> dict:
        """What a stored signature depends on; a store written with other values cannot be mixed in."""
        return {"ngram": self.ngram, "num_perm": self.num_perm, "seed": self.seed, "scheme": SCHEME,
                "words": "corpus.curate.text.words v1", "shingle_hash": "blake2b64-words/fmix64 low 32 bits"}


_PERM_CACHE: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's own affine32 permutation parameters ``(a, b)`` (uint32 arrays) for this seed."""
    key = (num_perm, seed)
    if key not in _PERM_CACHE:
        from datasketch import MinHash

        a, b = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
        _PERM_CACHE[key] = (np.ascontiguousarray(a, dtype=np.uint32), np.ascontiguousarray(b, dtype=np.uint32))
    return _PERM_CACHE[key]


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser (datasketch's pre-mix for the affine32 scheme)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def shingle_hashes32(text: str, config: DedupConfig, hasher: T.WordHasher | None = None) -> np.ndarray:
    """Sorted unique 32-bit shingle hashes of ``text``: the values a datasketch MinHash is updated with."""
    h64 = T.ngram_hashes(T.word_hashes(T.words(text), hasher), config.ngram)
    return np.unique(h64.astype(np.uint32))  # the low 32 bits of a well-mixed 64-bit hash


def minhash_of_hashes(h32: np.ndarray, config: DedupConfig) -> np.ndarray:
    """MinHash signature (uint32, ``num_perm``) of a set of 32-bit element hashes."""
    a, b = permutations(config.num_perm, config.seed)
    sig = np.full(config.num_perm, EMPTY, dtype=np.uint32)
    if len(h32) == 0:
        return sig
    x = fmix32(np.asarray(h32, dtype=np.uint32))[:, None]
    buf = np.empty((min(config.block, len(x)), config.num_perm), dtype=np.uint32)
    for s in range(0, len(x), config.block):
        xs = x[s : s + config.block]
        out = buf[: len(xs)]
        np.multiply(xs, a, out=out)
        np.add(out, b, out=out)
        np.minimum(sig, out.min(axis=0), out=sig)
    return sig


def signature(text: str, config: DedupConfig = DedupConfig(), hasher: T.WordHasher | None = None) -> np.ndarray:
    """MinHash signature (uint32 array of ``num_perm``) of ``text``'s word n-gram shingles."""
    return signature_of_words(T.words(text), config, hasher)


def signature_of_words(ws: list[bytes], config: DedupConfig = DedupConfig(), hasher: T.WordHasher | None = None) -> np.ndarray:
    """:func:`signature` from the text's words (:func:`corpus.curate.text.words`), when the caller needs them too."""
    # Repeated shingles do not change a minimum, so they are not removed first (that costs more
    # than the ~10% of permutation work it would save on papers).
    h64 = T.ngram_hashes(T.word_hashes(ws, hasher), config.ngram)
    return minhash_of_hashes(h64.astype(np.uint32), config)


def _signatures_serial(texts: Sequence[str], config: DedupConfig) -> np.ndarray:
    out = np.empty((len(texts), config.num_perm), dtype=np.uint32)
    for i, t in enumerate(texts):
        out[i] = signature(t, config)
    return out


def signatures(texts: Iterable[str], config: DedupConfig = DedupConfig(), workers: int = 1,
               chunk: int = 256) -> np.ndarray:
    """Signatures of many texts: a ``uint32`` array of shape ``(len(texts), num_perm)``, in input order.

    ``workers > 1`` computes chunks of ``chunk`` texts in that many processes.
    """
    texts = list(texts)
    if workers <= 1 or len(texts) <= chunk:
        return _signatures_serial(texts, config)
    parts = [texts[i : i + chunk] for i in range(0, len(texts), chunk)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_signatures_serial, parts, [config] * len(parts)))
    return np.concatenate(results, axis=0)


def is_empty(sig: np.ndarray) -> np.ndarray | bool:
    """True for the signature(s) of texts with no words (every slot at the empty value)."""
    return np.all(sig == EMPTY, axis=-1)


def estimate_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """MinHash estimate of the Jaccard similarity: the fraction of equal slots (as datasketch)."""
    return float(np.count_nonzero(a == b)) / a.shape[-1]


def lean_minhash(sig: np.ndarray, config: DedupConfig):
    """A ``datasketch.LeanMinHash`` holding this signature (for MinHashLSH or ``.jaccard``)."""
    from datasketch import LeanMinHash

    return LeanMinHash(seed=config.seed, hashvalues=sig, scheme=SCHEME)


class SignatureStoreError(ValueError):
    """A signature store is unreadable or was written with other settings."""


@dataclass
class SignatureStore:
    """Signatures on disk, one shard per writer task: ``<name>.npy`` (uint32, rows x num_perm) beside
    ``<name>.ids.parquet`` (``item_id``, ``length``, and the signature settings in its metadata).

    Shards may be written by parallel tasks (distinct names): a writer creates only its own shard's
    files, each under a temporary name of its own (shard name and process id) renamed into place, so
    two writers never touch one file. :meth:`load` (the single reader) checks every shard's settings,
    concatenates the shards in name order, memory-mapping the arrays, and then writes ``store.json``
    (the settings and the shard list). A store opened with settings other than those it was written
    with raises :class:`SignatureStoreError` (at opening once ``store.json`` exists, else at loading).
    """

    root: Path
    config: DedupConfig

    def __post_init__(self):
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        index = self.root / "store.json"
        if index.exists():
            found = {k: v for k, v in json.loads(index.read_text()).items() if k != "shards"}
            self._check_params(found, index)

    def _check_params(self, found: dict, where: Path) -> None:
        params = self.config.signature_params()
        if found != params:
            raise SignatureStoreError(
                f"{where}: signatures were written with {found}, but this run uses {params}; "
                "recompute them or point at another store")

    def _tmp(self, path: Path) -> Path:
        """A temporary name for ``path`` that no other writer uses."""
        return path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")

    def write_shard(self, name: str, ids: Sequence[str], lengths: Sequence[int], sigs: np.ndarray) -> Path:
        """Write one shard atomically (only its own files); returns the ``.npy`` path."""
        sigs = np.asarray(sigs)
        if sigs.dtype != np.uint32 or sigs.ndim != 2 or sigs.shape[1] != self.config.num_perm:
            raise SignatureStoreError(
                f"{self.root}/{name}: expected uint32 signatures of shape (n, {self.config.num_perm}), "
                f"got {sigs.dtype} {sigs.shape}")
        if not (len(ids) == len(lengths) == len(sigs)):
            raise SignatureStoreError(
                f"{self.root}/{name}: {len(ids)} ids, {len(lengths)} lengths and {len(sigs)} signatures differ")
        npy = self.root / f"{name}.npy"
        ids_path = self.root / f"{name}.ids.parquet"
        table = pa.table({"item_id": pa.array(list(ids), pa.large_string()),
                          "length": pa.array(list(lengths), pa.int64())})
        table = table.replace_schema_metadata({PARAMS_KEY: json.dumps(self.config.signature_params(), sort_keys=True)})
        ids_tmp, npy_tmp = self._tmp(ids_path), self._tmp(npy)
        pq.write_table(table, ids_tmp, compression="zstd")
        with open(npy_tmp, "wb") as f:
            np.save(f, sigs)
        os.replace(ids_tmp, ids_path)
        os.replace(npy_tmp, npy)  # the .npy appears last: it marks the shard complete
        return npy

    def shards(self) -> list[str]:
        return sorted(p.name[: -len(".npy")] for p in self.root.glob("*.npy"))

    def iter_shards(self) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
        """Yield ``(ids, lengths, signatures)`` per shard, signatures memory-mapped."""
        for name in self.shards():
            ids_path = self.root / f"{name}.ids.parquet"
            if not ids_path.exists():
                raise SignatureStoreError(f"{ids_path}: missing (shard {name!r} has signatures but no ids)")
            t = pq.read_table(ids_path)
            found = (t.schema.metadata or {}).get(PARAMS_KEY.encode())
            self._check_params(json.loads(found) if found else {}, ids_path)
            sigs = np.load(self.root / f"{name}.npy", mmap_mode="r")
            if sigs.shape != (t.num_rows, self.config.num_perm) or sigs.dtype != np.uint32:
                raise SignatureStoreError(
                    f"{self.root}/{name}.npy: shape {sigs.shape} {sigs.dtype} does not match "
                    f"{t.num_rows} ids x {self.config.num_perm} uint32")
            yield t.column("item_id").to_pylist(), t.column("length").to_numpy(), sigs

    def load(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """All shards: ``(ids, lengths int64, signatures uint32 (n, num_perm))``."""
        ids: list[str] = []
        lengths, sigs = [], []
        for i, l, s in self.iter_shards():
            ids.extend(i)
            lengths.append(np.asarray(l, dtype=np.int64))
            sigs.append(s)
        if not ids:
            raise SignatureStoreError(f"{self.root}: no signature shards")
        index = self.root / "store.json"
        tmp = self._tmp(index)
        tmp.write_text(json.dumps(self.config.signature_params() | {"shards": self.shards()}, indent=1, sort_keys=True))
        os.replace(tmp, index)
        return ids, np.concatenate(lengths), np.concatenate(sigs, axis=0)
