"""Test data for the Q&A generate and grade stages: a small chunk table and scripted model replies.

``write_chunks`` writes a CHUNK v2 table of a few astronomy papers (one with no metadata). ``reply``
answers like a well-behaved model: a generate request gets ``n`` pairs built from its chunk text, a
grade request gets a grade; what it answers depends only on the request, so runs are reproducible.
"""

from __future__ import annotations

import json
import sys
import re
from pathlib import Path

import polars as pl
import pytest

from schemas import CHUNK, TableWriter

PAPERS = [
    ("2101.00001", "Bar-driven gas inflow in barred spirals", "Balázs", 2021, [
        "We simulate a barred galaxy with $10^6$ gas particles and find that the bar drives gas inwards at "
        "$0.5\\,M_\\odot\\,\\mathrm{yr}^{-1}$.",
        "In this paper, we show that the inflow stalls at the inner Lindblad resonance, where a nuclear ring forms.",
        "The ring's star formation rate is $1.2\\,M_\\odot\\,\\mathrm{yr}^{-1}$, consistent with observations of NGC 1097.",
    ]),
    ("astro-ph/0701001", "Cepheid distances to Type Ia supernova hosts", "Riess", 2007, [
        "Cepheid variables obey a period-luminosity relation, which calibrates the distances of nearby galaxies.",
        "Our sample holds 42 supernovae; the Hubble constant we derive is $H_0 = 73 \\pm 1$ km s$^{-1}$ Mpc$^{-1}$.",
    ]),
    ("sha256:" + "ab" * 32, None, None, None, [
        "A chunk of a paper that came from a bare PDF: no title, no author, no year.",
    ]),
]


def chunk_rows() -> list[dict]:
    rows = []
    for paper, title, author, year, texts in PAPERS:
        start = 0
        for i, text in enumerate(texts):
            rows.append({"chunk_id": f"{paper}#{i}", "paper_id": paper, "index": i, "start": start,
                         "end": start + len(text), "text": text, "section": "Results" if i else "Introduction",
                         "title": title, "first_author": author, "year": year})
            start += len(text)
    return rows


def write_chunks(out: Path, rows: list[dict] | None = None) -> Path:
    path = Path(out) / "qa" / "chunks.parquet"
    with TableWriter(CHUNK, path) as w:
        w.write(rows if rows is not None else chunk_rows())
    return path


def chunk_text(message: str) -> str:
    """The chunk text inside a rendered user turn (between <<< and >>>)."""
    m = re.search(r"<<<\n(.*?)\n>>>", message, re.DOTALL)
    return m.group(1) if m else message


def reply(body: dict) -> str:
    """A well-formed reply to a generate or grade request, from the request alone."""
    last = body["messages"][-1]["content"]
    text = chunk_text(last)
    if last.rstrip().endswith("Grade this pair."):
        score = 1 + len(text) % 5
        return json.dumps({"correctness": score, "standalone": 5, "pertinence": 4, "overall": score})
    n = int(re.search(r"Write (\d+) question-answer pairs", last).group(1))
    types = ["factual", "conceptual", "quantitative", "methods"]
    pairs = [{"question_type": types[i % 4], "question": f"Question {i} about: {text[:40]}?",
              "answer": f"We find that {text[:60]}"} for i in range(n)]
    return json.dumps({"pairs": pairs})


def recipe(*steps: tuple[str, dict], tasks: int = 2):
    """A recipe of ``(stage, config)`` steps, quiet, ``tasks`` shards."""
    from corpus.run.executor import ExecutorConfig
    from corpus.run.recipe import Recipe, Step

    return Recipe(steps=[Step(stage=s, config=c) for s, c in steps], executor=ExecutorConfig(tasks=tasks, quiet=True))


def generate(url: str, chunks: Path, **config) -> tuple[str, dict]:
    """A qa_generate step against ``url`` (model 'gen-a', fast retries)."""
    return "qa_generate", {"model": "gen-a", "endpoints": [url], "chunks": str(chunks), "backoff_s": 0.01, **config}


def grade(url: str, chunks: Path, **config) -> tuple[str, dict]:
    """A qa_grade step against ``url`` (model 'grade-b', fast retries)."""
    return "qa_grade", {"model": "grade-b", "endpoints": [url], "chunks": str(chunks), "backoff_s": 0.01, **config}


def user_turn(chunk: dict, n: int = 3) -> str:
    """The user turn of the generate request of a chunk row (the fake server's key for it)."""
    from qa_synth.prompts.generate import GENERATE_V1, generate_fields

    return GENERATE_V1.messages(generate_fields(chunk, n), structured=True)[-1][1]


def tiny_model(folder: Path, seed: int) -> Path:
    """A tiny random chat model (examples/tiny_lm.py) whose context holds the generate and few-shot grade prompts."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from tiny_lm import build_tiny_lm

    return build_tiny_lm(folder, seed=seed, context=4096)


def many_chunk_rows(n_papers: int, per_paper: int) -> list[dict]:
    """``n_papers`` papers of ``per_paper`` distinct chunks each (for resume tests)."""
    rows = []
    for p in range(n_papers):
        paper = f"2102.{p:05d}"
        for i in range(per_paper):
            text = f"Chunk {i} of paper {p}: we measure the star formation rate of galaxy {p * 100 + i} as {p + i / 10:.1f} solar masses per year."
            rows.append({"chunk_id": f"{paper}#{i}", "paper_id": paper, "index": i, "start": 0, "end": len(text),
                         "text": text, "section": None, "title": f"Star formation in sample {p}", "first_author": "Nakamura",
                         "year": 2021})
    return rows


@pytest.fixture
def server():
    """The scripted OpenAI-compatible loopback server answering with :func:`reply`."""
    from fake_openai import FakeOpenAI

    with FakeOpenAI(content=reply) as s:
        yield s


@pytest.fixture
def chunks(tmp_path) -> Path:
    """The test chunk table (:func:`write_chunks`) in a temporary folder."""
    return write_chunks(tmp_path / "in")


def decisions(out: Path, stage: str) -> dict[str, dict]:
    """A stage's decisions in a run folder by item id, with their JSON detail parsed."""
    df = pl.read_parquet(out / f"decisions/{stage}.parquet")
    return {r["item_id"]: {**r, "detail": json.loads(r["detail"])} for r in df.to_dicts()}
