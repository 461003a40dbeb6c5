# %% [markdown]
# # A tour of sagecorpus from Python
#
# The same run as `make demo`, cell by cell (open in Jupyter/VS Code as a notebook, or run
# `python examples/tour.py`). Nothing here needs a GPU or a network connection.

# %%
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path("examples").resolve()
sys.path.insert(0, str(HERE))

import make_samples  # noqa: E402

samples = make_samples.write_samples(HERE.parent / "samples")
sorted(p.name for p in samples.rglob("*") if p.is_file())

# %% [markdown]
# ## One paper, by hand
# The per-item functions know nothing of datasets or executors: a PDF in, pages out.

# %%
from corpus.extract.pdf import extract_pdf  # noqa: E402

result = extract_pdf(samples / "pdf" / "2401.00004v1.pdf")
for page in result.pages:
    print(page.page, page.chars, round(page.garbled, 2), page.flags, "needs OCR:" if page.needs_ocr else "", page.reason or "")

# %%
from corpus.extract.document import extract_paper  # noqa: E402

doc = extract_paper(source=str(samples / "src" / "2401.00001.gz"), source_kind="tar")
print(doc.extractor, doc.reason, doc.latex_files)
print(doc.text[:600])

# %% [markdown]
# ## The whole run
# A recipe is a list of stage steps; the executor says where they run. `tasks` fixes how the work is
# sharded, so the bytes are the same for any number of `workers`.

# %%
from corpus.run.executor import ExecutorConfig  # noqa: E402
from corpus.run.recipe import Recipe, Step, run_recipe  # noqa: E402

recipe = Recipe(
    steps=[
        Step(stage="ingest", config={
            "metadata": [str(samples / "metadata.jsonl")], "pdfs": [str(samples / "pdf")],
            "sources": [str(samples / "src")], "categories": ["astro-ph*", "gr-qc"],
        }),
        Step(stage="extract", config={"prefer": "latex"}),
    ],
    executor=ExecutorConfig(workers=1, tasks=4),
)
out = HERE.parent / "tour-out"
manifest = run_recipe(recipe, out)
[(o.path, o.rows, o.sha256[:12]) for o in manifest.outputs]

# %% [markdown]
# ## Typed datasets
# Readers validate the schema; a wrong file, column or type fails with a message naming it.

# %%
from schemas import DECISION, DOCUMENT, PAPER, read_polars  # noqa: E402

papers = read_polars(out / "papers.parquet", PAPER)
docs = read_polars(out / "documents.parquet", DOCUMENT)
print(papers.select("paper_id", "title", "source_kind", "has_metadata"))
print(docs.select("paper_id", "extractor", "reason", "n_pages", "n_chars"))
print(read_polars(out / "decisions/extract.parquet", DECISION).select("item_id", "action", "reason"))

# %% [markdown]
# ## Reproducibility
# `verify` recomputes every hash; `rebuild` replays the run from its manifest alone.

# %%
from corpus.run.manifest import verify  # noqa: E402
from corpus.run.recipe import rebuild  # noqa: E402

print(verify(out / "manifest.json") or "all hashes match")
_, diffs = rebuild(out / "manifest.json", HERE.parent / "tour-rebuilt")
print(diffs or "rebuilt: identical bytes")

# %% [markdown]
# ## Runs and datasets in a notebook
# `Run` and `Dataset` show a summary when they are a cell's value (schema, rows, first rows, counters);
# `write_report` writes the run's HTML report with its plots embedded.

# %%
from corpus.publish.notebook import Run  # noqa: E402

run = Run(out)
print(run.write_report(HERE.parent / "tour-rebuilt" / "report.html"))  # any path; `sagecorpus report` writes it into the run
run["documents.parquet"]
