"""arXiv licence URLs as short ids, and the ingest step's licence filter on real arXiv metadata."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from corpus.publish.licenses import LICENSES, hub_license, license_id, parse_ids
from corpus.run.executor import ExecutorConfig
from corpus.run.recipe import Recipe, Step, run_recipe
from schemas import DECISION, PAPER, read_polars


@pytest.mark.parametrize("url, lid", [
    ("http://creativecommons.org/licenses/by/4.0/", "cc-by-4.0"),
    ("http://creativecommons.org/licenses/by-sa/4.0/", "cc-by-sa-4.0"),
    ("http://creativecommons.org/licenses/by-nc-sa/4.0/", "cc-by-nc-sa-4.0"),
    ("http://creativecommons.org/licenses/by-nc-nd/4.0/", "cc-by-nc-nd-4.0"),
    ("http://creativecommons.org/licenses/by/3.0/", "cc-by-3.0"),
    ("http://creativecommons.org/licenses/by-nc-sa/3.0/", "cc-by-nc-sa-3.0"),
    ("http://creativecommons.org/publicdomain/zero/1.0/", "cc0-1.0"),
    ("http://creativecommons.org/licenses/publicdomain/", "public-domain"),
    ("http://arxiv.org/licenses/nonexclusive-distrib/1.0/", "arxiv-nonexclusive"),
    ("http://arxiv.org/licenses/assumed-1991-2003/", "assumed-1991-2003"),
    (None, "assumed-1991-2003"),
    ("https://www.creativecommons.org/licenses/by/4.0", "cc-by-4.0"),  # scheme, www and slash do not matter
    ("http://example.org/my-licence/", "unknown"),
])
def test_arxiv_licence_urls_map_to_short_ids(url, lid):
    assert license_id(url) == lid


def test_a_paper_without_metadata_has_an_unknown_licence_and_hub_ids():
    assert license_id(None, has_metadata=False) == "unknown"
    assert hub_license("cc-by-nc-nd-4.0") == "cc-by-nc-nd-4.0" and hub_license("cc0-1.0") == "cc0-1.0"
    assert hub_license("arxiv-nonexclusive") == "other" and hub_license("unknown") == "unknown"


def test_licence_ids_are_checked_with_a_message_naming_the_bad_one():
    assert parse_ids("cc-by-4.0, cc0-1.0 cc-by-4.0") == ["cc-by-4.0", "cc0-1.0"]
    with pytest.raises(ValueError, match=r"unknown licence id\(s\) \['cc-by'\]; known: cc-by-4.0"):
        parse_ids("cc-by,cc0-1.0")


def test_the_real_arxiv_metadata_licences(fixtures):
    head = [json.loads(line) for line in (fixtures / "metadata" / "arxiv_kaggle_metadata_head100.jsonl").open()]
    assert Counter(license_id(r["license"]) for r in head) == {
        "assumed-1991-2003": 87, "arxiv-nonexclusive": 11, "cc-by-nc-nd-4.0": 2}
    unarxive = [json.loads(line)["metadata"] for line in (fixtures / "metadata" / "unarxive_2212_astro_subset4.jsonl").open()]
    assert {license_id(r["license"]) for r in unarxive} == {"cc-by-4.0"}


def ingest(tmp_path, name, **config):
    recipe = Recipe(steps=[Step(stage="ingest", config=config)], executor=ExecutorConfig(tasks=2, quiet=True))
    return run_recipe(recipe, tmp_path / name), tmp_path / name


def test_ingest_keeps_only_the_licences_asked_and_says_why_for_every_other_paper(fixtures, tmp_path):
    meta = str(fixtures / "metadata" / "arxiv_kaggle_metadata_head100.jsonl")
    manifest, out = ingest(tmp_path, "nd", metadata=[meta], categories=[], require_files=False,
                           licenses=["cc-by-nc-nd-4.0", "cc0-1.0"])
    papers = read_polars(out / "papers.parquet", PAPER)
    assert papers.height == 2 and {license_id(u) for u in papers["license"]} == {"cc-by-nc-nd-4.0"}
    rows = read_polars(out / "decisions/ingest.parquet", DECISION)
    dropped = rows.filter(rows["reason"] == "filtered_out")
    assert dropped.height == 98 and set(dropped["action"]) == {"dropped"}
    details = [json.loads(d) for d in dropped["detail"]]
    assert Counter(d["license_id"] for d in details) == {"assumed-1991-2003": 87, "arxiv-nonexclusive": 11}
    assert all(d["filter"] == "licenses" and d["licenses"] == ["cc-by-nc-nd-4.0", "cc0-1.0"] for d in details)
    one = next(d for d in details if d["arxiv_id"] == "0704.0001")
    assert one["license"] is None and one["license_id"] == "assumed-1991-2003"
    assert manifest.stats["00-ingest"]["metadata.filtered.license"] == 98


def test_a_file_of_a_paper_under_another_licence_or_without_metadata_gets_a_row(fixtures, tmp_path):
    pdfs = tmp_path / "pdf"
    pdfs.mkdir()
    pdf = (fixtures / "pdf" / "hwobows_vaughan2023_mnras.pdf").read_bytes()
    (pdfs / "0704.0009v1.pdf").write_bytes(pdf)  # astro-ph, licence null: assumed-1991-2003
    (pdfs / "0704.0033v1.pdf").write_bytes((fixtures / "pdf" / "aastex63_sample_article.pdf").read_bytes())
    (pdfs / "upload.pdf").write_bytes((fixtures / "pdf" / "corrfunc_sinha2016_elsarticle.pdf").read_bytes())
    meta = str(fixtures / "metadata" / "arxiv_kaggle_metadata_head100.jsonl")
    nd = [json.loads(line) for line in Path(meta).read_text().splitlines() if "by-nc-nd" in line]
    assert "0704.0033" in {r["id"] for r in nd}
    _, out = ingest(tmp_path, "files", metadata=[meta], pdfs=[str(pdfs)], categories=[], licenses=["cc-by-nc-nd-4.0"])
    assert read_polars(out / "papers.parquet", PAPER)["paper_id"].to_list() == ["0704.0033"]
    rows = read_polars(out / "decisions/ingest.parquet", DECISION)
    by_item = {i: (r, json.loads(d)) for i, r, d in zip(rows["item_id"], rows["reason"], rows["detail"])}
    reason, detail = by_item[str(pdfs / "0704.0009v1.pdf")]
    assert reason == "filtered_out" and detail["license_id"] == "assumed-1991-2003" and detail["arxiv_id"] == "0704.0009"
    reason, detail = by_item[str(pdfs / "upload.pdf")]
    assert reason == "filtered_out" and detail["license_id"] == "unknown" and "no metadata row" in detail["why"]
    assert "0704.0009" not in by_item  # its file's row says it, once


def test_ingest_command_takes_the_licences_comma_separated(fixtures, tmp_path):
    from corpus.cli import main

    meta = str(fixtures / "metadata" / "arxiv_kaggle_metadata_head100.jsonl")
    assert main(["ingest", "--metadata", meta, "--categories", "*", "--no-require-files", "--licenses",
                 "cc-by-nc-nd-4.0,cc0-1.0", "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert read_polars(tmp_path / "out" / "papers.parquet", PAPER).height == 2


def test_an_unknown_licence_id_in_the_ingest_config_is_refused():
    from corpus.ingest.stage import IngestConfig

    with pytest.raises(ValueError, match="unknown licence id"):
        IngestConfig(licenses=["cc-by-5.0"])
    assert set(IngestConfig(licenses=list(LICENSES)).licenses) == set(LICENSES)
