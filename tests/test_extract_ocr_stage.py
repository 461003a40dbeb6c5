"""Nougat inside the extract stage: routed pages only, batched, recorded, and replayed on rebuild."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from corpus.extract import nougat as nougat_module  # noqa: E402
from corpus.extract.render import rasterize_pages  # noqa: E402
from corpus.run.executor import ExecutorConfig  # noqa: E402
from corpus.run.item_store import ReplayMiss  # noqa: E402
from corpus.run.recipe import Recipe, Step, rebuild, run_recipe  # noqa: E402
from schemas import DOCUMENT, OCR_PAGE, read_polars  # noqa: E402
from tiny_nougat import build_tiny_nougat  # noqa: E402

SCRIPT = "The nebula recedes at 630 km/s, $v = H_0 d$."


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_nougat(tmp_path_factory.mktemp("nougat") / "model", script=SCRIPT)


@pytest.fixture
def pdfs(fixtures, tmp_path) -> Path:
    folder = tmp_path / "pdf"
    folder.mkdir()
    # the MNRAS guide with pages 2 and 4 rasterised (no text layer) and a born-digital paper untouched
    rasterize_pages(fixtures / "pdf" / "mnras_latex_guide_v3.pdf", folder / "2301.00001v1.pdf", [1, 3], dpi=60)
    (folder / "2301.00002v1.pdf").write_bytes((fixtures / "pdf" / "corrfunc_sinha2016_elsarticle.pdf").read_bytes())
    return folder


def recipe(pdfs: Path, model: Path | None, policy: str = "auto") -> Recipe:
    extract = {"ocr_policy": policy, "nougat": {"max_new_tokens": 40, "batch_size": 2, "render_workers": 0}}
    if model:
        extract["ocr_model"] = str(model)
    return Recipe(steps=[Step(stage="ingest", config={"pdfs": [str(pdfs)]}), Step(stage="extract", config=extract)],
                  executor=ExecutorConfig(tasks=2, quiet=True))


def test_routed_pages_get_nougat_text_the_rest_keep_their_layer(pdfs, tiny_model, tmp_path):
    manifest = run_recipe(recipe(pdfs, tiny_model), tmp_path / "out")
    docs = read_polars(tmp_path / "out" / "documents.parquet", DOCUMENT)
    guide = docs.filter(docs["pages"].list.len() == 10)
    pages = guide["pages"].item()
    assert [p["extractor"] for p in pages if p["page"] in (2, 4)] == ["nougat", "nougat"]
    assert all(p["extractor"] == "pymupdf" for p in pages if p["page"] not in (2, 4))
    text = guide["text"].item()
    assert text[pages[1]["start"]:pages[1]["end"]].startswith("The nebula recedes")
    assert guide["extractor"].item() == "mixed"
    other = docs.filter(docs["pages"].list.len() != 10)
    assert other["extractor"].item() == "pdf"  # nothing routed on a clean born-digital paper
    ocr = read_polars(tmp_path / "out" / "ocr_pages.parquet", OCR_PAGE)
    assert sorted(ocr["page"]) == [2, 4] and set(ocr["status"]) == {"ok"}
    stats = manifest.stats["01-extract"]
    assert stats["pages.routed"] == 2 and stats["pages.model"] == 2 and stats["pages"] == 22
    (model,) = manifest.models
    assert model["license"] and model["sha256"] and model["parameters"]["max_new_tokens"] == 40


def test_rebuild_replays_stored_pages_without_loading_the_model(pdfs, tiny_model, tmp_path, monkeypatch):
    original = run_recipe(recipe(pdfs, tiny_model), tmp_path / "out")

    def refuse(*args, **kwargs):
        raise AssertionError("the model must not run during rebuild")

    monkeypatch.setattr(nougat_module.NougatOCR, "__init__", refuse)
    manifest, diffs = rebuild(tmp_path / "out" / "manifest.json", tmp_path / "again")
    assert diffs == []
    assert manifest.stats["01-extract"]["pages.replayed"] == 2
    assert {e.path: e.sha256 for e in manifest.outputs} == {e.path: e.sha256 for e in original.outputs}
    # the rebuilt folder keeps the pages it replayed, so it can be rebuilt in turn
    assert rebuild(tmp_path / "again" / "manifest.json", tmp_path / "third")[1] == []
    # without the original's stored pages, a rebuild says so instead of running the model
    shutil.rmtree(tmp_path / "out" / "_store")
    with pytest.raises(ReplayMiss, match=r"replay only: 2 OCR page\(s\) not in the stored outputs .*out/_store/extract"):
        rebuild(tmp_path / "out" / "manifest.json", tmp_path / "fourth")


def test_a_killed_ocr_run_does_not_redo_the_pages_it_stored(pdfs, tiny_model, tmp_path, monkeypatch):
    ocr_pages = nougat_module.NougatOCR.ocr_pages
    asked = []

    def killed_after_one_page(self, requests):
        for result in ocr_pages(self, requests):
            yield result
            raise KeyboardInterrupt("killed after the first page")

    def counted(self, requests):
        requests = list(requests)
        asked.extend(r.page_index + 1 for r in requests)
        return ocr_pages(self, requests)

    monkeypatch.setattr(nougat_module.NougatOCR, "ocr_pages", killed_after_one_page)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe(pdfs, tiny_model), tmp_path / "out")
    monkeypatch.setattr(nougat_module.NougatOCR, "ocr_pages", counted)
    manifest = run_recipe(recipe(pdfs, tiny_model), tmp_path / "out")
    assert asked == [4]  # page 2 was transcribed and stored before the kill
    assert manifest.stats["01-extract"]["pages.model"] == 1 and manifest.stats["01-extract"]["pages.replayed"] == 1
    fresh = run_recipe(recipe(pdfs, tiny_model), tmp_path / "fresh")
    assert {e.path: e.sha256 for e in manifest.outputs} == {e.path: e.sha256 for e in fresh.outputs}


def test_without_a_model_routed_pages_are_recorded_not_lost(pdfs, tmp_path):
    run_recipe(recipe(pdfs, None), tmp_path / "out")
    docs = read_polars(tmp_path / "out" / "documents.parquet", DOCUMENT)
    pages = docs.filter(docs["pages"].list.len() == 10)["pages"].item()
    missing = [p for p in pages if p["page"] in (2, 4)]
    assert all(p["extractor"] == "none" and "image_only" in p["reason"] and "nougat not run" in p["reason"] for p in missing)
    assert not (tmp_path / "out" / "ocr_pages.parquet").exists()


def test_policy_never_and_always(pdfs, tiny_model, tmp_path):
    never = run_recipe(recipe(pdfs, tiny_model, "never"), tmp_path / "never")
    assert never.stats["01-extract"].get("pages.routed", 0) == 0
    always = run_recipe(recipe(pdfs, tiny_model, "always"), tmp_path / "always")
    assert always.stats["01-extract"]["pages.routed"] == 22
    detail = [json.loads(d) for d in read_polars(tmp_path / "always" / "decisions/extract.parquet", __import__("schemas").DECISION)["detail"]]
    assert sorted(len(d["pages_routed_to_ocr"]) for d in detail) == [10, 12]


def test_the_model_loads_once_per_worker_process_not_once_per_shard(pdfs, tiny_model, tmp_path, monkeypatch):
    import corpus.extract.ocr as ocr_module
    import corpus.run.stage as stage_module

    monkeypatch.setattr(stage_module, "_PER_PROCESS", {})
    loads = []
    real = ocr_module.NougatOCR

    def counting(config):
        loads.append(config.model_dir)
        return real(config)

    monkeypatch.setattr(ocr_module, "NougatOCR", counting)
    run_recipe(recipe(pdfs, tiny_model, policy="always"), tmp_path / "out")  # 2 shards, each with routed pages
    ocr = read_polars(tmp_path / "out" / "ocr_pages.parquet", OCR_PAGE)
    assert ocr["paper_id"].n_unique() == 2
    assert loads == [str(tiny_model)]
