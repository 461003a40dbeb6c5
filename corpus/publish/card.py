"""The dataset card of a run folder: ``README.md`` with the Hub's YAML metadata and a body that says
what the data is, how it was built, what each step kept and dropped and why, the models used and the
licences of the source papers.

The metadata is built with ``huggingface_hub``'s :class:`DatasetCardData`: ``license`` (the Hub ids
of the licences of the papers in the published tables, see :mod:`corpus.publish.licenses`),
``language``, ``task_categories``, ``size_categories``, ``pretty_name``, ``tags``, and one entry of
``configs`` (its files) and ``dataset_info`` (its features) per published table, the features
derived from the table's schema in ``schemas/``. ``datasets.load_dataset(folder, name)``
loads any of them. Every table is read through ``schemas/``.

What the card says about the steps (stages, configs, models) comes from a
:class:`corpus.publish.runinfo.RunInfo` (shared with the report): the run's ``manifest.json``
(:func:`write_card`), or the steps before the ``card`` step in its chain.
Only deterministic facts go in (no dates, hosts or timings), so a rebuild writes the same bytes.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import yaml
from pydantic import Field

from corpus.publish.licenses import LICENSES, REDISTRIBUTABLE, hub_license, license_id
from corpus.publish.runinfo import RunDescription, RunInfo, StepInfo, from_steps, load_run
from corpus.run.stage import OUT, StageConfig, register_stage
from schemas import DECISION, DOCUMENT, PAPER, Table, count_rows, read_table, table_of

CARD_NAME = "README.md"

# the run files a card publishes by default, in this order: (config name, file or glob)
DEFAULT_TABLES: tuple[tuple[str, str], ...] = (
    ("corpus", "corpus.parquet"),
    ("papers", "papers.parquet"),
    ("qa_chunks", "qa/chunks.parquet"),
    ("qa_pairs", "qa/pairs.parquet"),
    ("qa_grades", "qa/grades.parquet"),
    ("sft", "qa/sft.parquet"),
    ("eval_results", "eval/results.parquet"),
    ("decisions", "decisions/*.parquet"),
)

# what a user can do with each table, in the Hub's task categories
TASKS = {"document": ["text-generation"], "qa_pair": ["question-answering"], "sft_example": ["text-generation"],
         "chunk": ["question-answering"]}

LICENSE_LINK = "https://info.arxiv.org/help/license/index.html"


class CardError(ValueError):
    """A run folder a card cannot be written for (no tables, a file of an unknown table...)."""


@dataclass
class DataConfig:
    """One published table: its config name, the files (relative to the run folder) and rows."""

    name: str
    pattern: str
    files: list[str]
    table: Table
    rows: int


# -- tables and features ------------------------------------------------------------------------
def data_configs(run_dir: str | Path, tables: list[tuple[str, str]] | None = None) -> list[DataConfig]:
    """The published tables of a run folder (``tables``: (config name, file or glob), default
    :data:`DEFAULT_TABLES`); a pattern matching no file is left out. The files of one config must
    hold one table (read from their Parquet metadata). A config with no rows is returned too (the
    card lists it but does not publish it: ``datasets`` cannot load an empty split)."""
    run = Path(run_dir)
    configs = []
    for name, pattern in tables or DEFAULT_TABLES:
        files = sorted(str(p.relative_to(run)) for p in run.glob(pattern) if p.is_file())
        if not files:
            continue
        found = {f: _table_of(run / f) for f in files}
        unknown = [f for f, t in found.items() if t is None]
        if unknown:
            raise CardError(f"{run / unknown[0]}: not a sagecorpus table (no schema name in its Parquet metadata)")
        kinds = {t.name for t in found.values()}
        if len(kinds) > 1:
            raise CardError(f"{run}: config {name!r} ({pattern}) mixes tables {sorted(kinds)}: give each its own config")
        table = next(iter(found.values()))
        configs.append(DataConfig(name, pattern, files, table, sum(count_rows(run / f, table) for f in files)))
    if not configs:
        raise CardError(f"{run}: none of {[p for _, p in tables or DEFAULT_TABLES]} is there: nothing to describe")
    return configs


def _table_of(path: Path) -> Table | None:
    try:
        return table_of(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise CardError(f"{path}: not a readable Parquet file: {e}") from e


def feature(t: pa.DataType) -> dict:
    """The Hub's YAML feature of an Arrow type, as ``datasets.Features._to_yaml_list`` writes it."""
    if pa.types.is_list(t):
        inner = feature(t.value_type)
        return {"list": inner["dtype"] if set(inner) == {"dtype"} else inner.get("struct", inner)}
    if pa.types.is_struct(t):
        return {"struct": [{"name": f.name, **feature(f.type)} for f in t]}
    if pa.types.is_date32(t):
        return {"dtype": "date32"}
    if pa.types.is_date64(t):
        return {"dtype": "date64"}
    if pa.types.is_timestamp(t):
        return {"dtype": f"timestamp[{t.unit}" + (f", tz={t.tz}]" if t.tz else "]")}
    if pa.types.is_boolean(t):
        return {"dtype": "bool"}
    if pa.types.is_floating(t):
        return {"dtype": f"float{t.bit_width}"}
    if pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        return {"dtype": str(t)}  # int32, uint8, string, large_string
    raise CardError(f"no Hub feature for Arrow type {t}")


def features(table: Table) -> list[dict]:
    """The ``dataset_info.features`` of a table: one entry per column, in order."""
    return [{"name": f.name, **feature(f.type)} for f in table.schema]


SIZE_CATEGORIES = ((10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M"),
                   (10**7, "1M<n<10M"), (10**8, "10M<n<100M"), (10**9, "100M<n<1B"), (10**10, "1B<n<10B"),
                   (10**11, "10B<n<100B"), (10**12, "100B<n<1T"))


def size_category(n: int) -> str:
    """The Hub's size category of ``n`` examples."""
    return next((label for limit, label in SIZE_CATEGORIES if n < limit), "n>1T")


# -- licences -------------------------------------------------------------------------------------
def paper_licenses(run_dir: str | Path) -> dict[str, str]:
    """paper id -> licence id, from the run's ``papers.parquet`` (empty when there is none)."""
    path = Path(run_dir) / "papers.parquet"
    if not path.is_file():
        return {}
    t = read_table(path, PAPER, columns=["paper_id", "license", "has_metadata"]).to_pydict()
    return {p: license_id(u, m) for p, u, m in zip(t["paper_id"], t["license"], t["has_metadata"])}


def papers_in(run_dir: str | Path, files: list[str]) -> set[str]:
    """Ids of the papers whose text, metadata (abstracts) or what was made from them the given run
    files hold: every ``paper_id`` of a table that has one, except the decision tables."""
    ids: set[str] = set()
    for f in files:
        path = Path(run_dir) / f
        table = table_of(path) if path.suffix == ".parquet" else None
        if table is None or table is DECISION or "paper_id" not in table.columns:
            continue
        ids.update(read_table(path, table, columns=["paper_id"]).column("paper_id").to_pylist())
    return ids


def license_counts(run_dir: str | Path, files: list[str]) -> dict[str, tuple[int, int]]:
    """licence id -> (papers ingested, papers in the given run files); a paper missing from
    ``papers.parquet`` counts as ``unknown``."""
    by_paper = paper_licenses(run_dir)
    ingested = Counter(by_paper.values())
    published = Counter(by_paper.get(p, "unknown") for p in papers_in(run_dir, files))
    return {lid: (ingested[lid], published[lid]) for lid in LICENSES if ingested[lid] or published[lid]}


# -- the record of the steps ----------------------------------------------------------------------
def what_config(stage: str, config: dict) -> dict:
    """A step's config without its *how* fields (workers, endpoints, keys: they change no byte)."""
    from corpus.run.stage import get_stage, is_how_field

    try:
        cls = get_stage(stage).config_class
    except KeyError:
        return config
    return {k: v for k, v in config.items() if not (k in cls.model_fields and is_how_field(cls, k))}


def stage_description(stage: str) -> str:
    from corpus.run.stage import get_stage

    try:
        return get_stage(stage).description
    except KeyError:
        return ""


def model_license(model: dict, steps: list[StepInfo], root: Path) -> str:
    """A model's licence: as recorded, else from the model card in its local folder (the step's
    ``model`` config; ``{out}/...``: a model folder of this run, under ``root``), else ``not recorded``."""
    if model.get("license"):
        return str(model["license"])
    for step in steps:
        folder = (step.config or {}).get("model") if step.stage == model.get("stage") else None
        if isinstance(folder, str) and folder.startswith(OUT + "/"):
            folder = str(root / folder[len(OUT) + 1:])
        if isinstance(folder, str) and (Path(folder) / CARD_NAME).is_file():
            from huggingface_hub import ModelCard

            lic = ModelCard.load(Path(folder) / CARD_NAME).data.license
            if lic:
                return str(lic)
    return "not recorded"


def decision_counts(run_dir: str | Path) -> dict[str, Counter]:
    """stage -> Counter of (action, reason), from every ``decisions/*.parquet`` of the run."""
    out: dict[str, Counter] = {}
    for path in sorted((Path(run_dir) / "decisions").glob("*.parquet")):
        t = read_table(path, DECISION, columns=["stage", "action", "reason"]).to_pydict()
        for stage, action, reason in zip(t["stage"], t["action"], t["reason"]):
            out.setdefault(stage, Counter())[(action, reason)] += 1
    return out


# -- the card --------------------------------------------------------------------------------------
@dataclass
class CardOptions:
    """What the user says about the dataset (the rest is read from the run folder)."""

    pretty_name: str | None = None
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    language: list[str] | None = None
    tables: list[tuple[str, str]] | None = None


def card_data(run_dir: str | Path, info: RunInfo, options: CardOptions, configs: list[DataConfig]):
    """The card's :class:`huggingface_hub.DatasetCardData`."""
    from huggingface_hub import DatasetCardData

    counts = license_counts(run_dir, [f for c in configs for f in c.files])
    published = sorted({hub_license(lid) for lid, (_, n) in counts.items() if n}) or ["unknown"]
    extra = {"license_name": "arxiv-licenses", "license_link": LICENSE_LINK} if "other" in published else {}
    tasks = sorted({t for c in configs for t in TASKS.get(c.table.name, [])}) or ["text-generation"]
    main = [c.rows for c in configs if c.table not in (DECISION, PAPER)] or [c.rows for c in configs]
    default = next((c.name for c in configs if c.table is DOCUMENT), configs[0].name)
    return DatasetCardData(
        license=published[0] if len(published) == 1 else published,
        language=options.language or languages(info),
        task_categories=tasks,
        size_categories=[size_category(max(main))],
        pretty_name=options.pretty_name or default_name(info),
        tags=sorted({"sagecorpus", "arxiv", *options.tags}),
        configs=[{"config_name": c.name, "data_files": [{"split": "train", "path": c.pattern}],
                  **({"default": True} if c.name == default else {})} for c in configs],
        dataset_info=[{"config_name": c.name, "features": features(c.table)} for c in configs],
        **extra,
    )


def default_name(info: RunInfo) -> str:
    """A name from the ingest step's categories (never from the folder: a rebuild elsewhere writes
    the same card)."""
    for step in info.steps:
        if step.stage == "ingest" and (step.config or {}).get("categories"):
            return f"arXiv {', '.join(step.config['categories'])} papers"
    return "sagecorpus dataset"


def languages(info: RunInfo) -> list[str]:
    """The languages the run's ``filter`` step kept (default ``en``)."""
    for step in info.steps:
        langs = (step.config or {}).get("language", {}).get("languages") if step.stage == "filter" else None
        if langs:
            return list(langs)
    return ["en"]


def _table(header: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows])


def card_body(run_dir: str | Path, info: RunInfo, options: CardOptions, configs: list[DataConfig],
              empty: list[DataConfig] = ()) -> str:
    """The Markdown body under the metadata (``empty``: tables left out for having no rows)."""
    run = Path(run_dir)
    name = options.pretty_name or default_name(info)
    counts = license_counts(run, [f for c in configs for f in c.files])
    n_pub = sum(n for _, n in counts.values())
    parts = [f"# {name}", ""]
    steps = ", ".join(s.stage for s in info.steps) or "no recorded step"
    parts += [options.description or (
        f"Data from {n_pub} arXiv papers (their metadata, text, or what was made from it), built with sagecorpus "
        f"by these steps: {steps}. Every table below is typed (its schema name and version are in the Parquet "
        "metadata); what each step did with each item, and why, is in the decisions."), ""]

    parts += ["## Contents", "", "Each table is a config: `datasets.load_dataset(REPO, NAME)`.", ""]
    parts += [_table(["config", "files", "table", "rows", "what it is"],
                     [[f"`{c.name}`", ", ".join(f"`{f}`" for f in c.files), f"{c.table.name} v{c.table.version}",
                       c.rows, c.table.description] for c in configs]), ""]
    if empty:
        parts += ["Left out, having no rows: " + ", ".join(f"`{f}`" for c in empty for f in c.files) + ".", ""]
    for c in configs:
        parts += [f"<details><summary>Columns of <code>{c.name}</code></summary>", ""]
        parts += [_table(["column", "type", "meaning"],
                         [[f"`{f.name}`", str(f.type), c.table.docs.get(f.name, "")] for f in c.table.schema]), "",
                  "</details>", ""]

    parts += ["## How it was built", ""]
    if info.steps:
        parts += ["The steps, in order, with the configs that decide the bytes written:", ""]
        for i, step in enumerate(info.steps, 1):
            desc = stage_description(step.stage)
            parts += [f"### {i}. {step.stage}", "", *([desc, ""] if desc else [])]
            if step.config is not None:
                config = yaml.safe_dump(what_config(step.stage, step.config), sort_keys=True, allow_unicode=True)
                parts += ["<details><summary>config</summary>", "", "```yaml", config.rstrip("\n"), "```", "",
                          "</details>", ""]
    else:
        parts += ["No record of the steps (no manifest).", ""]

    decisions = decision_counts(run)
    parts += ["## What each step kept and dropped, and why", "",
              "From the decision tables (`decisions/<step>.parquet`, one row per item and step, with its evidence):", ""]
    order = list(dict.fromkeys(s.stage for s in info.steps))
    order += sorted(set(decisions) - set(order))
    rows = [[stage, action, reason, n] for stage in order if stage in decisions
            for (action, reason), n in sorted(decisions[stage].items())]
    parts += [_table(["step", "action", "reason", "items"], rows) if rows else "No decision tables.", ""]

    parts += ["## Models", ""]
    if info.models:
        parts += [_table(["step", "role", "model", "licence", "weights sha256"],
                         [[m.get("stage", ""), m.get("role", ""), m.get("model_id", ""), model_license(m, info.steps, info.root),
                           (m.get("sha256") or "")[:16] or "-"] for m in info.models]), ""]
    else:
        parts += ["No model was called (no OCR, generator or grader).", ""]

    parts += ["## Licences of the source papers", "",
              ("From arXiv's metadata of each paper (a null licence is the one assumed for 1991-2003 papers; a paper "
               "with no metadata row is `unknown`). Each paper's text keeps its own licence: check it before you "
               "reuse the data."), ""]
    parts += [_table(["licence", "what it is", "papers ingested", "papers in this dataset", "redistributable"],
                     [[f"`{lid}`", LICENSES[lid][1], a, b, "yes" if lid in REDISTRIBUTABLE else "no"]
                      for lid, (a, b) in counts.items()]) if counts else "No paper table: the licences are not known.", ""]

    parts += ["## Rebuild", "",
              ("`manifest.json` pins every input (sha256), step config, package version and output. With the inputs "
               "at the same paths, this replays the run (stored model outputs included) and checks the bytes:"), "",
              "```bash", "sagecorpus rebuild manifest.json --out rebuilt", "```", "",
              ("Use the sagecorpus version the manifest names (`packages`); `sagecorpus verify manifest.json` checks "
               "the inputs and this folder's files against the manifest."), ""]
    return "\n".join(parts)


def build_card(run_dir: str | Path, info: RunInfo, options: CardOptions | None = None):
    """The :class:`huggingface_hub.DatasetCard` of a run folder."""
    from huggingface_hub import DatasetCard

    options = options or CardOptions()
    found = data_configs(run_dir, options.tables)
    configs = [c for c in found if c.rows]
    if not configs:
        raise CardError(f"{run_dir}: every table is empty ({', '.join(f for c in found for f in c.files)}): nothing to publish")
    body = card_body(run_dir, info, options, configs, [c for c in found if not c.rows])
    return DatasetCard(f"---\n{card_data(run_dir, info, options, configs).to_yaml()}\n---\n\n{body}")


def write_card(run_dir: str | Path, options: CardOptions | None = None, info: RunInfo | None = None) -> Path:
    """Write ``README.md`` into a run folder (the steps from its ``manifest.json`` unless ``info``).

    The ``card`` step of a recipe (:class:`Card`, or ``sagecorpus card RUN_DIR``) does the same with
    the steps before it in the chain, and records the card in the run's manifest."""
    root = Path(run_dir)
    if not root.is_dir():
        raise CardError(f"{root}: no such run folder")
    if info is None:
        try:
            info = load_run(root)
        except FileNotFoundError:  # a folder of tables without a manifest: no record of the steps
            info = RunInfo(root)
    path = root / CARD_NAME
    tmp = path.with_suffix(".md.tmp")
    build_card(root, info, options).save(tmp)
    tmp.replace(path)
    return path


def card_configs(path: str | Path) -> list[dict]:
    """The ``configs`` of a card (``README.md``), read back with ``DatasetCard.load``."""
    from huggingface_hub import DatasetCard

    return list(DatasetCard.load(Path(path)).data.to_dict().get("configs") or [])


def published_files(run_dir: str | Path) -> list[str]:
    """The data files a run folder's card publishes: every file matching its ``configs``."""
    run = Path(run_dir)
    files: list[str] = []
    for config in card_configs(run / CARD_NAME):
        for entry in config.get("data_files", []):
            paths = entry["path"] if isinstance(entry, dict) else entry
            for pattern in [paths] if isinstance(paths, str) else paths:
                files += [str(p.relative_to(run)) for p in run.glob(pattern) if p.is_file()]
    return sorted(set(files))


# -- the recipe step --------------------------------------------------------------------------------
class CardConfig(StageConfig):
    pretty_name: str | None = Field(None, description="the dataset's name on the Hub (default: from the ingest step's categories)")
    description: str | None = Field(None, description="the card's first paragraph (default: what the run built)")
    tags: list[str] = Field([], description="Hub tags, besides sagecorpus and arxiv")
    language: list[str] | None = Field(None, description="ISO 639-1 codes (default: the filter step's languages, else en)")
    tables: dict[str, str] | None = Field(None, description=(
        "the tables to publish, one config each: name -> run file or glob, e.g. {documents: documents.parquet} "
        f"(default: {', '.join(f'{n}: {p}' for n, p in DEFAULT_TABLES)}); a table with no file or no rows is left out"))


@register_stage
class Card(RunDescription):
    """Writes ``README.md`` in the run folder from the steps before it: their configs and models, and
    the tables they wrote (which it reads, so a changed table redoes the card)."""

    name = "card"
    config_class = CardConfig
    recipe_only = True  # `sagecorpus card RUN_DIR` (corpus.publish.cli)
    description = ("Write the run folder's dataset card (README.md): Hub metadata with one config per table, how the "
                   "data was built, what each step kept and dropped and why, the models and the papers' licences.")

    def outputs(self):
        return {CARD_NAME: None, **super().outputs()}

    def tables(self) -> list[tuple[str, str]]:
        return list(self.config.tables.items()) if self.config.tables else list(DEFAULT_TABLES)

    def reads(self) -> list[str]:
        patterns = [p for _, p in self.tables()]
        return sorted({o for s in self.earlier for o in s.outputs()
                       if o.endswith(".parquet") and any(fnmatch.fnmatch(o, p) for p in patterns)})

    def run_task(self) -> Iterator[tuple[str, list[dict]]]:
        c = self.config
        options = CardOptions(c.pretty_name, c.description, list(c.tags), c.language, self.tables())
        write_card(self.out_dir, options, from_steps(self.out_dir, self.earlier))
        configs = card_configs(self.out_dir / CARD_NAME)
        self.stat_update("configs", value=len(configs))
        yield self.decisions_file, [self.decision(CARD_NAME, "kept", "written",
                                                  configs=[x["config_name"] for x in configs])]


__all__ = ["CARD_NAME", "Card", "CardConfig", "CardError", "CardOptions", "DataConfig", "build_card",
           "card_configs", "data_configs", "features", "published_files", "write_card"]
