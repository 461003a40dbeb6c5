"""Find paper files (PDFs and LaTeX source bundles) wherever they are, through fsspec.

One code path serves local folders, ``s3://``, ``gs://``, ``http(s)://`` and any other fsspec URL:

* a **folder** (local or remote), including the public ``gs://arxiv-dataset`` tree
  (``arxiv/arxiv/pdf/YYMM/YYMM.NNNNNvN.pdf``, old ids as ``arxiv/astro-ph/pdf/YYMM/YYMMNNNvN.pdf``):
  :func:`list_inputs` lists every file, reads the arXiv id from its path and keeps only the latest
  version of each id; a sub-folder named like an arXiv id (``2212.11816/``) is one source folder;
* a **plain tar** (an arXiv bulk chunk or any tar of papers): :func:`list_inputs` lists its members,
  :func:`iter_tar` streams them with their bytes;
* arXiv's **requester-pays S3 bulk layout** (``s3://arxiv/src/arXiv_src_manifest.xml`` and
  ``pdf/arXiv_pdf_manifest.xml``, ~500 MB chunks ``src/arXiv_src_YYMM_NNN.tar``):
  :func:`read_manifest` parses the manifest, :func:`fetch_chunk` downloads a chunk resumably and
  checks it against the manifest md5 and size, :func:`iter_bulk` does both and streams the members.

A single gzip file is one paper's source, never a container; a plain tar is a container.

Resuming: :func:`fetch_chunk` downloads to ``<name>.part`` and renames it only after the md5 and
size match; it then writes ``<name>.verified.json`` beside it. A rerun skips a chunk whose marker
and file agree, and re-fetches a chunk that has only a ``.part`` (an interrupted download).

Credentials: ``storage_options`` go to fsspec and nowhere else; they are never logged, put in an
error message or written to a marker, and user:password parts of URLs are redacted.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import tarfile
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import fsspec
from fsspec.core import url_to_fs

from corpus.arxiv_ids import parse_arxiv_id, version_number
from corpus.archives import detect_kind
from corpus.files import SourceError, is_url, open_input, redact_url, storage_options_for, write_json_atomic

Role = Literal["pdf", "src"]

#: Storage options the ``arxiv`` S3 bucket needs (the downloader pays for transfer).
ARXIV_S3_OPTIONS: dict[str, Any] = {"requester_pays": True}
DEFAULT_MAX_MEMBER_BYTES = 256 << 20
_BLOCK = 1 << 20


class ChecksumError(SourceError):
    """A downloaded chunk whose md5 or size differs from the manifest."""


@dataclass(frozen=True)
class SourceFile:
    """One paper file.

    Attributes:
        location: path or URL of the file, or of the tar that holds it.
        member: the member name inside the tar at ``location``; ``None`` for a plain file.
        role: ``"pdf"`` or ``"src"``: which collection it came from (bulk chunk, the caller's
            ``role``, or for loose files a hint from the name). What the bytes *are* is decided by
            :func:`corpus.archives.detect_kind`, never by this.
        paper_id: canonical arXiv id read from the path, or ``None`` (then the content hash names it).
        version: ``"v2"`` etc., or ``None`` when the name carries no version.
        size: bytes, when known from the listing.
        is_dir: a folder holding one paper's extracted source.
    """

    location: str
    member: str | None
    role: Role
    paper_id: str | None
    version: str | None
    size: int | None = None
    is_dir: bool = False

    @property
    def url(self) -> str:
        """An fsspec URL that opens this file: the location, or ``tar://<member>::<location>``."""
        if self.member is None:
            return self.location
        return f"tar://{self.member}::{self.location}"

    @property
    def name(self) -> str:
        return self.member if self.member is not None else posixpath.basename(self.location.rstrip("/"))


def _role_hint(path: str, role: Role | None) -> Role:
    if role is not None:
        return role
    low = path.lower()
    return "pdf" if low.endswith(".pdf") or "/pdf/" in low else "src"


def _source_file(location: str, member: str | None, role: Role | None, size: int | None, is_dir: bool = False) -> SourceFile:
    name = member if member is not None else location
    parsed = parse_arxiv_id(name)
    pid, ver = parsed if parsed else (None, None)
    return SourceFile(location, member, _role_hint(name, role), pid, ver, size, is_dir)


def latest_versions(files: list[SourceFile]) -> list[SourceFile]:
    """Keep, per ``(paper_id, role)``, the file with the highest version (files without an id are
    all kept). Order follows the input."""
    best: dict[tuple[str, str], SourceFile] = {}
    for f in files:
        if f.paper_id is None:
            continue
        key = (f.paper_id, f.role)
        cur = best.get(key)
        if cur is None or version_number(f.version) > version_number(cur.version):
            best[key] = f
    keep = {id(f) for f in best.values()}
    return [f for f in files if f.paper_id is None or id(f) in keep]


def is_manifest(location: str) -> bool:
    """True for an arXiv bulk manifest (``arXiv_src_manifest.xml`` / ``arXiv_pdf_manifest.xml``)."""
    base = posixpath.basename(location.rstrip("/")).lower()
    return base.startswith("arxiv_") and base.endswith("_manifest.xml")


def list_inputs(
    location: str,
    *,
    storage_options: dict[str, Any] | None = None,
    role: Role | None = None,
    latest_only: bool = True,
) -> Iterator[SourceFile]:
    """List the paper files at ``location`` (folder, plain tar, or one file; local or fsspec URL).

    Folders are walked recursively in sorted order; a sub-folder whose name is an arXiv id is
    returned as one ``is_dir`` source and not entered. A plain tar is listed member by member
    (this reads it once). With ``latest_only``, only the latest version of each id is returned
    (as the ``gs://arxiv-dataset`` tree holds every version). For bulk manifests use
    :func:`iter_bulk`.

    Raises:
        SourceError: the location does not exist, cannot be listed, or is a manifest.
    """
    location = str(location)
    if is_manifest(location):
        raise SourceError(location, "is an arXiv bulk manifest; use iter_bulk(manifest, work_dir) to fetch and verify its chunks")
    opts = storage_options_for(location, storage_options)
    try:
        fs, root = url_to_fs(location, **opts)
        info = fs.info(root)
    except FileNotFoundError as e:
        raise SourceError(location, "not found") from e
    except Exception as e:  # fsspec backends raise many types for auth/network problems
        raise SourceError(location, f"cannot open: {type(e).__name__}: {e}") from e
    is_dir = info.get("type") == "directory" or (
        # HTTP servers report a folder as an HTML page of links; fsspec lists those links
        str(info.get("mimetype") or "").startswith("text/html") and fs.isdir(root)
    )
    if is_dir:
        files = list(_walk(fs, root, location, role))
    else:
        with open_input(location, storage_options) as f:
            head = f.read(512)
        if detect_kind(head) == "tar":
            files = [sf for sf, _ in _iter_tar(location, opts, role, data=False)]
        else:
            files = [_source_file(location, None, role, info.get("size"))]
    yield from (latest_versions(files) if latest_only else files)


def _walk(fs, root: str, location: str, role: Role | None) -> Iterator[SourceFile]:
    """Recursive, sorted listing that stops at folders named like an arXiv id."""
    proto = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    def full(p: str) -> str:
        if not is_url(location):
            return p
        return p if "://" in p else f"{proto}://{p}"

    entries = sorted(fs.ls(root, detail=True), key=lambda e: e["name"])
    for e in entries:
        name = e["name"].rstrip("/")
        if name == root.rstrip("/"):
            continue
        if e.get("type") == "directory":
            base = posixpath.basename(name)
            if parse_arxiv_id(base) is not None:
                yield _source_file(full(name), None, role or "src", None, is_dir=True)
            else:
                yield from _walk(fs, name, location, role)
        else:
            if posixpath.basename(name).startswith(".") or name.endswith((".part", ".verified.json")):
                continue  # hidden files and this module's own download state
            yield _source_file(full(name), None, role, e.get("size"))


def _iter_tar(
    location: str, opts: dict[str, Any], role: Role | None, *, data: bool, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
) -> Iterator[tuple[SourceFile, bytes | SourceError | None]]:
    try:
        with fsspec.open(location, "rb", **opts) as raw, tarfile.open(fileobj=raw, mode="r|*") as tf:
            for m in tf:
                if not m.isreg():
                    continue
                sf = _source_file(location, m.name, role, m.size)
                if not data:
                    yield sf, None
                elif m.size > max_member_bytes:
                    yield sf, SourceError(sf.url, f"member is {m.size} bytes, over the {max_member_bytes}-byte limit; skipped")
                else:
                    f = tf.extractfile(m)
                    assert f is not None
                    yield sf, f.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise SourceError(location, f"not a readable tar: {type(e).__name__}: {e}") from e


def iter_tar(
    location: str,
    *,
    storage_options: dict[str, Any] | None = None,
    role: Role | None = None,
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
) -> Iterator[tuple[SourceFile, bytes] | SourceError]:
    """Stream the regular-file members of a tar with their bytes, in archive order.

    Yields ``(SourceFile, bytes)``, or a :class:`SourceError` for a member over ``max_member_bytes``
    (its bytes are skipped, not read into memory). Pass the bytes to
    :func:`corpus.archives.unpack_source`. Raises :class:`SourceError` if the tar itself is
    unreadable or truncated (members already yielded stay valid).
    """
    opts = storage_options_for(location, storage_options)
    for sf, payload in _iter_tar(str(location), opts, role, data=True, max_member_bytes=max_member_bytes):
        yield payload if isinstance(payload, SourceError) else (sf, payload)  # type: ignore[misc]


def read_input(sf: SourceFile, *, storage_options: dict[str, Any] | None = None, max_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> bytes:
    """The bytes of one listed file (for tar members this opens the tar by random access)."""
    if sf.is_dir:
        raise SourceError(sf.url, "is a folder; pass its location to unpack_source instead")
    try:
        with open_input(sf.url, storage_options) as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError as e:
        raise SourceError(sf.url, "not found") from e
    except (OSError, tarfile.TarError) as e:
        raise SourceError(sf.url, f"cannot read: {type(e).__name__}: {e}") from e
    if len(data) > max_bytes:
        raise SourceError(sf.url, f"larger than {max_bytes} bytes; not read")
    return data


# --------------------------------------------------------------------------------------------
# arXiv bulk manifests and chunks


@dataclass(frozen=True)
class ManifestChunk:
    """One ``<file>`` of an arXiv bulk manifest. ``md5sum`` and ``size`` describe the chunk tar;
    ``content_md5sum`` is arXiv's checksum of its contents (not used for verification)."""

    filename: str
    md5sum: str
    size: int
    num_items: int
    first_item: str
    last_item: str
    seq_num: int
    yymm: str
    timestamp: str
    content_md5sum: str | None = None

    @property
    def role(self) -> Role:
        return "pdf" if posixpath.basename(self.filename).lower().startswith("arxiv_pdf") else "src"

    @property
    def year_month(self) -> tuple[int, int]:
        """``'0001' -> (2000, 1)``, ``'9108' -> (1991, 8)``."""
        yy, mm = int(self.yymm[:2]), int(self.yymm[2:])
        return (1900 + yy if yy >= 91 else 2000 + yy), mm


_REQUIRED = ("filename", "md5sum", "size", "yymm")


def parse_manifest(xml: bytes | str, *, source: str = "<manifest>") -> list[ManifestChunk]:
    """Parse ``arXiv_src_manifest.xml`` / ``arXiv_pdf_manifest.xml`` (root ``<arXivSRC>`` or
    ``<arXivPDF>``, one ``<file>`` per chunk). Raises :class:`SourceError` naming ``source`` and the
    entry when the XML or an entry is malformed."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise SourceError(source, f"manifest is not valid XML: {e}") from e
    if root.tag not in ("arXivSRC", "arXivPDF"):
        raise SourceError(source, f"manifest root is <{root.tag}>, expected <arXivSRC> or <arXivPDF>")
    chunks = []
    for i, el in enumerate(root.findall("file"), start=1):
        vals = {c.tag: (c.text or "").strip() for c in el}
        missing = [k for k in _REQUIRED if not vals.get(k)]
        if missing:
            raise SourceError(source, f"manifest entry {i} lacks {', '.join(missing)}")
        try:
            chunks.append(ManifestChunk(
                filename=vals["filename"], md5sum=vals["md5sum"].lower(), size=int(vals["size"]),
                num_items=int(vals.get("num_items") or 0), first_item=vals.get("first_item", ""),
                last_item=vals.get("last_item", ""), seq_num=int(vals.get("seq_num") or 0),
                yymm=vals["yymm"], timestamp=vals.get("timestamp", ""),
                content_md5sum=vals.get("content_md5sum") or None,
            ))
        except ValueError as e:
            raise SourceError(source, f"manifest entry {i} ({vals['filename']}): {e}") from e
    return chunks


def read_manifest(url: str, *, storage_options: dict[str, Any] | None = None) -> list[ManifestChunk]:
    """Read and parse a manifest from a path or fsspec URL (``s3://arxiv/src/arXiv_src_manifest.xml``)."""
    try:
        with fsspec.open(url, "rb", **storage_options_for(url, storage_options)) as f:
            data = f.read()
    except FileNotFoundError as e:
        raise SourceError(url, "manifest not found") from e
    except Exception as e:
        raise SourceError(url, f"cannot read manifest: {type(e).__name__}: {e}") from e
    return parse_manifest(data, source=redact_url(url))


def select_chunks(chunks: list[ManifestChunk], since: str | None = None, until: str | None = None) -> list[ManifestChunk]:
    """Chunks whose ``yymm`` lies in ``[since, until]`` (``'YYMM'``, inclusive, 1991-2090 aware),
    in chronological then sequence order."""
    def ym(s: str) -> tuple[int, int]:
        return ManifestChunk("", "", 0, 0, "", "", 0, s, "").year_month

    lo = ym(since) if since else None
    hi = ym(until) if until else None
    keep = [c for c in chunks if (lo is None or c.year_month >= lo) and (hi is None or c.year_month <= hi)]
    return sorted(keep, key=lambda c: (c.year_month, c.seq_num, c.filename))


def chunk_url(manifest_url: str, filename: str) -> str:
    """Where a manifest's chunk lives. Filenames are relative to the bucket root
    (``src/arXiv_src_0001_001.tar`` next to ``s3://arxiv/src/arXiv_src_manifest.xml`` is
    ``s3://arxiv/src/arXiv_src_0001_001.tar``); a bare name is relative to the manifest's folder."""
    folder = posixpath.dirname(manifest_url)
    first, _, rest = filename.partition("/")
    if rest and posixpath.basename(folder) == first:
        return f"{folder}/{rest}"
    return f"{folder}/{filename}"


@dataclass(frozen=True)
class FetchResult:
    """A verified chunk on local disk. ``fetched`` is False when a previous run's verified copy was
    reused (nothing downloaded)."""

    path: Path
    md5: str
    size: int
    fetched: bool


def _md5_file(path: str | Path) -> tuple[str, int]:
    h, n = hashlib.md5(usedforsecurity=False), 0
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
            n += len(block)
    return h.hexdigest(), n


def _check(url: str, md5: str | None, size: int | None, got_md5: str, got_size: int) -> None:
    if size is not None and got_size != size:
        raise ChecksumError(url, f"size is {got_size} bytes, manifest says {size}")
    if md5 is not None and got_md5 != md5.lower():
        raise ChecksumError(url, f"md5 is {got_md5}, manifest says {md5.lower()}")


def fetch_chunk(
    url: str,
    work_dir: str | os.PathLike,
    *,
    md5: str | None = None,
    size: int | None = None,
    storage_options: dict[str, Any] | None = None,
) -> FetchResult:
    """Make a verified local copy of one chunk, resumably.

    A remote chunk is streamed to ``work_dir/<name>.part`` while its md5 is computed; only when md5
    and size match (when given) is it renamed to ``work_dir/<name>`` and ``<name>.verified.json``
    written. A local chunk is verified in place (not copied) and its marker records its size and
    mtime. On a rerun a chunk whose marker still matches is returned with ``fetched=False`` and not
    read again; a leftover ``.part`` is discarded and downloaded again.

    Raises:
        ChecksumError: md5 or size differ (the ``.part`` is deleted; no marker is written).
        SourceError: the chunk cannot be read.
    """
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    name = posixpath.basename(url.rstrip("/"))
    local = not is_url(url)
    final = Path(url.removeprefix("file://")) if local else work / name
    marker = work / f"{name}.verified.json"
    shown = redact_url(url)

    if marker.exists() and final.exists():
        try:
            m = json.loads(marker.read_text())
            st = final.stat()
            ok = m.get("size") == st.st_size and (md5 is None or m.get("md5") == md5.lower())
            ok = ok and m.get("url") == shown and (not local or m.get("mtime_ns") == st.st_mtime_ns)
        except (OSError, ValueError):
            ok = False
        if ok:
            return FetchResult(final, m["md5"], m["size"], fetched=False)
    marker.unlink(missing_ok=True)

    if local:
        if not final.exists():
            raise SourceError(url, "chunk not found")
        got_md5, got_size = _md5_file(final)
        _check(shown, md5, size, got_md5, got_size)
        write_json_atomic(marker, {"url": shown, "md5": got_md5, "size": got_size,
                                    "mtime_ns": final.stat().st_mtime_ns, "checked_md5": md5 is not None})
        return FetchResult(final, got_md5, got_size, fetched=True)

    part = work / f"{name}.part"
    h, n = hashlib.md5(usedforsecurity=False), 0
    try:
        with fsspec.open(url, "rb", **storage_options_for(url, storage_options)) as src, open(part, "wb") as out:
            while block := src.read(_BLOCK):
                h.update(block)
                n += len(block)
                out.write(block)
    except FileNotFoundError as e:
        part.unlink(missing_ok=True)
        raise SourceError(url, "chunk not found") from e
    except Exception as e:  # network/auth errors from any backend; the .part is retried next run
        raise SourceError(url, f"download failed: {type(e).__name__}: {e}") from e
    try:
        _check(shown, md5, size, h.hexdigest(), n)
    except ChecksumError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, final)
    write_json_atomic(marker, {"url": shown, "md5": h.hexdigest(), "size": n, "checked_md5": md5 is not None})
    return FetchResult(final, h.hexdigest(), n, fetched=True)


def iter_bulk(
    manifest_url: str,
    work_dir: str | os.PathLike,
    *,
    since: str | None = None,
    until: str | None = None,
    storage_options: dict[str, Any] | None = None,
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
) -> Iterator[tuple[SourceFile, bytes] | SourceError]:
    """Fetch (resumably, md5-verified) the manifest's chunks for ``[since, until]`` (``'YYMM'``) and
    stream their members.

    Yields ``(SourceFile, bytes)`` per member, with ``location`` the verified local chunk; a chunk
    that fails to download, fails verification or is corrupt is yielded as a :class:`SourceError`
    and the next chunk follows. Use :func:`chunk_url` with ``SourceFile.member`` to cite the
    original location.
    """
    for chunk in select_chunks(read_manifest(manifest_url, storage_options=storage_options), since, until):
        url = chunk_url(manifest_url, chunk.filename)
        try:
            got = fetch_chunk(url, work_dir, md5=chunk.md5sum, size=chunk.size, storage_options=storage_options)
            yield from iter_tar(str(got.path), role=chunk.role, max_member_bytes=max_member_bytes)
        except SourceError as e:
            yield e
