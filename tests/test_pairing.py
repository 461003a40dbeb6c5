"""PDFs and LaTeX sources whose file names do not match are still one paper: by arXiv's margin stamp
on page 1, else by the source's title on the PDF's page 1; a file known by an arXiv id is named by it."""

from __future__ import annotations

import io
import json
import shutil
import tarfile

import pymupdf

from corpus.arxiv_ids import find_arxiv_stamp
from corpus.ingest.pairing import pair_by_title, title_key
from corpus.run.executor import ExecutorConfig
from corpus.run.recipe import Recipe, Step, run_recipe
from schemas import DECISION, PAPER, read_polars


def ingest(tmp_path, **config) -> tuple[dict[str, dict], list[dict]]:
    recipe = Recipe(steps=[Step(stage="ingest", config=config)], executor=ExecutorConfig(tasks=2, quiet=True))
    run_recipe(recipe, tmp_path / "out")
    papers = {r["paper_id"]: r for r in read_polars(tmp_path / "out" / "papers.parquet", PAPER).iter_rows(named=True)}
    return papers, read_polars(tmp_path / "out" / "decisions/ingest.parquet", DECISION).to_dicts()


def pdf(path, lines: list[str], stamp: str | None = None) -> None:
    """A one-page PDF with these lines at the top, and arXiv's stamp up the left margin."""
    doc = pymupdf.open()
    page = doc.new_page()
    for i, line in enumerate(lines):
        page.insert_text((72, 80 + 16 * i), line, fontsize=11)
    if stamp:
        page.insert_text((30, 600), stamp, fontsize=16, rotate=90)
    path.write_bytes(doc.tobytes())


def tar_gz(path, files: dict[str, str]) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(raw.getvalue())


def test_fixture_pdfs_and_sources_under_unrelated_names_are_one_paper_each(fixtures, tmp_path):
    pdfs, srcs = tmp_path / "pdfs", tmp_path / "srcs"
    pdfs.mkdir(), srcs.mkdir()
    shutil.copy(fixtures / "pdf" / "aastex63_sample_article.pdf", pdfs / "first.pdf")
    shutil.copy(fixtures / "pdf" / "legwork_wagg2022_aastex631_twocol.pdf", pdfs / "second.pdf")
    shutil.copy(fixtures / "pdf" / "corrfunc_sinha2016_elsarticle.pdf", pdfs / "third.pdf")  # no source given
    sample = fixtures / "latex" / "aastex63_sample"
    tar_gz(srcs / "bundle_a.tar.gz", {"sample63.tex": (sample / "sample63.tex").read_text(),
                                      "sample63.bib": (sample / "sample63.bib").read_text()})
    shutil.copy(fixtures / "latex" / "legwork_2022" / "legwork_arxiv_src_dataonly.tar.gz", srcs / "bundle_b.tar.gz")
    papers, _ = ingest(tmp_path, pdfs=[str(pdfs)], sources=[str(srcs)])
    by_pdf = {p["pdf_path"].rsplit("/", 1)[-1]: p for p in papers.values()}
    assert len(papers) == 3 and set(by_pdf) == {"first.pdf", "second.pdf", "third.pdf"}
    assert by_pdf["first.pdf"]["source_path"].endswith("bundle_a.tar.gz")
    assert by_pdf["second.pdf"]["source_path"].endswith("bundle_b.tar.gz")
    assert "paired_by:title" in by_pdf["first.pdf"]["flags"] and "paired_by:title" in by_pdf["second.pdf"]["flags"]
    assert by_pdf["third.pdf"]["source_path"] is None and "paired_by:title" not in by_pdf["third.pdf"]["flags"]


def test_the_arxiv_stamp_names_a_pdf_pairs_it_and_finds_its_metadata(tmp_path):
    pdfs, srcs = tmp_path / "pdfs", tmp_path / "srcs"
    pdfs.mkdir(), srcs.mkdir()
    pdf(pdfs / "download.pdf", ["Stellar spots on young suns"], "arXiv:2201.01234v2  [astro-ph.SR]  4 Jan 2022")
    (srcs / "2201.01234v2.tex").write_text("\\documentclass{article}\\title{Another title entirely, not on page one}"
                                           "\\begin{document}Text.\\end{document}")
    pdf(pdfs / "filtered.pdf", ["A learning paper"], "arXiv:2201.05555v1 [cs.LG] 9 Jan 2022")
    pdf(pdfs / "alone.pdf", ["A paper with no metadata"], "arXiv:astro-ph/0701001v3 26 Jan 2007")
    pdf(pdfs / "cites.pdf", ["As shown in arXiv:2201.09999 [astro-ph.GA] and arXiv:2201.08888v1"])  # no stamp
    meta = tmp_path / "meta.jsonl"
    meta.write_text("\n".join(json.dumps({
        "id": i, "categories": c, "title": "t", "abstract": "a",
        "versions": [{"version": "v1", "created": "Tue, 4 Jan 2022 10:00:00 GMT"}]})
        for i, c in (("2201.01234", "astro-ph.SR"), ("2201.05555", "cs.LG"))) + "\n")
    papers, decisions = ingest(tmp_path, pdfs=[str(pdfs)], sources=[str(srcs)], metadata=[str(meta)])
    paired = papers["2201.01234"]
    assert paired["has_metadata"] and paired["pdf_path"].endswith("download.pdf")
    assert paired["source_path"].endswith("2201.01234v2.tex") and "paired_by:arxiv_stamp" in paired["flags"]
    alone = papers["astro-ph/0701001"]
    assert not alone["has_metadata"] and alone["version"] == "v3" and "named_by:arxiv_stamp" in alone["flags"]
    (cites,) = [p for p in papers if p.startswith("sha256:")]
    assert papers[cites]["pdf_path"].endswith("cites.pdf")
    assert len(papers) == 3
    filtered = [d for d in decisions if d["reason"] == "filtered_out"]
    assert [(d["item_id"], json.loads(d["detail"])["arxiv_id"]) for d in filtered] == [(filtered[0]["item_id"], "2201.05555")]


def test_stamp_needs_its_whole_form():
    assert find_arxiv_stamp("arXiv:1501.00001v1 [astro-ph.CO] 30 Dec 2014") == ("1501.00001", "v1")
    assert find_arxiv_stamp("arXiv:astro-ph/0701001v2 26 Jan 2007") == ("astro-ph/0701001", "v2")
    assert find_arxiv_stamp("see arXiv:1501.00001 [astro-ph.CO]") is None  # a citation: no version, no date
    assert find_arxiv_stamp("arXiv:1501.00001v1") is None


def test_title_pairing_takes_the_closest_longest_title_and_never_joins_two_ids():
    lines = "Journal of Things 12, 1-3 (2021)\nThe cool-\ning of white dwarfs in old clusters\nA. Author\nAbstract ..."
    erratum = "MNRAS 000, 1 (2022)\nErratum: The cooling of white dwarfs in old clusters\nA. Author"
    titles = {"orig.tex": r"The cooling of white dwarfs\\ in \emph{old} clusters\thanks{Based on data}",
              "err.tex": "Erratum: The cooling of white dwarfs in old clusters",
              "short.tex": "Erratum"}
    pages = {"orig.pdf": lines, "err.pdf": erratum}
    assert sorted(pair_by_title(titles, pages, {})) == [("err.pdf", "err.tex", 1.0), ("orig.pdf", "orig.tex", 1.0)]
    assert pair_by_title(titles, pages, {"orig.pdf": "2101.00001", "orig.tex": "2101.00002", "err.tex": "2101.00003",
                                         "err.pdf": "2101.00004"}) == []
    assert title_key(r"Template \aastex Article: v6.3\footnote{Released on June, 10th, 2019}", latex=True) == \
        "templatearticlev63"
    # a small-caps macro missing from the source title still pairs ("AASTEXArticle" on the page)
    assert pair_by_title({"s": r"Template \aastex Article with Examples: v6.3"},
                         {"p": "Draft version July 10, 2019\nTemplate AASTEXArticle with Examples: v6.3∗"}, {})
    assert not pair_by_title({"s": "Chasing rainbows and ocean glints"}, {"p": "Chasing the ocean and the rainbow"}, {})


def test_a_loose_source_pairs_with_a_named_pdf_through_its_metadata_title(tmp_path):
    pdfs, srcs = tmp_path / "pdfs", tmp_path / "srcs"
    pdfs.mkdir(), srcs.mkdir()
    pdf(pdfs / "2201.04444v1.pdf", ["Page one says nothing of its title"])  # the metadata row says it
    (srcs / "main.tex").write_text("\\documentclass{article}\\title{Magnetic braking of \\\\ young solar twins}"
                                   "\\begin{document}Text.\\end{document}")
    meta = tmp_path / "meta.jsonl"
    meta.write_text(json.dumps({"id": "2201.04444", "categories": "astro-ph.SR", "title": "Magnetic braking of young\n"
                                "  solar twins", "versions": [{"version": "v1", "created": "Tue, 4 Jan 2022 10:00:00 GMT"}]}))
    papers, _ = ingest(tmp_path, pdfs=[str(pdfs)], sources=[str(srcs)], metadata=[str(meta)])
    (paper,) = papers.values()
    assert paper["paper_id"] == "2201.04444" and paper["source_path"].endswith("main.tex")
    assert "paired_by:title" in paper["flags"]
