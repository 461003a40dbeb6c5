"""Routed Nougat vs "always Nougat" (the reference recipe) on the same pages with the same model.

The set: the six fixture PDFs plus a copy of each in which every third page (3, 6, 9, ...) is
replaced by its rasterised image (no text layer). Both pipelines run the full path per paper -
text-layer extraction (``corpus.extract.pdf``), routing (``auto`` vs ``always``), Nougat on the
routed pages (batched across papers, rendered ahead in worker processes), merge into document
pages - and are timed end to end.

Figures (one JSON line each, last on stdout):
  pages_per_s         input pages per second, routed; anchor = always-Nougat, ratio = routed / always
  model_pages_saved   pages sent to the model by always / by routed (target >= 3)
  image_pages_missed  rasterised (image-only) pages the router kept on the text layer (target 0)
  pages_lost          input pages with neither text nor a recorded reason in the routed output (target 0)
  pages_per_s_bs{1,8,32}  CUDA only: model throughput at those batch sizes (target null)

Without ``--model-dir`` a tiny randomly initialised Nougat is built locally (no download): its
speeds say nothing about the real model's, only the page counts and the losses are meaningful then.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the tiny Nougat builder is a test helper, not library code

from corpus.extract.nougat import NougatConfig, NougatOCR, PageRequest  # noqa: E402
from corpus.extract.pdf import extract_pdf  # noqa: E402
from corpus.extract.render import page_count, rasterize_pages  # noqa: E402
from corpus.extract.routing import document_pages, merge_pages, route_pages, routing_stats  # noqa: E402
from tiny_nougat import build_tiny_nougat  # noqa: E402

NAME = "ocr"


def figure(metric, value, unit, anchor=None, anchor_value=None, target=None, target_on="value", better="higher"):
    ratio = value / anchor_value if anchor_value else None
    return {"bench": NAME, "metric": metric, "value": value, "unit": unit, "anchor": anchor,
            "anchor_value": anchor_value, "ratio": ratio, "target": target, "target_on": target_on, "better": better}


def build_set(fixtures: Path, work: Path) -> tuple[list[tuple[str, Path]], set[tuple[str, int]]]:
    """The six PDFs and their every-third-page-rasterised copies; returns papers and image-only pages."""
    papers, image_pages = [], set()
    for pdf in sorted((fixtures / "pdf").glob("*.pdf")):
        papers.append((pdf.stem, pdf))
        copy = work / f"{pdf.stem}__img3.pdf"
        replaced = rasterize_pages(pdf, copy, range(2, page_count(pdf), 3), dpi=100)
        papers.append((copy.stem, copy))
        image_pages |= {(copy.stem, i + 1) for i in replaced}
    return papers, image_pages


def run_pipeline(papers, policy: str, cfg: NougatConfig) -> dict:
    """Extract, route, OCR and merge every paper; returns timing, counts and the merged pages."""
    ocr = NougatOCR(cfg)
    t0 = time.perf_counter()
    layers = {pid: extract_pdf(path) for pid, path in papers}
    decisions = {pid: route_pages(res.pages, policy) for pid, res in layers.items()}
    paths = dict(papers)
    reqs = [PageRequest(paths[pid], d.page - 1, (pid, d.page)) for pid, ds in decisions.items() for d in ds if d.use_ocr]
    results = {r.key: r for r in ocr.ocr_pages(reqs)}
    documents = {}
    for pid, res in layers.items():
        by_page = {page: r for (p, page), r in results.items() if p == pid}
        documents[pid] = document_pages(merge_pages(res.pages, decisions[pid], by_page))
    seconds = time.perf_counter() - t0
    n_pages = sum(res.n_pages for res in layers.values())
    all_decisions = [d for ds in decisions.values() for d in ds]
    return {"seconds": seconds, "pages": n_pages, "model_requests": len(reqs), "stats": dict(ocr.stats),
            "routing": routing_stats(all_decisions), "decisions": decisions, "documents": documents,
            "layers": layers, "statuses": [r.status for r in results.values()]}


def model_throughput(cfg: NougatConfig, papers, batch_size: int, n_pages: int) -> float:
    """Pages per second of the model alone (rendering prefetched) at one batch size, CUDA only."""
    import dataclasses

    ocr = NougatOCR(dataclasses.replace(cfg, batch_size=batch_size))
    reqs = [PageRequest(path, i, (pid, i)) for pid, path in papers for i in range(page_count(path))][:n_pages]
    list(ocr.ocr_pages(reqs[:batch_size]))  # warm-up
    t0 = time.perf_counter()
    list(ocr.ocr_pages(reqs))
    return len(reqs) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", help="Nougat weights folder (default: build a tiny random model)")
    ap.add_argument("--fixtures", default=os.environ.get("SAGECORPUS_FIXTURES", str(ROOT.parent / "shared" / "fixtures")))
    ap.add_argument("--device", default="cuda" if _cuda() else "cpu")
    ap.add_argument("--dtype", default=None, help="default bfloat16 on CUDA, float32 on CPU")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default 3584 with real weights, 48 with the tiny model")
    ap.add_argument("--render-workers", type=int, default=2)
    args = ap.parse_args(argv)

    fixtures = Path(args.fixtures)
    if not (fixtures / "pdf").is_dir():
        print(f"fixtures not found at {fixtures} (set SAGECORPUS_FIXTURES)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = Path(args.model_dir) if args.model_dir else build_tiny_nougat(work / "tiny_nougat")
        tiny = args.model_dir is None
        cfg = NougatConfig(
            model_dir=model_dir, device=args.device,
            dtype=args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32"),
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens or (48 if tiny else 3584),
            render_workers=args.render_workers,
        )
        papers, image_pages = build_set(fixtures, work)
        always = run_pipeline(papers, "always", cfg)
        routed = run_pipeline(papers, "auto", cfg)

        missed = sum(1 for pid, page in image_pages
                     if not next(d for d in routed["decisions"][pid] if d.page == page).use_ocr)
        lost = 0
        for pid, res in routed["layers"].items():
            _, rows = routed["documents"][pid]
            seen = {r["page"] for r in rows}
            lost += sum(1 for n in range(1, res.n_pages + 1) if n not in seen)
            lost += sum(1 for r in rows if r["end"] <= r["start"] and not r["reason"])

        info = {
            "model": "tiny random (built locally)" if tiny else str(model_dir), "device": cfg.device,
            "pages": routed["pages"], "image_only_pages": len(image_pages),
            "routed": routed["routing"], "always_seconds": always["seconds"], "routed_seconds": routed["seconds"],
            "routed_model_stats": routed["stats"], "always_model_stats": always["stats"],
        }
        print("# " + json.dumps(info, default=str))
        lines = [
            figure("pages_per_s", routed["pages"] / routed["seconds"], "pages/s", "always-nougat",
                   always["pages"] / always["seconds"]),
            figure("model_pages_saved", always["model_requests"] / max(1, routed["model_requests"]), "x",
                   target=3, better="higher"),
            figure("image_pages_missed", missed, "pages", target=0, better="lower"),
            figure("pages_lost", lost, "pages", target=0, better="lower"),
        ]
        if cfg.device.startswith("cuda"):
            for bs in (1, 8, 32):
                lines.append(figure(f"pages_per_s_bs{bs}", model_throughput(cfg, papers, bs, 64), "pages/s"))
        else:
            print("# pages_per_s_bs1/_bs8/_bs32: CUDA only; not measured on this CPU run")
        for line in lines:
            print(json.dumps(line))
    return 0


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    raise SystemExit(main())
