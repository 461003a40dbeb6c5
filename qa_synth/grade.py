"""Grade: each generated pair scored 1-5 on four criteria by a second LLM, the source chunk given.

``{out}/qa/pairs.parquet`` (QA_PAIR) + ``{out}/qa/chunks.parquet`` (CHUNK) -> ``{out}/qa/grades.parquet``
(GRADE) and ``decisions/qa_grade.parquet``.

Every LLM pair with a question gets one request (``grade@1``: few-shot, temperature 0 by default)
and one GRADE row; a reply that does not parse, or a refused request, is a row with its error. Template
pairs (exact by construction) and the generator's error rows are not graded: their decision says so.
The grader must not be the generator (a model grading its own pairs is lenient): ``prepare`` reads the
pairs' models and refuses, unless ``allow_same_model``.

The join of pairs to their chunks is made once, in ``prepare``: a pair row -> chunk row array in
the step's work folder, which each shard reads for its rows only.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow.parquet as pq
from pydantic import Field

from corpus.run.stage import OUT, EmptyOutputError, how_field, path_field, register_stage
from qa_synth.backends.base import ChatRequest, Reply
from qa_synth.calling import CallConfig, CallingStage
from qa_synth.replies import ReplyError, parse_reply
from schemas import CHUNK, GRADE, QA_PAIR, count_rows, iter_row_range, read_polars

GRADES = "qa/grades.parquet"
CHUNK_ROWS = "chunk_rows.npy"
PAIR_COLUMNS = ["pair_id", "chunk_id", "kind", "question", "answer", "error"]


class GradeConfig(CallConfig):
    """Grading: the pairs and chunks read, and the grader model (see CallConfig)."""

    pairs: str = path_field(f"{OUT}/qa/pairs.parquet", description="the pair table (QA_PAIR) to grade")
    chunks: str = path_field(f"{OUT}/qa/chunks.parquet", description="the chunk table (CHUNK) the pairs came from")
    template: str = Field("grade@1", description="the grading prompt template and version")
    temperature: float = Field(0.0, ge=0, description="sampling temperature (0, after the reference recipe: "
                               "a grade should not depend on chance)")
    max_tokens: int = Field(256, ge=1, description="most tokens of one reply")
    allow_same_model: bool = how_field(False, description="let the generator's model grade its own pairs "
                                       "(refused by default: a model is lenient with its own output)")


@register_stage
class Grade(CallingStage):
    name = "qa_grade"
    verb = "qa grade"
    role = "grader"
    config_class = GradeConfig
    description = "grade each generated pair 1-5 with a second LLM (qa/pairs.parquet -> qa/grades.parquet)"

    def outputs(self):
        return {GRADES: GRADE, **super().outputs()}

    def summary(self, stats: dict) -> str:
        skipped = ", ".join(f"{int(v)} {k.split('.', 1)[1].removeprefix('skipped_').replace('_', ' ')}s"
                            for k, v in sorted(stats.items()) if k.startswith("grades.skipped_"))
        return (f"{super().summary(stats)}; {int(stats.get('grades.ok', 0))} grades, {int(stats.get('grades.error', 0))} "
                f"grader replies that did not parse" + (f"; not graded: {skipped}" if skipped else ""))

    def prepare(self) -> dict[str, int]:
        pairs_path, chunks_path = self.path(self.config.pairs), self.path(self.config.chunks)
        pairs = read_polars(pairs_path, QA_PAIR, columns=["chunk_id", "kind", "model"])
        if pairs.height == 0:
            raise EmptyOutputError(f"{pairs_path} has no pairs to grade")
        generators = sorted(set(pairs.filter(pairs["kind"] == "llm")["model"].to_list()))
        if self.model_id in generators and not self.config.allow_same_model:
            raise ValueError(
                f"{self.name}: the grader {self.model_id!r} generated the pairs of {pairs_path}; a model grading "
                "its own output is lenient, so grade with another model (--model), or set allow_same_model: true "
                "(--allow-same-model) to do it anyway")
        import polars as pl

        chunks = read_polars(chunks_path, CHUNK, columns=["chunk_id"]).with_row_index("chunk_row")
        if chunks["chunk_id"].n_unique() != chunks.height:
            raise ValueError(f"{chunks_path}: chunk ids are not unique")
        joined = (pairs.select("chunk_id").with_row_index("pair_row")
                  .join(chunks, on="chunk_id", how="left").sort("pair_row"))
        rows = joined["chunk_row"].cast(pl.Int64).fill_null(-1).to_numpy()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        np.save(self.work_dir / CHUNK_ROWS, rows)
        return {"pairs": pairs.height, "pairs.without_chunk": int(((rows < 0) & pairs["chunk_id"].is_not_null().to_numpy()).sum())}

    def plan(self) -> range:
        """The pair table's rows (a range: cheap at millions of pairs)."""
        return range(count_rows(self.path(self.config.pairs), QA_PAIR))

    def _texts(self, chunk_rows: np.ndarray) -> dict[int, str]:
        """The text of each chunk row asked for, reading only the row groups that hold them."""
        wanted = sorted({int(r) for r in chunk_rows if r >= 0})
        texts: dict[int, str] = {}
        if not wanted:
            return texts
        pf = pq.ParquetFile(self.path(self.config.chunks))
        start, i = 0, 0
        for g in range(pf.metadata.num_row_groups):
            end = start + pf.metadata.row_group(g).num_rows
            group = [r for r in wanted[i:] if r < end]
            if group:
                column = pf.read_row_group(g, columns=["text"]).column("text")
                texts.update((r, column[r - start].as_py()) for r in group)
                i += len(group)
            start = end
            if i == len(wanted):
                break
        return texts

    def _window(self, lo: int, hi: int) -> list[tuple[dict, str | None, ChatRequest | None, str]]:
        """``(pair, chunk text, request, skip reason)`` for pair rows lo..hi-1: a request for each LLM pair
        with a question and a chunk; the reason it gets none otherwise."""
        chunk_rows = np.load(self.work_dir / CHUNK_ROWS, mmap_mode="r")[lo:hi]
        texts = self._texts(chunk_rows)
        out = []
        for pair, chunk_row in zip(iter_row_range(self.path(self.config.pairs), QA_PAIR, lo, hi, columns=PAIR_COLUMNS), chunk_rows):
            text = texts.get(int(chunk_row))
            if pair["kind"] != "llm":
                out.append((pair, None, None, "template_pair"))
            elif pair["error"] is not None or not pair["question"]:
                out.append((pair, None, None, "error_row"))
            elif text is None:
                out.append((pair, None, None, "chunk_missing"))
            else:
                fields = {"text": text, "question": pair["question"], "answer": pair["answer"] or ""}
                out.append((pair, text, self.request(fields), ""))
        return out

    def requests(self) -> Iterator[tuple[int, ChatRequest]]:
        n = count_rows(self.path(self.config.pairs), QA_PAIR)
        for start in range(0, n, 4096):
            for offset, (_, _, req, _) in enumerate(self._window(start, min(n, start + 4096))):
                if req is not None:
                    yield start + offset, req

    def process(self, items: range) -> Iterator[tuple[str, list[dict]]]:
        with self.store(replay_only=True) as store, self.calls(store) as calls:
            for start in range(items.start, items.stop, calls.window):
                window = self._window(start, min(items.stop, start + calls.window))
                entries = [(start + i, req, calls.key(req)) for i, (_, _, req, _) in enumerate(window) if req is not None]
                outcomes = dict(zip((e[0] for e in entries), calls.run(entries)))
                keys = {e[0]: e[2] for e in entries}
                for i, (pair, _, req, skip) in enumerate(window):
                    if req is None:
                        yield from self._skipped(pair, skip)
                    elif outcomes[start + i].error is None:  # an unanswered request: the shard fails in check()
                        yield from self._grade(pair, keys[start + i], Reply.from_json(outcomes[start + i].value))
            calls.check()

    def _skipped(self, pair: dict, why: str) -> Iterator[tuple[str, list[dict]]]:
        if why == "chunk_missing":
            self.stat_update("grades.chunk_missing")
            yield self.decisions_file, [self.decision(pair["pair_id"], "failed", "chunk_missing", chunk_id=pair["chunk_id"],
                                                      chunks=self.config.chunks)]
            return
        self.stat_update(f"grades.skipped_{why}")
        yield self.decisions_file, [self.decision(pair["pair_id"], "dropped", f"skipped_{why}", why=(
            "template pairs are exact by construction and not graded" if why == "template_pair"
            else "the generator gave no pair here (an error row): nothing to grade"))]

    def _grade(self, pair: dict, key: str, reply: Reply) -> Iterator[tuple[str, list[dict]]]:
        row = {"pair_id": pair["pair_id"], "model": self.model_id, "template": self.prompt.id, "request_key": key,
               "raw": reply.text, "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
               "correctness": None, "standalone": None, "pertinence": None, "overall": None, "error": None}
        try:
            if reply.error is not None:
                raise ReplyError(f"request refused: {reply.error}")
            grades, repairs = parse_reply(reply.text, self.prompt.schema)
        except ReplyError as e:
            self.stat_update("grades.error")
            yield GRADES, [{**row, "error": str(e)}]
            reason = "request_refused" if reply.error is not None else "unparseable_grade"
            yield self.decisions_file, [self.decision(pair["pair_id"], "failed", reason, error=str(e),
                                                      finish_reason=reply.finish_reason)]
            return
        self.stat_update("grades.ok")
        yield GRADES, [{**row, **grades}]
        yield self.decisions_file, [self.decision(pair["pair_id"], "kept", "graded", score=float(grades["overall"]),
                                                  repairs=repairs)]
