"""Listing and fetching paper files: folders, tars, the arXiv S3 bulk layout and the gs layout,
locally and over a loopback HTTP server (fsspec's http filesystem)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import shutil
import tarfile
import threading

import pytest

from corpus.archives import unpack_source
from corpus.files import SourceError, redact_url
from corpus.ingest.sources import (
    ChecksumError,
    ManifestChunk,
    chunk_url,
    fetch_chunk,
    is_manifest,
    iter_bulk,
    iter_tar,
    list_inputs,
    parse_manifest,
    read_input,
    read_manifest,
    select_chunks,
    storage_options_for,
)

WITHDRAWN = b"\\documentclass{article}\n\\begin{document}\nThis paper has been withdrawn by the author.\n\\end{document}\n"
TEX = b"\\documentclass{aastex631}\n\\begin{document}\n\\section{Introduction}\nGJ 486b.\n\\end{document}\n"


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # clients may close ranged reads early
        pass


class _CountingHandler(_Handler):
    gets: list[str]

    def do_GET(self):
        self.gets.append(self.path)
        super().do_GET()


@pytest.fixture()
def serve():
    """Serve a folder on 127.0.0.1 at a random port; yields (start(folder) -> base URL, GET log)."""
    servers, gets = [], []

    def start(folder) -> str:
        handler = type("H", (_CountingHandler,), {"gets": gets})
        srv = _Server(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start, gets
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


@pytest.fixture()
def bulk(fixtures, tmp_path):
    """A fake arXiv src chunk (the real LEGWORK bundle, a gzipped .tex, a plain PDF, a withdrawn
    stub) and a manifest in arXiv's format with the chunk's true md5 and size."""
    root = tmp_path / "bucket"
    (root / "src").mkdir(parents=True)
    chunk = root / "src" / "arXiv_src_2212_001.tar"
    with tarfile.open(chunk, "w") as tf:
        _add(tf, "2212/2212.11816.gz", (fixtures / "latex" / "legwork_2022" / "legwork_arxiv_src_dataonly.tar.gz").read_bytes())
        _add(tf, "2212/2212.11889.gz", gzip.compress(TEX))
        _add(tf, "2212/2212.11899.pdf", (fixtures / "pdf" / "hwobows_vaughan2023_mnras.pdf").read_bytes())
        _add(tf, "2212/2212.11900.gz", gzip.compress(WITHDRAWN))
    md5 = hashlib.md5(chunk.read_bytes()).hexdigest()
    manifest = root / "src" / "arXiv_src_manifest.xml"
    manifest.write_text(_manifest_xml(md5, chunk.stat().st_size))
    return root, chunk, md5


def _manifest_xml(md5: str, size: int) -> str:
    return f"""<?xml version='1.0' standalone='yes'?>
<arXivSRC>
  <file>
    <content_md5sum>cacbfede21d5dfef26f367ec99384546</content_md5sum>
    <filename>src/arXiv_src_0001_001.tar</filename>
    <first_item>astro-ph0001001</first_item>
    <last_item>quant-ph0001119</last_item>
    <md5sum>949ae880fbaf4649a485a8d9e07f370b</md5sum>
    <num_items>2364</num_items>
    <seq_num>1</seq_num>
    <size>225605507</size>
    <timestamp>2010-12-23 00:13:59</timestamp>
    <yymm>0001</yymm>
  </file>
  <file>
    <content_md5sum>0123456789abcdef0123456789abcdef</content_md5sum>
    <filename>src/arXiv_src_2212_001.tar</filename>
    <first_item>2212.11816</first_item>
    <last_item>2212.11900</last_item>
    <md5sum>{md5}</md5sum>
    <num_items>4</num_items>
    <seq_num>1</seq_num>
    <size>{size}</size>
    <timestamp>2023-01-03 10:00:00</timestamp>
    <yymm>2212</yymm>
  </file>
</arXivSRC>
"""


def test_parse_manifest_reads_arxivs_format(bulk):
    root, _, md5 = bulk
    chunks = read_manifest(str(root / "src" / "arXiv_src_manifest.xml"))
    assert [c.filename for c in chunks] == ["src/arXiv_src_0001_001.tar", "src/arXiv_src_2212_001.tar"]
    first = chunks[0]
    assert (first.md5sum, first.size, first.num_items, first.yymm, first.first_item, first.role) == (
        "949ae880fbaf4649a485a8d9e07f370b", 225605507, 2364, "0001", "astro-ph0001001", "src")
    assert chunks[1].md5sum == md5 and chunks[1].year_month == (2022, 12)


def test_parse_manifest_errors_name_the_problem():
    with pytest.raises(SourceError, match="not valid XML"):
        parse_manifest(b"<arXivSRC><file>", source="m.xml")
    with pytest.raises(SourceError, match="entry 1 lacks md5sum"):
        parse_manifest(b"<arXivPDF><file><filename>pdf/x.tar</filename><size>1</size><yymm>0001</yymm></file></arXivPDF>")
    with pytest.raises(SourceError, match="expected <arXivSRC>"):
        parse_manifest(b"<html/>")


def test_select_chunks_orders_1990s_before_2000s():
    def c(yymm, seq=1):
        return ManifestChunk(f"src/arXiv_src_{yymm}_{seq:03d}.tar", "0" * 32, 1, 1, "", "", seq, yymm, "")
    chunks = [c("0001"), c("9108"), c("2212", 2), c("2212", 1), c("0704")]
    assert [x.filename[-12:-4] for x in select_chunks(chunks)] == ["9108_001", "0001_001", "0704_001", "2212_001", "2212_002"]
    assert [x.yymm for x in select_chunks(chunks, since="0001", until="0704")] == ["0001", "0704"]


def test_chunk_urls_and_requester_pays():
    assert chunk_url("s3://arxiv/src/arXiv_src_manifest.xml", "src/arXiv_src_0001_001.tar") == "s3://arxiv/src/arXiv_src_0001_001.tar"
    assert chunk_url("/mirror/arXiv_pdf_manifest.xml", "arXiv_pdf_0001_001.tar") == "/mirror/arXiv_pdf_0001_001.tar"
    assert storage_options_for("s3://arxiv/pdf/arXiv_pdf_manifest.xml") == {"requester_pays": True}
    assert storage_options_for("s3://arxiv/x", {"requester_pays": False, "profile": "p"}) == {"requester_pays": False, "profile": "p"}
    assert storage_options_for("gs://arxiv-dataset/arxiv/") == {}
    assert redact_url("https://user:s3cret@host:8080/a?b=1") == "https://host:8080/a?b=1"
    assert is_manifest("s3://arxiv/src/arXiv_src_manifest.xml") and not is_manifest("a.tar")


def test_bulk_chunk_over_http_is_fetched_verified_and_streamed(bulk, serve, tmp_path):
    root, chunk, md5 = bulk
    start, gets = serve
    base = start(root)
    work = tmp_path / "work"
    items = list(iter_bulk(f"{base}/src/arXiv_src_manifest.xml", work, since="2201"))
    assert not [i for i in items if isinstance(i, SourceError)]
    ids = [(sf.paper_id, sf.role, sf.member) for sf, _ in items]
    assert ids == [("2212.11816", "src", "2212/2212.11816.gz"), ("2212.11889", "src", "2212/2212.11889.gz"),
                   ("2212.11899", "src", "2212/2212.11899.pdf"), ("2212.11900", "src", "2212/2212.11900.gz")]
    kinds = [unpack_source(data, tmp_path / "x" / sf.paper_id, name=sf.member).kind for sf, data in items]
    assert kinds == ["tar", "gzip_tex", "pdf", "withdrawn"]
    assert (work / "arXiv_src_2212_001.tar").read_bytes() == chunk.read_bytes()
    assert (work / "arXiv_src_2212_001.tar.verified.json").exists()
    assert not list(work.glob("*.part"))

    # rerun: the verified chunk is not downloaded again
    chunk_gets = sum(p.endswith(".tar") for p in gets)
    again = list(iter_bulk(f"{base}/src/arXiv_src_manifest.xml", work, since="2201"))
    assert [sf.paper_id for sf, _ in again] == [sf.paper_id for sf, _ in items]
    assert sum(p.endswith(".tar") for p in gets) == chunk_gets


def test_wrong_md5_is_detected_and_nothing_is_kept(bulk, serve, tmp_path):
    root, chunk, md5 = bulk
    manifest = root / "src" / "arXiv_src_manifest.xml"
    manifest.write_text(manifest.read_text().replace(md5, "f" * 32))
    start, _ = serve
    base = start(root)
    work = tmp_path / "work"
    items = list(iter_bulk(f"{base}/src/arXiv_src_manifest.xml", work, since="2212", until="2212"))
    assert len(items) == 1 and isinstance(items[0], ChecksumError)
    assert "arXiv_src_2212_001.tar" in str(items[0]) and "md5" in items[0].reason and md5 in items[0].reason
    assert list(work.iterdir()) == []
    # a local chunk is verified in place, with the same error
    with pytest.raises(ChecksumError, match="manifest says f{32}"):
        fetch_chunk(str(chunk), work, md5="f" * 32)


def test_interrupted_download_is_fetched_again(bulk, serve, tmp_path):
    root, chunk, md5 = bulk
    start, _ = serve
    base = start(root)
    work = tmp_path / "work"
    work.mkdir()
    (work / "arXiv_src_2212_001.tar.part").write_bytes(chunk.read_bytes()[:1000])  # killed mid-download
    url = f"{base}/src/arXiv_src_2212_001.tar"
    got = fetch_chunk(url, work, md5=md5, size=chunk.stat().st_size)
    assert got.fetched and got.md5 == md5 and got.path.read_bytes() == chunk.read_bytes()
    assert not (work / "arXiv_src_2212_001.tar.part").exists()
    assert fetch_chunk(url, work, md5=md5).fetched is False
    # a verified copy whose bytes changed on disk (size differs) is fetched again
    got.path.write_bytes(b"truncated")
    assert fetch_chunk(url, work, md5=md5).fetched is True


def test_local_chunk_changed_after_verification_is_checked_again(bulk, tmp_path):
    _, chunk, md5 = bulk
    work = tmp_path / "work"
    assert fetch_chunk(str(chunk), work, md5=md5).fetched is True
    assert fetch_chunk(str(chunk), work, md5=md5).fetched is False
    data = bytearray(chunk.read_bytes())
    data[600] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(ChecksumError):
        fetch_chunk(str(chunk), work, md5=md5)


def test_credentials_in_urls_are_never_recorded(bulk, serve, tmp_path):
    root, chunk, md5 = bulk
    start, _ = serve
    base = start(root).replace("http://", "http://reader:s3cret@")
    work = tmp_path / "work"
    fetch_chunk(f"{base}/src/arXiv_src_2212_001.tar", work, md5=md5)
    marker = (work / "arXiv_src_2212_001.tar.verified.json").read_text()
    assert "s3cret" not in marker and "127.0.0.1" in marker
    with pytest.raises(SourceError) as err:
        fetch_chunk(f"{base}/src/missing.tar", work)
    assert "s3cret" not in str(err.value)


def _gs_tree(fixtures, root):
    pdf = (fixtures / "pdf" / "hwobows_vaughan2023_mnras.pdf").read_bytes()
    new = root / "arxiv" / "arxiv" / "pdf" / "2212"
    old = root / "arxiv" / "astro-ph" / "pdf" / "0001"
    new.mkdir(parents=True)
    old.mkdir(parents=True)
    for name in ("2212.11816v1.pdf", "2212.11816v2.pdf", "2212.11889v1.pdf"):
        (new / name).write_bytes(pdf)
    (old / "0001001v1.pdf").write_bytes(pdf)
    (old / "0001001v3.pdf").write_bytes(pdf)


@pytest.mark.parametrize("over_http", [False, True])
def test_gs_layout_keeps_the_latest_version_of_each_id(fixtures, tmp_path, serve, over_http):
    _gs_tree(fixtures, tmp_path / "gs")
    location = str(tmp_path / "gs" / "arxiv")
    if over_http:
        start, _ = serve
        location = start(tmp_path / "gs") + "/arxiv/"
    got = sorted((f.paper_id, f.version, f.role) for f in list_inputs(location))
    assert got == [("2212.11816", "v2", "pdf"), ("2212.11889", "v1", "pdf"), ("astro-ph/0001001", "v3", "pdf")]
    every = list(list_inputs(location, latest_only=False))
    assert len(every) == 5
    one = next(f for f in list_inputs(location) if f.paper_id == "2212.11889")
    assert read_input(one)[:5] == b"%PDF-"


def test_folder_listing_finds_loose_files_and_paper_folders(fixtures, tmp_path):
    root = tmp_path / "in"
    (root / "2212.11816").mkdir(parents=True)
    (root / "2212.11816" / "ms.tex").write_bytes(TEX)
    (root / "misc").mkdir()
    shutil.copy(fixtures / "pdf" / "legwork_wagg2022_aastex631_twocol.pdf", root / "misc" / "legwork.pdf")
    (root / "astro-ph0001001.gz").write_bytes(gzip.compress(TEX))
    (root / ".hidden").write_text("x")
    got = list(list_inputs(str(root)))
    assert [(f.name, f.paper_id, f.role, f.is_dir) for f in got] == [
        ("2212.11816", "2212.11816", "src", True),
        ("astro-ph0001001.gz", "astro-ph/0001001", "src", False),
        ("legwork.pdf", None, "pdf", False),  # no id: the ingest stage names it by content hash
    ]
    assert got[2].size == (root / "misc" / "legwork.pdf").stat().st_size


def test_tar_listing_and_member_reads(bulk, serve):
    root, chunk, _ = bulk
    listed = list(list_inputs(str(chunk)))
    assert [f.member for f in listed] == ["2212/2212.11816.gz", "2212/2212.11889.gz", "2212/2212.11899.pdf", "2212/2212.11900.gz"]
    member = listed[1]
    assert member.url == f"tar://2212/2212.11889.gz::{chunk}"
    assert gzip.decompress(read_input(member)) == TEX
    start, _ = serve
    remote = f"{start(root)}/src/arXiv_src_2212_001.tar"
    streamed = [(sf.paper_id, len(data)) for sf, data in iter_tar(remote, role="src")]
    assert streamed == [(f.paper_id, f.size) for f in listed]


def test_oversized_members_are_reported_not_loaded(bulk):
    _, chunk, _ = bulk
    items = list(iter_tar(str(chunk), max_member_bytes=10_000))
    errors = [i for i in items if isinstance(i, SourceError)]
    assert {e.location.split("::")[0] for e in errors} == {"tar://2212/2212.11816.gz", "tar://2212/2212.11899.pdf"}
    assert all("limit" in e.reason for e in errors)
    assert [sf.paper_id for sf, _ in (i for i in items if not isinstance(i, SourceError))] == ["2212.11889", "2212.11900"]


def test_bad_locations_give_clear_errors(tmp_path, bulk):
    root, _, _ = bulk
    with pytest.raises(SourceError, match="not found"):
        list(list_inputs(str(tmp_path / "nope")))
    with pytest.raises(SourceError, match="use iter_bulk"):
        list(list_inputs(str(root / "src" / "arXiv_src_manifest.xml")))
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"x" * 700)
    assert [f.member for f in list_inputs(str(bad))] == [None]  # not a tar: one file
    truncated = tmp_path / "trunc.tar"
    truncated.write_bytes(next(root.glob("src/*.tar")).read_bytes()[:3000])
    with pytest.raises(SourceError, match="trunc.tar"):
        list(iter_tar(str(truncated)))
