"""Safe unpacking of arXiv source bundles, and what kind of source each one is.

Each paper in an arXiv ``src`` chunk is one file. By its bytes (never its name) it is:

============  =====================================================================
kind          what it was
============  =====================================================================
tar           a gzipped (or plain) tar of the source tree
gzip_tex      a single gzipped TeX file
tex           a plain TeX file
folder        an already-extracted folder (local input only)
pdf           a PDF-only submission (sits in src chunks as plain ``.pdf``)
postscript    PostScript (gzipped or not)
html          an HTML submission
withdrawn     a small TeX/text stub saying the paper was withdrawn
unknown       anything else
============  =====================================================================

Archives are untrusted. :func:`unpack_source` never writes outside ``dest``:

* a member with an absolute name, a ``..`` component, or a name that resolves outside ``dest`` is
  **refused and recorded** (``UnpackResult.refused``); the rest of the archive is extracted;
* links are never created on disk: a symlink or hard link whose target is a regular file already
  extracted inside ``dest`` is written as a copy of it; every other link (outside, absolute,
  dangling, or to a directory) is refused and recorded; device files and FIFOs are refused;
* size and count limits (:class:`ArchiveLimits`) are checked while the bytes stream, not from the
  headers alone (gzip decompression of a single file is bounded the same way). Going over a limit
  (a decompression bomb) refuses the **whole** archive: :class:`ArchiveError` is raised and the files
  this call wrote are removed, so no half-extracted tree is left behind.

Each member also passes tarfile's own ``data`` filter (:func:`tarfile.data_filter`, Python 3.11.4+),
which is checked in addition to the rules above.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import fsspec

#: Final source kinds, as stored in the ``paper.source_kind`` column.
SOURCE_KINDS = ("tar", "gzip_tex", "tex", "folder", "pdf", "postscript", "html", "withdrawn", "unknown")
#: What :func:`detect_kind` can say about raw bytes (``gzip`` is resolved by looking inside).
MAGIC_KINDS = ("gzip", "tar", "pdf", "postscript", "html", "tex", "withdrawn", "unknown")

HEAD_BYTES = 8192  # bytes read to sniff a kind
WITHDRAWN_MAX_BYTES = 4096  # a withdrawal stub is a few lines; larger texts are papers
_CHUNK = 1 << 16

_EXT = {"gzip_tex": ".tex", "tex": ".tex", "withdrawn": ".tex", "pdf": ".pdf", "postscript": ".ps", "html": ".html", "unknown": ""}

_WITHDRAWN_RE = re.compile(
    rb"(?:paper|article|manuscript|submission|preprint|version)\b[^.]{0,120}?\b(?:has been|is being|was|is)\s+withdrawn"
    rb"|\bwithdrawn\s+by\s+(?:the\s+)?(?:author|arxiv|submitter)",
    re.I,
)
_TEX_RE = re.compile(
    rb"\\(?:documentclass|documentstyle|begin\s*\{|section\*?\s*\{|input\b|include\b|title\s*\{|author\s*\{"
    rb"|def\\|newcommand|usepackage|magnification|catcode|chapter|bye\b|font\\)"
)


class ArchiveError(Exception):
    """An archive (or single source file) that was refused or could not be read.

    ``path`` names the input, ``reason`` says what was wrong; ``str()`` gives both.
    """

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what one source may unpack to. Defaults are far above any real arXiv bundle
    (arXiv caps submissions at ~50 MB compressed) and far below what a bomb expands to."""

    max_total_bytes: int = 1 << 30  # 1 GiB written in all
    max_files: int = 10_000  # members written (files and directories)
    max_member_bytes: int = 512 << 20  # 512 MiB for any one file


@dataclass(frozen=True)
class RefusedMember:
    """A member that was not written, and why (``"path traversal"``, ``"symlink to outside: ..."``)."""

    name: str
    reason: str


@dataclass
class UnpackResult:
    """What :func:`unpack_source` did.

    Attributes:
        kind: one of :data:`SOURCE_KINDS`.
        dest: the folder the files are in (for a ``folder`` input, the copy in ``dest``).
        files: relative POSIX paths of the regular files written, sorted.
        refused: members not written, with reasons.
        total_bytes: bytes written.
        sha256: sha256 of the input bytes (``None`` for a folder).
    """

    kind: str
    dest: Path
    files: list[str] = field(default_factory=list)
    refused: list[RefusedMember] = field(default_factory=list)
    total_bytes: int = 0
    sha256: str | None = None


def _looks_like_tar_header(block: bytes) -> bool:
    if len(block) < 512:
        return False
    if block[257:262] == b"ustar":
        return True
    try:  # pre-POSIX (v7) tar: no magic, but a valid header checksum
        tarfile.TarInfo.frombuf(block[:512], "utf-8", "surrogateescape")
    except (tarfile.HeaderError, ValueError):
        return False
    return True


def detect_kind(head: bytes) -> str:
    """Say what raw bytes are, from their first bytes (pass :data:`HEAD_BYTES`, or the whole file if
    shorter). Returns one of :data:`MAGIC_KINDS`.

    ``withdrawn`` is only returned when ``head`` is the whole content and it is shorter than
    :data:`WITHDRAWN_MAX_BYTES`, so a paper that mentions a withdrawn result is still ``tex``.
    """
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if _looks_like_tar_header(head):
        return "tar"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n\x00")
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if stripped.startswith((b"%!PS", b"\x04%!")) or head[:4] == b"\xc5\xd0\xd3\xc6":
        return "postscript"
    low = stripped[:512].lower()
    if low.startswith((b"<!doctype html", b"<html", b"<head")) or (low.startswith(b"<?xml") and b"<html" in low):
        return "html"
    if b"\x00" in head:
        return "unknown"
    try:
        head.decode("utf-8")
        is_text = True
    except UnicodeDecodeError as e:  # a truncated multibyte char at the end is still text
        is_text = e.start >= len(head) - 3 or _mostly_text(head)
    if not is_text:
        return "unknown"
    if len(head) < WITHDRAWN_MAX_BYTES and _WITHDRAWN_RE.search(head):
        return "withdrawn"
    if _TEX_RE.search(head):
        return "tex"
    return "unknown"


def _mostly_text(data: bytes) -> bool:
    """Latin-1 era TeX: printable bytes (and high bytes) with few control characters."""
    control = sum(1 for b in data if b < 32 and b not in (9, 10, 12, 13))
    return control <= len(data) // 100


# --------------------------------------------------------------------------------------------
# writing, with limits


class _Budget:
    def __init__(self, limits: ArchiveLimits, label: str):
        self.limits, self.label = limits, label
        self.total = 0
        self.count = 0

    def add_file(self) -> None:
        self.count += 1
        if self.count > self.limits.max_files:
            raise ArchiveError(self.label, f"more than {self.limits.max_files} files (limit max_files); refused as a possible archive bomb")

    def add_bytes(self, n: int, member: str, written: int) -> None:
        self.total += n
        if written > self.limits.max_member_bytes:
            raise ArchiveError(
                self.label,
                f"member {member!r} unpacks to more than {self.limits.max_member_bytes} bytes (limit max_member_bytes); "
                "refused as a possible decompression bomb",
            )
        if self.total > self.limits.max_total_bytes:
            raise ArchiveError(
                self.label,
                f"unpacks to more than {self.limits.max_total_bytes} bytes (limit max_total_bytes); refused as a possible decompression bomb",
            )


class _Writer:
    """Writes files under ``dest`` only, records them, and can remove them again."""

    def __init__(self, dest: Path, budget: _Budget):
        self.dest = dest
        self.real = os.path.realpath(dest)
        self.budget = budget
        self.files: dict[str, None] = {}
        self.created: list[str] = []  # files and dirs this call created, for cleanup

    def target(self, rel: str) -> str:
        path = os.path.realpath(os.path.join(self.real, rel))
        if os.path.commonpath([path, self.real]) != self.real or path == self.real:
            raise _Refuse("resolves outside the destination")
        return path

    def mkdir(self, rel: str) -> None:
        path = self.target(rel)
        parts = Path(rel).parts
        for i in range(1, len(parts) + 1):
            p = os.path.join(self.real, *parts[:i])
            if os.path.islink(p):
                raise _Refuse("a parent folder is a link")
            if not os.path.exists(p):
                os.mkdir(p, 0o755)
                self.created.append(p)
            elif not os.path.isdir(p):
                raise _Refuse(f"a parent {'/'.join(parts[:i])!r} is a file")
        assert os.path.isdir(path)

    def write(self, rel: str, src: BinaryIO) -> None:
        parent = posixpath.dirname(rel)
        if parent:
            self.mkdir(parent)
        path = self.target(rel)
        if os.path.isdir(path):
            raise _Refuse("a folder of that name exists")
        self.budget.add_file()
        existed = os.path.exists(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
        if not existed:
            self.created.append(path)
        written = 0
        with os.fdopen(fd, "wb") as out:
            while block := src.read(_CHUNK):
                written += len(block)
                self.budget.add_bytes(len(block), rel, written)
                out.write(block)
        self.files[rel] = None

    def cleanup(self) -> None:
        for p in reversed(self.created):
            try:
                os.rmdir(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
            except OSError:
                pass


class _Refuse(Exception):
    """Internal: refuse one member with a reason."""


def _member_name(raw: str) -> str:
    """Normalised relative name, or raise _Refuse for absolute and traversing names."""
    name = raw.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:/", name):
        raise _Refuse("absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _Refuse("path traversal ('..')")
    return "/".join(parts)


def _extract_tar(fileobj: BinaryIO, writer: _Writer, refused: list[RefusedMember], label: str) -> None:
    try:
        tf = tarfile.open(fileobj=fileobj, mode="r|*")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise ArchiveError(label, f"not a readable tar: {e}") from e
    try:
        with tf:
            for m in tf:
                try:
                    rel = _member_name(m.name)
                    if not rel:
                        continue
                    try:
                        tarfile.data_filter(m, writer.real)
                    except tarfile.FilterError as e:
                        raise _Refuse(f"rejected by tarfile data filter: {e}") from e
                    if m.isdir():
                        writer.budget.add_file()
                        writer.mkdir(rel)
                    elif m.isreg():
                        if m.size > writer.budget.limits.max_member_bytes:
                            writer.budget.add_bytes(0, rel, m.size)  # raises: header already too big
                        src = tf.extractfile(m)
                        assert src is not None
                        writer.write(rel, src)
                    elif m.issym() or m.islnk():
                        _copy_link(m, rel, writer)
                    else:
                        raise _Refuse("special file (device, FIFO or other), not extracted")
                except _Refuse as e:
                    refused.append(RefusedMember(m.name, str(e)))
    except ArchiveError:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise ArchiveError(label, f"corrupt or truncated tar: {e}") from e


def _copy_link(m: tarfile.TarInfo, rel: str, writer: _Writer) -> None:
    """Links are never created; a link to a regular file already written inside dest is copied."""
    what = "symlink" if m.issym() else "hard link"
    target = m.linkname.replace("\\", "/")
    if target.startswith("/"):
        raise _Refuse(f"{what} to absolute path {m.linkname!r}")
    base = posixpath.dirname(rel) if m.issym() else ""
    resolved = posixpath.normpath(posixpath.join(base, target))
    if resolved == ".." or resolved.startswith("../"):
        raise _Refuse(f"{what} to outside the destination: {m.linkname!r}")
    if resolved not in writer.files:
        raise _Refuse(f"{what} to {m.linkname!r}, which is not an extracted regular file")
    with open(writer.target(resolved), "rb") as src:
        writer.write(rel, src)


class _Head(io.RawIOBase):
    """Replays bytes already read (the sniffed head) before the rest of a stream."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head, self._rest = memoryview(head), rest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(b))
        b[: len(data)] = data
        return len(data)


def _open_input(src: str | os.PathLike | bytes | BinaryIO) -> tuple[BinaryIO, str, bool]:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(src)), "<bytes>", True
    if isinstance(src, (str, os.PathLike)):
        return fsspec.open(str(src), "rb").open(), str(src), True
    return src, getattr(src, "name", "<stream>"), False


def _stem(name: str) -> str:
    base = posixpath.basename(str(name).replace("\\", "/")) or "source"
    for ext in (".gz", ".tgz", ".tar", ".tex", ".pdf", ".ps", ".html"):
        if base.lower().endswith(ext) and len(base) > len(ext):
            base = base[: -len(ext)]
    base = re.sub(r"[^A-Za-z0-9._+-]", "_", base).lstrip(".")
    return base or "source"


def unpack_source(
    src: str | os.PathLike | bytes | BinaryIO,
    dest: str | os.PathLike,
    limits: ArchiveLimits | None = None,
    *,
    name: str | None = None,
) -> UnpackResult:
    """Detect what one paper's source is and unpack it safely into ``dest``.

    Args:
        src: a local folder (copied, kind ``folder``), a path or fsspec URL of one source file, its
            bytes, or a readable binary stream.
        dest: folder to unpack into (created if missing). Single-file sources are written as
            ``<stem>.<ext>`` where ``stem`` is ``name`` (or the input's file name) without
            ``.gz``/``.tar`` etc. (``2212.11816.gz`` -> ``2212.11816.tex``).
        limits: size and count bounds (default :class:`ArchiveLimits`).
        name: the source's name, for messages and the single-file stem (useful with bytes).

    Returns:
        :class:`UnpackResult` with the kind, files written and members refused.

    Raises:
        ArchiveError: the input is unreadable, corrupt, or over a limit (nothing of it is left in
        ``dest``). Refused members do not raise; they are listed in the result.
    """
    limits = limits or ArchiveLimits()
    dest = Path(dest)
    label = name or (str(src) if isinstance(src, (str, os.PathLike)) else "<source>")
    if isinstance(src, (str, os.PathLike)) and Path(src).is_dir():
        return _copy_folder(Path(src), dest, limits, label)
    dest.mkdir(parents=True, exist_ok=True)
    writer = _Writer(dest, _Budget(limits, label))
    result = UnpackResult(kind="unknown", dest=dest)
    stream, label2, owned = _open_input(src)
    label = name or label2
    writer.budget.label = label
    try:
        hashed = _Hashing(stream)
        head = _read_up_to(hashed, HEAD_BYTES)
        kind = detect_kind(head)
        rest = _Head(head, hashed)
        stem = _stem(name or label)
        if kind == "tar":
            _extract_tar(io.BufferedReader(rest, _CHUNK), writer, result.refused, label)
            result.kind = "tar"
        elif kind == "gzip":
            result.kind = _unpack_gzip(rest, writer, result.refused, label, stem)
        else:
            result.kind = kind
            writer.write(stem + _EXT[kind], io.BufferedReader(rest, _CHUNK))
        _drain(hashed)
        result.sha256 = hashed.hexdigest()
    except ArchiveError:
        writer.cleanup()
        raise
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        writer.cleanup()
        raise ArchiveError(label, f"could not read source: {e}") from e
    finally:
        if owned:
            stream.close()
    result.files = sorted(writer.files)
    result.total_bytes = writer.budget.total
    return result


def _unpack_gzip(raw: io.RawIOBase, writer: _Writer, refused: list[RefusedMember], label: str, stem: str) -> str:
    gz = gzip.GzipFile(fileobj=io.BufferedReader(raw, _CHUNK), mode="rb")
    try:
        inner_head = _read_up_to(gz, HEAD_BYTES)
    except (OSError, EOFError, zlib.error) as e:
        raise ArchiveError(label, f"corrupt gzip: {e}") from e
    inner = detect_kind(inner_head)
    body = io.BufferedReader(_Head(inner_head, gz), _CHUNK)
    if inner == "tar":
        _extract_tar(body, writer, refused, label)
        return "tar"
    if inner == "gzip":
        inner = "unknown"  # gzip inside gzip: not an arXiv form; keep the bytes for inspection
    kind = {"tex": "gzip_tex"}.get(inner, inner)
    writer.write(stem + _EXT[kind], body)
    return kind


def _copy_folder(src: Path, dest: Path, limits: ArchiveLimits, label: str) -> UnpackResult:
    """A folder input: copy its regular files (never following links) under the same limits."""
    dest.mkdir(parents=True, exist_ok=True)
    if os.path.realpath(dest) == os.path.realpath(src):
        raise ArchiveError(label, "destination is the source folder itself")
    writer = _Writer(dest, _Budget(limits, label))
    refused: list[RefusedMember] = []
    try:
        for root, dirs, files in os.walk(src, followlinks=False):
            for d in list(dirs):
                full = os.path.join(root, d)
                if os.path.islink(full):
                    dirs.remove(d)
                    refused.append(RefusedMember(os.path.relpath(full, src), "symlink, not followed"))
            for f in sorted(files):
                full = os.path.join(root, f)
                rel = Path(os.path.relpath(full, src)).as_posix()
                if os.path.islink(full) or not os.path.isfile(full):
                    refused.append(RefusedMember(rel, "symlink or special file, not copied"))
                    continue
                try:
                    with open(full, "rb") as fh:
                        writer.write(rel, fh)
                except _Refuse as e:
                    refused.append(RefusedMember(rel, str(e)))
    except ArchiveError:
        writer.cleanup()
        raise
    return UnpackResult("folder", dest, sorted(writer.files), refused, writer.budget.total, None)


class _Hashing(io.RawIOBase):
    """Hashes every byte read through it."""

    def __init__(self, f: BinaryIO):
        self._f, self._h = f, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        data = self._f.read(len(b))
        self._h.update(data)
        b[: len(data)] = data
        return len(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def _read_up_to(f, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        block = f.read(n - len(out))
        if not block:
            break
        out += block
    return bytes(out)


def _drain(f) -> None:
    """Read the rest of the input so the sha256 covers it (tar streams stop at the end blocks)."""
    while f.read(_CHUNK):
        pass


def sniff_source_kind(head: bytes) -> str:
    """The final :data:`SOURCE_KINDS` kind from a head of raw bytes, looking inside gzip.

    Unlike :func:`unpack_source` this writes nothing; a gzip head is decompressed only as far as the
    bytes given allow.
    """
    kind = detect_kind(head)
    if kind != "gzip":
        return kind
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        inner = d.decompress(head, HEAD_BYTES)
    except zlib.error:
        return "unknown"
    inner_kind = detect_kind(inner) if inner else "unknown"
    if inner_kind == "withdrawn" and not d.eof:
        inner_kind = "tex"  # only part of the content seen: cannot call it a stub
    return {"tex": "gzip_tex", "gzip": "unknown"}.get(inner_kind, inner_kind)
