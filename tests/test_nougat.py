"""Nougat OCR on CPU with tiny locally built models: rendering, batching, generation, failure handling.

Nothing here downloads: ``build_tiny_nougat`` trains a tokenizer on the fly and saves a tiny
DonutSwin + MBart model to a temporary folder, which is then loaded the way real weights are.
A *random* tiny model produces the garbage any untrained model does; *scripted* tiny models
(weights set by hand) produce a chosen text, a loop or a ``[MISSING_PAGE_...]`` marker on purpose.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from corpus.extract.nougat import (
    NOUGAT_LICENSE,
    NougatConfig,
    NougatModelError,
    NougatOCR,
    PageRequest,
    model_fingerprint,
)
from corpus.extract.render import PrefetchRenderer, RenderError, rasterize_pages, render_page, render_scale
from corpus.extract.routing import document_extractor, document_pages, merge_pages, route_pages
from tiny_nougat import build_tiny_nougat

SCRIPT = "The flux density of the source is 12 mJy."


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("nougat_models")
    return {
        "random": build_tiny_nougat(root / "random"),
        "text": build_tiny_nougat(root / "text", script=SCRIPT),
        "loop": build_tiny_nougat(root / "loop", script="the mass of the halo and the disk ", loop=True),
        "missing": build_tiny_nougat(root / "missing", script="[MISSING_PAGE_EMPTY:2]"),
        "short": build_tiny_nougat(root / "short", script="Fig."),
    }


def ocr(model_dir, **kw) -> NougatOCR:
    kw.setdefault("max_new_tokens", 32)
    kw.setdefault("render_workers", 0)
    kw.setdefault("batch_size", 4)
    return NougatOCR(NougatConfig(model_dir=model_dir, **kw))


@pytest.fixture(scope="module")
def guide(fixtures):
    return fixtures / "pdf" / "mnras_latex_guide_v3.pdf"


def test_tiny_model_reloads_from_folder_and_reads_its_script(models, guide):
    o = ocr(models["text"])
    assert o.input_size == (64, 48)
    [r] = list(o.ocr_pages([PageRequest(guide, 0, "guide#1")]))
    assert (r.key, r.status, r.text, r.retried) == ("guide#1", "ok", SCRIPT, False)
    assert 0 < r.tokens < 32


def test_batches_across_papers_in_request_order(models, fixtures, guide):
    o = ocr(models["text"], batch_size=4)
    calls = []
    real = o.model.generate

    def counting(*a, **kw):
        calls.append(kw["pixel_values"].shape[0])
        return real(*a, **kw)

    o.model.generate = counting
    scan = fixtures / "pdf" / "hubble1929_pnas_scanned.pdf"
    reqs = [PageRequest(guide, 0, "a1"), PageRequest(guide, 1, "a2"), PageRequest(scan, 0, "b1"),
            PageRequest(scan, 1, "b2"), PageRequest(scan, 2, "b3")]
    results = list(o.ocr_pages(reqs))
    assert [r.key for r in results] == ["a1", "a2", "b1", "b2", "b3"]
    assert calls == [4, 1]  # the first batch mixes both papers
    assert o.stats["pages"] == 5 and o.stats["model_pages"] == 5


def test_prefetch_in_worker_processes_matches_inline(models, guide):
    reqs = [PageRequest(guide, i, i) for i in range(3)]
    inline = list(ocr(models["text"], render_workers=0).ocr_pages(reqs))
    pooled = list(ocr(models["text"], render_workers=1, prefetch=2).ocr_pages(reqs))
    assert inline == pooled


def test_loop_is_retried_with_a_guard(models, guide):
    o = ocr(models["loop"], retry_no_repeat_ngram_size=3)
    [r] = list(o.ocr_pages([PageRequest(guide, 0, "p")]))
    assert r.status == "loop_retried_ok" and r.retried
    assert r.text.startswith("the mass of the halo and the disk")
    assert o.stats["retries"] == 1 and o.stats["model_pages"] == 2


def test_loop_that_survives_the_retry_falls_back_to_text_layer(models, guide):
    o = ocr(models["loop"], retry_no_repeat_ngram_size=0, retry_repetition_penalty=1.0)
    [r] = list(o.ocr_pages([PageRequest(guide, 0, 1)]))
    assert r.status == "loop" and r.text is None and r.retried
    assert "max_new_tokens=32" in r.reason and "still looping" in r.reason
    [merged] = merge_pages([_Layer(1, "text layer of page 1")], route_pages([_Sig(1)], "always"), {1: r})
    assert merged.extractor == "pymupdf" and merged.text == "text layer of page 1"
    assert "nougat loop" in merged.reason and "ocr_fallback" in merged.flags


def test_missing_page_marker_falls_back(models, guide):
    [r] = list(ocr(models["missing"]).ocr_pages([PageRequest(guide, 0, 1)]))
    assert r.status == "missing_page" and r.text is None and "[MISSING_PAGE_EMPTY:2]" in r.reason
    [merged] = merge_pages([_Layer(1, "layer")], route_pages([_Sig(1)], "always"), {1: r})
    assert merged.extractor == "pymupdf" and "nougat missing_page" in merged.reason


def test_empty_output_falls_back(models, guide):
    [r] = list(ocr(models["short"]).ocr_pages([PageRequest(guide, 0, 1)]))
    assert r.status == "empty" and r.text is None
    [merged] = merge_pages([_Layer(1, "")], route_pages([_Sig(1)], "always"), {1: r})
    assert merged.extractor == "none" and "nougat empty" in merged.reason and merged.text == ""


@pytest.mark.parametrize("oom", [torch.OutOfMemoryError, torch.cuda.OutOfMemoryError])
def test_out_of_memory_halves_the_batch_and_continues(models, guide, oom):
    o = ocr(models["text"], batch_size=4)
    real = o.model.generate

    def small_gpu(*a, **kw):
        if kw["pixel_values"].shape[0] > 1:
            raise oom("CUDA out of memory (simulated)")
        return real(*a, **kw)

    o.model.generate = small_gpu
    results = list(o.ocr_pages([PageRequest(guide, i, i) for i in range(6)]))
    assert [r.status for r in results] == ["ok"] * 6
    assert o.batch_size == 1 and o.stats["oom_splits"] >= 2


def test_page_that_never_fits_is_recorded_not_fatal(models, guide):
    o = ocr(models["text"], batch_size=2)

    def no_memory(*a, **kw):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    o.model.generate = no_memory
    results = list(o.ocr_pages([PageRequest(guide, i, i) for i in range(3)]))
    assert [r.status for r in results] == ["oom"] * 3
    assert all("batch size 1" in r.reason for r in results)


def test_bad_pages_and_files_are_errors_naming_the_file(models, guide, tmp_path):
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 this is not a pdf")
    reqs = [PageRequest(guide, 0, "ok"), PageRequest(guide, 99, "range"), PageRequest(broken, 0, "broken")]
    got = {r.key: r for r in ocr(models["text"]).ocr_pages(reqs)}
    assert got["ok"].status == "ok"
    assert got["range"].status == "error" and "mnras_latex_guide_v3.pdf: page 100: page out of range" in got["range"].reason
    assert got["broken"].status == "error" and "broken.pdf" in got["broken"].reason


def test_model_folder_errors(tmp_path):
    with pytest.raises(NougatModelError, match="no config.json"):
        NougatOCR(NougatConfig(model_dir=tmp_path))
    with pytest.raises(ValueError, match="float16"):
        NougatConfig(model_dir=tmp_path, dtype="float16", device="cpu")


def test_fingerprint_hashes_weights_and_reads_id_and_licence(models, tmp_path):
    fp = model_fingerprint(models["text"])
    assert fp["license"] == "apache-2.0" and len(fp["sha256"]) == 64
    assert fp == model_fingerprint(models["text"])
    assert model_fingerprint(models["random"])["sha256"] != fp["sha256"]
    # a Hub-cache snapshot of the official weights: id from the path, CC-BY-NC by default
    snap = tmp_path / "models--facebook--nougat-small" / "snapshots" / "abc123"
    shutil.copytree(models["text"], snap)
    (snap / "README.md").unlink()
    official = model_fingerprint(snap)
    assert official["model_id"] == "facebook/nougat-small"
    assert official["license"] == NOUGAT_LICENSE == "CC-BY-NC-4.0"
    assert official["sha256"] == fp["sha256"]


def test_render_covers_the_model_input_size(guide):
    img = render_page(guide, 0, (896, 672))
    assert img.dtype == np.uint8 and img.shape[2] == 3
    assert img.shape[0] >= 896 - 1 and img.shape[1] >= 672 - 1
    assert min(img.shape[0] - 896, img.shape[1] - 672) <= 1  # just large enough on one side
    assert render_scale(612, 792, (896, 672)) == pytest.approx(max(896 / 792, 672 / 612))
    with PrefetchRenderer((64, 48), workers=0) as r:
        [(_, err)] = list(r.map([("missing.pdf", 0)], lambda x: x))
    assert isinstance(err, RenderError) and "missing.pdf" in str(err)


def test_end_to_end_routed_pipeline_on_fixtures(models, fixtures, tmp_path):
    """Image-only and old-scan pages go to the (garbage-producing) random model, fall back, rows are written."""
    pdf = pytest.importorskip("corpus.extract.pdf")
    from schemas.io import read_table, write_table
    from schemas.tables import DOCUMENT

    imaged = tmp_path / "guide_img.pdf"
    rasterize_pages(fixtures / "pdf" / "mnras_latex_guide_v3.pdf", imaged, [0, 3], dpi=72)
    papers = {"guide": imaged, "hubble": fixtures / "pdf" / "hubble1929_pnas_scanned.pdf"}
    layers = {pid: pdf.extract_pdf(path) for pid, path in papers.items()}
    decisions = {pid: route_pages(res.pages, "auto") for pid, res in layers.items()}
    reqs = [PageRequest(papers[pid], d.page - 1, (pid, d.page)) for pid, ds in decisions.items() for d in ds if d.use_ocr]
    assert len(reqs) == 2 + 6

    o = ocr(models["random"], batch_size=3, max_new_tokens=16)
    results = list(o.ocr_pages(reqs))
    assert len(results) == len(reqs)
    # an untrained model's output is never accepted as text
    assert {r.status for r in results} <= {"loop", "empty", "missing_page"}
    assert all(r.retried for r in results if r.status == "loop")

    rows = []
    for pid, res in layers.items():
        ocr_by_page = {r.key[1]: r for r in results if r.key[0] == pid}
        merged = merge_pages(res.pages, decisions[pid], ocr_by_page)
        text, page_rows = document_pages(merged)
        extractor, reason = document_extractor(merged)
        rows.append({"paper_id": pid, "text": text, "extractor": extractor, "reason": reason,
                     "n_pages": res.n_pages, "n_chars": len(text), "pages": page_rows, "input_sha256": None})
    out = tmp_path / "documents.parquet"
    assert write_table(DOCUMENT, rows, out) == 2
    back = {r["paper_id"]: r for r in read_table(out, DOCUMENT).to_pylist()}

    guide_pages = {p["page"]: p for p in back["guide"]["pages"]}
    assert len(guide_pages) == 10
    for n in (1, 4):  # image-only: no text layer to fall back on -> no text, reason recorded
        assert guide_pages[n]["extractor"] == "none" and guide_pages[n]["start"] == guide_pages[n]["end"]
        assert guide_pages[n]["reason"].startswith("image_only; nougat ")
        assert "ocr_fallback" in guide_pages[n]["flags"]
    assert all(guide_pages[n]["extractor"] == "pymupdf" for n in (2, 3, 5, 6, 7, 8, 9, 10))
    hubble_pages = back["hubble"]["pages"]
    assert all(p["extractor"] == "pymupdf" and "kept text layer" in p["reason"] for p in hubble_pages)
    # no page is lost: each has text or a recorded reason
    for doc in back.values():
        for p in doc["pages"]:
            assert p["end"] > p["start"] or p["reason"]


class _Layer:
    def __init__(self, page: int, text: str):
        self.page, self.text, self.garbled, self.flags = page, text, 0.1, []


def _Sig(page: int):
    from corpus.extract.routing import PageSignals

    return PageSignals(page, chars=100, garbled=0.1)


def test_fingerprint_reads_unchanged_weights_once_per_process_and_a_rewritten_file_again(models, tmp_path, monkeypatch):
    """A run fingerprints the same weights for several manifests, cards and reports: read once; weights
    written again (same name, new bytes) are read again, never taken from memory; training_args.bin is
    not a weight file."""
    import corpus.model_files as model_files

    folder = tmp_path / "m"
    shutil.copytree(models["text"], folder)
    reads = []
    real = model_files.sha256_file
    monkeypatch.setattr(model_files, "sha256_file", lambda p: reads.append(p) or real(p))
    first = model_fingerprint(folder)
    assert len(reads) == len(list(folder.glob("*.safetensors"))) > 0
    assert model_fingerprint(folder) == first and len(reads) == len(list(folder.glob("*.safetensors")))
    weights = next(folder.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert model_fingerprint(folder)["sha256"] != first["sha256"]
    only_bin = tmp_path / "bin"
    only_bin.mkdir()
    (only_bin / "pytorch_model.bin").write_bytes(b"weights")
    (only_bin / "training_args.bin").write_bytes(b"args of one run")
    assert list(model_fingerprint(only_bin)["files"]) == ["pytorch_model.bin"]
