"""One definition per table: every reader and writer in sagecorpus uses these.

A table is an Arrow schema with a name, a version and a key. Text columns are ``large_string`` so
that a row group of long papers never overflows 32-bit offsets. The version is bumped whenever a
column is added, removed or changes type; readers refuse a file of another version.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

S = pa.large_string()


@dataclass(frozen=True)
class Table:
    """A typed dataset: Arrow schema plus name, version, key columns and a row-group size."""

    name: str
    version: int
    schema: pa.Schema
    key: tuple[str, ...]
    description: str
    row_group_size: int = 10_000
    docs: dict[str, str] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return self.schema.names

    def __repr__(self) -> str:  # short: tables show up in error messages
        return f"Table({self.name} v{self.version})"


def _table(name, version, description, key, cols, row_group_size=10_000) -> Table:
    """Build a Table from (name, type, nullable, doc) tuples."""
    fields = [pa.field(c, t, nullable=n) for c, t, n, _ in cols]
    docs = {c: d for c, _, _, d in cols}
    return Table(name, version, pa.schema(fields), tuple(key), description, row_group_size, docs)


PAPER = _table(
    "paper", 1, "One row per paper at its latest version: metadata plus where its files are.",
    ["paper_id"],
    [
        ("paper_id", S, False, "arXiv id (new '0704.0001' or old 'astro-ph/0701001' form), or 'sha256:<hex>' of the file when no metadata matched"),
        ("version", S, True, "latest arXiv version, e.g. 'v2'"),
        ("title", S, True, "title"),
        ("authors", S, True, "authors as one string, as arXiv gives them"),
        ("first_author", S, True, "surname of the first author"),
        ("abstract", S, True, "abstract"),
        ("categories", pa.list_(S), False, "arXiv categories, primary first (cross-lists included)"),
        ("license", S, True, "licence URL as arXiv records it"),
        ("doi", S, True, "DOI"),
        ("journal_ref", S, True, "journal reference"),
        ("submitted", pa.date32(), True, "date of the first version"),
        ("updated", pa.date32(), True, "date of the latest version"),
        ("versions", pa.list_(S), False, "all versions, e.g. ['v1', 'v2']"),
        ("has_metadata", pa.bool_(), False, "false when the paper came from a file with no metadata row"),
        ("source_path", S, True, "path or URL of the LaTeX source (bundle, .tex or folder)"),
        ("source_kind", S, True, "what the source was, by magic bytes: tar, gzip_tex, tex, folder, pdf, postscript, html, withdrawn, unknown"),
        ("source_sha256", S, True, "sha256 of the source file"),
        ("pdf_path", S, True, "path or URL of the PDF"),
        ("pdf_sha256", S, True, "sha256 of the PDF"),
        ("flags", pa.list_(S), False, "notes such as 'no_metadata', 'title_from_pdf'"),
    ],
)

PAGE = pa.struct(
    [
        pa.field("page", pa.int32(), nullable=False),
        pa.field("extractor", S, nullable=False),
        pa.field("start", pa.int64(), nullable=False),
        pa.field("end", pa.int64(), nullable=False),
        pa.field("chars", pa.int32(), nullable=False),
        pa.field("garbled", pa.float64(), nullable=True),
        pa.field("reason", S, nullable=True),
        pa.field("flags", pa.list_(S), nullable=False),
    ]
)

DOCUMENT = _table(
    "document", 1, "One row per paper: its extracted text with per-page provenance.",
    ["paper_id"],
    [
        ("paper_id", S, False, "the paper"),
        ("text", S, True, "extracted text (Markdown headings, LaTeX math); null when extraction failed"),
        ("extractor", S, False, "latex, pdf, nougat, mixed (pages from several extractors) or none"),
        ("reason", S, False, "why this extractor was used (or why none could be)"),
        ("n_pages", pa.int32(), False, "pages in the PDF (0 for LaTeX-only)"),
        ("n_chars", pa.int64(), False, "characters of text"),
        ("pages", pa.list_(PAGE), False, "per page: page number (1-based), extractor, [start, end) offsets into text, characters, garbled score, reason, flags"),
        ("input_sha256", S, True, "sha256 of the file the text came from"),
    ],
    row_group_size=256,
)

DECISION = _table(
    "decision", 1, "What a stage did with each item, and why: nothing is dropped without a row here.",
    ["stage", "item_id"],
    [
        ("stage", S, False, "the stage, e.g. 'ingest', 'extract', 'dedup'"),
        ("item_id", S, False, "the paper, page, chunk or pair concerned (or 'file:line' for unparseable input)"),
        ("action", S, False, "kept, dropped, changed or failed"),
        ("reason", S, False, "short machine-readable reason"),
        ("score", pa.float64(), True, "the stage's score, where it has one"),
        ("cluster_id", S, True, "dedup: the cluster the item belongs to"),
        ("kept_id", S, True, "dedup: the item kept for the cluster"),
        ("detail", S, False, "small JSON object with stage-specific evidence"),
    ],
)

OCR_PAGE = _table(
    "ocr_page", 1, "What Nougat made of one page: kept so that rebuild replays it instead of running the model.",
    ["paper_id", "page"],
    [
        ("paper_id", S, False, "the paper"),
        ("page", pa.int32(), False, "1-based page number"),
        ("pdf_sha256", S, True, "sha256 of the PDF the page was rendered from"),
        ("model_sha256", S, False, "fingerprint of the weights (corpus.model_files.model_fingerprint)"),
        ("params_sha256", S, False, "sha256 of the generation and rendering parameters"),
        ("status", S, False, "ok, loop_retried_ok, loop, missing_page, empty, oom or error"),
        ("reason", S, False, "what happened"),
        ("text", S, True, "the page's text (null unless status is ok or loop_retried_ok)"),
        ("tokens", pa.int32(), False, "tokens generated"),
        ("retried", pa.bool_(), False, "whether the repetition-guarded retry ran"),
        ("flags", pa.list_(S), False, "notes from post-processing"),
    ],
)

CHUNK = _table(
    "chunk", 2, "A window of a document's text for Q&A generation, with what a stand-alone pair needs of its paper.",
    ["chunk_id"],
    [
        ("chunk_id", S, False, "'<paper_id>#<index>'"),
        ("paper_id", S, False, "the paper"),
        ("index", pa.int32(), False, "position of the chunk within the paper (0-based)"),
        ("start", pa.int64(), False, "character offset into the document text"),
        ("end", pa.int64(), False, "end offset (exclusive)"),
        ("text", S, False, "the chunk's text (document text[start:end])"),
        ("section", S, True, "heading of the section the chunk starts in, when the text has headings"),
        ("title", S, True, "the paper's title (Unicode)"),
        ("first_author", S, True, "first author's surname in Unicode (arXiv's LaTeX accents converted: Bal\\'azs -> Balázs)"),
        ("year", pa.int16(), True, "year of the paper's first version"),
    ],
)

QA_PAIR = _table(
    "qa_pair", 2, "A question-answer pair generated from one chunk by an LLM, or made from metadata by a template; "
    "a reply that gave no pair is a row with the raw reply and the error.",
    ["pair_id"],
    [
        ("pair_id", S, False, "'<chunk_id>/<n>' (llm; n from 0, an error row has n = 0), '<paper_id>/meta/<field>' (template)"),
        ("chunk_id", S, True, "the chunk it came from (null for template pairs)"),
        ("paper_id", S, False, "the paper"),
        ("kind", S, False, "'llm' (generated, to be graded) or 'template' (made from metadata without a model, not graded)"),
        ("question_type", S, True, "factual, conceptual, quantitative, methods (llm); title, first_author, year, arxiv_id (template)"),
        ("question", S, True, "question (null when the reply could not be parsed)"),
        ("answer", S, True, "answer (null when the reply could not be parsed)"),
        ("model", S, False, "generator model id ('template' for template pairs)"),
        ("template", S, False, "prompt or pair template and its version, e.g. 'generate@1', 'metadata@1'"),
        ("request_key", S, True, "the request's key in the item store (sha256 of model, template, prompt, parameters); null for template pairs"),
        ("raw", S, True, "the raw reply, kept for replay and audit (null for template pairs)"),
        ("error", S, True, "why the reply gave no pair (null when it did)"),
        ("prompt_tokens", pa.int32(), True, "prompt tokens of the request (shared by the pairs of one request: sum over distinct request_key)"),
        ("completion_tokens", pa.int32(), True, "completion tokens of the request (shared likewise)"),
    ],
)

GRADE = _table(
    "grade", 2, "A grade of one Q&A pair by a grader model (1-5 per criterion); an unparseable reply is a row with its error.",
    ["pair_id", "model"],
    [
        ("pair_id", S, False, "the pair graded"),
        ("model", S, False, "grader model id"),
        ("template", S, False, "grading prompt template and its version, e.g. 'grade@1'"),
        ("correctness", pa.int8(), True, "1-5: is the answer right, given the source chunk"),
        ("standalone", pa.int8(), True, "1-5: does the pair make sense without the paper"),
        ("pertinence", pa.int8(), True, "1-5: is it about the field's science"),
        ("overall", pa.int8(), True, "1-5: overall quality"),
        ("request_key", S, False, "the request's key in the item store"),
        ("raw", S, False, "the raw reply"),
        ("error", S, True, "why the reply could not be parsed (null when it could)"),
        ("prompt_tokens", pa.int32(), True, "prompt tokens of the request"),
        ("completion_tokens", pa.int32(), True, "completion tokens of the request"),
    ],
)

MESSAGE = pa.struct([pa.field("role", S, nullable=False), pa.field("content", S, nullable=False)])

SFT_EXAMPLE = _table(
    "sft_example", 2, "A chat example for supervised fine-tuning (TRL's SFTTrainer takes `messages` as is).",
    ["example_id"],
    [
        ("example_id", S, False, "unique id: the pair id, or 'general/<n>' for a mixed-in general example"),
        ("pair_id", S, True, "the Q&A pair it came from (null for a general example)"),
        ("source", S, False, "'llm' or 'template' (a Q&A pair's kind), or 'general' (mixed in from an instruction dataset)"),
        ("messages", pa.list_(MESSAGE), False, "chat messages (role, content), user then assistant"),
    ],
)

EVAL_RESULT = _table(
    "eval_result", 2, "One multiple-choice benchmark question answered by one model (trainer.evaluate).",
    ["model", "benchmark", "question_id", "method"],
    [
        ("model", S, False, "model id: its name on the server, or a local folder's model id (weights hash in the manifest)"),
        ("benchmark", S, False, "benchmark name: the question file's name without its suffix"),
        ("question_id", S, False, "question id in the file ('id', else 'index', else '<file stem>:<row>')"),
        ("method", S, False, "'logprob' (next-token probability of the option letters) or 'generate' (answer extracted from a reply)"),
        ("predicted", S, True, "A-D; null when none (no letter extracted, a refused request)"),
        ("answer", S, True, "gold answer A-D; null when the file has none (predictions only)"),
        ("correct", pa.bool_(), True, "predicted == answer; null when there is no gold answer"),
        ("probabilities", pa.list_(pa.float64()), True, "logprob: probability of A, B, C, D renormalised over the four letters; null for generate"),
        ("logprobs", pa.list_(pa.float64()), True, "logprob: log-probability of each letter as the next token (A-D; an entry is null when a server's top_logprobs left it out)"),
        ("raw", S, True, "generate: the reply as the model wrote it"),
        ("error", S, True, "why there is no prediction (null when there is one)"),
        ("flags", pa.list_(S), False, "problems of the question row, reported not fatal: 'blank_option:C', 'duplicate_question:<id of its first occurrence>'"),
        ("request_key", S, False, "the request's key in the item store (rebuild replays it)"),
        ("prompt_tokens", pa.int32(), True, "prompt tokens of the request"),
        ("completion_tokens", pa.int32(), True, "completion tokens of the reply (generate)"),
    ],
)

ALL_TABLES: dict[str, Table] = {
    t.name: t for t in (PAPER, DOCUMENT, DECISION, OCR_PAGE, CHUNK, QA_PAIR, GRADE, SFT_EXAMPLE, EVAL_RESULT)
}
