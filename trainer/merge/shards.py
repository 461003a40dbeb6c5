"""Safetensors read one tensor at a time and written as they come, with the files hashed on the way.

Reading uses plain positioned reads into a fresh buffer (no memory map): the bytes of a tensor are in
the process only while it is merged, so peak memory stays near the largest tensor times the number of
models, whatever the model's size. Writing plans the shards up front (every output tensor's name,
dtype and shape are known before any work), writes each shard's header first and then each tensor's
bytes as soon as it is computed: one output tensor is held at a time.

The sha256 of every file read whole in order (each model's shards are read tensor by tensor in file
order) and of every file written is computed on the way, in a helper thread (``hashlib`` releases the
GIL), so the manifest costs no second pass over the weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from schemas import sha256_file

__all__ = ["DTYPES", "HashPool", "ModelWeights", "ShardPlan", "ShardWriter", "TensorInfo", "WeightsError", "plan_shards"]

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
"""Safetensors dtype codes and their torch dtypes (the ones a language model's weights use)."""
CODES = {v: k for k, v in DTYPES.items()}
INDEX_NAME = "model.safetensors.index.json"
_HASH_BLOCK = 1 << 24


class WeightsError(ValueError):
    """A model folder's safetensors files are missing or malformed."""


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor is: its file, dtype, shape and byte range in the file."""

    name: str
    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int  # absolute offsets in the file
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def _read_header(path: Path) -> tuple[dict, int]:
    """The JSON header of a safetensors file and where its data begins."""
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise WeightsError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
            (n,) = struct.unpack("<Q", raw)
            if n > 100_000_000:
                raise WeightsError(f"{path}: not a safetensors file (header length {n})")
            header = json.loads(f.read(n))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WeightsError(f"{path}: unreadable safetensors header ({e})") from e
    return header, 8 + n


class HashPool:
    """One helper thread that runs ``digest.update(data)`` in submission order, with at most ``max_bytes``
    waiting (a reader faster than the hash waits instead of piling buffers up in memory; a single block
    larger than that is let through when nothing else waits)."""

    def __init__(self, max_bytes: int = 128 << 20):
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
        self.max_bytes = max_bytes
        self.pending = 0
        self.changed = threading.Condition()
        self.last = None

    def _done(self, n: int) -> None:
        with self.changed:
            self.pending -= n
            self.changed.notify_all()

    def update(self, digest, data) -> None:
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        with self.changed:
            self.changed.wait_for(lambda: self.pending == 0 or self.pending + n <= self.max_bytes)
            self.pending += n
        self.last = self.pool.submit(digest.update, data)
        self.last.add_done_callback(lambda _: self._done(n))

    def wait(self) -> None:
        """Every block submitted so far is hashed."""
        if self.last is not None:
            self.last.result()

    def close(self) -> None:
        self.pool.shutdown(wait=True)


class _FileHash:
    """sha256 of one file fed by the reads, in order; anything else makes it fall back to reading the file."""

    def __init__(self, path: Path, data_start: int, pool: HashPool):
        self.path, self.pool, self.next = path, pool, 0
        self.digest = hashlib.sha256()
        self.size = path.stat().st_size
        with open(path, "rb") as f:
            self._feed(f.read(data_start))

    def _feed(self, data) -> None:
        self.next += len(data)
        self.pool.update(self.digest, data)

    def feed(self, offset: int, data) -> None:
        if self.next is not None and offset == self.next:
            self._feed(data)
        else:
            self.next = None  # read out of order: hash the file afterwards

    def hexdigest(self) -> str:
        if self.next == self.size:
            self.pool.wait()
            return self.digest.hexdigest()
        return sha256_file(self.path)


class ModelWeights:
    """The tensors of one model folder (``model.safetensors`` or shards with ``model.safetensors.index.json``).

    ``read(name)`` returns a fresh tensor (its own memory). :meth:`file_hashes` gives each weight file's
    sha256 (from the reads when the files were read whole in order, else by reading them).
    """

    def __init__(self, folder: str | Path, hash_pool: HashPool | None = None):
        self.folder = Path(folder)
        index = self.folder / INDEX_NAME
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
                raise WeightsError(f"{index}: not a safetensors index ({e})") from e
            files = sorted({self.folder / f for f in weight_map.values()})
        else:
            files = sorted(self.folder.glob("*.safetensors"))
            weight_map = None
        if not files:
            raise WeightsError(f"{self.folder}: no *.safetensors weight files (a .bin-only model: convert it "
                               "to safetensors first)")
        self.tensors: dict[str, TensorInfo] = {}
        self._hashes: dict[Path, _FileHash] = {}
        for path in files:
            if not path.is_file():
                raise WeightsError(f"{index}: names {path.name}, which is missing")
            header, data_start = _read_header(path)
            for name, entry in header.items():
                if name == "__metadata__":
                    continue
                if weight_map is not None and weight_map.get(name) != path.name:
                    raise WeightsError(f"{path}: holds {name}, which {index.name} places in {weight_map.get(name)}")
                if entry.get("dtype") not in DTYPES:
                    raise WeightsError(f"{path}: tensor {name} has dtype {entry.get('dtype')!r}, not one we merge")
                begin, stop = entry["data_offsets"]
                self.tensors[name] = TensorInfo(name, path, DTYPES[entry["dtype"]], tuple(entry["shape"]),
                                                data_start + begin, data_start + stop)
            if hash_pool is not None:
                self._hashes[path] = _FileHash(path, data_start, hash_pool)
        if weight_map is not None:
            missing = sorted(set(weight_map) - set(self.tensors))
            if missing:
                raise WeightsError(f"{index}: lists {len(missing)} tensors no shard holds, e.g. {missing[0]}")
        self._handles: dict[Path, object] = {}

    def names_in_file_order(self) -> list[str]:
        """Tensor names shard by shard, each shard's in the order of their bytes (sequential reads)."""
        return [t.name for t in sorted(self.tensors.values(), key=lambda t: (t.file.name, t.start))]

    def read(self, name: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """The tensor (its own memory, not a map of the file), or only its rows ``rows[0]:rows[1]``
        (along the first dimension: one contiguous byte range)."""
        info = self.tensors[name]
        start, stop, shape = info.start, info.end, info.shape
        if rows is not None:
            row_bytes = info.nbytes // shape[0]
            start, stop = info.start + rows[0] * row_bytes, info.start + rows[1] * row_bytes
            shape = (rows[1] - rows[0], *shape[1:])
        nbytes = stop - start
        if not nbytes:
            return torch.empty(shape, dtype=info.dtype)
        handle = self._handles.get(info.file)
        if handle is None:
            handle = self._handles[info.file] = open(info.file, "rb", buffering=0)  # noqa: SIM115 (closed by close())
        buffer = torch.empty(nbytes, dtype=torch.uint8)  # not zero-filled: every byte is read into it
        view = memoryview(buffer.numpy()).cast("B")
        handle.seek(start)
        done = 0
        while done < nbytes:
            n = handle.readinto(view[done:])
            if not n:
                raise WeightsError(f"{info.file}: ends inside tensor {name}")
            done += n
        if info.file in self._hashes:
            self._hashes[info.file].feed(start, view)
        return buffer.view(info.dtype).reshape(shape)

    def file_hashes(self) -> dict[str, str]:
        """``{file name: sha256}`` of every weight file, as :func:`corpus.model_files.model_fingerprint` lists them."""
        return {path.name: h.hexdigest() for path, h in sorted(self._hashes.items())}

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()


# ------------------------------------------------------------------------------------------ writing


@dataclass
class ShardPlan:
    """One output file: its name and its tensors' (name, dtype, shape) in order."""

    file: str
    tensors: list[tuple[str, torch.dtype, tuple[int, ...]]]


def _nbytes(dtype: torch.dtype, shape: tuple[int, ...]) -> int:
    n = dtype.itemsize
    for s in shape:
        n *= s
    return n


def plan_shards(tensors: list[tuple[str, torch.dtype, tuple[int, ...]]], max_shard_bytes: int) -> list[ShardPlan]:
    """Cut the tensors, in order, into files of at most ``max_shard_bytes`` (a bigger tensor gets its own);
    named ``model.safetensors`` when one file, else ``model-0000i-of-0000n.safetensors`` as transformers does."""
    groups: list[list] = [[]]
    size = 0
    for t in tensors:
        n = _nbytes(t[1], t[2])
        if groups[-1] and size + n > max_shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(t)
        size += n
    if len(groups) == 1:
        return [ShardPlan("model.safetensors", groups[0])]
    total = len(groups)
    return [ShardPlan(f"model-{i:05d}-of-{total:05d}.safetensors", g) for i, g in enumerate(groups, 1)]


class ShardWriter:
    """Writes the planned shards in order, one tensor at a time (:meth:`write` in plan order), and the index.

    Files are written as ``*.partial`` and renamed when complete; :meth:`finish` writes the index (when
    there are several shards) and returns ``{file name: sha256}`` of everything written.
    """

    def __init__(self, out_dir: Path, plans: list[ShardPlan], hash_pool: HashPool, metadata: dict | None = None):
        self.out_dir, self.plans, self.pool = out_dir, plans, hash_pool
        self.metadata = {"format": "pt", **(metadata or {})}
        self.order = [(p, name, dtype, shape) for p in plans for name, dtype, shape in p.tensors]
        self.position = 0
        self.handle = None
        self.current: ShardPlan | None = None
        self.digest = None
        self.hashes: dict[str, str] = {}
        self.rows_done = 0

    def _open(self, plan: ShardPlan) -> None:
        header: dict = {"__metadata__": self.metadata}
        offset = 0
        for name, dtype, shape in plan.tensors:
            n = _nbytes(dtype, shape)
            header[name] = {"dtype": CODES[dtype], "shape": list(shape), "data_offsets": [offset, offset + n]}
            offset += n
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self.current, self.digest = plan, hashlib.sha256()
        self.handle = open(self.out_dir / (plan.file + ".partial"), "wb")  # noqa: SIM115 (closed by _close/abort)
        self._put(struct.pack("<Q", len(raw)) + raw)

    def _put(self, data) -> None:
        self.handle.write(data)
        self.pool.update(self.digest, data)

    def _close(self) -> None:
        self.pool.wait()
        self.handle.close()
        name = self.current.file
        os.replace(self.out_dir / (name + ".partial"), self.out_dir / name)
        self.hashes[name] = self.digest.hexdigest()
        self.handle = self.current = None

    def write(self, name: str, tensor: torch.Tensor, rows: tuple[int, int] | None = None) -> None:
        """Append tensor ``name`` (in plan order), or its rows ``rows[0]:rows[1]`` (in order, all of them)."""
        plan, expected, dtype, shape = self.order[self.position]
        part = shape if rows is None else (rows[1] - rows[0], *shape[1:])
        first = rows is None or rows[0] == 0
        if name != expected or tensor.dtype != dtype or tuple(tensor.shape) != part or \
                (rows is not None and rows[0] != self.rows_done):
            raise RuntimeError(f"shard writer: got {name} {tensor.dtype} {tuple(tensor.shape)} rows {rows}, "
                               f"planned {expected} {dtype} {part}")
        if first and self.current is not plan:
            if self.current is not None:
                self._close()
            self._open(plan)
        done = rows is None or rows[1] == shape[0]
        self.rows_done = 0 if done else rows[1]
        if done:
            self.position += 1
        tensor = tensor.contiguous()
        if tensor.numel():
            data = tensor.view(-1).numpy().tobytes() if tensor.dtype == torch.bool else \
                memoryview(tensor.view(-1).view(torch.uint8).numpy()).cast("B")
            self._put(data)

    def finish(self) -> dict[str, str]:
        if self.position != len(self.order):
            raise RuntimeError(f"shard writer: {len(self.order) - self.position} planned tensors were not written")
        if self.current is not None:
            self._close()
        if len(self.plans) > 1:
            weight_map = {name: p.file for p in self.plans for name, _, _ in p.tensors}
            total = sum(_nbytes(d, s) for p in self.plans for _, d, s in p.tensors)
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            path = self.out_dir / INDEX_NAME
            path.write_text(json.dumps(index, indent=2) + "\n")
            self.hashes[INDEX_NAME] = sha256_file(path)
        return self.hashes

    def abort(self) -> None:
        if self.handle is not None:
            self.handle.close()
            (self.out_dir / (self.current.file + ".partial")).unlink(missing_ok=True)
