"""The ``ingest`` stage: arXiv metadata + PDFs + LaTeX sources in, one ``Paper`` row per paper out.

``prepare`` (once, in the driving process) streams the metadata, lists every file location (folders,
tars, fsspec URLs, arXiv bulk manifests, fetched and md5-verified resumably), and joins files to
metadata by the arXiv id in their names; a PDF whose name holds none is read for arXiv's margin stamp,
and PDFs and sources left unpaired are paired by title (:mod:`corpus.ingest.pairing`; the paper's
flags say ``paired_by:arxiv_stamp``, ``named_by:arxiv_stamp`` or ``paired_by:title``). A paper with
no metadata row is named by its arXiv id when a name or stamp gave one, else by its content hash;
with metadata for that id it is that paper, filtered like it. The shards then hash each paper's files, sniff what each
source is by its magic bytes, and write the rows. Every file that does not become a paper, and every
unreadable metadata line or chunk, leaves a ``Decision`` row saying why.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Literal

from pydantic import Field, field_validator

from corpus.arxiv_ids import content_id, find_arxiv_stamp
from corpus.archives import HEAD_BYTES, sniff_source_kind
from corpus.files import SourceError, open_input, printable_name, redact_url
from corpus.ingest import titles
from corpus.ingest.pairing import first_page, pair_by_title, source_title
from corpus.ingest.arxiv_metadata import MetadataError, MetadataFilter, MetadataRecord, MetadataStats, read_metadata
from corpus.ingest.sources import (
    SourceFile,
    chunk_url,
    fetch_chunk,
    is_manifest,
    list_inputs,
    read_manifest,
    select_chunks,
)
from corpus.publish.licenses import LICENSES, check_ids, license_id
from corpus.run.progress import progress
from corpus.run.stage import OUT, EmptyOutputError, Stage, StageConfig, how_field, path_field, register_stage
from schemas import PAPER, sha256_file


class IngestConfig(StageConfig):
    metadata: list[str] = path_field([], "arXiv metadata snapshots (Kaggle/Cornell JSON Lines; .gz etc. ok), paths or URLs")
    pdfs: list[str] = path_field([], "where PDFs are: folders, tars, fsspec URLs (gs://arxiv-dataset/...), or arXiv_pdf_manifest.xml")
    sources: list[str] = path_field([], "where LaTeX sources are: folders, src tars, fsspec URLs, or arXiv_src_manifest.xml")
    categories: list[str] = Field(["astro-ph*", "gr-qc"], description="category globs; cross-lists count")
    include_cross_lists: bool = Field(True, description="match any category, not only the primary one")
    since: date | None = Field(None, description="first-version date on or after (YYYY-MM-DD)")
    until: date | None = Field(None, description="first-version date on or before (YYYY-MM-DD)")
    licenses: list[str] = Field([], description=(
        "licence ids to keep, e.g. cc-by-4.0 cc0-1.0 for a dataset meant for redistribution (empty: every licence). "
        f"Ids: {', '.join(LICENSES)} (null in arXiv's metadata is assumed-1991-2003; a paper with no metadata "
        "row is unknown). Every paper under another licence gets a dropped/filtered_out decision naming it"))
    bulk_since: str | None = Field(None, description="bulk manifests: first chunk month to fetch (YYMM)")
    bulk_until: str | None = Field(None, description="bulk manifests: last chunk month to fetch (YYMM)")
    unmatched_files: Literal["keep", "drop"] = Field(
        "keep", description="files with no matching metadata row: keep as papers named by content hash, or drop (recorded)")
    require_files: bool = Field(True, description="drop (recorded) metadata rows that have no PDF or source file")
    download_dir: str = path_field(f"{OUT}/_downloads", "where fetched bulk chunks are kept (reused on rerun)")
    storage_options: dict[str, Any] = how_field(default_factory=dict, description=(
        "fsspec options (credentials, anon, endpoint...) passed to every open and listing of a remote path "
        "this step reads: metadata, input folders, bulk manifests and chunks, paper files (s3://arxiv/ also "
        "gets requester_pays=True unless set here); recorded in the manifest only with every value "
        "replaced by <redacted>"))


    @field_validator("licenses")
    @classmethod
    def _known_licenses(cls, value: list[str]) -> list[str]:
        return check_ids(part for v in value for part in v.split(","))  # --licenses cc-by-4.0,cc0-1.0 too


class NothingIngested(EmptyOutputError):
    """An ingest run that kept no paper."""


@dataclass
class PaperItem:
    """One paper to write: its metadata (if any) and its files."""

    key: str  # sort key: the paper id when known
    record: MetadataRecord | None = None
    pdf: SourceFile | None = None
    src: SourceFile | None = None
    arxiv_id: str | None = None
    content_sha256: str | None = None  # papers without metadata: hash of the file naming them
    flags: list[str] = field(default_factory=list)  # how its files were joined when not by name


@dataclass
class DecisionItem:
    key: str
    item_id: str
    action: str
    reason: str
    detail: dict = field(default_factory=dict)


def hash_and_head(url: str, storage_options: dict | None = None) -> tuple[str, bytes]:
    """sha256 of a file (local, fsspec URL or tar member) and its first ``HEAD_BYTES``, in one read."""
    head = bytearray()

    def keep_head(block: bytes) -> None:
        if len(head) < HEAD_BYTES:
            head.extend(block[: HEAD_BYTES - len(head)])

    with open_input(url, storage_options) as f:
        digest = sha256_file(f, on_block=keep_head)
    return digest, bytes(head)


def pdf_title(url: str, storage_options: dict | None = None) -> tuple[str | None, str]:
    """Title of a PDF (:func:`corpus.ingest.titles.pdf_title`: its metadata title when plausible, else
    the largest text at the top of page 1) and where it came from."""
    import pymupdf

    try:
        with open_input(url, storage_options) as f:
            doc = pymupdf.open(stream=f.read(), filetype="pdf")
        with doc:
            return titles.pdf_title(doc)
    except Exception:  # a corrupt PDF still ingests; extraction will record the problem
        pass
    return None, "no_title"


@register_stage
class Ingest(Stage):
    name = "ingest"
    config_class = IngestConfig
    description = "Ingest arXiv metadata, PDFs and LaTeX sources into one Paper row per paper."

    def outputs(self):
        return {"papers.parquet": PAPER, **super().outputs()}

    # -- prepare: join metadata and file listings ---------------------------------------------
    def prepare(self) -> None:
        c = self.config
        decisions: list[DecisionItem] = []
        records: dict[str, MetadataRecord] = {}
        filtered_out: dict[str, str] = {}  # arxiv id -> "category" / "date": rows the filter excluded
        counts: dict[str, int] = {}
        flt = MetadataFilter(list(c.categories), c.since, c.until, c.include_cross_lists)
        for path in c.metadata:
            stats = MetadataStats()
            records_read = read_metadata(path, flt, storage_options=c.storage_options, stats=stats,
                                         filtered_out=filtered_out)
            for item in progress(records_read, desc=f"metadata {path.rsplit('/', 1)[-1]}", unit="paper", disable=self.quiet):
                if isinstance(item, MetadataError):
                    decisions.append(DecisionItem(f"!{item.item_id}", item.item_id, "failed", "malformed_metadata_line",
                                                  {"file": item.path, "line": item.line, "error": item.reason}))
                else:
                    old = records.get(item.paper_id)
                    if old is None or len(item.versions) >= len(old.versions):
                        records[item.paper_id] = item
            for key in ("lines", "errors", "parsed", "matched", "duplicates"):
                counts[f"metadata.{key}"] = counts.get(f"metadata.{key}", 0) + getattr(stats, key)
        licensed_out = self._filter_licenses(records, filtered_out)
        if licensed_out:
            counts["metadata.filtered.license"] = len(licensed_out)
        for arxiv_id, why in filtered_out.items():  # rows the filter removed get no decision row: count them
            if why == "license":
                continue
            if arxiv_id not in records:  # (an id with another, matching row is not filtered out)
                counts[f"metadata.filtered.{why}"] = counts.get(f"metadata.filtered.{why}", 0) + 1
        files: dict[str, dict[str, SourceFile]] = {}  # arxiv id -> role -> file
        loose: list[SourceFile] = []  # files whose names hold no arXiv id
        for role, locations in (("pdf", c.pdfs), ("src", c.sources)):
            for location in locations:
                for sf in self._list(self.path(location), role, decisions):
                    if sf.paper_id is None:
                        loose.append(sf)
                    else:
                        self._add(files, sf, decisions)
        how: dict[str, list[str]] = {}  # arxiv id, or a loose PDF's url -> flags saying how it was joined
        loose_pairs = self._pair(files, loose, how, decisions, records)
        counts["files.paired_by_arxiv_stamp"] = sum("paired_by:arxiv_stamp" in f for f in how.values())
        counts["files.named_by_arxiv_stamp"] = sum("named_by:arxiv_stamp" in f for f in how.values())
        counts["files.paired_by_title"] = sum("paired_by:title" in f for f in how.values())
        items: list[PaperItem | DecisionItem] = list(decisions)
        for arxiv_id, roles in files.items():
            record = records.get(arxiv_id)
            if record is None and arxiv_id in filtered_out:  # that paper, excluded by the filter
                for sf in roles.values():
                    items.append(DecisionItem(arxiv_id, sf.url, "dropped", "filtered_out",
                                              self._filter_detail(arxiv_id, filtered_out[arxiv_id], sf.url)))
                counts["files.filtered_out"] = counts.get("files.filtered_out", 0) + len(roles)
                continue
            if record is None and (c.metadata and c.unmatched_files == "drop"):
                for sf in roles.values():
                    items.append(DecisionItem(arxiv_id, sf.url, "dropped", "no_matching_metadata",
                                              {"arxiv_id": arxiv_id, "filter": c.categories}))
                continue
            items.append(PaperItem(arxiv_id, record, roles.get("pdf"), roles.get("src"), arxiv_id, flags=how.get(arxiv_id, [])))
        for arxiv_id, record in licensed_out.items():  # a paper with files has a row per file (above)
            if arxiv_id not in files:
                items.append(DecisionItem(arxiv_id, arxiv_id, "dropped", "filtered_out",
                                          self._filter_detail(arxiv_id, "license", None)))
        for arxiv_id, record in records.items():
            if arxiv_id not in files:
                if c.require_files:
                    items.append(DecisionItem(arxiv_id, arxiv_id, "dropped", "no_files", {"title": record.title}))
                else:
                    items.append(PaperItem(arxiv_id, record))
        for pdf, src in loose_pairs:
            items.append(PaperItem(f"~{(pdf or src).url}", None, pdf, src, flags=how.get((pdf or src).url, [])))
        items = self._name_unmatched(self._unlicensed_without_metadata(items, counts))
        items.sort(key=lambda i: i.key)
        (self.work_dir / "plan.pkl").write_bytes(pickle.dumps(items))
        counts["files.listed"] = sum(len(r) for r in files.values()) + sum((p is not None) + (s is not None)
                                                                          for p, s in loose_pairs)
        return counts

    @staticmethod
    def _add(files: dict[str, dict[str, SourceFile]], sf: SourceFile, decisions: list[DecisionItem]) -> bool:
        """File ``sf`` under its arXiv id and role; a second file for the same place is dropped (recorded)."""
        have = files.setdefault(sf.paper_id, {})
        if sf.role in have:
            decisions.append(DecisionItem(f"!{sf.url}", sf.url, "dropped", "older_or_duplicate_file",
                                          {"kept": have[sf.role].url}))
            return False
        have[sf.role] = sf
        return True

    def _pair(self, files: dict[str, dict[str, SourceFile]], loose: list[SourceFile], how: dict[str, list[str]],
              decisions: list[DecisionItem], records: dict[str, MetadataRecord],
              ) -> list[tuple[SourceFile | None, SourceFile | None]]:
        """Join the files whose names hold no arXiv id (see :mod:`corpus.ingest.pairing`): a PDF with
        arXiv's stamp is filed under the stamped id; then unpaired PDFs and sources are paired by the
        source's title on the PDF's page 1 (a file with a metadata row is represented by the row's
        title, so only files without one are read). Returns the loose files that stay loose, as
        ``(pdf, src)`` (a title pair of two loose files, or one file alone)."""
        opts = self.config.storage_options
        pages: dict[str, str] = {}  # PDF url -> its metadata title and page-1 text
        loose_pdfs, loose_srcs = [], [sf for sf in loose if sf.role == "src"]
        for sf in (sf for sf in loose if sf.role == "pdf"):
            page = first_page(sf.url, opts)
            stamp = find_arxiv_stamp(page.text) if page else None
            if page:
                pages[sf.url] = f"{page.metadata_title}\n{page.text}"
            if stamp is None:
                loose_pdfs.append(sf)
                continue
            stamped = replace(sf, paper_id=stamp[0], version=stamp[1])
            pages[stamped.url] = pages.get(sf.url, "")
            if self._add(files, stamped, decisions):
                how[stamp[0]] = ["paired_by:arxiv_stamp" if "src" in files[stamp[0]] else "named_by:arxiv_stamp"]
        # candidates: unpaired files; two with (different) arXiv ids are never one paper
        pdfs = {sf.url: sf for sf in loose_pdfs}
        srcs = {sf.url: sf for sf in loose_srcs}
        if loose_srcs:
            pdfs |= {r["pdf"].url: r["pdf"] for r in files.values() if set(r) == {"pdf"}}
        if loose_pdfs:
            srcs |= {r["src"].url: r["src"] for r in files.values() if set(r) == {"src"}}
        def known_title(sf: SourceFile) -> str | None:  # a metadata row's title spares reading the file
            record = records.get(sf.paper_id) if sf.paper_id else None
            return record.title if record is not None and record.title else None

        titles = {}
        for url, sf in (srcs.items() if pdfs else ()):
            if (title := known_title(sf) or source_title(sf, opts)) is not None:
                titles[url] = title
        for url, sf in (pdfs.items() if titles else ()):
            if url not in pages and (title := known_title(sf)) is not None:
                pages[url] = title
            elif url not in pages and (page := first_page(url, opts)) is not None:
                pages[url] = f"{page.metadata_title}\n{page.text}"
        ids = {url: sf.paper_id for url, sf in (pdfs | srcs).items()}
        paired: set[str] = set()
        alone = []
        for pdf_url, src_url, coverage in pair_by_title(titles, {u: pages[u] for u in pdfs if u in pages}, ids):
            pdf, src = pdfs[pdf_url], srcs[src_url]
            paired |= {pdf_url, src_url}
            flags = ["paired_by:title"]
            arxiv_id = pdf.paper_id or src.paper_id
            if arxiv_id is None:
                alone.append((pdf, src))
                how[pdf.url] = flags
                continue
            other = src if pdf.paper_id else pdf
            files[arxiv_id][other.role] = replace(other, paper_id=arxiv_id, version=None)
            how[arxiv_id] = how.get(arxiv_id, []) + flags
        alone += [(sf, None) for sf in loose_pdfs if sf.url not in paired]
        alone += [(None, sf) for sf in loose_srcs if sf.url not in paired]
        return alone

    def _filter_licenses(self, records: dict[str, MetadataRecord], filtered_out: dict[str, str]) -> dict[str, MetadataRecord]:
        """Take the papers whose licence is not in ``licenses`` out of ``records`` (marked ``"license"``
        in ``filtered_out``); returns them, by id."""
        allowed = set(self.config.licenses)
        self._licensed_out: dict[str, str | None] = {}  # id -> its licence URL as arXiv gives it
        if not allowed:
            return {}
        out = {i: r for i, r in records.items() if license_id(r.license) not in allowed}
        for arxiv_id in out:
            del records[arxiv_id]
            filtered_out[arxiv_id] = "license"
        self._licensed_out = {i: r.license for i, r in out.items()}
        return out

    def _unlicensed_without_metadata(self, items: list, counts: dict[str, int]) -> list:
        """With a ``licenses`` filter, a paper with no metadata row (its licence unknown) is dropped,
        with a row naming its file, unless ``unknown`` is allowed."""
        allowed = self.config.licenses
        if not allowed or "unknown" in allowed:
            return items
        out = []
        for item in items:
            if isinstance(item, PaperItem) and item.record is None:
                sf = item.pdf or item.src
                detail = {"arxiv_id": item.arxiv_id, "file": sf.url, "filter": "licenses", "license": None,
                          "license_id": "unknown", "licenses": list(allowed), "why": "no metadata row gives its licence"}
                out.append(DecisionItem(item.key, sf.url, "dropped", "filtered_out", detail))
                counts["files.filtered.license"] = counts.get("files.filtered.license", 0) + 1
            else:
                out.append(item)
        return out

    def _filter_detail(self, arxiv_id: str, why: str, url: str | None) -> dict:
        """What a ``filtered_out`` decision says: the paper, the file, and the filter that excluded it."""
        c = self.config
        if why == "license":
            url_given = self._licensed_out[arxiv_id]
            return {"arxiv_id": arxiv_id, "file": url, "filter": "licenses", "license": url_given,
                    "license_id": license_id(url_given), "licenses": list(c.licenses)}
        if why == "category":
            return {"arxiv_id": arxiv_id, "file": url, "filter": "categories", "categories": list(c.categories),
                    "include_cross_lists": c.include_cross_lists}
        return {"arxiv_id": arxiv_id, "file": url, "filter": "since/until", "since": c.since, "until": c.until}

    def _list(self, location: str, role: str, decisions: list[DecisionItem]) -> Iterator[SourceFile]:
        c = self.config
        try:
            if not is_manifest(location):
                yield from self._named(list_inputs(location, storage_options=c.storage_options, role=role), decisions)
                return
            chunks = select_chunks(read_manifest(location, storage_options=c.storage_options), c.bulk_since, c.bulk_until)
            for chunk in progress(chunks, desc=f"fetch {role} chunks", unit="chunk", disable=self.quiet):
                url = chunk_url(location, chunk.filename)
                try:
                    got = fetch_chunk(url, self.path(c.download_dir), md5=chunk.md5sum, size=chunk.size,
                                      storage_options=c.storage_options)
                    yield from self._named(list_inputs(str(got.path), role=role), decisions)
                except SourceError as e:
                    decisions.append(DecisionItem(f"!{url}", redact_url(url), "failed", "chunk_unavailable", {"error": str(e)}))
        except SourceError as e:
            decisions.append(DecisionItem(f"!{location}", redact_url(location), "failed", "location_unavailable",
                                          {"error": str(e)}))

    @staticmethod
    def _named(files: Iterator[SourceFile], decisions: list[DecisionItem]) -> Iterator[SourceFile]:
        """The listed files whose names are text; a name that is not UTF-8 (which no table can hold)
        becomes a failed decision naming the file, its bytes shown as ``\\xNN``."""
        for sf in files:
            try:
                sf.url.encode("utf-8")
            except UnicodeEncodeError:
                shown = printable_name(sf.url)
                decisions.append(DecisionItem(f"!{shown}", shown, "failed", "undecodable_file_name",
                                              {"error": "the file name is not UTF-8; rename the file"}))
                continue
            yield sf

    def _name_unmatched(self, items: list) -> list:
        """Papers with no metadata row are named by the arXiv id their file name or stamp gave, else by
        the sha256 of their PDF (else source). A paper whose file has the bytes of one already named
        is dropped as a duplicate (those with an arXiv id are named first, so a copy without one goes)."""
        seen: dict[str, str] = {}  # sha256 -> the file named first
        unmatched = [i for i in items if isinstance(i, PaperItem) and i.record is None and (i.pdf or i.src)]
        out = [i for i in items if not isinstance(i, PaperItem) or i.record is not None]
        for item in sorted(unmatched, key=lambda i: (i.arxiv_id is None, i.key)):
            sf = item.pdf or item.src
            try:
                sha, _ = hash_and_head(sf.url, self.config.storage_options)
            except (OSError, ValueError, SourceError) as e:
                out.append(DecisionItem(f"!{sf.url}", sf.url, "failed", "unreadable_file", {"error": f"{type(e).__name__}: {e}"}))
                continue
            if sha in seen:
                out.append(DecisionItem(f"!{sf.url}", sf.url, "dropped", "duplicate_file", {"same_as": seen[sha]}))
                continue
            seen[sha] = sf.url
            item.key, item.content_sha256 = item.arxiv_id or content_id(sha), sha
            out.append(item)
        return out

    def finish(self, stats: dict[str, float]) -> None:
        """Refuse a run that kept no paper, saying why (0 papers is a misconfiguration, never a result)."""
        if stats.get("rows.papers.parquet", 0):
            return
        c = self.config
        causes = []
        if not (c.metadata or c.pdfs or c.sources):
            causes.append("no metadata, pdfs or sources given")
        if c.metadata and not stats.get("metadata.matched", 0):
            dates = "".join(f", {k} {v}" for k, v in (("since", c.since), ("until", c.until)) if v)
            causes.append(f"no metadata row matched categories {list(c.categories)}{dates} "
                          f"(of {int(stats.get('metadata.parsed', 0))} rows read)")
        elif c.metadata and not (c.pdfs or c.sources) and c.require_files:
            causes.append("metadata given but no --pdfs or --sources (require_files drops every row without a file; "
                          "set require_files false to keep metadata-only papers)")
        outcome = ", ".join(f"{k.removeprefix('decisions.')} {int(v)}" for k, v in sorted(stats.items())
                            if k.startswith("decisions."))
        if stats.get("metadata.filtered.license", 0) or stats.get("files.filtered.license", 0):
            n = int(stats.get("metadata.filtered.license", 0) + stats.get("files.filtered.license", 0))
            causes.append(f"{n} paper(s) under licences not in licenses {list(c.licenses)}")
        causes.append(f"decisions: {outcome or 'none'} (see {self.decisions_file})")
        raise NothingIngested(f"ingest kept 0 of {int(stats.get('items', 0))} items: " + "; ".join(causes))

    # -- shards ---------------------------------------------------------------------------------
    def plan(self) -> list:
        return pickle.loads((self.work_dir / "plan.pkl").read_bytes())

    def process(self, items: list) -> Iterator[tuple[str, list[dict]]]:
        for item in items:
            if isinstance(item, DecisionItem):
                yield self.decisions_file, [self.decision(item.item_id, item.action, item.reason, **item.detail)]
                continue
            try:
                row = self.paper_row(item)
            except Exception as e:  # one unreadable file never stops the run: it gets a failed row
                url = (item.pdf or item.src).url if (item.pdf or item.src) else item.key
                yield self.decisions_file, [self.decision(item.key, "failed", "unreadable_file",
                                                                 file=url, error=f"{type(e).__name__}: {e}")]
                continue
            yield "papers.parquet", [row]
            yield self.decisions_file, [self.decision(row["paper_id"], "kept", "ingested",
                                                             pdf=row["pdf_path"], source=row["source_path"],
                                                             source_kind=row["source_kind"], flags=row["flags"])]

    def paper_row(self, item: PaperItem) -> dict:
        opts = self.config.storage_options
        if item.record is not None:
            row = item.record.paper_row()
        else:
            row = PAPER_DEFAULTS | {"paper_id": item.key, "has_metadata": False, "flags": ["no_metadata"]}
            if item.arxiv_id:
                row["flags"].append(f"arxiv_id:{item.arxiv_id}")
                row["version"] = next((f.version for f in (item.pdf, item.src) if f is not None and f.version), None)
        row["flags"] += item.flags
        if item.src is not None:
            if item.src.is_dir:
                row["source_path"], row["source_kind"] = item.src.url, "folder"
            else:
                sha, head = hash_and_head(item.src.url, opts)
                row["source_path"], row["source_sha256"], row["source_kind"] = item.src.url, sha, sniff_source_kind(head)
        if item.pdf is not None:  # a paper named by content was hashed in prepare (its PDF first)
            sha = item.content_sha256 or hash_and_head(item.pdf.url, opts)[0]
            row["pdf_path"], row["pdf_sha256"] = item.pdf.url, sha
        elif row["source_kind"] == "pdf":  # a PDF-only submission sits in the src collection
            row["pdf_path"], row["pdf_sha256"] = row["source_path"], row["source_sha256"]
            row["flags"].append("pdf_from_source_collection")
        if item.record is None and row["pdf_path"]:
            title, how = pdf_title(row["pdf_path"], opts)
            row["title"] = title
            row["flags"].append(how)
        return row


PAPER_DEFAULTS: dict[str, Any] = {
    "version": None, "title": None, "authors": None, "first_author": None, "abstract": None, "categories": [],
    "license": None, "doi": None, "journal_ref": None, "submitted": None, "updated": None, "versions": [],
    "source_path": None, "source_kind": None, "source_sha256": None, "pdf_path": None, "pdf_sha256": None,
}

