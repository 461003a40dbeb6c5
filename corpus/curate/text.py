"""Shared text normalisation and word hashing for curation (dedup, decontamination, filters).

Everything that compares texts by their words goes through :func:`words`, so that "the same words"
means the same thing in exact dedup, MinHash shingles and benchmark n-gram overlap:

* Unicode NFKC (ligatures such as ``ﬁ`` become ``fi``, full-width forms fold), then lower case;
* every ASCII character that is not a letter or digit is a separator (punctuation, ``$``, ``\\``,
  braces, ``_``), so ``$M_\\odot$`` gives the words ``m`` and ``odot``; non-ASCII letters
  (Greek, accented names) stay inside words.

Words are returned as UTF-8 ``bytes``: that is what the hash functions eat, and splitting bytes is
several times faster than a regular expression over ``str``.

Word hashes are 64-bit (BLAKE2b, so identical in every process and on every machine), cached per
process because word frequencies are Zipfian; n-gram hashes are combined from word hashes with
vectorised numpy arithmetic (no Python loop over positions).
"""

from __future__ import annotations

import hashlib
import unicodedata

import numpy as np

# ASCII letters/digits and every byte >= 0x80 (parts of UTF-8 multibyte characters) stay; all other
# bytes become spaces.
_SEPARATORS = bytes(c if (c >= 0x80 or chr(c).isalnum()) else 0x20 for c in range(256))

_U64 = np.uint64
_MASK64 = (1 << 64) - 1
# Multiplier for combining word hashes into n-gram hashes (odd, so multiplication is a bijection).
_NGRAM_MULT = _U64(0x9E3779B97F4A7C15)


def normalize(text: str) -> str:
    """NFKC + lower case; the form in which texts are compared (never the form that is published)."""
    if not text.isascii() and not unicodedata.is_normalized("NFKC", text):
        # Line by line, skipping ASCII lines: the same result as normalising the whole text (a newline
        # never composes with its neighbours), about three times faster on papers.
        nf = unicodedata.normalize
        text = "\n".join([ln if ln.isascii() else nf("NFKC", ln) for ln in text.split("\n")])
    return text.lower()


def words(text: str) -> list[bytes]:
    """The normalised words of ``text`` as UTF-8 bytes (see the module docstring for the rules)."""
    return normalize(text).encode("utf-8", "surrogatepass").translate(_SEPARATORS).split()


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: an avalanching bijection on uint64 (element-wise, wraps)."""
    h = h ^ (h >> _U64(33))
    h = h * _U64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> _U64(33))
    h = h * _U64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> _U64(33))


class WordHasher:
    """Deterministic 64-bit word hashes with a bounded per-process cache.

    ``hash(words)`` returns a uint64 array, one hash per word. The cache is dropped whenever it holds
    more than ``max_cache`` words, so memory stays bounded on any corpus.
    """

    def __init__(self, max_cache: int = 1_000_000):
        self.max_cache = max_cache
        self._cache: dict[bytes, int] = {}

    def hash(self, ws: list[bytes]) -> np.ndarray:
        cache = self._cache
        missing = set(ws).difference(cache)
        if missing:
            if len(cache) + len(missing) > self.max_cache:
                cache.clear()
                missing = set(ws)
            for w in missing:
                cache[w] = int.from_bytes(hashlib.blake2b(w, digest_size=8).digest(), "little")
        return np.fromiter(map(cache.__getitem__, ws), dtype=np.uint64, count=len(ws))


_DEFAULT_HASHER = WordHasher()


def word_hashes(ws: list[bytes], hasher: WordHasher | None = None) -> np.ndarray:
    """uint64 hash of each word (BLAKE2b-64 of its UTF-8 bytes)."""
    return (hasher or _DEFAULT_HASHER).hash(ws)


def ngram_hashes(wh: np.ndarray, n: int) -> np.ndarray:
    """uint64 hash of every run of ``n`` consecutive words, in order (``len(wh) - n + 1`` of them).

    A text with fewer than ``n`` (but at least one) words gives one hash for all of its words, so a
    short text still has a shingle. ``hash(w1..wn) = fmix64(((w1*M + w2)*M + ...) + wn)`` mod 2^64.
    """
    if n < 1:
        raise ValueError(f"n-gram size must be >= 1, got {n}")
    m = len(wh) - n + 1
    if m <= 0:
        if len(wh) == 0:
            return np.empty(0, dtype=np.uint64)
        n, m = len(wh), 1
    h = wh[0:m].copy()
    for k in range(1, n):
        h *= _NGRAM_MULT
        h += wh[k : k + m]
    return fmix64(h)


def shingles(text: str, n: int = 5, hasher: WordHasher | None = None) -> np.ndarray:
    """Sorted unique uint64 hashes of the word ``n``-grams of ``text`` (its shingle set)."""
    return np.unique(ngram_hashes(word_hashes(words(text), hasher), n))


def content_hash(text: str) -> str:
    """sha256 (hex) of the normalised words joined by single spaces: equal for texts that differ
    only in case, punctuation, whitespace or Unicode form."""
    return content_hash_of_words(words(text))


def content_hash_of_words(ws: list[bytes]) -> str:
    """:func:`content_hash` from the text's words, when the caller has them already."""
    return hashlib.sha256(b" ".join(ws)).hexdigest()


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted-unique hash arrays (1.0 for two empty sets)."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)
