"""The ingest and extract stages on real fixtures and on broken input: every paper keeps a row."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from corpus.cli import main
from corpus.run.executor import ExecutorConfig
from corpus.run.manifest import verify
from corpus.run.recipe import Recipe, Step, run_recipe
from schemas import DECISION, DOCUMENT, PAPER, read_polars


def run(tmp_path, steps, name="out"):
    recipe = Recipe(steps=[Step(stage=s, config=c) for s, c in steps], executor=ExecutorConfig(tasks=2, quiet=True))
    run_recipe(recipe, tmp_path / name)
    return tmp_path / name


def decisions(out, stage):
    return read_polars(out / f"decisions/{stage}.parquet", DECISION)


def test_fixture_metadata_with_category_and_date_filters(fixtures, tmp_path):
    meta = tmp_path / "meta.jsonl"
    lines = (fixtures / "metadata" / "arxiv_kaggle_metadata_head100.jsonl").read_text().splitlines()
    meta.write_text("\n".join(lines[:50] + ['{"id": "0704.9999", "broken json'] + lines[50:]) + "\n")
    out = run(tmp_path, [("ingest", {"metadata": [str(meta)], "categories": ["astro-ph*"], "require_files": False})])
    papers = read_polars(out / "papers.parquet", PAPER)
    assert sorted(papers["paper_id"]) == ["0704.0009", "0704.0017", "0704.0023", "0704.0044", "0704.0048",
                                          "0704.0059", "0704.0080", "0704.0094"]
    failed = decisions(out, "ingest").filter(decisions(out, "ingest")["action"] == "failed")
    assert failed.height == 1 and failed["reason"].item() == "malformed_metadata_line"
    assert json.loads(failed["detail"].item())["line"] == 51
    gr = run(tmp_path, [("ingest", {"metadata": [str(meta)], "categories": ["gr-qc"], "include_cross_lists": False,
                                    "require_files": False})], "gr")
    assert read_polars(gr / "papers.parquet", PAPER)["categories"].list.first().to_list() == ["gr-qc"] * read_polars(gr / "papers.parquet", PAPER).height
    dated = run(tmp_path, [("ingest", {"metadata": [str(meta)], "since": "2007-04-02", "until": "2007-04-02",
                                       "require_files": False})], "dated")
    assert all(str(d) == "2007-04-02" for d in read_polars(dated / "papers.parquet", PAPER)["submitted"])


def test_files_without_metadata_are_named_by_id_or_hash_or_dropped_with_a_reason(fixtures, tmp_path):
    pdfs = tmp_path / "pdf"
    pdfs.mkdir()
    shutil.copy(fixtures / "pdf" / "hwobows_vaughan2023_mnras.pdf", pdfs / "2301.00001v1.pdf")
    shutil.copy(fixtures / "pdf" / "hwobows_vaughan2023_mnras.pdf", pdfs / "copy.pdf")  # same bytes, no id
    shutil.copy(fixtures / "pdf" / "corrfunc_sinha2016_elsarticle.pdf", pdfs / "upload.pdf")  # no id anywhere
    meta = tmp_path / "m.jsonl"
    meta.write_text(json.dumps({"id": "0704.0001", "categories": "astro-ph", "title": "t", "abstract": "a",
                                "versions": [{"version": "v1", "created": "Mon, 2 Apr 2007 19:18:42 GMT"}]}) + "\n")
    out = run(tmp_path, [("ingest", {"pdfs": [str(pdfs)], "metadata": [str(meta)]})])
    papers = {r["paper_id"]: r for r in read_polars(out / "papers.parquet", PAPER).iter_rows(named=True)}
    named = papers.pop("2301.00001")  # its file name is its arXiv id: named by it, not by its hash
    assert named["version"] == "v1" and "arxiv_id:2301.00001" in named["flags"] and named["pdf_path"].endswith("v1.pdf")
    (hashed,) = papers.values()
    assert hashed["paper_id"] == "sha256:" + _sha(pdfs / "upload.pdf")
    assert "no_metadata" in hashed["flags"] and hashed["title"]
    reasons = sorted(decisions(out, "ingest")["reason"])
    assert reasons == ["duplicate_file", "ingested", "ingested", "no_files"]
    dropped = run(tmp_path, [("ingest", {"pdfs": [str(pdfs)], "metadata": [str(meta)], "unmatched_files": "drop"})], "drop")
    assert "no_matching_metadata" in set(decisions(dropped, "ingest")["reason"])


def _tar_gz(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def test_extract_prefers_latex_falls_back_to_pdf_and_records_failures(fixtures, tmp_path):
    src, pdf = tmp_path / "src", tmp_path / "pdf"
    src.mkdir(), pdf.mkdir()
    shutil.copy(fixtures / "latex" / "legwork_2022" / "legwork_arxiv_src_dataonly.tar.gz", src / "2208.00001.gz")
    shutil.copy(fixtures / "pdf" / "legwork_wagg2022_aastex631_twocol.pdf", pdf / "2208.00001v1.pdf")
    # a source with no \documentclass anywhere cannot convert: the PDF is used, and the row says why
    (src / "2208.00002.gz").write_bytes(_tar_gz({"notes.txt": b"just a readme"}))
    shutil.copy(fixtures / "pdf" / "corrfunc_sinha2016_elsarticle.pdf", pdf / "2208.00002v1.pdf")
    (pdf / "2208.00003v1.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (src / "2208.00004.gz").write_bytes(gzip.compress(b"%!PS-Adobe-2.0\n%%Pages: 1\nshowpage\n"))
    out = run(tmp_path, [("ingest", {"pdfs": [str(pdf)], "sources": [str(src)]}), ("extract", {})])
    docs = {r["paper_id"]: r for r in read_polars(out / "documents.parquet", DOCUMENT).iter_rows(named=True)}
    papers = {r["paper_id"]: r for r in read_polars(out / "papers.parquet", PAPER).iter_rows(named=True)}
    assert papers["2208.00004"]["source_kind"] == "postscript"
    legwork = next(d for d in docs.values() if d["text"] and "LEGWORK" in d["text"][:200])
    assert legwork["extractor"] == "latex" and legwork["reason"] == "latex_source"
    corrfunc = next(d for d in docs.values() if d["text"] and "Corrfunc" in d["text"])
    assert corrfunc["extractor"] == "pdf" and corrfunc["reason"].startswith("latex_failed:")
    assert corrfunc["n_pages"] == 12 and len(corrfunc["pages"]) == 12
    failed = [d for d in docs.values() if d["text"] is None]
    assert {d["reason"] for d in failed} == {"pdf_failed:corrupt", "source_is_postscript"}
    dec = decisions(out, "extract")
    assert dec.height == len(docs) == 4 and (dec["action"] == "failed").sum() == 2


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_text_command_prints_text_and_provenance(fixtures, capsys):
    assert main(["text", str(fixtures / "pdf" / "hwobows_vaughan2023_mnras.pdf")]) == 0
    captured = capsys.readouterr()
    assert "Habitable Worlds Observatory" in captured.out
    assert "page   1: pymupdf" in captured.err
    assert main(["text", str(fixtures / "latex" / "aastex63_sample" / "sample63.tex")]) == 0
    assert "latex (latex_source)" in capsys.readouterr().err


def test_text_command_says_needs_ocr_only_for_pages_routed_to_ocr(fixtures, capsys):
    assert main(["text", str(fixtures / "pdf" / "mnras_latex_guide_v3.pdf")]) == 0  # born digital
    err = capsys.readouterr().err
    assert "page   1: pymupdf" in err and "NEEDS OCR" not in err
    assert main(["text", str(fixtures / "pdf" / "hubble1929_pnas_scanned.pdf")]) == 0  # a 1929 scan
    pages = [line for line in capsys.readouterr().err.splitlines() if line.startswith("#   page")]
    assert pages and all(line.endswith("NEEDS OCR: scanned_ocr_layer") for line in pages)


def test_text_command_refuses_with_one_line(tmp_path, capsys):
    junk = tmp_path / "x.bin"
    junk.write_bytes(bytes(range(256)) * 4)
    assert main(["text", str(junk)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "x.bin" in err[0] and "refused" in err[0]
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\n" + b"\x00" * 100)
    assert main(["text", str(broken)]) == 1
    assert "broken.pdf" in capsys.readouterr().err


def test_papers_inside_a_bulk_style_tar_are_ingested_and_extracted(fixtures, tmp_path):
    chunk = tmp_path / "arXiv_pdf_2208_001.tar"
    with tarfile.open(chunk, "w") as tar:
        tar.add(fixtures / "pdf" / "hwobows_vaughan2023_mnras.pdf", arcname="2208/2208.00011v2.pdf")
        tar.add(fixtures / "pdf" / "corrfunc_sinha2016_elsarticle.pdf", arcname="2208/2208.00012v1.pdf")
    out = run(tmp_path, [("ingest", {"pdfs": [str(chunk)]}), ("extract", {})])
    papers = read_polars(out / "papers.parquet", PAPER)
    assert all(p.startswith("tar://2208/") and p.endswith("::" + str(chunk)) for p in papers["pdf_path"])
    docs = read_polars(out / "documents.parquet", DOCUMENT)
    assert docs.height == 2 and set(docs["extractor"]) == {"pdf"} and docs["n_chars"].min() > 10_000


def test_an_unexpected_failure_on_one_paper_is_recorded_and_the_run_goes_on(fixtures, tmp_path, monkeypatch):
    import corpus.extract.document as document

    pdfs = tmp_path / "pdf"
    pdfs.mkdir()
    shutil.copy(fixtures / "pdf" / "hwobows_vaughan2023_mnras.pdf", pdfs / "2301.00001v1.pdf")
    shutil.copy(fixtures / "pdf" / "corrfunc_sinha2016_elsarticle.pdf", pdfs / "2301.00002v1.pdf")
    real = document.extract_pdf

    def flaky(data, config=None, *, name=None, **kw):
        if "2301.00002" in str(name):
            raise RuntimeError("MuPDF exploded")
        return real(data, config, name=name, **kw)

    monkeypatch.setattr(document, "extract_pdf", flaky)
    out = run(tmp_path, [("ingest", {"pdfs": [str(pdfs)]}), ("extract", {})])
    docs = {r["n_pages"]: r for r in read_polars(out / "documents.parquet", DOCUMENT).iter_rows(named=True)}
    assert len(docs) == 2 and docs[0]["reason"] == "error:RuntimeError" and docs[0]["text"] is None
    failed = decisions(out, "extract").filter(decisions(out, "extract")["action"] == "failed")
    assert failed.height == 1 and "MuPDF exploded" in failed["detail"].item() and "2301.00002" in failed["detail"].item()


def test_a_file_of_a_paper_excluded_by_the_category_or_date_filter_is_dropped_with_a_row(fixtures, tmp_path):
    pdfs = tmp_path / "pdf"
    pdfs.mkdir()
    pdf = fixtures / "pdf" / "hwobows_vaughan2023_mnras.pdf"
    shutil.copy(pdf, pdfs / "0704.0002v1.pdf")  # math.CO cs.CG: excluded by the categories
    shutil.copy(fixtures / "pdf" / "aastex63_sample_article.pdf", pdfs / "0704.0009v1.pdf")  # astro-ph, 2007-04-02
    meta = fixtures / "metadata" / "arxiv_kaggle_metadata_head100.jsonl"
    out = run(tmp_path, [("ingest", {"metadata": [str(meta)], "pdfs": [str(pdfs)], "categories": ["astro-ph*"]})])
    papers = read_polars(out / "papers.parquet", PAPER)
    assert papers["paper_id"].to_list() == ["0704.0009"]
    rows = decisions(out, "ingest").filter(decisions(out, "ingest")["reason"] == "filtered_out")
    assert rows["item_id"].to_list() == [str(pdfs / "0704.0002v1.pdf")] and rows["action"].to_list() == ["dropped"]
    detail = json.loads(rows["detail"].item())
    assert detail["filter"] == "categories" and detail["categories"] == ["astro-ph*"] and detail["arxiv_id"] == "0704.0002"

    (pdfs / "0704.0002v1.pdf").unlink()
    shutil.copy(pdf, pdfs / "0704.0007v1.pdf")  # gr-qc, submitted 2007-03-31: excluded by since
    dated = run(tmp_path, [("ingest", {"metadata": [str(meta)], "pdfs": [str(pdfs)], "since": "2007-04-01"})], "dated")
    assert read_polars(dated / "papers.parquet", PAPER)["paper_id"].to_list() == ["0704.0009"]
    rows = decisions(dated, "ingest").filter(decisions(dated, "ingest")["reason"] == "filtered_out")
    assert rows["item_id"].to_list() == [str(pdfs / "0704.0007v1.pdf")]
    assert json.loads(rows["detail"].item())["filter"] == "since/until"


def test_an_ingest_that_keeps_no_paper_is_an_error_saying_why(fixtures, tmp_path):
    meta = fixtures / "metadata" / "arxiv_kaggle_metadata_head100.jsonl"
    pdfs = tmp_path / "pdf"
    pdfs.mkdir()
    shutil.copy(fixtures / "pdf" / "aastex63_sample_article.pdf", pdfs / "0704.0009v1.pdf")
    with pytest.raises(RuntimeError, match=r"kept 0 of .*no metadata row matched categories \['astro-ph.XX'\]"):
        run(tmp_path, [("ingest", {"metadata": [str(meta)], "pdfs": [str(pdfs)], "categories": ["astro-ph.XX"]})])
    with pytest.raises(RuntimeError, match="metadata given but no --pdfs or --sources"):
        run(tmp_path, [("ingest", {"metadata": [str(meta)]})], "alone")


@contextmanager
def fifo_writer_after_a_reader(fifos):
    """Keep opening the FIFOs for writing and closing them: code that wrongly opens one for reading gets
    an empty read instead of waiting forever, so such a bug fails the test instead of hanging it."""
    stop = threading.Event()

    def release():
        while not stop.wait(0.05):
            for fifo in fifos:
                try:
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:  # no reader: nothing is waiting on it
                    pass

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@pytest.mark.parametrize("workers", [1, 2])
def test_fifo_non_utf8_name_and_unreadable_files_become_failed_rows_and_the_run_goes_on(fixtures, tmp_path, workers):
    out = tmp_path / "out"
    pdfs = tmp_path / "incoming"
    pdfs.mkdir(parents=True)
    shutil.copy(fixtures / "pdf" / "aastex63_sample_article.pdf", pdfs / "good.pdf")
    shutil.copy(fixtures / "pdf" / "hwobows_vaughan2023_mnras.pdf", os.path.join(os.fsencode(pdfs), b"caf\xe9.pdf"))
    fifos = [pdfs / "x.pdf", pdfs / "2301.00003v1.pdf"]  # the second has a metadata row: read in a shard
    for fifo in fifos:
        os.mkfifo(fifo)
    (pdfs / "gone.pdf").symlink_to(tmp_path / "nowhere.pdf")  # unreadable: a dangling link
    (pdfs / "2301.00004v1.pdf").symlink_to(tmp_path / "nowhere.pdf")
    meta = tmp_path / "m.jsonl"
    meta.write_text("".join(json.dumps({"id": i, "categories": "astro-ph.GA", "title": "t", "abstract": "a", "versions": [
        {"version": "v1", "created": "Mon, 2 Jan 2023 10:00:00 GMT"}]}) + "\n" for i in ("2301.00003", "2301.00004")))
    recipe = Recipe(steps=[Step(stage="ingest", config={"pdfs": [str(pdfs)], "metadata": [str(meta)]}),
                           Step(stage="extract", config={})],
                    executor=ExecutorConfig(tasks=2, workers=workers, quiet=True))
    with fifo_writer_after_a_reader(fifos):
        manifest = run_recipe(recipe, out)
    # the manifest lists the regular files of the folder, the one with a non-UTF-8 name too, and verifies
    assert os.path.join(os.fsdecode(os.fsencode(pdfs)), os.fsdecode(b"caf\xe9.pdf")) in {e.path for e in manifest.inputs}
    assert verify(out / "manifest.json") == []
    papers = read_polars(out / "papers.parquet", PAPER)
    assert papers["pdf_path"].to_list() == [str(pdfs / "good.pdf")]
    failed = {r["item_id"]: r for r in decisions(out, "ingest").iter_rows(named=True) if r["action"] == "failed"}
    assert failed[str(pdfs / "caf\\xe9.pdf")]["reason"] == "undecodable_file_name"
    assert "is a FIFO" in failed[str(pdfs / "x.pdf")]["detail"] and "is a FIFO" in failed["2301.00003"]["detail"]
    assert "x.pdf" in failed[str(pdfs / "x.pdf")]["detail"] and "2301.00003v1.pdf" in failed["2301.00003"]["detail"]
    assert "dangling link" in failed[str(pdfs / "gone.pdf")]["detail"] and "2301.00004v1.pdf" in failed["2301.00004"]["detail"]
    assert len(failed) == 5
    assert decisions(out, "extract")["action"].to_list() == ["kept"]

    (pdfs / "good.pdf").unlink()  # extract reads the papers table as it is: its PDF is now a FIFO
    os.mkfifo(pdfs / "good.pdf")
    again = Recipe(steps=[Step(stage="extract", config={"papers": str(out / "papers.parquet")})],
                   executor=ExecutorConfig(tasks=2, workers=workers, quiet=True))
    with fifo_writer_after_a_reader([pdfs / "good.pdf"]):
        run_recipe(again, tmp_path / "again")
    (row,) = decisions(tmp_path / "again", "extract").iter_rows(named=True)
    assert row["action"] == "failed" and "good.pdf" in row["detail"] and "is a FIFO" in row["detail"]


def test_text_command_reads_a_tex_file_in_its_folder(tmp_path, capsys):
    (tmp_path / "define.tex").write_text("\\newcommand{\\mission}{the LISA mission}\n")
    (tmp_path / "main.tex").write_text(
        "\\documentclass{article}\n\\input{define}\n\\begin{document}\n"
        + "We study \\mission{} and its sources, as \\citet{P64} did. " * 20 + "\n\\end{document}\n")
    (tmp_path / "main.bbl").write_text("\\bibitem[{Peters}(1964)]{P64} Peters, P. C. 1964\n")
    (tmp_path / "other.tex").write_text("\\documentclass{article}\\begin{document}Other paper.\\end{document}")
    assert main(["text", str(tmp_path / "main.tex")]) == 0  # the given file is the main file
    captured = capsys.readouterr()
    assert "We study the LISA mission and its sources, as Peters (1964) did." in captured.out
    assert "latex files: main.tex, define.tex" in captured.err


def test_metadata_rows_the_filter_removes_are_counted_per_reason(fixtures, tmp_path):
    meta = fixtures / "metadata" / "arxiv_kaggle_metadata_head100.jsonl"
    recipe = Recipe(steps=[Step(stage="ingest", config={"metadata": [str(meta)], "categories": ["astro-ph*"],
                                                        "since": "2007-04-02", "require_files": False})],
                    executor=ExecutorConfig(tasks=1, quiet=True))
    stats = run_recipe(recipe, tmp_path / "out").stats["00-ingest"]
    kept = read_polars(tmp_path / "out" / "papers.parquet", PAPER).height
    # 100 rows: 8 astro-ph, of which those submitted before 2007-04-02 fail the date filter
    assert stats["metadata.filtered.category"] == 92
    assert stats["metadata.filtered.date"] == 8 - kept > 0
    assert stats["metadata.filtered.category"] + stats["metadata.filtered.date"] + kept == 100
