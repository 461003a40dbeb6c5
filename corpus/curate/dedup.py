"""Deduplication: exact (content hash of normalised text) and near-duplicate (MinHash + LSH).

Near-duplicates, in four steps, none of which needs the texts in memory:

1. **Candidates.** Every signature goes into a ``datasketch.MinHashLSH`` whose threshold is
   ``candidate_threshold`` (below the target) and whose bands are weighted towards recall; each
   document is queried, giving candidate pairs.
2. **Verification.** A candidate pair counts only if its similarity is at or above ``threshold``:
   the signature estimate, or, when a ``shingles_of`` callback is given and the estimate lies within
   ``verify_margin`` of the threshold, the exact Jaccard of the two shingle sets (read on demand).
3. **Clusters.** Union-find over verified pairs.
4. **Representatives.** In each cluster the longest document is kept (ties: the smallest id). A
   member is dropped only if it is at or above the threshold *against the kept one*; members that are
   not (possible through chains A~B~C) form a new cluster among themselves, and the rule repeats.

Each input gets one :class:`DedupResult` (kept or dropped, reason, score, cluster, kept id), ready to
become a ``Decision`` row through :meth:`DedupResult.decision`.

Scaling: signatures are 512 bytes each (128 x uint32); 250,000 fit in 128 MB and the in-memory LSH
index in a few hundred MB more. Past one machine, pass ``DedupConfig(lsh_storage={"type": "redis",
...})`` (datasketch keeps the bands in Redis), or bucket by band hash on disk (datatrove's
multi-stage MinHash) and feed the resulting candidate pairs to :func:`cluster_pairs`.
"""

from __future__ import annotations

import json
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from corpus.curate import minhash as M
from corpus.curate import text as T
from corpus.curate.minhash import DedupConfig

KEPT, DROPPED = "kept", "dropped"


class DedupError(ValueError):
    """Dedup inputs are inconsistent (duplicate ids, mismatched lengths, wrong signature shape)."""


@dataclass
class DedupResult:
    """What dedup did with one item."""

    item_id: str
    action: str  # "kept" or "dropped"
    reason: str  # unique | cluster_representative | exact_duplicate | near_duplicate | empty_text
    score: float | None = None  # similarity to the kept item (1.0 for exact duplicates)
    cluster_id: str | None = None
    kept_id: str | None = None
    detail: dict = field(default_factory=dict)

    def decision(self, stage: str) -> dict:
        """A row of the ``decision`` table."""
        return {"stage": stage, "item_id": self.item_id, "action": self.action, "reason": self.reason,
                "score": self.score, "cluster_id": self.cluster_id, "kept_id": self.kept_id,
                "detail": json.dumps(self.detail, sort_keys=True)}


def _check_ids(ids: Sequence[str], *others: tuple[str, int]) -> None:
    for name, n in others:
        if n != len(ids):
            raise DedupError(f"{len(ids)} ids but {n} {name}")
    if len(set(ids)) != len(ids):
        seen, dup = set(), None
        for i in ids:
            if i in seen:
                dup = i
                break
            seen.add(i)
        raise DedupError(f"item ids must be unique; {dup!r} appears more than once")


def _rep_order(ids: Sequence[str], lengths: Sequence[int]) -> Callable[[int], tuple]:
    """Sort key putting the representative first: longest, then smallest id."""
    return lambda i: (-int(lengths[i]), ids[i])


# ---------------------------------------------------------------------------------------------- exact


def exact_dedup(ids: Sequence[str], hashes: Sequence[str], lengths: Sequence[int]) -> list[DedupResult]:
    """Exact dedup by content hash (see :func:`corpus.curate.text.content_hash`).

    In each group of equal hashes the longest text is kept (ties: the smallest id); the others are
    dropped with ``reason="exact_duplicate"``, ``score=1.0``. Results come back in input order.
    """
    _check_ids(ids, ("hashes", len(hashes)), ("lengths", len(lengths)))
    groups: dict[str, list[int]] = defaultdict(list)
    for i, h in enumerate(hashes):
        groups[h].append(i)
    out: list[DedupResult | None] = [None] * len(ids)
    key = _rep_order(ids, lengths)
    for h, members in groups.items():
        if len(members) == 1:
            i = members[0]
            out[i] = DedupResult(ids[i], KEPT, "unique")
            continue
        members.sort(key=key)
        rep = ids[members[0]]
        cid = f"sha256:{h[:16]}"
        out[members[0]] = DedupResult(rep, KEPT, "cluster_representative", None, cid, rep,
                                      {"cluster_size": len(members)})
        for i in members[1:]:
            out[i] = DedupResult(ids[i], DROPPED, "exact_duplicate", 1.0, cid, rep, {"content_hash": h})
    return out  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------- near


class _UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n, dtype=np.int64)

    def find(self, x: int) -> int:
        p = self.parent
        root = x
        while p[root] != root:
            root = p[root]
        while p[x] != root:
            p[x], x = root, p[x]
        return int(root)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


class _Similarity:
    """Pair similarity: the signature estimate, re-checked on exact shingles near the threshold."""

    def __init__(self, ids: Sequence[str], sigs: np.ndarray, config: DedupConfig,
                 shingles_of: Callable[[str], np.ndarray] | None, cache_size: int = 64):
        self.ids, self.sigs, self.config, self.shingles_of = ids, sigs, config, shingles_of
        self._shingles: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._pairs: dict[tuple[int, int], tuple[float, str]] = {}
        self.exact_checks = 0

    def _get_shingles(self, i: int) -> np.ndarray:
        if i in self._shingles:
            self._shingles.move_to_end(i)
            return self._shingles[i]
        s = np.unique(np.asarray(self.shingles_of(self.ids[i])))  # type: ignore[misc]
        self._shingles[i] = s
        if len(self._shingles) > self._cache_size:
            self._shingles.popitem(last=False)
        return s

    def __call__(self, i: int, j: int) -> tuple[float, str]:
        key = (i, j) if i < j else (j, i)
        if key in self._pairs:
            return self._pairs[key]
        est = M.estimate_jaccard(self.sigs[i], self.sigs[j])
        result = (est, "estimate")
        if self.shingles_of is not None and abs(est - self.config.threshold) <= self.config.verify_margin:
            self.exact_checks += 1
            result = (T.jaccard(self._get_shingles(i), self._get_shingles(j)), "exact")
        self._pairs[key] = result
        return result


def candidate_pairs(sigs: np.ndarray, config: DedupConfig, active: np.ndarray | None = None) -> set[tuple[int, int]]:
    """Candidate pairs ``(i, j)``, ``i < j``, from a datasketch ``MinHashLSH`` over the signatures.

    ``active`` (bool per row) leaves rows out of the index (e.g. empty texts).
    """
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=config.candidate_threshold, num_perm=config.num_perm,
                     weights=tuple(config.lsh_weights), storage_config=config.lsh_storage)
    rows = [i for i in range(len(sigs)) if active is None or active[i]]
    with lsh.insertion_session() as session:
        for i in rows:
            session.insert(i, M.lean_minhash(np.asarray(sigs[i]), config), check_duplication=False)
    pairs: set[tuple[int, int]] = set()
    for i in rows:
        for j in lsh.query(M.lean_minhash(np.asarray(sigs[i]), config)):
            if j > i:
                pairs.add((i, int(j)))
    return pairs


def cluster(ids: Sequence[str], lengths: Sequence[int], sigs: np.ndarray, config: DedupConfig = DedupConfig(),
            shingles_of: Callable[[str], np.ndarray] | None = None) -> list[DedupResult]:
    """Near-duplicate clustering of signed documents; one :class:`DedupResult` per input, in order.

    ``ids`` are unique item ids, ``lengths`` their text lengths (the longest of a cluster is kept),
    ``sigs`` their signatures (``uint32 (n, num_perm)``, e.g. :meth:`SignatureStore.load`, possibly
    memory-mapped). ``shingles_of(item_id)`` (optional) returns a document's shingle hashes (e.g.
    :func:`minhash.shingle_hashes32` of its re-read text) for exact checks near the threshold.
    Documents with no words (empty signature) are kept with reason ``empty_text`` and never clustered.
    """
    sigs = np.asarray(sigs) if not isinstance(sigs, np.memmap) else sigs
    if sigs.ndim != 2 or sigs.shape[1] != config.num_perm or sigs.dtype != np.uint32:
        raise DedupError(f"signatures must be uint32 of shape (n, {config.num_perm}), got {sigs.dtype} {sigs.shape}")
    _check_ids(ids, ("lengths", len(lengths)), ("signatures", len(sigs)))
    active = ~M.is_empty(sigs)
    pairs = candidate_pairs(sigs, config, active)
    return cluster_pairs(ids, lengths, sigs, pairs, config, shingles_of, active=active)


def cluster_pairs(ids: Sequence[str], lengths: Sequence[int], sigs: np.ndarray, pairs: Iterable[tuple[int, int]],
                  config: DedupConfig = DedupConfig(), shingles_of: Callable[[str], np.ndarray] | None = None,
                  active: np.ndarray | None = None) -> list[DedupResult]:
    """Steps 2-4 of near-dedup from given candidate pairs (row indices), e.g. from another LSH backend."""
    n = len(ids)
    if active is None:
        active = ~M.is_empty(sigs)
    sim = _Similarity(ids, sigs, config, shingles_of)
    uf = _UnionFind(n)
    n_candidates = n_verified = 0
    for i, j in pairs:
        n_candidates += 1
        score, _ = sim(i, j)
        if score >= config.threshold:
            n_verified += 1
            uf.union(i, j)
    components: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        if active[i]:
            components[uf.find(i)].append(i)

    out: list[DedupResult | None] = [None] * n
    for i in range(n):
        if not active[i]:
            out[i] = DedupResult(ids[i], KEPT, "empty_text", detail={"note": "no words: not near-deduplicated"})
    key = _rep_order(ids, lengths)
    for members in components.values():
        if len(members) == 1:
            i = members[0]
            out[i] = DedupResult(ids[i], KEPT, "unique")
            continue
        remaining = sorted(members, key=key)
        while remaining:
            rep, rest = remaining[0], remaining[1:]
            dropped, remaining = [], []
            for m in rest:
                score, method = sim(rep, m)
                (dropped if score >= config.threshold else remaining).append((m, score, method))
            remaining = [m for m, _, _ in remaining]
            if not dropped:
                out[rep] = DedupResult(ids[rep], KEPT, "unique",
                                       detail={"note": "linked to a cluster only through other members"})
                continue
            cid = f"minhash:{ids[rep]}"
            out[rep] = DedupResult(ids[rep], KEPT, "cluster_representative", None, cid, ids[rep],
                                   {"cluster_size": 1 + len(dropped)})
            for m, score, method in dropped:
                out[m] = DedupResult(ids[m], DROPPED, "near_duplicate", round(score, 6), cid, ids[rep],
                                     {"jaccard": method, "threshold": config.threshold})
    return out  # type: ignore[return-value]


def summary(results: Sequence[DedupResult]) -> dict:
    """Counts by action and reason (for stage stats and reports)."""
    out: dict[str, int] = defaultdict(int)
    for r in results:
        out[f"{r.action}:{r.reason}"] += 1
    return dict(sorted(out.items()))
