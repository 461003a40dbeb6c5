"""Unpacking untrusted source bundles: kinds by magic bytes, hostile members, bombs."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile

import pytest

from corpus.archives import (
    ArchiveError,
    ArchiveLimits,
    detect_kind,
    sniff_source_kind,
    unpack_source,
)

WITHDRAWN = b"\\documentclass{article}\n\\begin{document}\nThis paper has been withdrawn by the author due to a crucial error in equation 3.\n\\end{document}\n"
TEX = b"\\documentclass{aastex631}\n\\begin{document}\n\\section{Introduction}\nStars.\n\\end{document}\n"


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]], gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return buf.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def _snapshot(folder) -> set[str]:
    return {os.path.relpath(os.path.join(r, n), folder) for r, ds, fs in os.walk(folder) for n in ds + fs}


def test_hostile_tar_members_are_refused_and_nothing_lands_outside(tmp_path):
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "keep.txt").write_text("untouched")
    dest = parent / "dest"
    dev = tarfile.TarInfo("dev_null")
    dev.type = tarfile.CHRTYPE
    data = _tar([
        _file("good.tex", TEX),
        _file("figs/plot.txt", b"data"),
        _file("../evil.txt", b"traversal"),
        _file("sub/../../evil2.txt", b"traversal"),
        _file("/abs_evil.txt", b"absolute"),
        _link("link_out", "../keep.txt", tarfile.SYMTYPE),
        _link("abs_link", "/etc/passwd", tarfile.SYMTYPE),
        _link("hard_out", "../keep.txt", tarfile.LNKTYPE),
        _link("hard_abs", "/etc/passwd", tarfile.LNKTYPE),
        _link("linkdir", "..", tarfile.SYMTYPE),
        _file("linkdir/escape.txt", b"through a symlinked folder"),
        _link("inside_link", "good.tex", tarfile.SYMTYPE),
        (dev, None),
    ], gz=True)
    before = _snapshot(tmp_path)
    result = unpack_source(data, dest, name="2212.00001.gz")

    assert result.kind == "tar"
    after = _snapshot(tmp_path)
    assert {p for p in after - before if not p.startswith(os.path.join("parent", "dest"))} == set()
    assert (parent / "keep.txt").read_text() == "untouched"
    assert not (tmp_path / "evil.txt").exists() and not (parent / "evil.txt").exists()
    refused = {r.name: r.reason for r in result.refused}
    assert set(refused) == {"../evil.txt", "sub/../../evil2.txt", "/abs_evil.txt", "link_out", "abs_link",
                            "hard_out", "hard_abs", "linkdir", "dev_null"}
    assert "traversal" in refused["../evil.txt"] and "absolute" in refused["/abs_evil.txt"]
    assert "outside" in refused["link_out"] and "outside" in refused["hard_out"] and "outside" in refused["linkdir"]
    assert "absolute" in refused["abs_link"] and "absolute" in refused["hard_abs"]
    assert "special file" in refused["dev_null"]
    # no link of any kind is created on disk; a link to an extracted file becomes a copy
    assert not any(os.path.islink(os.path.join(r, n)) for r, ds, fs in os.walk(dest) for n in ds + fs)
    assert (dest / "inside_link").read_bytes() == TEX
    assert (dest / "linkdir" / "escape.txt").read_bytes() == b"through a symlinked folder"  # a plain folder inside dest
    assert result.files == ["figs/plot.txt", "good.tex", "inside_link", "linkdir/escape.txt"]


def test_gzip_bomb_is_refused_and_leaves_nothing(tmp_path):
    dest = tmp_path / "dest"
    bomb = gzip.compress(b"\0" * (8 << 20))  # 8 MiB of zeros in ~8 KB
    with pytest.raises(ArchiveError, match="decompression bomb") as err:
        unpack_source(bomb, dest, ArchiveLimits(max_member_bytes=1 << 20), name="astro-ph0001001.gz")
    assert err.value.path == "astro-ph0001001.gz" and "max_member_bytes" in err.value.reason
    assert list(dest.iterdir()) == []


def test_tar_bombs_over_total_size_or_file_count_are_refused_whole(tmp_path):
    many = _tar([_file(f"f{i}.txt", b"x") for i in range(50)], gz=True)
    with pytest.raises(ArchiveError, match="max_files"):
        unpack_source(many, tmp_path / "a", ArchiveLimits(max_files=20))
    assert list((tmp_path / "a").iterdir()) == []  # the 20 already written were removed
    big = _tar([_file(f"f{i}.bin", b"\0" * (300 << 10)) for i in range(5)], gz=True)
    with pytest.raises(ArchiveError, match="max_total_bytes"):
        unpack_source(big, tmp_path / "b", ArchiveLimits(max_total_bytes=1 << 20))
    assert list((tmp_path / "b").iterdir()) == []


def test_real_arxiv_bundle_unpacks_as_tar(fixtures, tmp_path):
    src = fixtures / "latex" / "legwork_2022" / "legwork_arxiv_src_dataonly.tar.gz"
    result = unpack_source(src, tmp_path / "legwork")
    assert result.kind == "tar" and not result.refused
    assert {"ms.tex", "bib.bib", "ms.bbl"} <= set(result.files)
    assert sum(f.startswith("figures/") for f in result.files) == 8
    assert (tmp_path / "legwork" / "ms.tex").read_bytes() == (fixtures / "latex" / "legwork_2022" / "ms.tex").read_bytes()
    assert result.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()


def test_single_file_sources_are_named_by_kind_not_by_file_name(fixtures, tmp_path):
    pdf = (fixtures / "pdf" / "hwobows_vaughan2023_mnras.pdf").read_bytes()
    cases = [
        (gzip.compress(TEX), "2212.11889.gz", "gzip_tex", "2212.11889.tex"),
        (gzip.compress(WITHDRAWN), "astro-ph0001001.gz", "withdrawn", "astro-ph0001001.tex"),
        (TEX, "paper.gz", "tex", "paper.tex"),  # named .gz, is plain TeX
        (pdf, "2212.11899.gz", "pdf", "2212.11899.pdf"),  # PDF-only submission
        (gzip.compress(b"%!PS-Adobe-2.0\n%%Pages: 1\n"), "9108001.gz", "postscript", "9108001.ps"),
        (b"<!DOCTYPE html><html><body>paper</body></html>", "x", "html", "x.html"),
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "img.gz", "unknown", "img"),
    ]
    for data, name, kind, written in cases:
        dest = tmp_path / name
        result = unpack_source(data, dest, name=name)
        assert (result.kind, result.files) == (kind, [written]), name
        assert result.sha256 == hashlib.sha256(data).hexdigest()


def test_detect_kind_by_magic_bytes():
    assert detect_kind(b"\x1f\x8b\x08\x00") == "gzip"
    assert detect_kind(_tar([_file("a.tex", TEX)])[:8192]) == "tar"
    assert detect_kind(b"%PDF-1.5\n") == "pdf"
    assert detect_kind(b"%!PS-Adobe-3.0") == "postscript"
    assert detect_kind(b"\n<HTML><HEAD>") == "html"
    assert detect_kind(TEX) == "tex"
    assert detect_kind(WITHDRAWN) == "withdrawn"
    # a real paper that mentions a withdrawn result is long, so it stays tex
    assert detect_kind(TEX + b"% The paper has been withdrawn.\n" + b"x" * 5000) == "tex"
    assert detect_kind(b"\x00\x01\x02binary") == "unknown"


def test_sniff_source_kind_looks_inside_gzip_without_writing():
    assert sniff_source_kind(gzip.compress(TEX)) == "gzip_tex"
    assert sniff_source_kind(_tar([_file("a.tex", TEX)], gz=True)) == "tar"
    assert sniff_source_kind(gzip.compress(WITHDRAWN)) == "withdrawn"
    assert sniff_source_kind(b"%PDF-1.4") == "pdf"


def test_corrupt_gzip_raises_a_clear_error(tmp_path):
    data = gzip.compress(_tar([_file("ms.tex", TEX * 200)]))
    with pytest.raises(ArchiveError, match="2212.00002.gz") as err:
        unpack_source(data[: len(data) // 2], tmp_path / "d", name="2212.00002.gz")
    assert "corrupt" in err.value.reason or "could not read" in err.value.reason
    assert not any((tmp_path / "d").rglob("*.tex"))


def test_folder_input_is_copied_without_following_links(tmp_path):
    src = tmp_path / "2212.11816"
    (src / "figs").mkdir(parents=True)
    (src / "ms.tex").write_bytes(TEX)
    (src / "figs" / "a.txt").write_text("a")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not copy")
    (src / "leak.txt").symlink_to(secret)
    result = unpack_source(src, tmp_path / "out")
    assert result.kind == "folder"
    assert result.files == ["figs/a.txt", "ms.tex"]
    assert [r.name for r in result.refused] == ["leak.txt"]
    assert not (tmp_path / "out" / "leak.txt").exists()
