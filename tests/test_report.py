"""The run report (corpus/publish/report.py): every plot drawn from a run that has every table, "not in
this run" for what a run lacks or holds empty, the recipe stage `report` on a real corpus-only run (same
bytes on rebuild), `sagecorpus report RUN_DIR`, and the notebook summaries. The page itself is opened
in a real headless Chromium in tests/test_report_browser.py."""

from __future__ import annotations

import base64
import datetime
import html as html_module
import io
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from corpus.cli import main
from corpus.publish.notebook import Dataset, Run
from demo_recipe import DATA_STEPS
from corpus.publish.report import TITLES, write_report
from corpus.run.manifest import Manifest
from corpus.run.recipe import Recipe, Step, load_recipe, rebuild, run_recipe
from schemas import DECISION, DOCUMENT, GRADE, PAPER, iter_rows, write_table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import make_samples  # noqa: E402

IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)">')


def paper(pid, year, cats):
    return {"paper_id": pid, "categories": cats, "versions": ["v1"], "has_metadata": year is not None, "flags": [],
            "submitted": datetime.date(year, 3, 1) if year else None}


def page(n, extractor, chars=1000):
    return {"page": n, "extractor": extractor, "start": 0, "end": chars, "chars": chars, "garbled": 0.0,
            "reason": "test", "flags": []}


def document(pid, extractor, n_chars, pages=()):
    return {"paper_id": pid, "text": "x" * n_chars, "extractor": extractor, "reason": "test", "n_pages": len(pages),
            "n_chars": n_chars, "pages": list(pages), "input_sha256": None}


def decision(stage, item, action, reason, score=None, cluster=None):
    return {"stage": stage, "item_id": item, "action": action, "reason": reason, "score": score,
            "cluster_id": cluster, "kept_id": None, "detail": "{}"}


def grade(pair, scores, error=None):
    c, s, p, o = scores if scores else (None,) * 4
    return {"pair_id": pair, "model": "grader", "template": "grade@1", "correctness": c, "standalone": s,
            "pertinence": p, "overall": o, "request_key": pair, "raw": "{}", "error": error,
            "prompt_tokens": 10, "completion_tokens": 5}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> Path:
    """A run folder holding every table a plot reads, and a manifest with thresholds, counters and models."""
    run = tmp_path_factory.mktemp("full")
    write_table(PAPER, [paper(f"23{i:02d}.0000{i}", 2021 + i % 3, ["astro-ph.GA", "gr-qc"] if i % 4 == 0 else
                              [["astro-ph.CO", "astro-ph.SR", "astro-ph.GA"][i % 3]]) for i in range(12)]
                + [paper("sha256:" + "ab" * 32, None, [])], run / "papers.parquet")
    docs = [document("a", "latex", 20_000), document("b", "pdf", 9_000, [page(1, "pymupdf"), page(2, "pymupdf")]),
            document("c", "mixed", 30_000, [page(1, "pymupdf"), page(2, "nougat"), page(3, "nougat")]),
            document("d", "none", 0, [page(1, "none")]) | {"text": None}, document("e", "nougat", 400_000, [page(1, "nougat")])]
    write_table(DOCUMENT, docs, run / "documents.parquet")
    write_table(DOCUMENT, docs[:3], run / "corpus.parquet")
    write_table(DECISION, [decision("dedup", "a", "kept", "cluster_representative", cluster="c1"),
                           decision("dedup", "x", "dropped", "exact_duplicate", cluster="c1"),
                           decision("dedup", "y", "dropped", "near_duplicate", 0.9, cluster="c1"),
                           decision("dedup", "b", "kept", "cluster_representative", cluster="c2"),
                           decision("dedup", "z", "dropped", "near_duplicate", 0.85, cluster="c2"),
                           decision("dedup", "c", "kept", "unique")], run / "decisions/dedup.parquet")
    write_table(DECISION, [decision("filter", f"p{i}", "kept" if i / 20 >= 0.6 else "dropped", "q", i / 20)
                           for i in range(20)], run / "decisions/filter.parquet")
    write_table(GRADE, [grade(f"q{i}", (1 + i % 5, 5, 4, 1 + i % 3)) for i in range(15)]
                + [grade("bad", None, "no JSON object in the reply")], run / "qa/grades.parquet")
    steps = [{"stage": "ingest", "config": {}}, {"stage": "filter", "config": {"quality_threshold": 0.6}},
             {"stage": "qa_generate", "config": {"api_key": "sk-secretsecretsecret"}},
             {"stage": "qa_grade", "config": {}}, {"stage": "qa_select", "config": {"min_correctness": 4, "min_overall": 3}}]
    stats = {"00-ingest": {"items": 13, "decisions.kept": 13}, "01-filter": {"items": 20, "decisions.kept": 8, "decisions.dropped": 12},
             "02-qa_generate": {"items": 15, "requests.sent": 12, "requests.stored": 3, "tokens.prompt": 15_000,
                                "tokens.completion": 2_000, "cost.usd": 0.031},
             "03-qa_grade": {"items": 16, "requests.sent": 16, "tokens.prompt": 9_000, "tokens.completion": 400, "cost.usd": 0.004},
             "04-qa_select": {"items": 16, "decisions.kept": 5}}
    models = [{"stage": "qa_generate", "role": "generator", "model_id": "gen-7b", "template": "generate@1", "sha256": None}]
    Manifest(steps=steps, stats=stats, models=models, run={"start": "2026-01-01T00:00:00+00:00", "end": "2026-01-01T01:00:00+00:00",
             "host": "h", "argv": ["run", "recipe.yaml"]}).save(run / "manifest.json")
    return run


def images(html: str) -> dict[str, Image.Image]:
    """Every embedded image of a page, decoded (alt text -> image)."""
    out = {}
    for data, alt in IMG.findall(html):
        img = Image.open(io.BytesIO(base64.b64decode(data)))
        img.load()
        out[html_module.unescape(alt)] = img
    return out


def test_a_run_with_every_table_gets_every_plot_embedded_in_one_self_contained_page(full_run, tmp_path):
    html = write_report(full_run, tmp_path / "report.html").read_text()
    imgs = images(html)
    assert sorted(imgs) == sorted(TITLES.values())  # one figure per plot, all decodable PNGs
    for alt, img in imgs.items():
        assert img.format == "PNG" and img.width > 300 and img.height > 150, alt
        assert len(img.convert("L").getcolors(1 << 16)) > 10, f"{alt}: a blank image"  # not a blank canvas
    assert "not in this run" not in html
    # self-contained: no reference to anything outside the page
    assert not re.findall(r'(?:src|href)="(?!data:)', html)
    assert "<script" not in html and "<link" not in html
    # what the captions and tables say is read from the tables and the manifest
    assert "20 documents scored; 12 below the threshold 0.6" in html
    assert "15 pairs graded; 1 grade replies could not be parsed" in html
    assert "2 cluster(s) (exact and near duplicates) over 6 documents; 3 documents dropped" in html
    assert "13 papers ingested" in html and "gen-7b" in html
    assert "sk-secretsecretsecret" not in html  # configs are redacted before they are shown


def test_the_same_run_gives_the_same_bytes(full_run, tmp_path):
    a = write_report(full_run, tmp_path / "a.html").read_bytes()
    b = write_report(full_run, tmp_path / "b.html").read_bytes()
    assert a == b


def test_a_run_without_tables_or_with_empty_ones_says_not_in_this_run_for_each_plot(tmp_path):
    run = tmp_path / "run"
    write_table(PAPER, [], run / "papers.parquet")  # empty
    write_table(DOCUMENT, [], run / "documents.parquet")
    write_table(DECISION, [decision("filter", "a", "kept", "passed")], run / "decisions/filter.parquet")  # no scores
    write_table(DECISION, [decision("dedup", "a", "kept", "unique")], run / "decisions/dedup.parquet")  # no cluster
    Manifest(steps=[{"stage": "ingest", "config": {}}], stats={"00-ingest": {"items": 0}}).save(run / "manifest.json")
    html = write_report(run, tmp_path / "report.html").read_text()
    assert images(html) == {}
    assert "0 of 8 plots" in html
    for said in ["not in this run: papers.parquet is empty",
                 "not in this run: documents.parquet is empty; no corpus.parquet",
                 "not in this run: the filter step applied no quality classifier",
                 "no duplicates in this run: all 1 documents are unique",
                 "not in this run: no qa/grades.parquet (the qa_grade step writes it)",
                 "not in this run: no step called a model"]:
        assert said in html


def test_a_table_that_cannot_be_read_is_named_and_the_other_plots_are_still_drawn(full_run, tmp_path):
    run = tmp_path / "run"
    for rel in ["manifest.json", "documents.parquet", "corpus.parquet", "qa/grades.parquet"]:
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_bytes((full_run / rel).read_bytes())
    write_table(DECISION, [decision("ingest", "a", "kept", "ok")], run / "papers.parquet")  # the wrong table
    html = write_report(run, tmp_path / "report.html").read_text()
    assert re.search(r"could not be read: .*papers\.parquet: holds table &#x27;decision&#x27; v1, expected table &#x27;paper&#x27;", html)
    assert {"Text length distribution", "Q&A grades per criterion"} <= set(images(html))


# ---------------------------------------------------------------------------------------- the stage


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory) -> tuple[Path, Recipe]:
    """A real corpus-only run (no Q&A) of the sample papers, ending with the report step."""
    base = tmp_path_factory.mktemp("corpus_run")
    make_samples.write_samples(base / "samples")
    recipe = load_recipe(ROOT / "examples" / "demo.yaml")
    steps = [s for s in recipe.steps if s.stage in DATA_STEPS and not s.stage.startswith("qa_")]
    for s in steps:  # the recipe's paths point at ../samples from examples/
        s.config = json.loads(json.dumps(s.config).replace(str(ROOT / "samples"), str(base / "samples")))
    recipe = Recipe(steps=[*steps, Step(stage="report")], executor={"kind": "local", "workers": 1, "tasks": 2, "quiet": True})
    run_recipe(recipe, base / "run")
    return base / "run", recipe


def test_the_report_step_ends_a_corpus_only_run_and_is_listed_in_its_manifest(corpus_run):
    run, _ = corpus_run
    manifest = Manifest.load(run / "manifest.json")
    assert "report.html" in {e.path for e in manifest.outputs}
    html = (run / "report.html").read_text()
    assert set(images(html)) == {"Papers per year", "Papers per category", "Text length distribution",
                                 "Extractor per page", "Deduplication cluster sizes"}
    assert "not in this run: no qa/grades.parquet" in html and "not in this run: no step called a model" in html
    (row,) = iter_rows(run / "decisions/report.parquet", DECISION)
    assert row["action"] == "kept" and set(json.loads(row["detail"])["not_in_run"]) == {"quality_scores", "grades", "usage"}
    # the steps table holds the counters of every step before it, from their work folders
    assert re.search(r"<td>03-dedup</td><td class=\"n\">7</td><td class=\"n\">6</td>", html)


def test_the_report_is_reused_then_redone_when_an_earlier_config_changes_and_rebuilds_to_the_same_bytes(corpus_run, tmp_path):
    run, recipe = corpus_run
    before = (run / "report.html").stat().st_mtime_ns
    run_recipe(recipe, run)
    assert (run / "report.html").stat().st_mtime_ns == before  # nothing changed: reused
    _, diffs = rebuild(run / "manifest.json", tmp_path / "rebuilt")
    assert diffs == []  # report.html included: it depends on neither the folder nor the time
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    changed = recipe.model_copy(deep=True)
    (filter_step,) = [s for s in changed.steps if s.stage == "filter"]
    filter_step.config["quality_threshold"] = 0.25  # changes no byte the filter writes (no quality model)...
    run_recipe(changed, copy)
    assert (copy / "decisions/filter.parquet").read_bytes() == (run / "decisions/filter.parquet").read_bytes()
    assert (copy / "report.html").read_bytes() != (run / "report.html").read_bytes()  # ... but the report shows it
    assert "0.25" in (copy / "report.html").read_text()


def test_sagecorpus_report_adds_the_step_to_a_run(corpus_run, tmp_path, capsys):
    run, recipe = corpus_run
    other = tmp_path / "run"
    run_recipe(Recipe(steps=recipe.steps[:-1], executor=recipe.executor), other)
    assert not (other / "report.html").exists()
    assert main(["report", str(other), "--quiet"]) == 0
    assert [s["stage"] for s in Manifest.load(other / "manifest.json").steps][-1] == "report"
    assert (other / "report.html").read_bytes() == (run / "report.html").read_bytes()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no manifest.json: not a run folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- notebooks


def test_dataset_and_run_summaries_for_notebooks(full_run, corpus_run):
    d = Dataset(full_run / "qa/grades.parquet")
    html = d._repr_html_()
    assert "grade v2" in html and "16 rows" in html and "1-5: is the answer right" in html  # table, rows, column docs
    assert "<td>q4</td>" in html and "<td>q5</td>" not in html  # the first five rows
    assert d.stats()["nulls"]["error"] == 15 and d.head(2)[0]["pair_id"] == "q0"
    run, _ = corpus_run
    r = Run(run)
    html = r._repr_html_()
    assert "06-report" in html and "corpus.parquet" in html and "paper v1" in html
    assert r["corpus.parquet"].rows == r.datasets["corpus.parquet"].rows > 0
    with pytest.raises(ValueError, match="report.html: not a readable Parquet file"):
        Dataset(run / "report.html")


# ---------------------------------------------------------------------------------------- a real browser

CHECK_PAGE = """(async () => {
  const images = [];
  for (const img of document.images) {
    let decoded = true, error = null;
    try { await img.decode(); } catch (e) { decoded = false; error = String(e); }
    images.push({alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
                 shown: img.getBoundingClientRect().width, decoded, error, scheme: img.src.split(",")[0]});
  }
  return {ready: document.readyState, title: document.title, images,
          sections: document.querySelectorAll("section").length,
          missing: [...document.querySelectorAll("section .missing")].map(e => e.textContent)};
})()"""


def chromium() -> str:
    import os
    import shutil

    for name in (os.environ.get("SAGECORPUS_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    pytest.skip("no chromium found (CI installs Debian's chromium in .ci/run; or set SAGECORPUS_CHROMIUM)")


def open_in_chromium(page: Path, profile: Path, width: int = 1000) -> tuple[dict, list[str], bytes]:
    """Load ``page`` in a real headless Chromium through the DevTools protocol: what the page's script
    found (images decoded...), every URL the page requested, and a full-page PNG screenshot."""
    import asyncio
    import subprocess
    import time

    import aiohttp

    proc = subprocess.Popen(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
         "--hide-scrollbars", f"--window-size={width},900", "--remote-debugging-port=0", f"--user-data-dir={profile}",
         "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            assert proc.poll() is None, f"chromium exited with {proc.returncode}"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port in 60 s"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])

        async def session():
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                    target = next(t for t in await r.json() if t["type"] == "page")
                async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    events, ids = [], iter(range(1, 1 << 30))

                    async def call(method, **params):
                        i = next(ids)
                        await ws.send_json({"id": i, "method": method, "params": params})
                        while True:
                            msg = await ws.receive_json()
                            if msg.get("id") == i:
                                assert "error" not in msg, f"{method}: {msg['error']}"
                                return msg["result"]
                            events.append(msg)

                    await call("Page.enable")
                    await call("Network.enable")
                    await call("Page.navigate", url=page.as_uri())
                    while not any(e.get("method") == "Page.loadEventFired" for e in events):
                        events.append(await ws.receive_json())
                    found = await call("Runtime.evaluate", expression=CHECK_PAGE, awaitPromise=True, returnByValue=True)
                    size = (await call("Page.getLayoutMetrics"))["cssContentSize"]
                    shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                                      clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
                    urls = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
                    return found["result"]["value"], urls, base64.b64decode(shot["data"])

        return asyncio.run(asyncio.wait_for(session(), 120))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except Exception:
            proc.kill()


def test_the_report_renders_in_headless_chromium_with_every_plot_decoded(full_run, tmp_path):
    page = write_report(full_run, tmp_path / "report.html")
    found, urls, screenshot = open_in_chromium(page, tmp_path / "profile")
    assert found["ready"] == "complete" and found["title"] == "sagecorpus run report"
    assert found["sections"] == len(TITLES) and found["missing"] == []
    assert sorted(i["alt"] for i in found["images"]) == sorted(TITLES.values())
    for img in found["images"]:  # every image decoded by the browser, and laid out on the page
        assert img["decoded"] and img["complete"] and img["width"] > 300 and img["height"] > 150 and img["shown"] > 300, img
        assert img["scheme"] == "data:image/png;base64"
    assert [u for u in urls if not u.startswith("data:")] == [page.as_uri()]  # nothing fetched but the page
    shot = Image.open(io.BytesIO(screenshot))
    shot.load()
    (tmp_path / "screenshot.png").write_bytes(screenshot)
    assert shot.format == "PNG" and shot.width >= 900 and shot.height > 3000  # the whole page, plots one below another
    rgb = shot.convert("RGB")
    colors = rgb.getcolors(1 << 20)
    assert len(colors) > 200  # text, tables and plots, not a blank or error page
    bar = sum(n for n, (r, g, b) in colors if abs(r - 0x4C) < 12 and abs(g - 0x72) < 12 and abs(b - 0xB0) < 12)
    assert bar > 20_000  # the plots' bars are painted on the screenshot


def test_a_run_without_plots_renders_too(tmp_path):
    run = tmp_path / "run"
    Manifest(steps=[{"stage": "ingest", "config": {}}], stats={"00-ingest": {"items": 0}}).save(run / "manifest.json")
    page = write_report(run, tmp_path / "report.html")
    found, _, screenshot = open_in_chromium(page, tmp_path / "profile")
    assert found["images"] == [] and len(found["missing"]) == len(TITLES)
    assert all("not in this run" in m for m in found["missing"])
    assert Image.open(io.BytesIO(screenshot)).format == "PNG"


def test_the_report_says_what_each_step_did_in_the_words_of_the_run_summary(corpus_run):
    from corpus.run.summary import run_summary

    run, _ = corpus_run
    html = (run / "report.html").read_text()
    manifest = Manifest.load(run / "manifest.json")
    for line in run_summary(manifest)[:-1]:  # the steps before the report, each as `sagecorpus run` printed it
        key, text = line.split(": ", 1)
        assert f"<li><b>{key}</b>: {html_module.escape(text)}</li>" in html
