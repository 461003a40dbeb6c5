"""Decontamination against the real benchmark fixture files, by n-gram and by source."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpus.curate.decontaminate import (
    ContaminationConfigError,
    NgramIndex,
    Question,
    QuestionFileError,
    SourceExclusion,
    front_matter,
    load_index,
    load_questions,
)

ASTROMLAB = "qa/astromlab1_astrobench_mcq_v1_public_en_sample50.json"
ASTROQA = "qa/astro_qa_en_single_choice4_sample50.jsonl"


@pytest.fixture(scope="module")
def paper(fixtures) -> str:
    import pymupdf

    with pymupdf.open(fixtures / "pdf" / "legwork_wagg2022_aastex631_twocol.pdf") as d:
        return "\n".join(p.get_text() for p in d)


def _plant(paper: str, snippet: str) -> str:
    mid = len(paper) // 2
    return paper[:mid] + "\n" + snippet + "\n" + paper[mid:]


def test_load_both_fixture_layouts(fixtures):
    ml = load_questions(fixtures / ASTROMLAB)
    qa = load_questions(fixtures / ASTROQA)
    assert len(ml) == len(qa) == 50
    assert ml[0].id == "173" and ml[0].answer is None and set(ml[0].options) == {"A", "B", "C", "D"}
    assert qa[0].id == "astroqa-en-sc4-3" and qa[0].answer == "A"
    assert qa[0].options["A"] == "Its perihelion is the greatest."


def test_parquet_layout(fixtures, tmp_path):
    rows = [json.loads(x) for x in (fixtures / ASTROQA).read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "qa.parquet")
    assert [q.id for q in load_questions(tmp_path / "qa.parquet")] == [r["id"] for r in rows]


def test_clean_papers_do_not_match(fixtures):
    import pymupdf

    index = load_index([fixtures / ASTROMLAB, fixtures / ASTROQA])
    for pdf in sorted((fixtures / "pdf").glob("*.pdf")):
        with pymupdf.open(pdf) as d:
            text = "\n".join(p.get_text() for p in d)
        assert index.find_overlap(text) is None, pdf.name


def test_planted_question_with_answer_is_found(fixtures, paper):
    qa = load_questions(fixtures / ASTROQA)
    index = NgramIndex(qa)
    q = next(q for q in qa if len(q.question.split()) >= 20)
    # The paper quotes the question (reformatted: case, punctuation and line breaks differ).
    snippet = q.question.upper().replace(" ", "\n", 3) + " -- " + q.options[q.answer]
    keep, reason, detail = index.check(_plant(paper, snippet))
    assert (keep, reason) == (False, "benchmark_overlap")
    assert detail["question_id"] == q.id
    assert len(detail["ngram"].split()) == 13
    assert index.check(paper)[0]


def test_question_tail_plus_correct_answer_spans_the_boundary(fixtures, paper):
    from corpus.curate.text import words

    qa = load_questions(fixtures / ASTROQA)
    index = NgramIndex(qa)
    q = next(q for q in qa if len(words(q.question)) >= 14)
    tail = b" ".join(words(q.question)[-12:]).decode()  # 12 words: no 13-gram of the question alone
    m = index.find_overlap(_plant(paper, f"{tail} {q.options[q.answer]} and more words follow here"))
    assert m is not None and m.question_id == q.id
    assert m.ngram.startswith(tail) and len(m.ngram.split()) == 13
    # the same tail followed by a wrong option is not the benchmark item
    first = words(q.options[q.answer])[0]
    wrong = next(k for k in "ABCD" if k != q.answer and words(q.options[k])[0] != first)
    other = _plant(paper, f"{tail} {q.options[wrong]} unrelated continuation text appears")
    assert all(x.question_id != q.id for x in index.find_all(other))


def test_no_answer_file_matches_any_option(fixtures, paper):
    ml = load_questions(fixtures / ASTROMLAB)
    index = NgramIndex(ml)
    q = ml[3]
    m = index.find_overlap(_plant(paper, q.question + " " + q.options["C"]))
    assert m is not None and m.question_id == q.id


def test_short_questions_match_whole_and_tiny_ones_are_skipped(paper):
    qs = [
        Question("short", "Which planet has the brightest rings", {"A": "Saturn and Uranus", "B": "x", "C": "y", "D": "z"}, "A"),
        Question("tiny", "Why?", {"A": "Yes", "B": "No", "C": "Maybe", "D": "Never"}, "B"),
    ]
    index = NgramIndex(qs)
    assert index.skipped == ["tiny"]
    m = index.find_overlap(_plant(paper, "Which planet has the brightest rings? Saturn and Uranus."))
    assert m is not None and (m.question_id, m.ngram) == ("short", "which planet has the brightest rings saturn and uranus")
    assert index.find_overlap(_plant(paper, "which planet has the brightest rings")) is None
    with pytest.raises(ContaminationConfigError, match="would match nothing"):
        NgramIndex(qs[1:])


def test_bad_question_files_name_the_problem(tmp_path):
    p = tmp_path / "q.jsonl"
    p.write_text('{"question": "What?", "A": "a", "B": "b", "C": "c", "D": "d", "answer": "E"}\n')
    with pytest.raises(QuestionFileError, match=r"q.jsonl: no questions usable .*not one of A-D"):
        load_questions(p)
    p.write_text("{not json\n")
    with pytest.raises(QuestionFileError, match="q.jsonl:1: not valid JSON"):
        load_questions(p)
    empty = tmp_path / "e.json"
    empty.write_text("[]")
    with pytest.raises(QuestionFileError, match="no questions"):
        load_questions(empty)
    with pytest.raises(QuestionFileError, match="unknown question file type"):
        load_questions(tmp_path / "q.xlsx")


def test_a_bad_row_is_skipped_and_reported_not_fatal(tmp_path):
    rows = [
        {"id": "ok", "question": "What?", "A": "a", "B": "b", "C": "c", "D": "", "answer": "A"},  # D unused
        {"id": "no-answer-text", "question": "What?", "A": "a", "B": "", "C": "c", "D": "d", "answer": "B"},
        {"id": "keyless", "question": "Which?", "A": "a", "B": None, "C": 3, "D": "d"},  # every option is used
        {"id": "blank", "question": " ", "A": "a", "B": "b", "C": "c", "D": "d"},
        {"id": "ok", "question": "Again?", "A": "a", "B": "b", "C": "c", "D": "d"},
    ]
    p = tmp_path / "q.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n{broken\n" + "\n".join(json.dumps(r) for r in rows[2:]))
    skipped: list[str] = []
    qs = load_questions(p, skipped)
    assert [q.id for q in qs] == ["ok", "keyless"] and qs[0].options["D"] == "" and qs[1].options["C"] == "3"
    assert [s.split(str(tmp_path))[1] for s in skipped] == [
        "/q.jsonl:3: not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        "/q.jsonl: row 2 (id no-answer-text) no text in column 'B', its answer",
        "/q.jsonl: row 5 no question text",
        "/q.jsonl: row 6 question id 'ok' appears twice",
    ]


def test_source_exclusion(fixtures):
    ex = SourceExclusion(dois=frozenset({"https://doi.org/10.1000/XYZ"}), arxiv_ids=frozenset({"2212.11816v2"}))
    assert ex.excluded({"paper_id": "1", "journal_ref": "Annu. Rev. Astron. Astrophys. 45 (2007) 1-50"})
    assert ex.excluded({"paper_id": "1", "journal_ref": "ARA&A, 2010, 48, 339"})
    assert ex.excluded({"paper_id": "1", "journal_ref": "Annual Review of Astronomy and Astrophysics 59"})
    assert ex.excluded({"paper_id": "1", "doi": "10.1146/annurev-astro-081811-125615"}).startswith("excluded_doi_prefix")
    assert ex.excluded({"paper_id": "1", "doi": "10.1000/xyz"}) == "excluded_doi:10.1000/xyz"
    assert ex.excluded({"paper_id": "2212.11816"}) == "excluded_arxiv_id:2212.11816"
    assert ex.excluded({"paper_id": "1", "journal_ref": "Astron. Astrophys. 500, 1 (2009)"}) is None
    assert ex.excluded({"paper_id": "1", "journal_ref": "Astrophys.J. 660 (2007) 1"}) is None
    # none of the 100 real arXiv metadata records is an ARA&A paper
    for line in (fixtures / "metadata" / "arxiv_kaggle_metadata_head100.jsonl").read_text().splitlines():
        rec = json.loads(line)
        assert ex.excluded({"paper_id": rec["id"], "doi": rec.get("doi"), "journal_ref": rec.get("journal-ref")}) is None
    with pytest.raises(ValueError, match="not a valid regex"):
        SourceExclusion(journal_ref_patterns=("(",))


def test_exclusion_lists_from_files(tmp_path):
    f = tmp_path / "ids.txt"
    f.write_text("# held out\n0704.0001v3\n\n0704.0002  # another\n")
    ex = SourceExclusion.from_lists(arxiv_ids_file=f, journal_ref_patterns=(), doi_prefixes=())
    assert ex.excluded({"paper_id": "0704.0001"}) and ex.excluded({"paper_id": "0704.0002v1"})
    assert ex.excluded({"paper_id": "0704.0003", "journal_ref": "ARA&A 1"}) is None


def test_arxiv_id_exclusion_matches_every_spelling():
    from corpus.curate.decontaminate import SourceExclusion

    exclusion = SourceExclusion(arxiv_ids=frozenset({"astro-ph0701001", "arXiv:0704.0001v1"}))
    assert exclusion.excluded({"paper_id": "astro-ph/0701001"})
    assert exclusion.excluded({"paper_id": "0704.0001"})
    assert exclusion.excluded({"paper_id": "0704.0002"}) is None


def test_exclusion_lists_reach_every_id_a_paper_is_known_by():
    ex = SourceExclusion(arxiv_ids=frozenset({"2201.01234", "2201.05555"}), dois=frozenset({"10.48550/arXiv.2201.07777"}),
                         journal_ref_patterns=(), doi_prefixes=(), text_patterns=())
    hashed = "sha256:" + "a" * 64
    assert ex.excluded({"paper_id": hashed, "flags": ["no_metadata", "arxiv_id:2201.01234"]}) == "excluded_arxiv_id:2201.01234"
    stamp = "arXiv:2201.05555v3  [astro-ph.GA]  9 Jan 2022\nA title"
    assert ex.excluded({"paper_id": hashed, "flags": []}, stamp) == "excluded_arxiv_id:2201.05555"
    assert ex.excluded({"paper_id": "1", "doi": "https://doi.org/10.48550/arXiv.2201.01234"}) == "excluded_arxiv_id:2201.01234"
    assert ex.excluded({"paper_id": "2201.07777v1"}) == "excluded_doi:10.48550/arxiv.2201.07777"
    assert ex.excluded({"paper_id": hashed, "flags": ["no_metadata"]}, "cites arXiv:2201.05555 [astro-ph.GA]") is None


def test_an_annual_review_is_recognised_by_its_front_matter_not_by_citations(fixtures):
    import pymupdf

    ex = SourceExclusion()
    review = ("Gaussian Processes for Astronomy\nAnnu. Rev. Astron. Astrophys. 2023. 61:329–71\n"
              "https://doi.org/10.1146/annurev-astro-052920-103508\nCopyright © 2023 by the author(s).")
    assert ex.excluded({"paper_id": "sha256:" + "b" * 64}, review).startswith("excluded_text:")
    assert ex.excluded({"paper_id": "1"}, "2 Aigrain & Foreman-Mackey\nCopyright © 2022 by Annual Reviews. All rights")
    assert ex.excluded({"paper_id": "1"}, "www.annualreviews.org • GPR for Astronomy 23")
    citing = ("Star formation (Kennicutt 1998, ARA&A, 36, 189; Kennicutt R. C., Annu. Rev. Astron. Astrophys. 36, 189 "
              "(1998); McKee C. F., Ostriker E. C., 2007, Annu. Rev. Astron. Astrophys., 45, 565) is reviewed in ...")
    assert ex.excluded({"paper_id": "2"}, citing) is None
    for pdf in sorted((fixtures / "pdf").glob("*.pdf")):  # real papers; legwork cites an ARA&A DOI in its references
        with pymupdf.open(pdf) as d:
            texts = [p.get_text() for p in d]
        front = front_matter("\n\n".join(texts), [{"start": 0, "end": len(texts[0])}])
        assert ex.excluded({"paper_id": "3"}, front) is None, pdf.name
