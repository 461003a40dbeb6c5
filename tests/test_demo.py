"""The README demo end to end: sample papers -> ingest -> extract, reproducible and verifiable."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from corpus.cli import main
from corpus.run.manifest import Manifest, verify
from corpus.run.recipe import load_recipe, rebuild, run_recipe
from corpus.run.summary import run_summary
from schemas import CHUNK, DECISION, DOCUMENT, PAPER, QA_PAIR, SFT_EXAMPLE, read_polars

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import make_samples  # noqa: E402
from demo_recipe import DATA_STEPS, write_demo_recipe  # noqa: E402


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo recipe run twice: once with one worker, once with two."""
    base = tmp_path_factory.mktemp("demo")
    make_samples.write_samples(base / "samples")
    make_samples.write_models(base / "samples")
    recipe = load_recipe(write_demo_recipe(base))
    runs = {}
    for workers in (1, 2):
        recipe.executor.workers, recipe.executor.quiet = workers, True
        runs[workers] = run_recipe(recipe, base / f"out{workers}")
    return base, runs


RUN_RECORDS = ("manifest.json", "trainer_state.json", "training_args.bin")
"""Files of a trained model folder that record its run (times, absolute paths), not what it learned."""


def data_hashes(manifest: Manifest) -> dict[str, str]:
    """Every output's sha256 but the run records of the model folders (weights and tokenizers included)."""
    return {e.path: e.sha256 for e in manifest.outputs
            if not (e.path.startswith("models/") and e.path.rsplit("/", 1)[-1] in RUN_RECORDS)}


def test_same_bytes_with_one_and_two_workers(demo):
    _, runs = demo
    one, two = data_hashes(runs[1]), data_hashes(runs[2])
    assert one == two
    stages = ("ingest", "extract", "clean", "dedup", "filter", "decontaminate", "qa_chunk", "qa_generate", "qa_grade",
              "qa_select", "train_cpt", "train_sft", "merge", "eval", "card", "report")
    models = {f"models/{m}/{f}" for m in ("cpt", "sft", "merged")
              for f in ("model.safetensors", "config.json", "tokenizer.json", "README.md")}
    assert {"papers.parquet", "documents.parquet", "curated/clean.parquet", "curated/dedup.parquet",
            "curated/filter.parquet", "corpus.parquet", "qa/chunks.parquet", "qa/pairs.parquet",
            "qa/grades.parquet", "qa/sft.parquet", "eval/results.parquet", "eval/summary.json", "README.md",
            "report.html"} | {f"decisions/{s}.parquet" for s in stages} | models <= set(one)
    assert {p.split("/")[0] for p in one} == {"papers.parquet", "documents.parquet", "curated", "corpus.parquet", "qa",
                                             "decisions", "models", "eval", "README.md", "report.html"}


def test_one_recipe_trains_merges_75_25_evaluates_and_describes_the_run(demo):
    """The whole pipeline from examples/demo.yaml: the merged model is exactly 0.75 x the fine-tuned model +
    0.25 x the instruct model, it is evaluated on the benchmark (accuracy with its interval), and the card and
    the report describe the run."""
    import torch
    from huggingface_hub import DatasetCard
    from safetensors.torch import load_file

    base, runs = demo
    out = base / "out1"
    sft = load_file(out / "models/sft/model.safetensors")
    instruct = load_file(base / "samples/models/instruct/model.safetensors")
    merged = load_file(out / "models/merged/model.safetensors")
    assert set(merged) == set(sft)
    for name, tensor in merged.items():
        assert torch.equal(tensor, 0.75 * sft[name].float() + 0.25 * instruct[name].float()), name
    summary = json.loads((out / "eval/summary.json").read_text())["overall"]
    assert summary["questions"] == summary["with_answer"] == 12
    assert summary["accuracy"] is not None and summary["ci95"][0] <= summary["accuracy"] <= summary["ci95"][1]
    lines = {line.split(": ", 1)[0]: line for line in run_summary(runs[1])}
    assert "accuracy" in lines["13-eval"]
    card = DatasetCard.load(out / "README.md")
    assert card.data.license and card.data.configs
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 6


def test_demo_synthesises_qa_with_the_tiny_local_models_down_to_sft_examples(demo):
    base, runs = demo
    out = base / "out1"
    chunks = read_polars(out / "qa/chunks.parquet", CHUNK)
    corpus = read_polars(out / "corpus.parquet", DOCUMENT)
    assert set(chunks["paper_id"]) == set(corpus["paper_id"]) and chunks.height > corpus.height
    pairs = read_polars(out / "qa/pairs.parquet", QA_PAIR)
    llm = pairs.filter(pairs["kind"] == "llm")
    # one request per chunk to the in-process generator; a random model's replies do not parse: error rows, raw kept
    assert llm.height == chunks.height and llm["error"].null_count() == 0 and llm["raw"].null_count() == 0
    assert set(llm["model"]) == {"generator"} and set(llm["template"]) == {"generate@1"}
    template = pairs.filter(pairs["kind"] == "template")
    assert template.height > 0 and template["error"].null_count() == template.height
    sft = read_polars(out / "qa/sft.parquet", SFT_EXAMPLE)
    assert sft.height > 0 and set(sft["source"]) == {"template"}
    assert all([m["role"] for m in msgs] == ["user", "assistant"] for msgs in sft["messages"])
    select = read_polars(out / "decisions/qa_select.parquet", DECISION)
    assert sorted(select["item_id"]) == sorted(pairs["pair_id"])  # every pair has a decision
    # the run's summary says exactly what happened: no reply parsed, the template pairs carried the run
    summary = {line.split(": ", 1)[0]: line for line in run_summary(runs[1])}
    assert f"{llm.height} replies that did not parse" in summary["07-qa_generate"]
    assert "no reply parsed, so only the template pairs go on" in summary["07-qa_generate"]
    assert f"{sft.height} SFT examples ({sft.height} template)" in summary["09-qa_select"]
    assert "eval_perplexity" in summary["11-train_sft"]
    models = {m["stage"]: m for m in runs[1].models}
    assert models["qa_generate"]["model_id"] == "generator" and models["qa_grade"]["model_id"] == "grader"
    assert models["qa_generate"]["sha256"] != models["qa_grade"]["sha256"]


def test_demo_outputs_are_typed_and_complete(demo):
    base, _ = demo
    out = base / "out1"
    papers = read_polars(out / "papers.parquet", PAPER)
    docs = read_polars(out / "documents.parquet", DOCUMENT)
    assert papers.height == 7 and docs.height == 7  # 6 with metadata + 1 PDF without; cs.LG filtered
    assert papers.filter(~papers["has_metadata"])["paper_id"].item() == "2401.00006"  # by its file name
    by_id = dict(zip(docs["paper_id"], docs["extractor"]))
    assert by_id["2401.00001"] == "latex" and by_id["2401.00003"] == "pdf"
    scanned = docs.filter(docs["paper_id"] == "2401.00004")["pages"].item()
    assert scanned[0]["reason"] == "text_layer_ok" and scanned[0]["extractor"] == "pymupdf"
    # the scanned page is routed to OCR; with no model configured it is recorded, not silently empty
    assert scanned[1]["reason"].startswith("image_only; nougat not run") and scanned[1]["extractor"] == "none"
    text = docs.filter(docs["paper_id"] == "2401.00002")["text"].item()
    assert "# Methods" in text and "$$" in text and "\\dot{M}" in text  # headings, display math kept
    for stage in ("ingest", "extract", "clean", "dedup"):
        assert read_polars(out / f"decisions/{stage}.parquet", DECISION).height == 7


def test_demo_curation_drops_with_reasons(demo):
    base, _ = demo
    out = base / "out1"
    dropped = {}
    for stage in ("clean", "dedup", "filter", "decontaminate"):
        d = read_polars(out / f"decisions/{stage}.parquet", DECISION)
        dropped |= {r["item_id"]: (stage, r["reason"], r["kept_id"]) for r in d.filter(d["action"] == "dropped").iter_rows(named=True)}
    assert dropped["2401.00002"][:2] == ("dedup", "near_duplicate")  # re-deposited under 2401.00007
    assert dropped["2401.00002"][2] == "2401.00007"
    assert dropped["2401.00003"][0] == "decontaminate" and dropped["2401.00003"][1].startswith("excluded_journal_ref")
    assert dropped["2401.00005"][:2] == ("decontaminate", "benchmark_overlap")
    corpus = read_polars(out / "corpus.parquet", DOCUMENT)
    assert sorted(corpus["paper_id"]) == sorted(set(read_polars(out / "documents.parquet", DOCUMENT)["paper_id"]) - set(dropped))


def test_verify_passes_and_names_one_changed_input_byte(demo, tmp_path):
    base, runs = demo
    assert verify(base / "out1" / "manifest.json") == []
    copy = tmp_path / "copy"
    shutil.copytree(base, copy)
    manifest = json.loads((copy / "out1" / "manifest.json").read_text())
    manifest["inputs"] = [dict(e, path=e["path"].replace(str(base), str(copy))) for e in manifest["inputs"]]
    manifest["sources"] = [p.replace(str(base), str(copy)) for p in manifest["sources"]]
    (copy / "out1" / "manifest.json").write_text(json.dumps(manifest))
    victim = copy / "samples" / "src" / "2401.00002.gz"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    problems = verify(copy / "out1" / "manifest.json")
    assert len(problems) == 1 and "2401.00002.gz" in problems[0]
    assert main(["--quiet", "verify", str(copy / "out1" / "manifest.json")]) == 1


def test_rebuild_from_manifest_alone_reproduces_every_output(demo, tmp_path):
    """Every output, the trained models' run records included: the models are replayed, not trained again."""
    base, runs = demo
    manifest, diffs = rebuild(base / "out2" / "manifest.json", tmp_path / "rebuilt")
    assert diffs == []
    assert {e.path: e.sha256 for e in manifest.outputs} == {e.path: e.sha256 for e in runs[2].outputs}
    assert Manifest.load(tmp_path / "rebuilt" / "manifest.json").steps == runs[2].steps


def demo_recipe(base: Path, **ingest):
    """The demo's data steps (ingest to qa_select; reruns of the model steps: tests/test_train_steps.py,
    tests/test_merge.py)."""
    recipe = load_recipe(base / "recipe.yaml")
    recipe.executor.workers, recipe.executor.quiet = 1, True
    recipe.steps = [s for s in recipe.steps if s.stage in DATA_STEPS]
    recipe.steps[0].config.update(ingest)
    return recipe


def test_a_rerun_with_other_categories_equals_a_fresh_run(demo, tmp_path):
    base, runs = demo
    shutil.copytree(base / "out1", tmp_path / "reused")
    rerun = run_recipe(demo_recipe(base, categories=["gr-qc"]), tmp_path / "reused")
    fresh = run_recipe(demo_recipe(base, categories=["gr-qc"]), tmp_path / "fresh")
    assert data_hashes(rerun) == data_hashes(fresh)
    papers = read_polars(tmp_path / "reused" / "papers.parquet", PAPER)
    assert papers.height and all("gr-qc" in cats for cats in papers.filter(papers["has_metadata"])["categories"])
    assert verify(tmp_path / "reused" / "manifest.json") == []


def test_an_added_paper_reaches_every_step_on_rerun(demo, tmp_path):
    base, _ = demo
    shutil.copytree(base / "samples", tmp_path / "samples")
    shutil.copy(base / "recipe.yaml", tmp_path / "recipe.yaml")
    run_recipe(demo_recipe(tmp_path), tmp_path / "out")
    meta = tmp_path / "samples" / "metadata.jsonl"
    row = json.loads(meta.read_text().splitlines()[0])
    row |= {"id": "2401.00099", "title": "A new paper"}
    meta.write_text(meta.read_text() + json.dumps(row) + "\n")
    shutil.copy(next((tmp_path / "samples" / "pdf").glob("2401.00003*.pdf")), tmp_path / "samples" / "pdf" / "2401.00099v1.pdf")
    rerun = run_recipe(demo_recipe(tmp_path), tmp_path / "out")
    for stage in ("ingest", "extract", "clean", "dedup"):
        assert "2401.00099" in read_polars(tmp_path / "out" / f"decisions/{stage}.parquet", DECISION)["item_id"].to_list(), stage
    fresh = run_recipe(demo_recipe(tmp_path), tmp_path / "fresh")
    assert data_hashes(rerun) == data_hashes(fresh)


def test_the_step_by_step_commands_build_one_verifiable_rebuildable_run(demo, tmp_path, capsys):
    base, runs = demo
    s, out = base / "samples", str(tmp_path / "run1")
    assert main(["ingest", "--metadata", str(s / "metadata.jsonl"), "--pdfs", str(s / "pdf"), "--sources", str(s / "src"),
                 "--out", out, "--quiet"]) == 0
    assert main(["extract", "--out", out, "--quiet"]) == 0
    assert main(["curate", "clean", "--out", out, "--quiet"]) == 0
    manifest = Manifest.load(tmp_path / "run1" / "manifest.json")
    assert [step["stage"] for step in manifest.steps] == ["ingest", "extract", "clean"]
    by_path = {e.path: e.sha256 for e in manifest.outputs}
    assert by_path["documents.parquet"] == {e.path: e.sha256 for e in runs[1].outputs}["documents.parquet"]
    assert main(["verify", str(tmp_path / "run1" / "manifest.json"), "--quiet"]) == 0
    assert main(["rebuild", str(tmp_path / "run1" / "manifest.json"), "--out", str(tmp_path / "again"), "--quiet"]) == 0
    with open(tmp_path / "run1" / "documents.parquet", "ab") as f:
        f.write(b"\0")
    capsys.readouterr()
    assert main(["verify", str(tmp_path / "run1" / "manifest.json")]) == 1
    assert "documents.parquet" in capsys.readouterr().out
    assert main(["curate", "clean", "--out", out, "--quiet"]) == 0  # the tampered output is redone, not blessed
    assert main(["verify", str(tmp_path / "run1" / "manifest.json"), "--quiet"]) == 0
    assert {e.path: e.sha256 for e in Manifest.load(tmp_path / "run1" / "manifest.json").outputs} == by_path


def test_train_cpt_then_sft_from_the_demo_run_gives_a_model_that_generates_and_links_its_data(demo):
    """The README's `make demo` tail: examples/cpt.yaml on the demo's corpus, then examples/sft.yaml on its
    qa/sft.parquet with the CPT output as base; each manifest links back to the run files it consumed."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, runs = demo
    conf = base / "conf"
    conf.mkdir(exist_ok=True)
    for name in ("cpt.yaml", "sft.yaml"):  # the example configs, reading this test's demo run (out1)
        (conf / name).write_text((ROOT / "examples" / name).read_text().replace("../demo-out", "../out1"))
    assert main(["train", "cpt", str(conf / "cpt.yaml"), "--quiet"]) == 0
    assert main(["train", "sft", str(conf / "sft.yaml"), "--quiet"]) == 0
    run_manifest = base / "out1" / "manifest.json"
    outputs = {e.path: e.sha256 for e in runs[1].outputs}
    for folder, consumed in (("cpt-out", "corpus.parquet"), ("sft-out", "qa/sft.parquet")):
        manifest = json.loads((base / folder / "manifest.json").read_text())
        (record,) = manifest["steps"][0]["datasets"]
        assert record["path"] == str(base / "out1" / consumed) and record["sha256"] == outputs[consumed]
        assert record["run_manifest"] == str(run_manifest)
    sft = json.loads((base / "sft-out" / "manifest.json").read_text())
    assert sft["steps"][0]["base_manifest"]["path"] == str(base / "cpt-out" / "manifest.json")
    tokenizer = AutoTokenizer.from_pretrained(base / "sft-out")
    model = AutoModelForCausalLM.from_pretrained(base / "sft-out")
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is a pulsar?"}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    out = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]
