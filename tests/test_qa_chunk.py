"""qa chunk: boundaries (section > paragraph > sentence > word), math never cut, exact offsets,
overlap, token mode, metadata in Unicode, a decision for every paper, and the stage through the
framework (recipe and command line)."""

from __future__ import annotations

import itertools
import json
import random
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
import yaml

from corpus.extract.latex import convert_source, latex_to_unicode
from corpus.ingest.arxiv_metadata import parse_record
from corpus.run.executor import ExecutorConfig
from corpus.run.recipe import Recipe, Step, run_recipe
from corpus.run.stage import EmptyOutputError
from qa_synth.chunk import chunk_text, load_tokenizer, math_spans, token_starts
from schemas import CHUNK, DECISION, DOCUMENT, PAPER, read_polars, write_table

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["star", "galaxy", "orbit", "mass", "luminosity", "disk", "halo", "accretion", "spectrum", "redshift", "cluster", "dust", "gas", "wind", "metallicity", "binary", "pulsar", "flux", "field", "model"]


def sentence(rng: random.Random, n: int = 14) -> str:
    ws = [rng.choice(WORDS) for _ in range(n)]
    return ws[0].capitalize() + " " + " ".join(ws[1:]) + "."


def paragraph(rng: random.Random, sentences: int = 5) -> str:
    return " ".join(sentence(rng) for _ in range(sentences))


def paper_text(seed: int = 0, sections: int = 6, paragraphs: int = 4) -> str:
    rng = random.Random(seed)
    parts = ["# A Title", "# Abstract", paragraph(rng)]
    for s in range(sections):
        parts.append(f"# Section {s}")
        parts += [paragraph(rng, rng.randint(2, 7)) for _ in range(paragraphs)]
    return "\n\n".join(parts)


def check_exact_and_covering(text: str, spans) -> None:
    """Offsets exact, in order, overlapping or touching, and every non-blank character covered."""
    assert spans
    assert spans[0].start == len(text) - len(text.lstrip())
    assert spans[-1].end == len(text.rstrip())
    for a, b in itertools.pairwise(spans):
        assert a.start < b.start <= a.end or text[a.end:b.start].strip() == ""
        assert b.end > a.end
    for s in spans:
        chunk = text[s.start:s.end]
        assert chunk == chunk.strip() and chunk


def doc(pid: str, text: str | None) -> dict:
    return {"paper_id": pid, "text": text, "extractor": "latex", "reason": "test", "n_pages": 0,
            "n_chars": len(text or ""), "pages": [], "input_sha256": None}


def paper(pid: str, title: str | None, first_author: str | None, submitted: date | None) -> dict:
    return {"paper_id": pid, "version": "v1", "title": title, "authors": first_author, "first_author": first_author,
            "abstract": None, "categories": ["astro-ph.GA"], "license": None, "doi": None, "journal_ref": None,
            "submitted": submitted, "updated": submitted, "versions": ["v1"], "has_metadata": True,
            "source_path": None, "source_kind": None, "source_sha256": None, "pdf_path": None, "pdf_sha256": None,
            "flags": []}


def run(out: Path, config: dict | None = None, **executor):
    recipe = Recipe(steps=[Step(stage="qa_chunk", config=config or {})],
                    executor=ExecutorConfig(**{"tasks": 3, "quiet": True, **executor}))
    return run_recipe(recipe, out)


# ------------------------------------------------------------------------------------------ pure chunking


def test_default_chunks_are_exact_overlapping_and_within_size():
    text = paper_text()
    spans = chunk_text(text)
    check_exact_and_covering(text, spans)
    assert len(spans) > 5
    for s in spans:
        assert s.units == s.end - s.start <= 1800
    for a, b in itertools.pairwise(spans):
        assert a.end - a.start >= 1200 - 2 or text[a.end:].lstrip().startswith("#")  # ends early only at a section
        overlap = a.end - b.start
        if b.start >= a.end:  # only where a section starts: no overlap back across it
            assert text[b.start] == "#" and not text[a.end:b.start].strip()
        else:
            assert 300 - 2 <= overlap <= 900 + 2
    assert chunk_text(text) == spans  # deterministic


def test_a_section_start_in_the_window_ends_the_chunk_and_starts_the_next():
    rng = random.Random(1)
    head = paragraph(rng, 20)[:1400].rsplit(" ", 1)[0] + "."
    text = head + "\n\n# Methods\n\n" + paragraph(rng, 30)
    spans = chunk_text(text)
    heading = text.index("# Methods")
    assert len(head) > 1200 and spans[0].end == len(head) and spans[0].section is None
    assert spans[1].start == heading and spans[1].section == "Methods"  # no overlap back across a section start
    assert all(s.section == "Methods" for s in spans[1:])


def test_paragraph_beats_sentence_beats_word():
    rng = random.Random(2)
    first = " ".join(sentence(rng) for _ in range(20))[:1300]  # one paragraph, cut mid-sentence
    first = first.rsplit(" ", 1)[0]
    text = first + ".\n\n" + " ".join(sentence(rng) for _ in range(40))
    spans = chunk_text(text)
    assert spans[0].end == len(first) + 1  # the paragraph end, though later sentence ends fit the window
    # no paragraph break in the window: a sentence end, the latest that fits
    text = " ".join(sentence(rng) for _ in range(60))
    spans = chunk_text(text)
    for s in spans[:-1]:
        assert text[s.end - 1] == "."
        assert text[s.end + 1:s.end + 2].isupper()
    # not even a sentence end (one enormous sentence): a word boundary, never inside a word
    text = " ".join(rng.choice(WORDS) for _ in range(1500))
    for s in chunk_text(text):
        assert (s.start == 0 or text[s.start - 1] == " ") and (s.end == len(text) or text[s.end] == " ")


def test_abbreviations_are_not_sentence_ends():
    rng = random.Random(3)
    filler = " ".join(rng.choice(WORDS) for _ in range(230))  # about 1,500 characters, no sentence end
    text = filler + " as in Fig. 3 and Smith et al. (2020) the model holds. " + filler + ". " + filler
    cuts = {s.end for s in chunk_text(text)}
    assert text.index("Fig.") + 4 not in cuts and text.index("al.") + 3 not in cuts


def test_math_is_never_cut():
    rng = random.Random(4)
    pieces = []
    for i in range(300):
        r = rng.random()
        if r < 0.3:
            pieces.append(f"$M_{{{i}}} = {rng.random():.3f} \\, M_\\odot$")
        elif r < 0.35:
            pieces.append(f"\n$$\\begin{{aligned}}\nL_{i} &= 4 \\pi R^2 \\sigma T^4 \\\\\n x &= {i}\n\\end{{aligned}}$$\n")
        elif r < 0.38:
            pieces.append(f"\\[ E_{i} = m c^2 + \\frac{{1}}{{2}} m v^2 \\]")
        elif r < 0.40:
            pieces.append(f"\\( \\alpha_{i} \\)")
        else:
            pieces.append(sentence(rng, rng.randint(3, 12)))
    text = " ".join(pieces)
    spans_math = math_spans(text)
    assert len(spans_math) > 100
    spans = chunk_text(text, size=400, overlap=100, slack=150)
    check_exact_and_covering(text, spans)
    for s in spans:
        for a, b in spans_math:
            assert not a < s.start < b and not a < s.end < b, (s, text[a:b])


def test_a_formula_longer_than_a_chunk_is_kept_whole_in_one_oversize_chunk():
    rng = random.Random(5)
    formula = "$$\n" + " \\\\\n".join(f"a_{{{i}}} &= \\sum_k b_k^{{{i}}} x^k" for i in range(150)) + "\n$$"
    assert len(formula) > 3000 and "\n\n" not in formula
    text = paragraph(rng, 8) + "\n" + formula + "\n" + paragraph(rng, 30)
    spans = chunk_text(text)
    check_exact_and_covering(text, spans)
    f0, f1 = text.index("$$"), text.index("$$", text.index("$$") + 2) + 2
    holding = [s for s in spans if s.start <= f0 and s.end >= f1]
    assert len(holding) == 1 and holding[0].units > 1800  # the whole formula, in one chunk over size
    assert all(not (f0 < s.start < f1 or f0 < s.end < f1) for s in spans)
    after = spans[spans.index(holding[0]) + 1]
    assert after.start >= f1  # the next one starts after it: no window of its overlap lies outside it


def test_unpaired_and_escaped_dollars_are_not_math():
    text = "It costs \\$5 per night, and $x$ is small.\n\nA lone $ sign here.\n\nThen $y = 2$ again."
    found = [text[a:b] for a, b in math_spans(text)]
    assert found == ["$x$", "$y = 2$"]  # the lone $ stops at the blank line; \$ is a literal dollar
    other = "$$a = b$$ and $c$, \\(d\\), \\[e\\]"
    assert [other[a:b] for a, b in math_spans(other)] == ["$$a = b$$", "$c$", "\\(d\\)", "\\[e\\]"]


def test_real_latex_paper_chunks(fixtures):
    text, _ = convert_source(fixtures / "latex" / "legwork_2022")
    spans = chunk_text(text)
    check_exact_and_covering(text, spans)
    maths = math_spans(text)
    assert len(maths) > 50
    for s in spans:
        assert not any(a < s.start < b or a < s.end < b for a, b in maths)
    sections = {s.section for s in spans}
    assert "Introduction" in sections and len(sections) > 5
    assert sum(s.units > 1800 for s in spans) <= 1


# ------------------------------------------------------------------------------------------ tokens


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A word-piece tokenizer trained on the fly and saved as a PreTrainedTokenizerFast folder."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[UNK]", "[PAD]"])
    tok.train_from_iterator([paper_text(s) for s in range(5)], trainer)
    folder = tmp_path_factory.mktemp("tok")
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(folder)
    return folder


def test_token_mode_counts_tokens(tokenizer_dir):
    tok = load_tokenizer(str(tokenizer_dir))
    text = paper_text(7) + "\n\nWith $x_1 = \\alpha$ inline math too."
    starts = token_starts(tok, text)
    spans = chunk_text(text, size=200, overlap=60, slack=60, token_starts=starts)
    check_exact_and_covering(text, spans)
    assert len(spans) > 5
    for s in spans:
        alone = len(tok(text[s.start:s.end], add_special_tokens=False)["input_ids"])
        assert s.units <= 200 and abs(alone - s.units) <= 2
    chars = [s.end - s.start for s in spans]
    assert max(chars) > 200  # tokens, not characters


def test_token_mode_needs_a_tokenizer_folder(tmp_path):
    with pytest.raises(ValueError, match="needs `tokenizer`"):
        run(tmp_path / "out", {"unit": "tokens"})
    write_table(DOCUMENT, [doc("p", paper_text())], tmp_path / "out" / "corpus.parquet")
    with pytest.raises(FileNotFoundError, match="nowhere: tokenizer folder not found"):
        run(tmp_path / "out", {"unit": "tokens", "tokenizer": str(tmp_path / "nowhere"), "papers": None})


# ------------------------------------------------------------------------------------------ the stage


def test_latex_accents_in_metadata_become_unicode():
    assert [latex_to_unicode(s) for s in ("Bal\\'azs", 'Schr{\\"o}dinger', "{\\v S}imon", 'M\\"uller', "Garc\\'{\\i}a")] \
        == ["Balázs", "Schrödinger", "Šimon", "Müller", "García"]


def test_real_arxiv_metadata_accents(fixtures):
    lines = (fixtures / "metadata" / "arxiv_kaggle_metadata_head100.jsonl").read_text().splitlines()
    records = [parse_record(json.loads(line)) for line in lines]
    (accented,) = [r for r in records if r.title and 'Gr\\"o' in r.title]
    assert "Gröbner" in latex_to_unicode(accented.title)
    (maths,) = [r for r in records if r.title and r.title.startswith("From dyadic")]
    assert latex_to_unicode(maths.title) == maths.title  # math stays LaTeX


def test_stage_writes_chunks_with_unicode_metadata_and_a_decision_for_every_paper(tmp_path, tokenizer_dir):
    out = tmp_path / "out"
    texts = {f"2401.0000{i}": paper_text(i) for i in range(1, 5)}
    docs = [doc(pid, t) for pid, t in texts.items()]
    docs += [doc("sha256:" + "ab" * 32, paper_text(9)), doc("2401.00008", None), doc("2401.00009", "Too short.")]
    write_table(DOCUMENT, docs, out / "corpus.parquet")
    authors = ["Bal\\'azs", 'Schr{\\"o}dinger', "{\\v S}imon", 'M\\"uller']
    papers = [paper(pid, f"On $\\alpha$ in M\\\"uller--type disks {i}", a, date(2019 + i, 3, 1))
              for i, (pid, a) in enumerate(zip(texts, authors))]
    write_table(PAPER, papers, out / "papers.parquet")
    run(out)
    chunks = read_polars(out / "qa/chunks.parquet", CHUNK)
    by_paper = {pid: chunks.filter(chunks["paper_id"] == pid) for pid in chunks["paper_id"].unique()}
    assert sorted(by_paper) == sorted([*texts, "sha256:" + "ab" * 32])
    for (pid, text), author, expected in zip(texts.items(), authors, ["Balázs", "Schrödinger", "Šimon", "Müller"]):
        rows = by_paper[pid].sort("index")
        assert rows["first_author"].unique().to_list() == [expected]
        assert rows["year"].unique().to_list() == [2019 + list(texts).index(pid)]
        assert rows["title"][0].startswith("On $\\alpha$ in Müller–type disks")
        assert rows["index"].to_list() == list(range(rows.height))
        assert rows["chunk_id"].to_list() == [f"{pid}#{i}" for i in range(rows.height)]
        for r in rows.iter_rows(named=True):
            assert r["text"] == text[r["start"]:r["end"]]
        assert [(r["start"], r["end"]) for r in rows.iter_rows(named=True)] == \
            [(s.start, s.end) for s in chunk_text(text)]
        assert rows["section"][0] == "Abstract" or rows["section"][0] == "A Title"
    orphan = by_paper["sha256:" + "ab" * 32]
    assert orphan["first_author"].null_count() == orphan.height and orphan["year"].null_count() == orphan.height
    d = {r["item_id"]: r for r in read_polars(out / "decisions/qa_chunk.parquet", DECISION).iter_rows(named=True)}
    assert len(d) == len(docs)  # every paper
    assert (d["2401.00008"]["action"], d["2401.00008"]["reason"]) == ("dropped", "no_text")
    assert (d["2401.00009"]["action"], d["2401.00009"]["reason"]) == ("dropped", "too_short")
    assert d["2401.00001"]["reason"] == "chunked" and json.loads(d["2401.00001"]["detail"])["chunks"] == by_paper["2401.00001"].height
    assert json.loads(d["sha256:" + "ab" * 32]["detail"])["metadata"] == "none"


def test_same_bytes_with_one_and_two_workers_and_token_mode_through_the_stage(tmp_path, tokenizer_dir):
    rows = [doc(f"p{i}", paper_text(i)) for i in range(6)]
    for name in ("a", "b"):
        write_table(DOCUMENT, rows, tmp_path / name / "corpus.parquet")
    m1 = run(tmp_path / "a", {"papers": None}, workers=1)
    m2 = run(tmp_path / "b", {"papers": None}, workers=2)
    assert {e.path: e.sha256 for e in m1.outputs} == {e.path: e.sha256 for e in m2.outputs}
    write_table(DOCUMENT, rows, tmp_path / "t" / "corpus.parquet")
    run(tmp_path / "t", {"papers": None, "unit": "tokens", "tokenizer": str(tokenizer_dir),
                         "size": 150, "overlap": 40, "slack": 40})
    chunks = read_polars(tmp_path / "t" / "qa/chunks.parquet", CHUNK)
    assert chunks.height > read_polars(tmp_path / "a" / "qa/chunks.parquet", CHUNK).height


def test_empty_corpus_and_nothing_chunkable_are_refused(tmp_path):
    write_table(DOCUMENT, [], tmp_path / "out" / "corpus.parquet")
    with pytest.raises(EmptyOutputError, match="corpus.parquet has no rows: the decontaminate step kept nothing"):
        run(tmp_path / "out", {"papers": None})
    write_table(DOCUMENT, [doc("a", "Short."), doc("b", None)], tmp_path / "short" / "corpus.parquet")
    with pytest.raises(EmptyOutputError, match=r"qa_chunk: all 2 documents were dropped \(reason.too_short: 1, reason.no_text: 1"):
        run(tmp_path / "short", {"papers": None})
    write_table(DOCUMENT, [doc("a", paper_text())], tmp_path / "nopapers" / "corpus.parquet")
    with pytest.raises(FileNotFoundError, match="papers.parquet, which does not exist"):
        run(tmp_path / "nopapers")


def test_cli_on_the_demo_run(tmp_path):
    sys.path.insert(0, str(ROOT / "examples"))
    import make_samples
    from demo_recipe import DATA_STEPS  # the corpus part of the demo: its data steps but the Q&A ones

    make_samples.write_samples(tmp_path / "samples")
    demo = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text().replace("../samples", "samples"))
    demo["steps"] = [step for step in demo["steps"] if step["stage"] in DATA_STEPS and not step["stage"].startswith("qa_")]
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(demo))
    env = {"PYTHONPATH": str(ROOT), "PATH": str(Path(sys.executable).parent)}
    cli = [sys.executable, "-m", "corpus.cli"]
    subprocess.run([*cli, "run", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "run"), "--quiet"],
                   check=True, env=env, cwd=tmp_path)
    subprocess.run([*cli, "qa", "chunk", "--out", str(tmp_path / "run"), "--quiet"], check=True, env=env, cwd=tmp_path)
    corpus = read_polars(tmp_path / "run" / "corpus.parquet", DOCUMENT)
    chunks = read_polars(tmp_path / "run" / "qa/chunks.parquet", CHUNK)
    assert set(chunks["paper_id"]) == set(corpus["paper_id"])
    texts = dict(zip(corpus["paper_id"], corpus["text"]))
    for r in chunks.iter_rows(named=True):
        assert r["text"] == texts[r["paper_id"]][r["start"]:r["end"]]
    lovelace = chunks.filter(chunks["paper_id"] == "2401.00001")
    assert lovelace["first_author"][0] == "Lovelace" and lovelace["year"][0] == 2024
    assert chunks.filter(chunks["paper_id"] == "2401.00006")["first_author"].null_count() > 0  # PDF without metadata
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert [s["stage"] for s in manifest["steps"]][-1] == "qa_chunk"
    assert "qa/chunks.parquet" in {o["path"] for o in manifest["outputs"]}
    shutil.rmtree(tmp_path / "samples")
