"""A run's HTML report: one self-contained page (plots embedded as ``data:`` PNGs, no external file or
script) that says what the run holds and what each step did.

Every table is read through ``schemas/`` (validated, only the columns a plot needs); the counters and
configs come from the run's manifest and its finished steps (:mod:`corpus.publish.runinfo`). A plot
whose table the run lacks (a corpus-only run has no Q&A), or whose table is empty, says "not in this
run" and why, instead of a figure; a table that cannot be read says so too, and the rest of the report
is still written. The same run folder gives the same bytes.

``sagecorpus report RUN_DIR`` and the recipe stage ``report`` write ``RUN_DIR/report.html``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corpus.publish.runinfo import RunDescription, RunInfo, from_steps, load_run
from corpus.run.stage import StageConfig, register_stage
from schemas import DECISION, DOCUMENT, GRADE, PAPER, SchemaError, Table, count_rows, read_polars

REPORT_NAME = "report.html"

# Where the stages write their tables in a run folder (fixed by the stages' ``outputs()``).
PAPERS = "papers.parquet"
DOCUMENTS = "documents.parquet"  # extracted, before curation
CORPUS = "corpus.parquet"  # after curation
GRADES = "qa/grades.parquet"
DEDUP_DECISIONS = "decisions/dedup.parquet"
FILTER_DECISIONS = "decisions/filter.parquet"

CRITERIA = ("correctness", "standalone", "pertinence", "overall")
PAGE_EXTRACTORS = {"latex": "LaTeX", "pymupdf": "text layer", "pdf": "text layer", "nougat": "OCR", "none": "no text"}
DOCUMENT_EXTRACTORS = {"latex": "LaTeX", "pdf": "text layer", "nougat": "OCR", "mixed": "text layer + OCR", "none": "no text"}
TOP_CATEGORIES = 20

TITLES = {  # plot -> its heading in the report
    "papers_per_year": "Papers per year", "papers_per_category": "Papers per category",
    "text_lengths": "Text length distribution", "extractors": "Extractor per page",
    "dedup_clusters": "Deduplication cluster sizes", "quality_scores": "Quality score",
    "grades": "Q&A grades per criterion", "usage": "Requests, tokens and cost per stage",
}


def _plots():
    """The drawing module: matplotlib is imported when a report is drawn, not when the stages register."""
    from corpus.publish import plots

    return plots


def _counts(series) -> Counter:
    """Value -> rows of a polars Series (null under None), counted by polars, not row by row in Python;
    in the order of the values (None last), so the same table always gives the same plot."""
    counted = series.value_counts()
    pairs = zip(counted[series.name].to_list(), counted["count"].to_list())
    return Counter(dict(sorted(pairs, key=lambda kv: (kv[0] is None, str(kv[0])))))


def _most_first(counts: Counter) -> dict:
    """Largest count first, ties by name: a stable order for bars."""
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0]))))


class NotInRun(Exception):
    """A plot's data is absent from the run; the message says why (shown in its place)."""


@dataclass
class Section:
    """One plot of the report: its figure, or the reason it has none."""

    key: str
    caption: str = ""
    png: bytes | None = None
    missing: str | None = None  # "not in this run: ..." or "could not be read: ..."

    @property
    def title(self) -> str:
        return TITLES[self.key]


# -------------------------------------------------------------------------------------- reading


def _table(run: RunInfo, rel: str, table: Table, columns: list[str], needs: str):
    """The run's ``rel`` as a validated polars frame of ``columns``; NotInRun when absent or empty."""
    path = run.root / rel
    if not path.is_file():
        raise NotInRun(f"not in this run: no {rel} ({needs})")
    if count_rows(path, table) == 0:
        raise NotInRun(f"not in this run: {rel} is empty")
    return read_polars(path, table, columns)


# -------------------------------------------------------------------------------------- the plots


def papers_per_year(run: RunInfo) -> Section:
    s = Section("papers_per_year")
    df = _table(run, PAPERS, PAPER, ["submitted"], "the ingest step writes it")
    years = Counter({str(y) if y is not None else "unknown": n for y, n in _counts(df["submitted"].dt.year()).items()})
    order = sorted(k for k in years if k != "unknown") + (["unknown"] if "unknown" in years else [])
    s.png = _plots().bar_chart({k: years[k] for k in order}, "Papers per year (first version)", ylabel="papers")
    s.caption = f"{df.height:,} papers ingested; year of the first arXiv version ('unknown': no metadata)."
    return s


def papers_per_category(run: RunInfo) -> Section:
    s = Section("papers_per_category")
    df = _table(run, PAPERS, PAPER, ["categories"], "the ingest step writes it")
    primary = Counter({c if c is not None else "none": n for c, n in _counts(df["categories"].list.first()).items()})
    top = dict(list(_most_first(primary).items())[:TOP_CATEGORIES])
    rest = sum(primary.values()) - sum(top.values())
    if rest:
        top[f"{len(primary) - len(top)} others"] = rest
    s.png = _plots().bar_chart(top, "Papers per primary arXiv category", xlabel="papers", horizontal=True)
    s.caption = (f"{df.height:,} papers by primary category ('none': no metadata); "
                 f"{(df['categories'].list.len() > 1).sum():,} are cross-listed in more.")
    return s


def text_lengths(run: RunInfo) -> Section:
    s = Section("text_lengths")
    series, notes = {}, []
    for rel, name, writer in ((DOCUMENTS, "extracted", "extract"), (CORPUS, "final corpus", "decontaminate")):
        try:
            df = _table(run, rel, DOCUMENT, ["n_chars"], f"the {writer} step writes it")  # never the texts themselves
        except NotInRun as e:
            notes.append(str(e))
            continue
        lengths = df.filter(df["n_chars"] > 0)["n_chars"].to_numpy()
        if len(lengths):
            series[name] = lengths
        else:
            notes.append(f"{rel}: no document has text")
    if not series:
        raise NotInRun("not in this run: " + "; ".join(n.removeprefix("not in this run: ") for n in notes))
    lo, hi = min(int(v.min()) for v in series.values()), max(int(v.max()) for v in series.values())
    wide = hi >= 20 * lo  # a log axis only when lengths span decades
    s.png = _plots().histogram(series, "Characters per document", "characters" + (" (log scale)" if wide else ""),
                            log_x=wide)
    s.caption = "; ".join(f"{name}: {len(v):,} documents with text, median {int(np.median(v)):,} characters"
                          for name, v in series.items()) + ("" if not notes else " (" + "; ".join(notes) + ")")
    return s


def extractors(run: RunInfo) -> Section:
    s = Section("extractors")
    df = _table(run, DOCUMENTS, DOCUMENT, ["extractor", "pages"], "the extract step writes it")
    docs, pages = Counter(), Counter()
    for e, n in _counts(df["extractor"]).items():
        docs[DOCUMENT_EXTRACTORS.get(e, e)] += n
    page_extractors = df["pages"].explode().struct.field("extractor").drop_nulls()  # null: a paper with no pages
    for e, n in _counts(page_extractors).items():
        pages[PAGE_EXTRACTORS.get(e, e)] += n
    groups = {"papers, by extractor": _most_first(docs)}
    if pages:
        groups["PDF pages, by extractor"] = _most_first(pages)
    s.png = _plots().panels(groups, "Where the text came from", horizontal=True)
    s.caption = (f"{df.height:,} papers; {sum(pages.values()):,} PDF pages. A paper converted from its LaTeX "
                 "source has no PDF pages; 'no text': a page neither the text layer nor OCR gave text for.")
    return s


def dedup_clusters(run: RunInfo) -> Section:
    s = Section("dedup_clusters")
    df = _table(run, DEDUP_DECISIONS, DECISION, ["cluster_id", "action"], "the dedup step writes it")
    clusters = _counts(df["cluster_id"].drop_nulls())
    if not clusters:
        raise NotInRun(f"no duplicates in this run: all {df.height:,} documents are unique")
    sizes = Counter(clusters.values())
    dropped = df.filter(df["action"] == "dropped").height
    s.png = _plots().bar_chart({str(k): sizes[k] for k in sorted(sizes)}, "Duplicate clusters by size",
                            xlabel="documents in the cluster", ylabel="clusters")
    s.caption = (f"{len(clusters):,} cluster(s) (exact and near duplicates) over {df.height:,} documents; "
                 f"{dropped:,} documents dropped, one kept per cluster.")
    return s


def quality_scores(run: RunInfo) -> Section:
    s = Section("quality_scores")
    df = _table(run, FILTER_DECISIONS, DECISION, ["score", "action"], "the filter step writes it")
    scores = df["score"].drop_nulls().to_numpy()
    if not len(scores):
        raise NotInRun("not in this run: the filter step applied no quality classifier (no scores)")
    config = run.step_config("filter") or {}
    threshold = config.get("quality_threshold")
    mark = (threshold, f"threshold {threshold:g}") if threshold is not None else None
    s.png = _plots().histogram({"documents": scores}, "Quality classifier score", "probability of the positive label",
                            bins=[i / 20 for i in range(21)], threshold=mark)
    below = int((scores < threshold).sum()) if threshold is not None else None
    s.caption = f"{len(scores):,} documents scored" + (
        f"; {below:,} below the threshold {threshold:g}" if below is not None
        else "; the threshold is not recorded (no filter step config in this run's manifest)")
    return s


def grades(run: RunInfo) -> Section:
    s = Section("grades")
    df = _table(run, GRADES, GRADE, [*CRITERIA, "error"], "the qa_grade step writes it")
    ok = df.filter(df["error"].is_null())
    if ok.height == 0:
        raise NotInRun(f"not in this run: none of the {df.height:,} grade replies could be parsed")
    config = run.step_config("qa_select") or {}
    groups, marks = {}, {}
    for c in CRITERIA:
        counts = _counts(ok[c])
        groups[c] = {str(g): counts.get(g, 0) for g in range(1, 6)}
        if counts.get(None):
            groups[c]["none"] = counts[None]
        if config.get(f"min_{c}") is not None:
            m = config[f"min_{c}"]
            marks[c] = (m - 1.5, f"qa_select keeps >= {m}")
    s.png = _plots().panels(groups, "Grades (1-5) per criterion", xlabel="grade", marks=marks)
    s.caption = f"{ok.height:,} pairs graded; {df.height - ok.height:,} grade replies could not be parsed."
    return s


USAGE = {  # panel title -> the counters it adds up
    "requests": ("requests.sent", "requests.stored"),  # sent, or replayed from the store: the same data either way
    "prompt tokens": ("tokens.prompt",),
    "completion tokens": ("tokens.completion",),
    "cost (USD)": ("cost.usd",),
}


def usage(run: RunInfo) -> Section:
    s = Section("usage")
    groups = {}
    for title, counters in USAGE.items():
        values = {step.key: sum(step.stats.get(c, 0) for c in counters) for step in run.steps}
        values = {k: v for k, v in values.items() if v}
        if values:
            groups[title] = values
    if not groups:
        raise NotInRun("not in this run: no step called a model (no request, token or cost counters)")
    s.png = _plots().panels(groups, "Model calls per step", horizontal=True)
    s.caption = ("From each step's counters; requests count those sent to the model and those replayed from the "
                 "run's store alike. Cost appears only where prices were configured (price_input_per_m / "
                 "price_output_per_m, or tokens_per_s with gpu_hour_price).")
    return s


PLOTS: list[Callable[[RunInfo], Section]] = [
    papers_per_year, papers_per_category, text_lengths, extractors, dedup_clusters, quality_scores, grades, usage,
]


def sections(run: RunInfo) -> list[Section]:
    """Every plot of the report, each with its figure or the reason it has none."""
    out = []
    for plot in PLOTS:
        try:
            out.append(plot(run))
        except NotInRun as e:
            out.append(Section(plot.__name__, missing=str(e)))
        except (SchemaError, OSError) as e:  # one bad table never hides the rest of the report
            out.append(Section(plot.__name__, missing=f"could not be read: {e}"))
    return out




# -------------------------------------------------------------------------------------- the page


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; }
.missing { color: #777; font-style: italic; }
.caption { color: #555; font-size: 0.9em; }
code { font-size: 0.9em; }
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def html_table(header: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{v:,}</td>' if i in numeric and isinstance(v, (int, float))
                         else f"<td>{esc('' if v is None else v)}</td>" for i, v in enumerate(r)) + "</tr>"
        for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def steps_table(run: RunInfo) -> str:
    """One row per step: items, and its decisions by action (kept, changed, dropped, failed, then any other)."""
    found = {k.split(".", 1)[1] for step in run.steps for k in step.stats if k.startswith("decisions.")}
    actions = ["kept", "changed", "dropped", "failed"] + sorted(found - {"kept", "changed", "dropped", "failed"})
    rows = [[step.key, int(step.stats.get("items", 0))] + [int(step.stats.get(f"decisions.{a}", 0)) for a in actions]
            for step in run.steps]
    return html_table(["step", "items", *actions], rows, numeric=set(range(1, len(actions) + 2)))


def summaries_html(run: RunInfo) -> str:
    """What each step did, in a sentence: its stage's summary of its counters (as ``sagecorpus run`` prints it)."""
    from corpus.run.summary import step_summary

    items = []
    for step in run.steps:
        try:
            line = step_summary(step.stage, step.config, step.stats)
        except Exception as e:  # a stage not installed here, a config recorded without a field it needs
            line = f"no summary ({type(e).__name__}: {e})"
        items.append(f"<li><b>{esc(step.key)}</b>: {esc(line)}</li>")
    return f"<ul class=\"summary\">{''.join(items)}</ul>"


def configs_html(run: RunInfo) -> str:
    """Each step's config (secrets redacted), folded."""
    parts = []
    for step in run.steps:
        text = json.dumps(step.config, indent=1, sort_keys=True, ensure_ascii=False) if step.config is not None else "not recorded"
        parts.append(f"<details><summary>{esc(step.key)}</summary><pre>{esc(text)}</pre></details>")
    return "\n".join(parts)


def outputs_table(run: RunInfo) -> str:
    if run.outputs is None:
        return '<p class="missing">not recorded: this folder has no manifest</p>'
    rows, folders = [], {}
    for o in run.outputs:
        if o.path.startswith("models/"):  # a model folder: one row, by its weights (its run records vary by run)
            folders.setdefault("/".join(o.path.split("/")[:2]) + "/", []).append(o)
        else:
            rows.append([o.path, o.table or "", o.rows, o.sha256[:16]])
    for folder, files in folders.items():
        weights = [f for f in files if f.path.endswith(".safetensors")]
        digest = hashlib.sha256("".join(f"{f.path.rsplit('/', 1)[-1]}:{f.sha256}\n" for f in weights).encode()).hexdigest()
        rows.append([f"{folder} ({len(files)} files)", "model weights", None, digest[:16] if weights else ""])
    return html_table(["file", "table", "rows", "sha256"], rows, numeric={2})


def models_table(run: RunInfo) -> str:
    if not run.models:
        return '<p class="missing">no model was called in this run</p>'
    rows = [[m.get("stage"), m.get("role"), m.get("model_id") or m.get("id"), m.get("template"),
             (m.get("sha256") or "")[:16], m.get("license")] for m in run.models]
    return html_table(["stage", "role", "model", "template", "sha256", "licence"], rows)


def _section_html(s: Section) -> str:
    parts = [f'<section id="{esc(s.key)}"><h2>{esc(s.title)}</h2>']
    if s.png is not None:
        data = base64.b64encode(s.png).decode()
        parts.append(f'<img src="data:image/png;base64,{data}" alt="{esc(s.title)}">')
        if s.caption:
            parts.append(f'<p class="caption">{esc(s.caption)}</p>')
    else:
        parts.append(f'<p class="missing">{esc(s.missing)}</p>')
    parts.append("</section>")
    return "\n".join(parts)


def render(run: RunInfo, secs: list[Section] | None = None) -> str:
    """The report page of a run, as HTML text (nothing in it depends on where the run folder is);
    ``secs``: its plots, when already drawn."""
    about = []
    if run.record:
        about.append(f"Run from {esc(run.record.get('start'))} to {esc(run.record.get('end'))} on "
                     f"{esc(run.record.get('host'))}: <code>sagecorpus {esc(' '.join(run.record.get('argv') or []))}</code>")
    if run.packages:
        packages = ", ".join(f"{k} {v}" for k, v in sorted(run.packages.items()))
        about.append(f"Python {esc(run.python)}; {esc(packages)}")
    secs = sections(run) if secs is None else secs
    drawn = sum(s.png is not None for s in secs)
    body = [
        "<h1>sagecorpus run report</h1>",
        *(f"<p>{a}</p>" for a in about),
        f"<p>{drawn} of {len(secs)} plots" + ("; the others say why they are not in this run" if drawn < len(secs) else "") + ".</p>",
        "<h2>Steps</h2>", steps_table(run), summaries_html(run),
        *(_section_html(s) for s in secs),
        "<h2>Models</h2>", models_table(run),
        "<h2>Outputs</h2>", outputs_table(run),
        "<h2>Configs</h2>", configs_html(run),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>sagecorpus run report</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def write_html(run: RunInfo, path: str | os.PathLike, secs: list[Section] | None = None) -> Path:
    """Write ``run``'s report to ``path``, atomically (a ``.tmp`` file renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render(run, secs), encoding="utf-8")
    tmp.replace(path)
    return path


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the report of the (finished) run in ``run_dir`` to the file ``out``, from its manifest.

    From Python, without adding a step to the run. ``sagecorpus report RUN_DIR`` instead adds the
    ``report`` step to the run, which writes ``RUN_DIR/report.html`` and lists it in the manifest.
    """
    return write_html(load_run(run_dir), out)


# -------------------------------------------------------------------------------------- the stage


READS = (PAPERS, DOCUMENTS, CORPUS, GRADES, DEDUP_DECISIONS, FILTER_DECISIONS)  # the tables the plots read


class ReportConfig(StageConfig):
    """The report has no setting of its own: it shows what the steps before it wrote and counted."""


@register_stage
class Report(RunDescription):
    """Write ``report.html``: the run's plots and tables, from the steps before this one (put it last)."""

    name = "report"
    config_class = ReportConfig
    recipe_only = True  # its command is `sagecorpus report RUN_DIR`
    description = ("Write report.html: a self-contained HTML report of the run (papers per year and category, text "
                   "lengths, extractor per page, duplicate clusters, quality scores, Q&A grades, requests, tokens, cost).")

    def requirements(self) -> dict[str, str]:
        return {"matplotlib": "report"}

    def outputs(self):
        return {**super().outputs(), REPORT_NAME: None}

    def reads(self) -> list[str]:
        """The tables the plots read that the steps before it write: a change in any redoes the report."""
        written = {o for s in self.earlier for o in s.outputs()}
        return [rel for rel in READS if rel in written]

    def run_task(self):
        run = from_steps(self.out_dir, self.earlier)
        secs = sections(run)
        write_html(run, self.out_dir / REPORT_NAME, secs)
        drawn = [s.key for s in secs if s.png is not None]
        self.stat_update("plots.drawn", value=len(drawn))
        self.stat_update("plots.not_in_run", value=len(secs) - len(drawn))
        yield self.decisions_file, [self.decision(
            REPORT_NAME, "kept", "written", plots=drawn, not_in_run={s.key: s.missing for s in secs if s.png is None})]
