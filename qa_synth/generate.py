"""Generate: question-answer pairs from each chunk with one LLM, plus metadata pairs made without one.

``{out}/qa/chunks.parquet`` (CHUNK) -> ``{out}/qa/pairs.parquet`` (QA_PAIR) and ``decisions/qa_generate.parquet``.

One request per chunk asks for ``n_pairs`` pairs (:mod:`qa_synth.prompts.generate`). The reply is read
by :func:`qa_synth.replies.parse_pairs`; each pair's question and answer are rewritten to stand alone
(:func:`qa_synth.standalone.stand_alone`) and written as ``'<chunk_id>/<n>'`` (n: the pair's position
in the reply). A reply that gives no pair, or a request the server refused, is one error row
``'<chunk_id>/0'`` with the raw reply and the reason. Before a paper's first chunk come its metadata
pairs (:mod:`qa_synth.prompts.metadata`, ``kind='template'``), when ``metadata_pairs`` is on.

Rows follow the plan (chunk table order), never completion order, so the bytes do not depend on
workers, in-flight limits or interruptions. Every item has a decision: the chunk's pairs, repairs,
rewrites and set-aside items, or why it gave none; a paper's metadata pairs or the fields it lacked.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import Field

from corpus.run.stage import OUT, EmptyOutputError, path_field, register_stage
from qa_synth.backends.base import ChatRequest, Reply
from qa_synth.calling import CallConfig, CallingStage, windows
from qa_synth.prompts.generate import generate_fields
from qa_synth.prompts.metadata import METADATA_MODEL, METADATA_TEMPLATE, metadata_pairs
from qa_synth.replies import ReplyError, parse_pairs
from qa_synth.standalone import stand_alone
from schemas import CHUNK, QA_PAIR, count_rows, iter_row_range, read_table

PAIRS = "qa/pairs.parquet"


class GenerateConfig(CallConfig):
    """Q&A generation: the chunks read, the pairs asked for, and the model (see CallConfig)."""

    chunks: str = path_field(f"{OUT}/qa/chunks.parquet", description="the chunk table (CHUNK) to generate from")
    template: str = Field("generate@1", description="the prompt template and version")
    n_pairs: int = Field(3, ge=1, le=20, description="question-answer pairs asked for per chunk")
    metadata_pairs: bool = Field(True, description="also make pairs from each paper's metadata (title, first "
                                 "author, year, arXiv id) by fixed templates, without a model")
    temperature: float = Field(0.7, ge=0, description="sampling temperature")
    max_tokens: int = Field(1024, ge=1, description="most tokens of one reply")


@register_stage
class Generate(CallingStage):
    name = "qa_generate"
    verb = "qa generate"
    role = "generator"
    config_class = GenerateConfig
    description = "generate question-answer pairs from each chunk with an LLM (qa/chunks.parquet -> qa/pairs.parquet)"

    def outputs(self):
        return {PAIRS: QA_PAIR, **super().outputs()}

    def summary(self, stats: dict) -> str:
        llm, failed, template = (int(stats.get(f"pairs.{k}", 0)) for k in ("llm", "error", "template"))
        line = (f"{super().summary(stats)}; {llm} pairs from replies, {failed} replies that did not parse (error rows, "
                f"raw reply kept), {template} template pairs from metadata")
        if failed and not llm:
            line += ": no reply parsed, so only the template pairs go on to grading and selection"
        return line

    def prepare(self) -> dict[str, int]:
        n = count_rows(self.path(self.config.chunks), CHUNK)
        if n == 0:
            raise EmptyOutputError(f"{self.path(self.config.chunks)} has no chunks: nothing to generate from "
                                   "(did 'sagecorpus qa chunk' keep any paper?)")
        return {"chunks": n}

    def plan(self) -> list[tuple[str, int]]:
        """``("meta", row)`` before each paper's first chunk (when metadata pairs are on), ``("chunk", row)``
        for each chunk: rows of the chunk table, whose order the plan keeps."""
        ids = read_table(self.path(self.config.chunks), CHUNK, columns=["paper_id"]).column("paper_id").to_pylist()
        items: list[tuple[str, int]] = []
        seen: set[str] = set()
        for row, paper in enumerate(ids):
            if self.config.metadata_pairs and paper not in seen:
                seen.add(paper)
                items.append(("meta", row))
            items.append(("chunk", row))
        return items

    def chunk_request(self, chunk: dict[str, Any]) -> ChatRequest:
        return self.request(generate_fields(chunk, self.config.n_pairs))

    def _rows(self, lo: int, hi: int) -> dict[int, dict]:
        return dict(enumerate(iter_row_range(self.path(self.config.chunks), CHUNK, lo, hi), start=lo))

    def requests(self) -> Iterator[tuple[int, ChatRequest]]:
        """One request per chunk; its budget index is its row."""
        n = count_rows(self.path(self.config.chunks), CHUNK)
        for start in range(0, n, 4096):
            for row, chunk in self._rows(start, min(n, start + 4096)).items():
                yield row, self.chunk_request(chunk)

    def process(self, items: list[tuple[str, int]]) -> Iterator[tuple[str, list[dict]]]:
        with self.store(replay_only=True) as store, self.calls(store) as calls:
            for window in windows(items, calls.window):
                rows = self._rows(min(r for _, r in window), max(r for _, r in window) + 1)
                entries = []
                for kind, row in window:
                    if kind == "chunk":
                        req = self.chunk_request(rows[row])
                        entries.append((row, req, calls.key(req)))
                outcomes = iter(calls.run(entries))
                keys = iter(e[2] for e in entries)
                for kind, row in window:
                    if kind == "meta":
                        yield from self._metadata(rows[row])
                        continue
                    outcome, key = next(outcomes), next(keys)
                    if outcome.error is None:  # an unanswered request: the shard fails in check()
                        yield from self._pairs(rows[row], key, Reply.from_json(outcome.value))
            calls.check()

    def _metadata(self, chunk: dict) -> Iterator[tuple[str, list[dict]]]:
        paper = chunk["paper_id"]
        pairs, missing = metadata_pairs(paper, chunk["title"], chunk["first_author"], chunk["year"])
        rows = [{"pair_id": f"{paper}/meta/{p['field']}", "chunk_id": None, "paper_id": paper, "kind": "template",
                 "question_type": p["field"], "question": p["question"], "answer": p["answer"], "model": METADATA_MODEL,
                 "template": METADATA_TEMPLATE, "request_key": None, "raw": None, "error": None,
                 "prompt_tokens": None, "completion_tokens": None} for p in pairs]
        self.stat_update("pairs.template", value=len(rows))
        yield PAIRS, rows
        if rows:
            decision = self.decision(paper, "kept", "metadata_pairs", fields=[p["field"] for p in pairs], missing=missing)
        else:
            decision = self.decision(paper, "dropped", "no_metadata", missing=missing)
        yield self.decisions_file, [decision]

    def _pairs(self, chunk: dict, key: str, reply: Reply) -> Iterator[tuple[str, list[dict]]]:
        base = {"chunk_id": chunk["chunk_id"], "paper_id": chunk["paper_id"], "kind": "llm", "model": self.model_id,
                "template": self.prompt.id, "request_key": key, "raw": reply.text,
                "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens}
        tokens = {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                  "finish_reason": reply.finish_reason}
        try:
            if reply.error is not None:
                raise ReplyError(f"request refused: {reply.error}")
            parsed = parse_pairs(reply.text, self.prompt.schema, self.config.n_pairs)
        except ReplyError as e:
            self.stat_update("pairs.error")
            yield PAIRS, [{**base, "pair_id": f"{chunk['chunk_id']}/0", "question_type": None, "question": None,
                           "answer": None, "error": str(e)}]
            reason = "request_refused" if reply.error is not None else "unparseable_reply"
            yield self.decisions_file, [self.decision(chunk["chunk_id"], "failed", reason, error=str(e), **tokens)]
            return
        rows, rewritten, unresolved = [], 0, []
        for n, pair in parsed.pairs:
            q = stand_alone(pair["question"], chunk["first_author"], chunk["year"])
            a = stand_alone(pair["answer"], chunk["first_author"], chunk["year"])
            rewritten += q.rewritten + a.rewritten
            unresolved += q.unresolved + a.unresolved
            rows.append({**base, "pair_id": f"{chunk['chunk_id']}/{n}", "question_type": pair["question_type"],
                         "question": q.text, "answer": a.text, "error": None})
        self.stat_update("pairs.llm", value=len(rows))
        self.stat_update("pairs.set_aside", value=len(parsed.dropped))
        self.stat_update("pairs.rewritten_references", value=rewritten)
        yield PAIRS, rows
        yield self.decisions_file, [self.decision(
            chunk["chunk_id"], "kept", "generated", score=float(len(rows)), pairs=len(rows), repairs=parsed.repairs,
            set_aside=[{"n": n, "why": why} for n, why in parsed.dropped], rewritten=rewritten,
            unresolved_references=unresolved, **tokens)]
