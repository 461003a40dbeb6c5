"""The dataset card of the demo run: Hub metadata that round-trips, configs that `datasets` loads, a
body that says how the data was built, what was dropped and why, the models and the licences."""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from corpus.cli import main
from corpus.publish.card import CardError, CardOptions, features, write_card
from demo_recipe import write_demo_recipe
from corpus.publish.licenses import license_id
from corpus.run.manifest import Manifest
from corpus.run.recipe import load_recipe, run_recipe
from schemas import ALL_TABLES, DECISION, DOCUMENT, PAPER, count_rows, read_polars, table_of

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = ("license", "language", "task_categories", "size_categories", "pretty_name", "tags", "configs", "dataset_info")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    """The README demo (examples/demo.yaml) up to its evaluation, run once: the tests write its card."""
    sys.path.insert(0, str(ROOT / "examples"))
    import make_samples

    base = tmp_path_factory.mktemp("card_demo")
    make_samples.write_samples(base / "samples")
    make_samples.write_models(base / "samples")
    recipe = load_recipe(write_demo_recipe(base))
    recipe.steps = [s for s in recipe.steps if s.stage not in ("card", "report")]  # the tests write the card
    recipe.executor.workers, recipe.executor.quiet = 1, True
    run_recipe(recipe, base / "run")
    return base / "run"


@pytest.fixture(scope="module")
def card_path(demo_run) -> Path:
    return write_card(demo_run, CardOptions(pretty_name="Demo astro corpus", tags=["astronomy"]))


def test_card_round_trips_into_dataset_card_data_with_every_required_key(demo_run, card_path):
    from huggingface_hub import DatasetCard, DatasetCardData

    card = DatasetCard.load(card_path)
    assert isinstance(card.data, DatasetCardData)
    data = card.data.to_dict()
    assert all(data.get(k) for k in REQUIRED), [k for k in REQUIRED if not data.get(k)]
    assert data["pretty_name"] == "Demo astro corpus" and data["language"] == ["en"]  # the filter step's languages
    assert {"sagecorpus", "arxiv", "astronomy"} <= set(data["tags"])
    assert set(data["task_categories"]) == {"text-generation", "question-answering"}
    assert data["size_categories"] == ["n<1K"]
    papers = read_polars(demo_run / "papers.parquet", PAPER)
    licences = {license_id(u, m) for u, m in zip(papers["license"], papers["has_metadata"])}
    assert licences == {"cc-by-4.0", "unknown"}  # the samples: CC BY papers and one PDF with no metadata row
    assert sorted(data["license"]) == ["cc-by-4.0", "unknown"]
    names = [c["config_name"] for c in data["configs"]]
    assert names == ["corpus", "papers", "qa_chunks", "qa_pairs", "sft", "eval_results", "decisions"]  # qa/grades.parquet: 0 rows
    assert [c["config_name"] for c in data["dataset_info"]] == names
    assert next(c for c in data["configs"] if c.get("default"))["config_name"] == "corpus"


def test_every_config_loads_with_datasets_offline(demo_run, card_path, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets
    from huggingface_hub import DatasetCard

    configs = DatasetCard.load(card_path).data.to_dict()["configs"]
    for config in configs:
        ds = datasets.load_dataset(str(demo_run), config["config_name"], split="train", cache_dir=str(tmp_path / "cache"))
        files = sorted(demo_run.glob(config["data_files"][0]["path"]))
        table = table_of(files[0])
        assert ds.num_rows == sum(count_rows(f, table) for f in files) > 0
        assert ds.features == datasets.Features.from_arrow_schema(table.schema), config["config_name"]
    corpus = datasets.load_dataset(str(demo_run), split="train", cache_dir=str(tmp_path / "cache"))  # the default config
    assert sorted(corpus["paper_id"]) == sorted(read_polars(demo_run / "corpus.parquet", DOCUMENT)["paper_id"])


@pytest.mark.parametrize("name", sorted(ALL_TABLES))
def test_features_are_those_datasets_derives_from_the_schema(name):
    datasets = pytest.importorskip("datasets")
    assert features(ALL_TABLES[name]) == datasets.Features.from_arrow_schema(ALL_TABLES[name].schema)._to_yaml_list()


def test_features_of_nested_and_other_types():
    datasets = pytest.importorskip("datasets")
    schema = pa.schema([("a", pa.list_(pa.list_(pa.int8()))), ("b", pa.struct([("x", pa.float32()), ("y", pa.string())])),
                        ("c", pa.timestamp("us")), ("d", pa.float16()), ("e", pa.uint16())])
    from schemas.tables import Table

    assert features(Table("t", 1, schema, (), "")) == datasets.Features.from_arrow_schema(schema)._to_yaml_list()


def test_body_says_how_it_was_built_what_was_dropped_and_why_models_and_licences(demo_run, card_path):
    text = card_path.read_text()
    body = text.split("\n---\n", 1)[1]
    manifest = Manifest.load(demo_run / "manifest.json")
    positions = [body.index(f"### {i}. {s['stage']}") for i, s in enumerate(manifest.steps, 1)]
    assert positions == sorted(positions) and len(positions) == len(manifest.steps) >= 10
    assert "min_words: 300" in body  # the filter step's config, as the recipe set it
    generate = body.split(". qa_generate\n", 1)[1].split("\n### ", 1)[0]
    assert "template: generate@1" in generate  # a what-field
    assert "max_in_flight" not in generate and "batch_size" not in generate  # how-fields change no byte: left out
    rows = read_polars(demo_run / "decisions" / "dedup.parquet", DECISION)
    for (action, reason), n in Counter(zip(rows["action"], rows["reason"])).items():
        assert f"| dedup | {action} | {reason} | {n} |" in body
    generated = read_polars(demo_run / "decisions" / "qa_generate.parquet", DECISION)
    n_failed = int((generated["action"] == "failed").sum())
    assert f"| qa_generate | failed | unparseable_reply | {n_failed} |" in body
    for model in manifest.models:  # as recorded, else the tiny models' cards say apache-2.0
        licence = model.get("license") or "apache-2.0"
        assert f"| {model['stage']} | {model.get('role', '')} | {model['model_id']} | {licence} | {(model.get('sha256') or '')[:16] or '-'} |" in body
    assert {"generator", "grader"} <= {m.get("role") for m in manifest.models}
    papers = read_polars(demo_run / "papers.parquet", PAPER)
    n_cc = sum(license_id(u, m) == "cc-by-4.0" for u, m in zip(papers["license"], papers["has_metadata"]))
    assert f"| `cc-by-4.0` | Creative Commons Attribution 4.0 | {n_cc} | {n_cc} | yes |" in body
    assert "Left out, having no rows: `qa/grades.parquet`." in body
    assert "sagecorpus rebuild manifest.json --out rebuilt" in body


def test_the_card_is_deterministic_and_holds_no_run_time_or_host(demo_run, card_path, tmp_path):
    before = card_path.read_bytes()
    manifest = Manifest.load(demo_run / "manifest.json")
    assert manifest.run["start"] not in before.decode() and manifest.run["host"] not in before.decode()
    copy = tmp_path / "copy"
    shutil.copytree(demo_run, copy, ignore=shutil.ignore_patterns("_work", "_store"))
    assert write_card(copy, CardOptions(pretty_name="Demo astro corpus", tags=["astronomy"])).read_bytes() == before


def test_card_command_adds_the_card_step_to_the_run_and_writes_what_write_card_writes(demo_run, card_path, tmp_path, capsys):
    from huggingface_hub import DatasetCard

    copy = tmp_path / "copy"
    shutil.copytree(demo_run, copy)  # with its work folders: the earlier steps are reused, not redone
    (copy / "README.md").unlink()
    assert main(["card", str(copy), "--pretty-name", "Demo astro corpus", "--tag", "astronomy", "--quiet"]) == 0
    assert (copy / "README.md").read_bytes() == card_path.read_bytes()  # the chain says what the manifest said
    manifest = Manifest.load(copy / "manifest.json")
    assert [s["stage"] for s in manifest.steps][-1] == "card"
    assert "README.md" in {e.path for e in manifest.outputs}
    assert main(["card", str(tmp_path / "nowhere")]) == 2
    assert main(["card", str(copy), "--table", "documents=documents.parquet", "--table", "sft=qa/sft.parquet", "--quiet"]) == 0
    data = DatasetCard.load(copy / "README.md").data.to_dict()
    assert [c["config_name"] for c in data["configs"]] == ["documents", "sft"]
    assert Manifest.load(copy / "manifest.json").steps[-1]["reads"].keys() == {"documents.parquet", "qa/sft.parquet"}
    assert "no manifest.json" in capsys.readouterr().err


def test_the_card_step_of_a_recipe_is_redone_when_a_table_changes_and_rebuilds_to_the_same_bytes(fixtures, tmp_path):
    from huggingface_hub import DatasetCard

    from corpus.run.executor import ExecutorConfig
    from corpus.run.recipe import Recipe, Step, rebuild

    meta = str(fixtures / "metadata" / "arxiv_kaggle_metadata_head100.jsonl")
    steps = [Step(stage="ingest", config={"metadata": [meta], "categories": ["astro-ph*"], "require_files": False}),
             Step(stage="card", config={"tags": ["astronomy"]})]
    out = tmp_path / "run"
    manifest = run_recipe(Recipe(steps=steps, executor=ExecutorConfig(tasks=2, quiet=True)), out)
    data = DatasetCard.load(out / "README.md").data
    assert data.pretty_name == "arXiv astro-ph* papers" and data.license == "other"  # 8 astro-ph papers, none CC
    assert data.license_name == "arxiv-licenses" and "| `assumed-1991-2003` |" in (out / "README.md").read_text()
    assert manifest.steps[1]["reads"].keys() == {"decisions/ingest.parquet", "papers.parquet"}
    _, diffs = rebuild(out / "manifest.json", tmp_path / "rebuilt")
    assert diffs == [] and (tmp_path / "rebuilt" / "README.md").read_bytes() == (out / "README.md").read_bytes()
    steps[0].config["categories"] = ["gr-qc"]
    run_recipe(Recipe(steps=steps, executor=ExecutorConfig(tasks=2, quiet=True)), out)
    assert DatasetCard.load(out / "README.md").data.pretty_name == "arXiv gr-qc papers"


def test_a_folder_without_tables_is_refused_naming_it(tmp_path):
    with pytest.raises(CardError, match="nothing to describe"):
        write_card(tmp_path)
    with pytest.raises(CardError, match="no such run folder"):
        write_card(tmp_path / "missing")
    (tmp_path / "corpus.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(CardError, match="corpus.parquet: not a readable Parquet file"):
        write_card(tmp_path)
