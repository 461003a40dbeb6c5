"""Select the Q&A pairs worth fine-tuning on: the ``qa_select`` stage -> ``qa/sft.parquet`` (SFT chat examples).

Every pair gets one decision, in pair order, and the first rule that drops it names the reason:

1. ``generation_error`` — the generator's reply gave no pair (the pair row's error, or no question
   or answer).
2. LLM pairs only (template pairs are not graded and pass): ``grade_missing`` (no grade row by a
   counted grader), ``grade_unparseable`` (grade rows, none parseable: their errors in the detail),
   ``below_threshold`` (the failing criteria, scores and thresholds in the detail). With several
   grader models, ``combine: all`` (default) requires every parseable grade to meet every threshold
   (the per-criterion minimum is compared); ``combine: mean`` compares the per-criterion mean.
   Defaults 4/4/4/4 on the 1–5 scale: the reference recipe kept only its best-graded pairs and did
   not publish per-criterion numbers we could verify, so this is our choice ("good" on every
   criterion), set in the config.
3. ``benchmark_overlap`` — question and answer together share an n-gram (13 words, or a whole short
   question of 8+) with a benchmark question: the curation decontamination
   (:mod:`corpus.curate.decontaminate`); the benchmark question's id and the shared words in the detail.
4. ``near_duplicate`` — the question is a near-duplicate of a better-graded one: the curation MinHash
   (:mod:`corpus.curate.minhash`, :func:`corpus.curate.dedup.cluster_pairs`) on word n-grams of the
   question (default bigrams: questions are short) with every candidate pair re-checked on its exact
   shingles; the cluster and the kept pair in the decision. Kept: the best graded (aggregated overall,
   then the sum of the four criteria; template pairs, facts from metadata, first), ties the smallest pair id.

The rest are ``kept``: one ``SFTExample`` each, ``messages`` = [optional system], user = question,
assistant = answer: the conversational format TRL's ``SFTTrainer`` takes as is. Optionally a general
instruction dataset is mixed in at ``general_ratio`` general examples per selected pair, drawn
without replacement with ``seed`` (ids ``general/<row>``); accepted shapes in :func:`read_general`.

**Scale** (like curation's dedup): grades are summarised per pair in ``prepare`` (polars, grades'
numbers only); shards check their pairs and store the question signatures, exact shingles and their
verdicts in the step's work folder; ``finish`` finds candidate pairs by banding the signatures in
numpy (datasketch's band sizes, no in-memory LSH index), clusters only the rows that have a candidate,
and streams the pairs once more to write. See ``bench/qa_select.py`` for the 8.8M-pair projection.
"""

from __future__ import annotations

import json
import pickle
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from corpus.curate import minhash
from corpus.curate import text as T
from corpus.curate.decontaminate import load_index, load_questions
from corpus.curate.dedup import cluster_pairs
from corpus.curate.filters import ensure_some_kept
from corpus.files import iter_records
from corpus.curate.minhash import DedupConfig, SignatureStore
from corpus.run.progress import note, progress
from corpus.run.stage import (
    OUT,
    EmptyOutputError,
    Stage,
    StageConfig,
    path_field,
    register_stage,
    writers_of,
)
from schemas import (
    DECISION,
    GRADE,
    QA_PAIR,
    SFT_EXAMPLE,
    Table,
    TableWriter,
    count_rows,
    iter_row_range,
    iter_rows,
)

CRITERIA = ("correctness", "standalone", "pertinence", "overall")
INDEX_FILE = "questions.pkl"
SUMMARY_FILE = "grades.parquet"

GRADE_SUMMARY = Table(
    name="qa_grade_summary", version=1, key=("pair_id",),
    description="The grades of each pair, one row per pair in pair order (qa_select's work folder).",
    schema=pa.schema([
        pa.field("pair_id", pa.large_string(), nullable=False),
        pa.field("n_grades", pa.int32(), nullable=False),
        pa.field("n_parsed", pa.int32(), nullable=False),
        *[pa.field(c, pa.float64(), nullable=True) for c in CRITERIA],
        pa.field("error", pa.large_string(), nullable=True),
        pa.field("models", pa.large_string(), nullable=True),
    ]),
)


def question_dedup_defaults() -> DedupConfig:
    """MinHash settings for questions: bigrams (a one-word edit of a 15-word question keeps Jaccard
    about 0.78), 64 permutations, Jaccard 0.7, candidates from 0.5, every candidate checked exactly."""
    return DedupConfig(ngram=2, num_perm=64, threshold=0.7, candidate_threshold=0.5, verify_margin=1.0)


class SelectConfig(StageConfig):
    pairs: str = path_field(f"{OUT}/qa/pairs.parquet", "Q&A pairs (generated and template)")
    grades: str | None = path_field(f"{OUT}/qa/grades.parquet", "grades of the pairs (none: no LLM pair can pass)")
    min_correctness: int = Field(4, ge=1, le=5, description="lowest correctness (1-5) an LLM pair may have")
    min_standalone: int = Field(4, ge=1, le=5, description="lowest stand-alone score (1-5)")
    min_pertinence: int = Field(4, ge=1, le=5, description="lowest pertinence (1-5)")
    min_overall: int = Field(4, ge=1, le=5, description="lowest overall score (1-5)")
    graders: list[str] = Field(default_factory=list, description="grader models whose grades count (empty: all)")
    combine: Literal["all", "mean"] = Field(
        "all", description="several graders: all (every parseable grade meets each threshold) or mean (the mean does)")
    near_dedup: bool = Field(True, description="remove near-duplicate questions (MinHash), keeping the best graded")
    dedup: DedupConfig = Field(default_factory=question_dedup_defaults,
                               description="MinHash over the question's word n-grams (ngram, num_perm, threshold...)")
    questions: list[str] = path_field([], "benchmark question files (JSON array, JSONL or Parquet: question, A-D, "
                                          "optional answer); pairs overlapping them are dropped")
    ngram: int = Field(13, ge=1, description="benchmark overlap n-gram size over normalised words")
    min_words: int = Field(8, ge=1, description="shorter benchmark questions (but at least this long) must match whole")
    general: str | None = path_field(None, "general instruction dataset to mix in (.parquet or .jsonl; see read_general)")
    general_ratio: float = Field(0.0, ge=0, description="general examples per selected Q&A example")
    seed: int = Field(0, description="seed of the draw of general examples")
    system_prompt: str | None = Field(None, description="system message put first in every Q&A example (none: no system message)")

    @model_validator(mode="after")
    def _mixing(self):
        if self.general_ratio > 0 and not self.general:
            raise ValueError("general_ratio > 0 needs `general`: the instruction dataset to mix in")
        if self.general and self.general_ratio == 0:
            raise ValueError("`general` is set but general_ratio is 0: nothing would be mixed in")
        return self

    def thresholds(self) -> dict[str, int]:
        return {c: getattr(self, f"min_{c}") for c in CRITERIA}


# ---------------------------------------------------------------------------------------- per pair


def verdict(pair: dict, grades: dict | None, config: SelectConfig) -> tuple[str, str, float | None, dict]:
    """``(action, reason, score, detail)`` of one pair from its grade summary (rules 1-2 of the module
    docstring); ``("kept", "passed", quality, ...)`` when it goes on to the overlap and duplicate checks."""
    if pair["error"] is not None or not pair["question"] or not pair["answer"]:
        return "dropped", "generation_error", None, {"error": pair["error"] or "no question or answer"}
    if pair["kind"] == "template":
        return "kept", "passed", None, {"kind": "template"}
    if pair["kind"] != "llm":
        return "failed", "unknown_kind", None, {"kind": pair["kind"]}
    if grades is None or grades["n_grades"] == 0:
        return "dropped", "grade_missing", None, {}
    if grades["n_parsed"] == 0:
        return "dropped", "grade_unparseable", None, {"error": grades["error"], "models": grades["models"],
                                                      "grades": grades["n_grades"]}
    scores = {c: grades[c] for c in CRITERIA}
    failed = [c for c, t in config.thresholds().items() if scores[c] < t]
    detail = {"scores": scores, "graders": grades["n_parsed"], "combine": config.combine}
    if failed:
        return "dropped", "below_threshold", scores["overall"], detail | {"failed": failed,
                                                                          "thresholds": config.thresholds()}
    return "kept", "passed", scores["overall"], detail


TEMPLATE_KEY = 10**9


def quality_key(scores: dict | None) -> int:
    """An integer that orders pairs best first (larger is better): overall, then the sum of the four
    criteria; None (a template pair: a fact from metadata) above any grade."""
    if scores is None:
        return TEMPLATE_KEY
    return round(scores["overall"] * 100) * 10_000 + round(sum(scores[c] for c in CRITERIA) * 100)


def messages(question: str, answer: str, system: str | None) -> list[dict]:
    """The chat of one example: [system], user, assistant."""
    return ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": question}, {"role": "assistant", "content": answer}]


# ---------------------------------------------------------------------------------------- general data


class GeneralDatasetError(ValueError):
    """A general instruction dataset cannot be mixed in; the message names the file, the row and the problem."""


ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


def _chat(row, where: str) -> list[dict]:
    """One row as chat messages, from any accepted shape (see :func:`read_general`)."""
    if not isinstance(row, dict):
        raise GeneralDatasetError(f"{where}: not an object")

    def text(key: str) -> str:
        value = row.get(key)
        if not isinstance(value, str) or not value.strip():
            raise GeneralDatasetError(f"{where}: {key!r} must be a non-empty string, got {value!r:.60}")
        return value

    if row.get("messages") is not None or row.get("conversations") is not None:
        key = "messages" if row.get("messages") is not None else "conversations"
        turns = row[key]
        if not isinstance(turns, list) or not turns:
            raise GeneralDatasetError(f"{where}: {key!r} must be a non-empty list of messages")
        out = []
        for i, m in enumerate(turns):
            if not isinstance(m, dict):
                raise GeneralDatasetError(f"{where}: {key}[{i}] is not an object")
            if key == "messages":
                role, content = m.get("role"), m.get("content")
                if role not in ROLES:
                    raise GeneralDatasetError(f"{where}: messages[{i}] role {role!r} is not one of {list(ROLES)}")
            else:
                role, content = SHAREGPT_ROLES.get(m.get("from")), m.get("value")
                if role is None:
                    raise GeneralDatasetError(f"{where}: conversations[{i}] 'from' {m.get('from')!r} is not one of "
                                              f"{sorted(SHAREGPT_ROLES)}")
            if not isinstance(content, str):
                raise GeneralDatasetError(f"{where}: {key}[{i}] has no text content")
            out.append({"role": role, "content": content})
        if not any(m["role"] == "user" for m in out) or out[-1]["role"] != "assistant":
            raise GeneralDatasetError(f"{where}: {key!r} needs a user message and must end with an assistant message")
        return out
    if "prompt" in row or "completion" in row:
        return [{"role": "user", "content": text("prompt")}, {"role": "assistant", "content": text("completion")}]
    if "instruction" in row or "output" in row:
        extra = row.get("input")
        user = text("instruction") + (f"\n\n{extra}" if isinstance(extra, str) and extra.strip() else "")
        return [{"role": "user", "content": user}, {"role": "assistant", "content": text("output")}]
    raise GeneralDatasetError(f"{where}: no accepted columns (messages; conversations; prompt + completion; "
                              f"instruction [+ input] + output); found {sorted(row)}")


def read_general(path: str | Path) -> Iterator[list[dict]]:
    """The examples of a general instruction dataset, as chat messages, in file order.

    Files: ``.parquet`` or ``.jsonl`` (one JSON object a line). Accepted shapes, per row:
    ``messages`` (a list of ``{role, content}``, roles system/user/assistant, TRL's conversational
    form), ``conversations`` (ShareGPT: ``{from, value}``, from system/human/gpt, e.g. OpenHermes),
    ``prompt`` + ``completion`` (TRL's prompt-completion form), ``instruction`` [+ ``input``] +
    ``output`` (Alpaca). A chat must have a user turn and end with the assistant's. Anything else
    raises :class:`GeneralDatasetError` naming the file, the row and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise GeneralDatasetError(f"{path}: general dataset not found")
    for where, row in iter_records(path, GeneralDatasetError, what="general dataset"):
        yield _chat(row, f"{path}: {where}")


def count_general(path: str | Path) -> int:
    """Check every row of a general dataset and count them; raises on the first bad one, or on none."""
    n = sum(1 for _ in read_general(path))
    if n == 0:
        raise GeneralDatasetError(f"{path}: no examples")
    return n


# ---------------------------------------------------------------------------------------- near duplicates


def band_candidates(sigs: np.ndarray, config: DedupConfig, active: np.ndarray | None = None) -> np.ndarray:
    """Candidate pairs ``(i, j)``, ``i < j`` (int64, shape (k, 2), unique) of MinHash signatures that
    agree on a whole band, with datasketch's band layout for ``config`` (its ``_optimal_param``).

    Numpy sorting per band instead of datasketch's in-memory index (whose per-band Python sets take
    tens of GB at millions of rows). A bucket links each member to its first and to its predecessor
    (2 edges a member, not all pairs: a huge bucket of copies stays linear); the clustering verifies
    every edge and compares every member with the kept one.
    """
    from datasketch.lsh import _optimal_param

    bands, rows = _optimal_param(config.candidate_threshold, config.num_perm, *config.lsh_weights)
    n = len(sigs)
    index = np.arange(n, dtype=np.int64) if active is None else np.flatnonzero(active).astype(np.int64)
    edges = []
    for b in range(bands):
        h = np.zeros(len(index), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for col in range(b * rows, (b + 1) * rows):
                h = T.fmix64(h * np.uint64(0x9E3779B97F4A7C15) + np.asarray(sigs[index, col], dtype=np.uint64))
        order = np.argsort(h, kind="stable")
        hs = h[order]
        same = hs[1:] == hs[:-1]
        if not same.any():
            continue
        pos = np.arange(len(hs))
        run_start = np.maximum.accumulate(np.where(np.concatenate([[True], ~same]), pos, 0))
        members = np.flatnonzero(same) + 1
        first, prev = index[order[run_start[members]]], index[order[members - 1]]
        this = index[order[members]]
        edges += [np.stack([first, this], 1), np.stack([prev, this], 1)]
    if not edges:
        return np.empty((0, 2), dtype=np.int64)
    e = np.concatenate(edges)
    e = np.sort(e, axis=1)
    e = e[e[:, 0] != e[:, 1]]
    return np.unique(e, axis=0)


# ---------------------------------------------------------------------------------------- the stage


@register_stage
class Select(Stage):
    """Keep the best Q&A pairs (thresholds, benchmark overlap, near-duplicate questions) as SFT chat examples."""

    name = "qa_select"
    verb = "qa select"
    config_class = SelectConfig
    description = ("Select Q&A pairs for SFT: grade thresholds per criterion, benchmark overlap removed, near-duplicate "
                   "questions removed (best graded kept), optional general-data mixing; writes qa/sft.parquet.")
    output = "qa/sft.parquet"

    def outputs(self):
        return {self.output: SFT_EXAMPLE, **super().outputs()}

    def shard_outputs(self):
        return {}  # finish writes both, once the duplicate clusters are known

    def validate(self) -> None:
        """Read the benchmark question files and the general dataset before any step runs."""
        for path in self.config.questions:
            load_questions(path)
        if self.config.general:
            count_general(self.config.general)

    # -- before the shards

    def prepare(self):
        c = self.config
        pairs = self.path(c.pairs)
        n = count_rows(pairs, QA_PAIR)
        if n == 0:
            rel = c.pairs[len(OUT) + 1:] if c.pairs.startswith(OUT) else None
            writers = writers_of(rel) if rel else []
            raise EmptyOutputError(f"{pairs} has no rows: " + (f"the {writers[0]} step made no pair" if writers
                                                               else "no pairs to select from"))
        self._summarise_grades(pairs)
        counters = {"pairs": n}
        if c.questions:
            skipped: list[str] = []
            index = load_index(c.questions, c.ngram, c.min_words, skipped)
            (self.work_dir / INDEX_FILE).write_bytes(pickle.dumps(index))
            if skipped:
                note(f"qa select: {len(skipped)} benchmark question rows skipped, e.g. " + "; ".join(skipped[:3]))
            counters |= {"questions": index.n_questions, "questions.skipped_rows": len(skipped)}
        return counters

    def _summarise_grades(self, pairs: str) -> None:
        """One row per pair, in pair order: how many grades, how many parsed, the combined criteria."""
        import polars as pl

        c = self.config
        ids = pl.scan_parquet(pairs).select("pair_id").with_row_index("row")
        if c.grades is None:
            summary = ids.with_columns(pl.lit(0, pl.Int32).alias("n_grades"), pl.lit(0, pl.Int32).alias("n_parsed"),
                                       *[pl.lit(None, pl.Float64).alias(k) for k in CRITERIA],
                                       pl.lit(None, pl.String).alias("error"), pl.lit(None, pl.String).alias("models"))
        else:
            path = self.path(c.grades)
            count_rows(path, GRADE)  # a wrong table or version fails here, naming the file
            grades = pl.scan_parquet(path).select("pair_id", "model", *CRITERIA, "error")
            if c.graders:
                grades = grades.filter(pl.col("model").is_in(c.graders))
            parsed = pl.all_horizontal([pl.col(k).is_not_null() for k in CRITERIA]) & pl.col("error").is_null()
            how = (lambda e: e.min()) if c.combine == "all" else (lambda e: e.mean())
            agg = grades.group_by("pair_id").agg(
                pl.len().cast(pl.Int32).alias("n_grades"), parsed.sum().cast(pl.Int32).alias("n_parsed"),
                *[how(pl.when(parsed).then(pl.col(k).cast(pl.Float64))).alias(k) for k in CRITERIA],
                pl.col("error").drop_nulls().sort().first().alias("error"),
                pl.col("model").unique().sort().str.join(",").alias("models"))
            summary = ids.join(agg, on="pair_id", how="left").with_columns(
                pl.col("n_grades").fill_null(0), pl.col("n_parsed").fill_null(0))
        df = summary.sort("row").drop("row").collect()
        with TableWriter(GRADE_SUMMARY, self.work_dir / SUMMARY_FILE) as w:
            w.write(df)

    def plan(self):
        return list(range(count_rows(self.path(self.config.pairs), QA_PAIR)))

    # -- the shards

    def _signatures(self) -> SignatureStore:
        return SignatureStore(self.work_dir / "signatures", self.config.dedup)

    def process(self, items):
        if not items:
            return
        c = self.config
        lo, hi, name = items[0], items[-1] + 1, f"{items[0]:012d}"
        index = pickle.loads((self.work_dir / INDEX_FILE).read_bytes()) if c.questions else None
        pairs = iter_row_range(self.path(c.pairs), QA_PAIR, lo, hi,
                               columns=["pair_id", "kind", "question", "answer", "error"])
        grades = iter_row_range(self.work_dir / SUMMARY_FILE, GRADE_SUMMARY, lo, hi)
        rows, ids, keys, sigs, shingles = [], [], [], [], []
        for pair, summary in zip(pairs, grades, strict=True):
            if pair["pair_id"] != summary["pair_id"]:
                raise RuntimeError(f"{self.work_dir / SUMMARY_FILE}: out of step with {c.pairs} at {pair['pair_id']}")
            action, reason, score, detail = verdict(pair, summary, c)
            if action == "kept" and index is not None:
                keep, why, match = index.check(f"{pair['question']}\n{pair['answer']}")
                if not keep:
                    action, reason, detail = "dropped", why, detail | match
            if action == "kept":
                reason = "selected"
                if c.near_dedup:
                    h64 = T.ngram_hashes(T.word_hashes(T.words(pair["question"])), c.dedup.ngram)
                    h32 = h64.astype(np.uint32)
                    ids.append(pair["pair_id"])
                    keys.append(quality_key(detail.get("scores")))
                    sigs.append(minhash.minhash_of_hashes(h32, c.dedup))
                    shingles.append(np.unique(h32))
            else:
                for criterion in detail.get("failed", ()):
                    self.stat_update(f"below.{criterion}")
            rows.append(self.decision(pair["pair_id"], action, reason, score=score, **detail))
        if ids:
            offsets = np.cumsum([0] + [len(s) for s in shingles]).astype(np.int64)
            folder = self.work_dir / "shingles"
            folder.mkdir(exist_ok=True)
            np.save(folder / f"{name}.offsets.npy", offsets)
            np.save(folder / f"{name}.npy", np.concatenate(shingles) if shingles else np.empty(0, np.uint32))
            self._signatures().write_shard(name, ids, keys, np.stack(sigs))
        with TableWriter(DECISION, self.work_dir / "verdicts" / f"{name}.parquet") as w:
            w.write(rows)
        self.stat_update("candidates", value=len(ids))
        yield from ()

    # -- after the shards

    def finish(self, stats):
        c = self.config
        dups = self._near_duplicates() if c.near_dedup else {}
        counts: Counter = Counter()
        sources: Counter = Counter()
        kept = 0
        verdicts = sorted((self.work_dir / "verdicts").glob("*.parquet"))
        pairs = iter_rows(self.path(c.pairs), QA_PAIR, columns=["pair_id", "kind", "question", "answer"])
        bar = progress(total=int(stats.get("items", 0)), desc="qa select: write", unit="pair", disable=self.quiet)
        with TableWriter(DECISION, self.out_dir / self.decisions_file) as decisions, \
                TableWriter(SFT_EXAMPLE, self.out_dir / self.output) as sft:
            out_rows, sft_rows = [], []
            for path in verdicts:
                for row in iter_rows(path, DECISION):
                    pair = next(pairs)
                    if pair["pair_id"] != row["item_id"]:
                        raise RuntimeError(f"{path}: verdict for {row['item_id']} where {c.pairs} has {pair['pair_id']}")
                    if row["action"] == "kept" and row["item_id"] in dups:
                        r = dups[row["item_id"]]
                        dropped = r.action == "dropped"
                        row = self.decision(row["item_id"], r.action, r.reason if dropped else "selected",
                                            score=r.score if dropped else row["score"], cluster_id=r.cluster_id,
                                            kept_id=r.kept_id, **(json.loads(row["detail"]) | r.detail))
                    counts[(row["action"], row["reason"])] += 1
                    out_rows.append(row)
                    if row["action"] == "kept":
                        kept += 1
                        sources[f"selected.{pair['kind']}"] += 1
                        sft_rows.append({"example_id": pair["pair_id"], "pair_id": pair["pair_id"], "source": pair["kind"],
                                         "messages": messages(pair["question"], pair["answer"], c.system_prompt)})
                    if len(out_rows) >= 10_000:
                        decisions.write(out_rows)
                        sft.write(sft_rows)
                        bar.update(len(out_rows))
                        out_rows, sft_rows = [], []
            decisions.write(out_rows)
            bar.update(len(out_rows))
            bar.close()
            sft.write(sft_rows)
            total = sum(counts.values())
            reasons = {r: n for (a, r), n in counts.items() if a != "kept"}
            ensure_some_kept(self.name, total, kept, reasons)
            general = self._mix(sft, kept) if c.general else {}
        actions: Counter = Counter()
        for (action, _), n in counts.items():
            actions[f"decisions.{action}"] += n
        return dict(actions) | {f"reason.{r}": n for r, n in reasons.items()} | {"selected": kept} | dict(sources) | general

    def summary(self, stats: dict) -> str:
        by_source = ", ".join(f"{int(n)} {k.split('.', 1)[1]}" for k, n in sorted(stats.items()) if k.startswith("selected."))
        return f"{super().summary(stats)}; {int(stats.get('selected', 0))} SFT examples ({by_source or 'none'})"

    def _near_duplicates(self) -> dict:
        """Pair id -> DedupResult for every pair in a near-duplicate cluster (kept or dropped)."""
        store = self._signatures()
        if not store.shards():
            return {}
        ids, keys, sigs = store.load()
        active = ~minhash.is_empty(sigs)
        c = self.config.dedup
        edges = band_candidates(sigs, c, active)
        if len(edges) == 0:
            return {}
        involved = np.unique(edges.ravel())
        sub = np.searchsorted(involved, edges)
        shard_rows = self._shingle_reader(store)
        sub_ids = [ids[i] for i in involved.tolist()]
        by_id = dict(zip(sub_ids, involved.tolist()))
        results = cluster_pairs(sub_ids, keys[involved], np.asarray(sigs[involved]), map(tuple, sub.tolist()), c,
                                shingles_of=lambda item_id: shard_rows(by_id[item_id]))
        return {r.item_id: r for r in results if r.reason in ("cluster_representative", "near_duplicate")}

    def _shingle_reader(self, store: SignatureStore):
        """Exact shingles of candidate row ``i`` (global, in store order), memory-mapped shard by shard."""
        folder = self.work_dir / "shingles"
        shards = [(np.load(folder / f"{s}.npy", mmap_mode="r"), np.load(folder / f"{s}.offsets.npy")) for s in store.shards()]
        starts = np.cumsum([0] + [len(o) - 1 for _, o in shards])

        def shingles(i: int) -> np.ndarray:
            k = int(np.searchsorted(starts, i, side="right")) - 1
            values, offsets = shards[k]
            j = i - int(starts[k])
            return np.asarray(values[offsets[j]:offsets[j + 1]])

        return shingles

    def _mix(self, sft: TableWriter, kept: int) -> dict:
        """Add ``general_ratio`` general examples per kept pair, drawn with ``seed``, in file order."""
        c = self.config
        available = count_general(c.general)
        wanted = round(c.general_ratio * kept)
        if wanted > available:
            note(f"qa select: {wanted} general examples wanted ({c.general_ratio} x {kept}), {c.general} has "
                 f"{available}: all of them are used")
        chosen = set(random.Random(c.seed).sample(range(available), min(wanted, available)))
        rows = []
        for n, chat in enumerate(read_general(c.general)):
            if n in chosen:
                rows.append({"example_id": f"general/{n}", "pair_id": None, "source": "general", "messages": chat})
                if len(rows) >= 10_000:
                    sft.write(rows)
                    rows = []
        sft.write(rows)
        return {"general.available": available, "general.wanted": wanted, "general.used": len(chosen)}
