"""Curation stages end to end: decisions for every paper, planted duplicates, classifier training,
benchmark decontamination, the empty-corpus guard, and Ray writing the same bytes as a local run."""

from __future__ import annotations

import json
import random

import pymupdf
import pytest

from corpus.run.stage import EmptyOutputError
from corpus.run.executor import ExecutorConfig
from corpus.run.recipe import Recipe, Step, run_recipe
from schemas import DECISION, DOCUMENT, PAPER, read_polars, write_table


def doc(pid: str, text: str) -> dict:
    return {"paper_id": pid, "text": text, "extractor": "latex", "reason": "test", "n_pages": 0,
            "n_chars": len(text), "pages": [], "input_sha256": None}


@pytest.fixture(scope="module")
def papers(fixtures) -> dict[str, str]:
    texts = {}
    for pdf in sorted((fixtures / "pdf").glob("*.pdf")):
        with pymupdf.open(pdf) as d:
            texts[pdf.stem] = "\n".join(page.get_text() for page in d)
    return texts


def edited(text: str, rate: float, seed: int) -> str:
    rng = random.Random(seed)
    words = text.split()
    return " ".join(rng.choice(["alpha", "beta", "gamma", "delta"]) if rng.random() < rate else w for w in words)


def run(tmp_path, name, steps, **executor):
    recipe = Recipe(steps=[Step(stage=s, config=c) for s, c in steps],
                    executor=ExecutorConfig(**{"tasks": 3, "quiet": True, **executor}))
    return run_recipe(recipe, tmp_path / name)


def decisions(path) -> dict[str, dict]:
    return {r["item_id"]: r for r in read_polars(path, DECISION).iter_rows(named=True)}


def test_dedup_drops_planted_copies_against_the_kept_paper(papers, tmp_path):
    rows = []
    for name, text in papers.items():
        rows.append(doc(name, text))
        for rate in (0.005, 0.01, 0.05, 0.2):
            rows.append(doc(f"{name}~{rate}", edited(text, rate, hash(name) % 1000)))
    rows.append(doc("copy-of-hwobows", papers["hwobows_vaughan2023_mnras"]))  # exact duplicate
    write_table(DOCUMENT, rows, tmp_path / "docs.parquet")
    run(tmp_path, "out", [("dedup", {"documents": str(tmp_path / "docs.parquet")})])
    d = decisions(tmp_path / "out" / "decisions/dedup.parquet")
    assert len(d) == len(rows)  # a decision for every document
    for name in papers:
        family = [name, f"{name}~0.005", f"{name}~0.01"] + (["copy-of-hwobows"] if "hwobows" in name else [])
        kept = [k for k in family if d[k]["action"] == "kept"]
        assert len(kept) == 1, (name, [d[k] for k in family])
        (rep,) = kept
        for k in family:
            if k != rep:  # dropped at or above the target against the one kept (longest, then smallest id)
                assert d[k]["action"] == "dropped" and d[k]["kept_id"] == rep and d[k]["score"] >= 0.8, d[k]
                assert d[k]["cluster_id"] == d[rep]["cluster_id"]
        for rate in (0.05, 0.2):  # Jaccard ~0.62 and ~0.19: different enough to keep
            assert d[f"{name}~{rate}"]["action"] == "kept"
    pair = sorted(["copy-of-hwobows", "hwobows_vaughan2023_mnras"])  # an exact copy: same length, smaller id kept
    assert d[pair[1]]["action"] == "dropped" and d[pair[1]]["kept_id"] in (pair[0], d[pair[0]]["kept_id"])
    written = read_polars(tmp_path / "out" / "curated/dedup.parquet", DOCUMENT)
    assert set(written["paper_id"]) == {k for k, r in d.items() if r["action"] == "kept"}
    # unrelated papers never share a cluster
    clusters = {}
    for k, r in d.items():
        if r["cluster_id"]:
            clusters.setdefault(r["cluster_id"], set()).add(k.split("~")[0].replace("copy-of-hwobows", "hwobows_vaughan2023_mnras"))
    assert all(len(members) == 1 for members in clusters.values())


def test_filter_train_then_apply_scores_every_paper(papers, tmp_path):
    rng = random.Random(0)
    paragraphs = [p for t in papers.values() for p in t.split("\n\n") if len(p.split()) > 8]
    lines = [ln for t in papers.values() for ln in t.splitlines() if len(ln.split()) > 6]
    pos = [doc(f"p{i}", ln) for i, ln in enumerate(lines[:400])]
    vocab = "lorem ipsum buy now cheap click here free offer casino winner prize deal".split()
    neg = [doc(f"n{i}", " ".join(rng.choice(vocab) for _ in range(12))) for i in range(400)]
    write_table(DOCUMENT, pos, tmp_path / "pos.parquet")
    write_table(DOCUMENT, neg, tmp_path / "neg.parquet")
    m = run(tmp_path, "model", [("filter_train", {"positives": [str(tmp_path / "pos.parquet")],
                                                  "negatives": [str(tmp_path / "neg.parquet")]})])
    model = tmp_path / "model" / "models/quality.bin"
    assert model.exists() and (tmp_path / "model" / "models/quality.bin.manifest.json").exists()
    assert {e.path for e in m.outputs} == {"models/quality.bin", "models/quality.bin.manifest.json"}
    docs = [doc(name, text) for name, text in papers.items() if "hubble" not in name]
    docs.append(doc("spam", " ".join(rng.choice(vocab) for _ in range(800))))
    write_table(DOCUMENT, docs, tmp_path / "docs.parquet")
    run(tmp_path, "filtered", [("filter", {"documents": str(tmp_path / "docs.parquet"), "quality_model": str(model),
                                           "heuristics": {"min_words": 300}})])
    d = decisions(tmp_path / "filtered" / "decisions/filter.parquet")
    assert d["spam"]["action"] == "dropped"
    for name in papers:
        if "hubble" not in name:
            assert d[name]["action"] == "kept" and d[name]["score"] > 0.5, (name, d[name])
    assert paragraphs  # fixtures had prose


def test_every_clean_fixture_paper_passes_the_default_filters(papers, tmp_path):
    docs = [doc(name, text) for name, text in papers.items() if "hubble" not in name]
    write_table(DOCUMENT, docs, tmp_path / "docs.parquet")
    run(tmp_path, "out", [("filter", {"documents": str(tmp_path / "docs.parquet")})])
    d = decisions(tmp_path / "out" / "decisions/filter.parquet")
    assert {k: r["action"] for k, r in d.items()} == {name: "kept" for name in d}


def test_dedup_with_two_workers_writes_the_same_bytes_as_one(papers, tmp_path):
    text = papers["hwobows_vaughan2023_mnras"][:20000]
    rows = [doc(f"p{i}", edited(text, 0.02 * i, i)) for i in range(8)]
    write_table(DOCUMENT, rows, tmp_path / "docs.parquet")
    steps = [("dedup", {"documents": str(tmp_path / "docs.parquet")})]
    one = run(tmp_path, "one", steps, tasks=8)  # one document per shard: the shards start together
    two = run(tmp_path, "two", steps, tasks=8, workers=2)
    assert {e.path: e.sha256 for e in two.outputs} == {e.path: e.sha256 for e in one.outputs}


def test_filtering_everything_is_an_error_not_an_empty_corpus(papers, tmp_path):
    write_table(DOCUMENT, [doc(n, t) for n, t in papers.items()], tmp_path / "docs.parquet")
    with pytest.raises(EmptyOutputError, match="filter"):
        run(tmp_path, "out", [("filter", {"documents": str(tmp_path / "docs.parquet"), "heuristics": {"min_words": 10**7}})])
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_a_curation_step_refuses_an_empty_table_naming_it_and_the_step_that_wrote_it(tmp_path):
    write_table(DOCUMENT, [], tmp_path / "out" / "curated" / "filter.parquet")
    with pytest.raises(EmptyOutputError, match=r"out/curated/filter.parquet has no rows: the filter step kept nothing"):
        run(tmp_path, "out", [("decontaminate", {"papers": None})])
    assert not (tmp_path / "out" / "corpus.parquet").exists()
    write_table(DOCUMENT, [], tmp_path / "empty.parquet")
    with pytest.raises(EmptyOutputError, match=r"empty.parquet has no rows: no documents to dedup"):
        run(tmp_path, "dedup", [("dedup", {"documents": str(tmp_path / "empty.parquet")})])


def test_decontaminate_with_fixture_benchmarks(fixtures, papers, tmp_path):
    qa = fixtures / "qa" / "astro_qa_en_single_choice4_sample50.jsonl"
    q = json.loads(qa.read_text().splitlines()[0])
    planted = papers["corrfunc_sinha2016_elsarticle"] + f"\n\n{q['question']} {q[q['answer']]}\n"
    write_table(DOCUMENT, [doc("planted", planted), doc("clean", papers["hwobows_vaughan2023_mnras"])],
                tmp_path / "docs.parquet")
    run(tmp_path, "out", [("decontaminate", {
        "documents": str(tmp_path / "docs.parquet"), "papers": None,
        "questions": [str(qa), str(fixtures / "qa" / "astromlab1_astrobench_mcq_v1_public_en_sample50.json")]})])
    d = decisions(tmp_path / "out" / "decisions/decontaminate.parquet")
    assert d["clean"]["action"] == "kept"
    assert d["planted"]["action"] == "dropped" and d["planted"]["reason"] == "benchmark_overlap"
    detail = json.loads(d["planted"]["detail"])
    assert str(detail["question_id"]).endswith(str(q["id"])) and len(detail["ngram"].split()) >= 8


@pytest.mark.slow
def test_ray_run_writes_the_same_bytes_as_a_local_run(papers, tmp_path):
    ray = pytest.importorskip("ray")
    rows = [doc(n, t) for n, t in papers.items()] + [doc(f"{n}~copy", edited(t, 0.01, 1)) for n, t in papers.items()]
    write_table(DOCUMENT, rows, tmp_path / "docs.parquet")
    steps = [("clean", {"documents": str(tmp_path / "docs.parquet")}), ("dedup", {}), ("filter", {})]
    local = run(tmp_path, "local", steps)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        on_ray = run(tmp_path, "ray", steps, kind="ray", workers=2, mem_per_cpu_gb=0.5)
    finally:
        ray.shutdown()
    assert {e.path: e.sha256 for e in on_ray.outputs} == {e.path: e.sha256 for e in local.outputs}
    assert len(on_ray.outputs) == 6


def test_reference_list_spanning_pages_is_removed_when_configured(fixtures, tmp_path):
    from corpus.extract.document import extract_paper

    pdf = fixtures / "pdf" / "hwobows_vaughan2023_mnras.pdf"
    d = extract_paper(pdf=str(pdf))
    write_table(DOCUMENT, [{"paper_id": "hwo", "text": d.text, "extractor": d.extractor, "reason": d.reason,
                            "n_pages": d.n_pages, "n_chars": len(d.text), "pages": d.pages, "input_sha256": None}],
                tmp_path / "docs.parquet")
    run(tmp_path, "out", [("clean", {"documents": str(tmp_path / "docs.parquet"), "rules": {"remove_references": True}})])
    (row,) = read_polars(tmp_path / "out" / "curated/clean.parquet", DOCUMENT).iter_rows(named=True)
    start = d.text.find("REFERENCES")
    assert start > 0 and len(d.text) - start > 3000  # the list runs over more than one page
    assert "Cox C., Munk W., 1954" in d.text and "Kane T. J., Philbrick C. R., 2011" in d.text  # pages 8 and 9
    for gone in ("REFERENCES", "Cox C., Munk W., 1954", "Kane T. J., Philbrick C. R., 2011"):
        assert gone not in row["text"]
    assert "AUTHOR AFFILIATIONS" in row["text"]  # the next section ends the reference list
    assert [row["text"][p["start"]:p["end"]] for p in row["pages"]][0][:40] == d.text[:40]


def test_decontaminate_skips_a_row_with_a_blank_unused_option_and_counts_it(fixtures, papers, tmp_path):
    lines = (fixtures / "qa" / "astro_qa_en_single_choice4_sample50.jsonl").read_text().splitlines()
    rows = [json.loads(x) for x in lines]
    unused = next(k for k in "ABCD" if k != rows[0]["answer"])
    rows[0][unused] = ""  # the answer key makes this option unused: the row still counts
    rows[1][rows[1]["answer"]] = " "  # the correct option is blank: this row cannot be matched
    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    planted = papers["corrfunc_sinha2016_elsarticle"] + f"\n\n{rows[0]['question']} {rows[0][rows[0]['answer']]}\n"
    write_table(DOCUMENT, [doc("planted", planted), doc("clean", papers["hwobows_vaughan2023_mnras"])],
                tmp_path / "docs.parquet")
    manifest = run(tmp_path, "out", [("decontaminate", {
        "documents": str(tmp_path / "docs.parquet"), "papers": None, "questions": [str(qa)]})])
    stats = manifest.stats["00-decontaminate"]
    assert stats["questions"] == 49 and stats["questions.skipped_rows"] == 1
    d = decisions(tmp_path / "out" / "decisions/decontaminate.parquet")
    assert d["planted"]["reason"] == "benchmark_overlap" and d["clean"]["action"] == "kept"
    assert json.loads(d["planted"]["detail"])["question_id"] == rows[0]["id"]


def test_a_bad_question_file_fails_the_run_before_any_step_runs(papers, tmp_path):
    write_table(DOCUMENT, [doc(n, t) for n, t in papers.items()], tmp_path / "docs.parquet")
    bad = tmp_path / "q.json"
    bad.write_text(json.dumps([{"question": "What?", "A": "a", "B": "b", "C": "c", "D": "d", "answer": "Z"}]))
    with pytest.raises(ValueError, match="q.json: no questions usable"):
        run(tmp_path, "out", [("clean", {"documents": str(tmp_path / "docs.parquet")}), ("dedup", {}), ("filter", {}),
                              ("decontaminate", {"papers": None, "questions": [str(bad)]})])
    assert not (tmp_path / "out").exists()  # clean never ran


def test_the_question_index_is_built_once_per_step_not_per_shard(fixtures, papers, tmp_path, monkeypatch):
    from corpus.curate import decontaminate

    built = []
    original = decontaminate.NgramIndex.__init__
    monkeypatch.setattr(decontaminate.NgramIndex, "__init__", lambda self, *a, **k: built.append(1) or original(self, *a, **k))
    write_table(DOCUMENT, [doc(n, t) for n, t in papers.items()], tmp_path / "docs.parquet")
    manifest = run(tmp_path, "out", [("decontaminate", {
        "documents": str(tmp_path / "docs.parquet"), "papers": None,
        "questions": [str(fixtures / "qa" / "astro_qa_en_single_choice4_sample50.jsonl")]})], tasks=4)
    assert manifest.stats["00-decontaminate"]["items"] == len(papers) and len(built) == 1


def _paper_pdf(path, title: str, head: list[str], footer: str, pages: int = 3) -> None:
    prose = ("Stars form in cold molecular clouds whose collapse is regulated by turbulence, magnetic fields "
             "and feedback from massive stars. We review what observations of nearby galaxies tell us about "
             "the efficiency of this process and how it depends on the environment of each cloud. ") * 6
    d = pymupdf.open()
    for n in range(pages):
        page = d.new_page()
        lines = [title, *head] if n == 0 else []
        for i, line in enumerate(lines):
            page.insert_text((72, 72 + 16 * i), line, fontsize=11)
        page.insert_textbox(pymupdf.Rect(72, 90 + 16 * len(lines), 540, 740), prose, fontsize=10)
        if footer:
            page.insert_text((72, 780), footer.format(n=n + 1), fontsize=8)
    path.write_bytes(d.tobytes())


def test_an_annual_review_without_metadata_is_excluded_by_its_text(tmp_path):
    pdfs = tmp_path / "pdfs"
    pdfs.mkdir()
    _paper_pdf(pdfs / "review.pdf", "Star Formation in Nearby Galaxies",
               ["Annu. Rev. Astron. Astrophys. 2022. 60:1-40", "https://doi.org/10.1146/annurev-astro-052920-0001"],
               "Copyright © 2022 by Annual Reviews. All rights reserved {n}")
    _paper_pdf(pdfs / "paper.pdf", "Turbulence in Molecular Clouds",
               ["(see Kennicutt 1998, ARA&A, 36, 189; McKee & Ostriker 2007, Annu. Rev. Astron. Astrophys., 45, 565)"], "")
    run(tmp_path, "out", [("ingest", {"pdfs": [str(pdfs)]}), ("extract", {}),
                          ("decontaminate", {"documents": "{out}/documents.parquet"})])
    papers = {r["pdf_path"].rsplit("/", 1)[-1]: r["paper_id"]
              for r in read_polars(tmp_path / "out" / "papers.parquet", PAPER).iter_rows(named=True)}
    d = decisions(tmp_path / "out" / "decisions/decontaminate.parquet")
    assert papers["review.pdf"].startswith("sha256:")  # no metadata row, no arXiv id: nothing else to go by
    assert d[papers["review.pdf"]]["action"] == "dropped" and d[papers["review.pdf"]]["reason"].startswith("excluded_text:")
    assert d[papers["paper.pdf"]]["action"] == "kept"
