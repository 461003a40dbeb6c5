"""The curation stages: clean -> dedup -> filter -> decontaminate, each documents in, documents out.

Every stage reads a ``document`` table and writes the documents it keeps (changed where it changes
them) plus ``decisions/<stage>.parquet`` with a row for every document it saw: kept, changed,
dropped or failed, the reason, and its score where it has one. A stage that would keep nothing
raises instead of writing an empty corpus, and one given a table with no rows refuses it, naming the
step that wrote it. Where they run is the executor's business; the defaults
chain the files: ``documents.parquet`` -> ``curated/clean.parquet`` -> ``curated/dedup.parquet`` ->
``curated/filter.parquet`` -> ``corpus.parquet``.
"""

from __future__ import annotations

import json
import pickle
from abc import abstractmethod
from collections import Counter
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from corpus.curate import minhash
from corpus.curate.clean import CleanConfig, clean_text, drop_until_next_section
from corpus.curate.decontaminate import SourceExclusion, front_matter, load_index, load_questions
from corpus.glyphs import is_cjk
from corpus.curate.dedup import cluster, exact_dedup, summary
from corpus.curate.filters import (
    HeuristicConfig,
    LanguageConfig,
    ensure_some_kept,
    heuristic_check,
    language_check,
)
from corpus.curate.minhash import DedupConfig, SignatureStore
from corpus.curate.quality import QualityClassifier, QualityParams, train_from_parquet
from corpus.curate.text import content_hash_of_words, words
from corpus.pages import join_texts
from corpus.run.progress import progress
from corpus.run.stage import OUT, EmptyOutputError, Stage, StageConfig, path_field, register_stage, writers_of
from corpus.run.progress import note
from schemas import DECISION, DOCUMENT, PAPER, TableWriter, count_rows, iter_batches, iter_row_range, iter_rows


class DocumentStage(Stage):
    """A stage over the rows of one document table, in order, sharded by row ranges."""

    output: str  # the kept documents, relative to the output folder

    def outputs(self):
        return {self.output: DOCUMENT, **super().outputs()}

    def input_path(self) -> str:
        return self.path(self.config.documents)

    def prepare(self):
        """Refuse an input table with no rows, naming the file and the step that wrote it."""
        path = self.input_path()
        if count_rows(path, DOCUMENT) == 0:
            writers = writers_of(self.config.documents[len(OUT) + 1:]) if self.config.documents.startswith(OUT) else []
            raise EmptyOutputError(f"{path} has no rows: " + (f"the {writers[0]} step kept nothing" if writers
                                                              else f"no documents to {self.name}"))

    def plan(self) -> list[int]:
        return list(range(count_rows(self.input_path(), DOCUMENT)))

    def documents(self, items: list[int]) -> Iterator[dict]:
        if items:
            yield from iter_row_range(self.input_path(), DOCUMENT, items[0], items[-1] + 1)

    def finish(self, stats):
        seen = stats.get("items", 0)
        kept = stats.get("decisions.kept", 0) + stats.get("decisions.changed", 0)
        reasons = {k: v for k, v in stats.items() if k.startswith("reason.")}
        ensure_some_kept(self.name, int(seen), int(kept), reasons)


class FilterStage(DocumentStage):
    """A document stage that keeps or drops each document as it is: subclasses write :meth:`check`
    (and :meth:`setup` for what a shard loads once); the loop, the rows and the counters are here."""

    def setup(self) -> None:
        """Load what :meth:`check` needs, once per shard (models, indexes)."""

    @abstractmethod
    def check(self, doc: dict) -> tuple[bool, str, float | None, dict]:
        """``(keep, reason, score, detail)`` for one document; detail goes into its decision row."""

    def process(self, items):
        self.setup()
        for doc in self.documents(items):
            keep, reason, score, detail = self.check(doc)
            if keep:
                yield self.output, [doc]
            else:
                self.stat_update(f"reason.{reason.split(':')[0]}")
            yield self.decisions_file, [self.decision(doc["paper_id"], "kept" if keep else "dropped", reason,
                                                      score=score, **detail)]


# ------------------------------------------------------------------------------------------------ clean


class CleanStageConfig(StageConfig):
    documents: str = path_field(f"{OUT}/documents.parquet", "documents to clean")
    rules: CleanConfig = Field(default_factory=CleanConfig, description="which cleanup rules run")


@register_stage
class Clean(DocumentStage):
    name = "clean"
    verb = "curate clean"
    config_class = CleanStageConfig
    description = ("Clean text: Unicode, bad glyphs, tables of contents, whitespace, hyphenation leftovers, OCR repetitions; "
                   "optionally references/acknowledgements.")
    output = "curated/clean.parquet"

    def process(self, items):
        rules = self.config.rules
        for doc in self.documents(items):
            if doc["text"] is None:
                yield self.decisions_file, [self.decision(doc["paper_id"], "dropped", "no_text", extract_reason=doc["reason"])]
                self.stat_update("reason.no_text")
                continue
            cjk = is_cjk(doc["text"])  # a document-wide answer for every page
            if doc["pages"]:  # page by page, so every page's offsets stay exact
                texts, changes, in_references = [], Counter(), False
                for page in doc["pages"]:
                    extractor = "pdf" if page["extractor"] == "pymupdf" else page["extractor"]  # a text layer: no OCR loops
                    raw = doc["text"][page["start"]:page["end"]]
                    if in_references:  # the reference list began on an earlier page
                        raw, ended = drop_until_next_section(raw)
                        in_references = not ended
                        changes["references_removed"] += 1
                    new, changed = clean_text(raw, rules, extractor=extractor, cjk=cjk)
                    in_references = in_references or "references_removed" in changed
                    texts.append(new)
                    changes.update(c.split(":")[0] for c in changed)
                text, pages = _rejoin(texts, doc["pages"])
            else:
                text, changed = clean_text(doc["text"], rules, extractor=doc["extractor"], cjk=cjk)
                pages, changes = doc["pages"], Counter(c.split(":")[0] for c in changed)
            if not text.strip():
                yield self.decisions_file, [self.decision(doc["paper_id"], "dropped", "empty_after_cleaning")]
                self.stat_update("reason.empty_after_cleaning")
                continue
            action = "changed" if text != doc["text"] else "kept"
            yield self.output, [doc | {"text": text, "pages": pages, "n_chars": len(text)}]
            yield self.decisions_file, [self.decision(doc["paper_id"], action, ",".join(sorted(changes)) or "unchanged",
                                                  score=float(len(text) - len(doc["text"])), rules=dict(changes))]


def _rejoin(texts: list[str], pages: list[dict]) -> tuple[str, list[dict]]:
    """Cleaned page texts joined as extraction joins them, with each page's offsets and characters renewed."""
    text, offsets = join_texts(texts)
    return text, [
        page | {"start": start, "end": end, "chars": len(t) - t.count(" ") - t.count("\n")}
        for page, t, (start, end) in zip(pages, texts, offsets)
    ]


# ------------------------------------------------------------------------------------------------ dedup


class DedupStageConfig(StageConfig):
    documents: str = path_field(f"{OUT}/curated/clean.parquet", "documents to deduplicate")
    minhash: DedupConfig = Field(default_factory=DedupConfig, description="shingles, permutations, LSH and the Jaccard target")
    exact_verify: bool = Field(True, description="re-check pairs near the threshold on their exact shingles")


@register_stage
class Dedup(DocumentStage):
    """Exact (content hash) then near-duplicate (MinHash LSH, verified, union-find) deduplication.

    Shards compute signatures and content hashes in parallel and store them (``_work/``, one
    ``.npy`` per shard); ``finish`` clusters them in one process without the texts in memory, then
    streams the documents once more to write the kept ones and a decision for every one.
    """

    name = "dedup"
    verb = "curate dedup"
    config_class = DedupStageConfig
    description = "Deduplicate: exact content hash, then MinHash near-duplicates (kept: longest, then smallest id)."
    output = "curated/dedup.parquet"

    def shard_outputs(self):
        return {}

    def store(self) -> SignatureStore:
        return SignatureStore(self.work_dir / "signatures", self.config.minhash)

    def process(self, items):
        if not items:
            return
        ids, lengths, hashes = [], [], []
        sigs = np.empty((len(items), self.config.minhash.num_perm), dtype=np.uint32)
        for i, doc in enumerate(self.documents(items)):
            ws = words(doc["text"] or "")  # once, for the signature and the exact hash
            sigs[i] = minhash.signature_of_words(ws, self.config.minhash)
            ids.append(doc["paper_id"])
            lengths.append(len(doc["text"] or ""))
            hashes.append(content_hash_of_words(ws))
        name = f"{items[0]:010d}"
        self.store().write_shard(name, ids, lengths, sigs)
        path = self.work_dir / "hashes" / f"{name}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(hashes))
        self.stat_update("signatures", value=len(ids))
        yield from ()  # the rows are written by finish, once the clusters are known

    def finish(self, stats):
        ids, lengths, sigs = self.store().load()
        hashes = [h for f in sorted((self.work_dir / "hashes").glob("*.json")) for h in json.loads(f.read_text())]
        exact = exact_dedup(ids, hashes, lengths)
        survivors = np.array([i for i, r in enumerate(exact) if r.action == "kept"], dtype=np.int64)
        near = cluster([ids[i] for i in survivors], lengths[survivors], np.asarray(sigs[survivors]), self.config.minhash,
                       shingles_of=self._shingles_reader() if self.config.exact_verify else None)
        results = list(exact)
        for i, r in zip(survivors.tolist(), near):
            if exact[i].reason == "cluster_representative" and r.reason == "unique":
                continue  # the exact-duplicate representative keeps its cluster
            results[i] = r
        final = {r.item_id: r for r in results}
        for r in results:  # exact copies follow their paper into its near-duplicate cluster
            rep = final.get(r.kept_id) if r.reason == "exact_duplicate" else None
            if rep is None or rep.cluster_id is None or rep.cluster_id == r.cluster_id:
                continue
            if rep.action == "dropped":  # ... and to the paper kept for it
                r.kept_id, r.score = rep.kept_id, rep.score
            r.cluster_id, r.detail = rep.cluster_id, r.detail | {"exact_copy_of": rep.item_id}
        kept = {r.item_id for r in results if r.action == "kept"}
        counts = summary(results)
        ensure_some_kept(self.name, len(results), len(kept), counts)
        with TableWriter(DECISION, self.out_dir / self.decisions_file) as decisions:
            decisions.write([r.decision(self.name) for r in results])
        kept_ids = pa.array(sorted(kept), pa.large_string())
        with TableWriter(DOCUMENT, self.out_dir / self.output) as out:
            batches = iter_batches(self.input_path(), DOCUMENT, batch_size=DOCUMENT.row_group_size)
            bar = progress(total=len(results), desc="dedup: write kept", unit="doc", disable=self.quiet)
            for batch in batches:
                out.write(batch.filter(pc.is_in(batch.column("paper_id"), value_set=kept_ids)))
                bar.update(batch.num_rows)
            bar.close()
        return {f"decisions.{r}": n for r, n in Counter(r.action for r in results).items()} | {
            f"reason.{k}": v for k, v in counts.items()}

    def _shingles_reader(self):
        """Shingle hashes of one document by id, read on demand (only pairs near the threshold need it)."""
        index = {pid: i for i, pid in enumerate(r["paper_id"] for r in iter_rows(self.input_path(), DOCUMENT, columns=["paper_id"]))}
        config = self.config.minhash

        @lru_cache(maxsize=256)
        def shingles(item_id: str):
            i = index[item_id]
            (doc,) = iter_row_range(self.input_path(), DOCUMENT, i, i + 1, columns=["text"])
            return minhash.shingle_hashes32(doc["text"] or "", config)

        return shingles


# ------------------------------------------------------------------------------------------------ filter


class FilterStageConfig(StageConfig):
    documents: str = path_field(f"{OUT}/curated/dedup.parquet", "documents to filter")
    language: LanguageConfig = Field(default_factory=LanguageConfig, description="languages kept (py3langid)")
    heuristics: HeuristicConfig = Field(default_factory=HeuristicConfig, description="length, garbled tokens, repetition")
    quality_model: str | None = path_field(None, "fastText quality/domain model from `curate filter train` (none: not applied)")
    quality_threshold: float = Field(0.5, ge=0, le=1, description="minimum probability of the positive label")


@register_stage
class Filter(FilterStage):
    name = "filter"
    verb = "curate filter apply"
    config_class = FilterStageConfig
    description = "Filter: language (py3langid), science-safe heuristics, and an optional fastText quality classifier."
    output = "curated/filter.parquet"

    def input_files(self):
        model = self.config.quality_model  # with the training record beside it
        return super().input_files() + ([model + ".manifest.json"] if model else [])

    def setup(self) -> None:
        c = self.config
        self.classifier = QualityClassifier.load(c.quality_model) if c.quality_model else None

    def check(self, doc):
        c, text = self.config, doc["text"] or ""
        keep, reason, scores = language_check(text, c.language)
        if keep:
            keep, reason, more = heuristic_check(text, c.heuristics)
            scores |= more
        score = None
        if keep and self.classifier is not None:
            keep, reason, score = self.classifier.check(text, c.quality_threshold)
        return keep, reason or "passed", score, scores


class FilterTrainConfig(StageConfig):
    positives: list[str] = path_field([], "Parquet files of positive examples (a `text` column, e.g. documents)")
    negatives: list[str] = path_field([], "Parquet files of negative examples")
    model: str = Field("models/quality.bin", description="where the model goes, relative to the output folder")
    params: QualityParams = Field(default_factory=QualityParams, description="fastText training settings")


@register_stage
class FilterTrain(Stage):
    """Train the fastText quality/domain classifier (DCLM-style) that ``filter`` applies."""

    name = "filter_train"
    verb = "curate filter train"
    config_class = FilterTrainConfig
    description = "Train the fastText quality classifier from positive and negative example Parquet."

    def outputs(self):
        return {self.config.model: None, self.config.model + ".manifest.json": None}

    def plan(self):
        return []

    def process(self, items):
        return iter(())

    def finish(self, stats):
        if not self.config.positives or not self.config.negatives:
            raise ValueError("filter train needs both --positives and --negatives Parquet files")
        path = train_from_parquet(self.config.positives, self.config.negatives, self.out_dir / self.config.model,
                                  self.config.params)
        return {"model_bytes": path.stat().st_size}


# ------------------------------------------------------------------------------------------------ decontaminate


class DecontaminateConfig(StageConfig):
    documents: str = path_field(f"{OUT}/curated/filter.parquet", "documents to decontaminate")
    papers: str | None = path_field(f"{OUT}/papers.parquet", "papers table (journal-ref, DOI) for exclusion by source; none: by arXiv id only")
    questions: list[str] = path_field([], "benchmark question files (JSON array, JSONL or Parquet: question, A-D, optional answer)")
    ngram: int = Field(13, ge=1, description="overlap n-gram size over normalised words")
    min_words: int = Field(8, ge=1, description="shorter questions (but at least this long) must match whole")
    journal_ref_patterns: list[str] = Field(
        default_factory=lambda: list(SourceExclusion().journal_ref_patterns),
        description="regexes of journal references to exclude (default: Annual Review of A&A)")
    doi_prefixes: list[str] = Field(default_factory=lambda: list(SourceExclusion().doi_prefixes),
                                    description="DOI prefixes to exclude (default: Annual Review of A&A)")
    text_patterns: list[str] = Field(
        default_factory=lambda: list(SourceExclusion().text_patterns),
        description="regexes searched in each document's front matter (first page, at least 5000 characters) "
                    "to exclude (default: the Annual Reviews copyright line, running head and DOI)")
    exclude_dois: str | None = path_field(None, "file of DOIs to exclude, one per line")
    exclude_arxiv_ids: str | None = path_field(None, "file of arXiv ids to exclude, one per line (matched against "
                                                      "every id a paper is known by: its id, the arXiv id of a "
                                                      "paper named by hash, arXiv's stamp in its text, its DOI)")


INDEX_FILE = "questions.pkl"  # the question index, built once per step in work_dir


@register_stage
class Decontaminate(FilterStage):
    name = "decontaminate"
    verb = "curate decontaminate"
    config_class = DecontaminateConfig
    description = "Drop documents overlapping benchmark questions (13-gram) or from excluded sources; writes corpus.parquet."
    output = "corpus.parquet"

    def validate(self) -> None:
        """Read every question file before any step runs: one that cannot be read, or has no usable
        question, fails the run at once (rows left out are reported when the step runs)."""
        for path in self.config.questions:
            load_questions(path)

    def prepare(self):
        """Build the question index once for the step (the shards load it from ``work_dir``); count
        and report the rows left out of it."""
        super().prepare()
        c = self.config
        if not c.questions:
            return {}
        skipped: list[str] = []
        index = load_index(c.questions, c.ngram, c.min_words, skipped)
        (self.work_dir / INDEX_FILE).write_bytes(pickle.dumps(index))
        if skipped:
            note(f"decontaminate: {len(skipped)} question rows skipped, e.g. " + "; ".join(skipped[:3]))
        return {"questions": index.n_questions, "questions.skipped_rows": len(skipped),
                "questions.too_short": len(index.skipped)}

    def setup(self) -> None:
        c = self.config
        self.index = pickle.loads((self.work_dir / INDEX_FILE).read_bytes()) if c.questions else None
        self.exclusion = SourceExclusion.from_lists(c.exclude_dois, c.exclude_arxiv_ids,
                                                    journal_ref_patterns=tuple(c.journal_ref_patterns),
                                                    doi_prefixes=tuple(c.doi_prefixes),
                                                    text_patterns=tuple(c.text_patterns))
        self.papers = self._papers()

    def check(self, doc):
        paper = self.papers.get(doc["paper_id"], {"paper_id": doc["paper_id"]})
        reason = self.exclusion.excluded(paper, front_matter(doc["text"] or "", doc["pages"]))
        if reason is not None:
            return False, reason, None, {"journal_ref": paper.get("journal_ref"), "doi": paper.get("doi")}
        if self.index is not None:
            keep, reason, detail = self.index.check(doc["text"] or "")
            if reason is not None:
                return False, reason, None, detail
        return True, "clean", None, {}

    def _papers(self) -> dict[str, dict[str, Any]]:
        if self.config.papers is None:
            return {}
        path = self.path(self.config.papers)
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: papers table not found (needed for exclusion by journal-ref and DOI; "
                                    "set papers to none to exclude by arXiv id only)")
        return {r["paper_id"]: r for r in iter_rows(path, PAPER, columns=["paper_id", "doi", "journal_ref", "flags"])}
