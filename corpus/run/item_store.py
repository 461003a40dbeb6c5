"""A durable per-item store: model replies (or any JSON value) kept by a hash of the request.

A model-calling shard can be hours of work. Its stage keeps each reply in an :class:`ItemStore` as
soon as it arrives, under :func:`request_key` of what was asked (model id, template version,
rendered input, parameters): a rerun after a crash or a kill finds the finished items there and
calls the model only for the rest, and ``rebuild`` replays the original run's store with no call.
Because keys are requests, a stored reply is always correct to reuse, whatever else changed.

On disk a store is a folder of append-only segment files. Every :class:`ItemStore` that writes
creates its own segment (``<time_ns>-<pid>-<random>.seg``, created exclusively), so no two
processes or shards ever write one file and no name is shared. A record is one line,
``<64 hex key>\\t<JSON value>\\n``, written with one ``os.write`` when it is put: a process killed
at any moment (SIGKILL included) loses nothing it had put, except possibly a torn last line,
which readers ignore. The segment is fsynced at most every ``sync_seconds`` while records come in
and on :meth:`ItemStore.close` (or leaving the ``with`` block), which bounds what a machine crash
can lose.

Opening a store indexes every segment of its folders (keys and where their values are, not the
values themselves); a value is read when asked for. When a key is in several segments, the
earliest segment wins (segment names sort by creation time), so a reply once used never changes.

The store of a stage lives at ``{out}/_store/<stage name>/``, outside the step's ``_work/``
folder, so it survives a config change. :func:`open_store` builds it for a bound stage; in a
``rebuild`` (``stage.replay_dir`` set) it also reads the original run's store, copies each value it
replays into the new run's store (so the rebuilt folder can itself be rebuilt) and, when asked for
``replay_only``, refuses to let a missing item be computed (:class:`ReplayMiss`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STORE_DIR = "_store"
SEGMENT_SUFFIX = ".seg"
_KEY = re.compile(rb"[0-9a-f]{64}")
_MISSING = object()


def canonical_json(value: Any) -> str:
    """The one JSON text of ``value``: sorted keys, no spaces, ASCII only (so never a raw newline)."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    except (TypeError, ValueError) as e:
        raise TypeError(f"not storable as JSON: {e}") from None


def request_key(**parts: Any) -> str:
    """sha256 (hex) of the canonical JSON of the request's parts, e.g. ``model``, ``template``,
    ``input``, ``params``: the same parts, in any order, give the same key."""
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()


class ReplayMiss(LookupError):
    """A replay-only store was asked to let an item be computed that the original run did not store."""


class ItemStore:
    """Values by request key, kept in the append-only segments of ``root`` (see the module docstring).

    ``read_from``: more store folders to read (never written), after ``root``: in a rebuild, the
    original run's store. A value found only there is copied into ``root`` when it is read.
    ``replay_only``: :meth:`lookup` raises :class:`ReplayMiss` instead of returning missing keys.
    Not thread-safe: use one store per thread (an asyncio loop is one thread).
    """

    def __init__(self, root: str | os.PathLike, read_from: Iterable[str | os.PathLike] = (),
                 replay_only: bool = False, sync_seconds: float = 2.0):
        self.root = Path(root)
        self.read_from = [Path(p) for p in read_from]
        self.replay_only = replay_only
        self.sync_seconds = sync_seconds
        self.segment: Path | None = None  # this store's own segment, created on the first put
        self._fd: int | None = None
        self._synced_at = 0.0
        # key -> (segment, offset of the value, length of the value); own folder first, then read_from
        self._index: dict[str, tuple[Path, int, int]] = {}
        self._replayed: set[str] = set()  # keys whose value is in a read_from folder only
        for folder in [self.root, *self.read_from]:
            own = folder == self.root
            for seg in sorted(folder.glob(f"*{SEGMENT_SUFFIX}")) if folder.is_dir() else ():
                for key, where in _scan(seg):
                    if key not in self._index:
                        self._index[key] = where
                        if not own:
                            self._replayed.add(key)

    @property
    def replaying(self) -> bool:
        """True when this store reads another run's store (a rebuild)."""
        return bool(self.read_from)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def get(self, key: str, default: Any = None) -> Any:
        """The stored value of ``key``, or ``default``. A record that cannot be read is logged (file and
        offset) and treated as missing, so the item is computed again."""
        where = self._index.get(key)
        if where is None:
            return default
        seg, offset, length = where
        try:
            with open(seg, "rb") as f:
                f.seek(offset)
                value = json.loads(f.read(length))
        except (OSError, ValueError) as e:
            log.warning("%s: unreadable stored value at byte %d (%s); the item will be computed again", seg, offset, e)
            del self._index[key]
            return default
        if key in self._replayed:
            self.put(key, value)  # the rebuilt run keeps what it replayed
        return value

    def lookup(self, keys: Iterable[str], what: str = "item") -> tuple[dict[str, Any], list[str]]:
        """``(stored, missing)``: the readable stored values of ``keys`` by key, and the other keys
        (first occurrence order, once each), which must be computed.

        Raises :class:`ReplayMiss` naming the store folders when the store is replay-only and any is missing.
        """
        stored: dict[str, Any] = {}
        missing: dict[str, None] = {}
        for k in keys:
            if k in stored or k in missing:
                continue
            value = self.get(k, _MISSING)
            if value is _MISSING:
                missing[k] = None
            else:
                stored[k] = value
        if missing and self.replay_only:
            folders = ", ".join(str(p) for p in [self.root, *self.read_from])
            raise ReplayMiss(
                f"replay only: {len(missing)} {what}(s) not in the stored outputs ({folders}), e.g. request "
                f"{next(iter(missing))}; the original run did not finish them or its {STORE_DIR}/ folder is gone, "
                "so they would need a model call"
            )
        return stored, list(missing)

    def put(self, key: str, value: Any) -> Any:
        """Append ``value`` under ``key`` to this store's segment now (one write); returns the value as
        it reads back from the store (JSON round trip: tuples become lists), which callers should use
        so a first run and a rerun produce the same bytes. A key already stored keeps its first value,
        which is returned (nothing is written)."""
        if not _KEY.fullmatch(key.encode()):
            raise ValueError(f"{key!r}: a store key is a sha256 hex digest (use request_key)")
        text = canonical_json(value)
        if key in self._index and key not in self._replayed:
            stored = self.get(key, _MISSING)
            if stored is not _MISSING:
                return stored
        if self._fd is None:
            self._open_segment()
        start = os.lseek(self._fd, 0, os.SEEK_END)
        data = f"{key}\t{text}\n".encode()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError:  # e.g. disk full: the record may be torn, so later records go to a new segment
            self.close()
            raise
        self._index[key] = (self.segment, start + 65, len(data) - 66)
        self._replayed.discard(key)
        if time.monotonic() - self._synced_at >= self.sync_seconds:
            os.fsync(self._fd)
            self._synced_at = time.monotonic()
        return json.loads(text)

    def _open_segment(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(6)}{SEGMENT_SUFFIX}"
        self.segment = self.root / name
        self._fd = os.open(self.segment, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._synced_at = time.monotonic()

    def close(self) -> None:
        """fsync and close this store's segment (a store that wrote nothing has none)."""
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ItemStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _scan(segment: Path) -> Iterable[tuple[str, tuple[Path, int, int]]]:
    """``(key, (segment, value offset, value length))`` of each complete record of a segment.

    A last line without its newline (a writer killed mid-write) is ignored; a malformed line
    elsewhere is logged with its offset and skipped.
    """
    offset = 0
    with open(segment, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break  # torn tail
            if len(line) > 66 and line[64:65] == b"\t" and _KEY.fullmatch(line[:64]):
                yield line[:64].decode(), (segment, offset + 65, len(line) - 66)
            else:
                log.warning("%s: malformed store record at byte %d skipped", segment, offset)
            offset += len(line)


def store_dir(out_dir: str | os.PathLike, stage_name: str) -> Path:
    """Where a stage's store lives in a run folder: ``<out>/_store/<stage name>``."""
    return Path(out_dir) / STORE_DIR / stage_name


def open_store(stage, replay_only: bool = False, sync_seconds: float = 2.0) -> ItemStore:
    """The store of a bound stage: ``{out}/_store/<name>``, plus, in a rebuild (``stage.replay_dir``),
    the original run's ``_store/<name>`` to replay from. ``replay_only`` applies only when replaying:
    then an item the original run did not store raises :class:`ReplayMiss` instead of being computed."""
    if stage.out_dir is None:
        raise RuntimeError(f"stage {stage.name}: its store needs the run's output folder (bind first)")
    replay = [store_dir(stage.replay_dir, stage.name)] if stage.replay_dir else []
    return ItemStore(store_dir(stage.out_dir, stage.name), replay, replay_only=replay_only and bool(replay),
                     sync_seconds=sync_seconds)


__all__ = ["ItemStore", "ReplayMiss", "canonical_json", "open_store", "request_key", "store_dir"]
