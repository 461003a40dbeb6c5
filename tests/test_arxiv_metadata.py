"""Reading the Kaggle/Cornell arXiv metadata snapshot: filters, dedup, errors, streaming."""

from __future__ import annotations

import gzip
import json
from datetime import date

import pytest

from corpus.ingest.arxiv_metadata import (
    MetadataError,
    MetadataFilter,
    MetadataRecord,
    MetadataStats,
    read_metadata,
)
from schemas.io import to_arrow
from schemas.tables import PAPER

ASTRO_IDS = ["0704.0009", "0704.0017", "0704.0023", "0704.0044", "0704.0048", "0704.0059", "0704.0080", "0704.0094"]


@pytest.fixture()
def kaggle(fixtures):
    return fixtures / "metadata" / "arxiv_kaggle_metadata_head100.jsonl"


def _ids(items):
    return [i.paper_id for i in items if isinstance(i, MetadataRecord)]


def test_astro_filter_keeps_the_eight_astro_ph_records_including_the_cross_list(kaggle):
    got = list(read_metadata(str(kaggle), MetadataFilter(categories=["astro-ph*"])))
    assert _ids(got) == ASTRO_IDS
    assert not [g for g in got if isinstance(g, MetadataError)]


def test_without_cross_lists_only_primary_categories_match(kaggle):
    got = _ids(read_metadata(str(kaggle), MetadataFilter(categories=["astro-ph*"], include_cross_lists=False)))
    # 0704.0048 is gr-qc with an astro-ph cross-list
    assert got == [i for i in ASTRO_IDS if i != "0704.0048"]


def test_default_filter_is_astro_ph_and_gr_qc(kaggle):
    got = _ids(read_metadata(str(kaggle)))
    # gr-qc primaries 0704.0007, 0078, 0100, and 0704.0053 (math.DG cross-listed to gr-qc)
    assert got == sorted(ASTRO_IDS + ["0704.0007", "0704.0053", "0704.0078", "0704.0100"])


def test_date_filter_uses_the_first_version_date(kaggle):
    flt = MetadataFilter(categories=["astro-ph*"], since=date(2007, 4, 1))
    assert _ids(read_metadata(str(kaggle), flt)) == ["0704.0009", "0704.0080", "0704.0094"]
    # 0704.0080 was last revised in 2008 but first submitted 2007-04-01: 'until' looks at v1
    flt = MetadataFilter(categories=["astro-ph*"], until=date(2007, 3, 31))
    assert _ids(read_metadata(str(kaggle), flt)) == ["0704.0017", "0704.0023", "0704.0044", "0704.0048", "0704.0059"]


def test_record_keeps_licence_versions_doi_and_journal_ref(kaggle):
    rec = next(r for r in read_metadata(str(kaggle)) if r.paper_id == "0704.0044")
    assert rec.version == "v4" and rec.versions == ["v1", "v2", "v3", "v4"]
    assert rec.license == "http://arxiv.org/licenses/nonexclusive-distrib/1.0/"
    assert rec.doi == "10.1088/0067-0049/182/1/310"
    assert rec.journal_ref == "ApJS 182, 310 (2009)"
    assert rec.categories[0] == "astro-ph" and "physics.plasm-ph" in rec.categories
    assert rec.submitted == date(2007, 3, 31) and rec.updated == date(2009, 5, 9)
    assert rec.first_author == "Schekochihin"
    assert "\n" not in rec.title and "  " not in rec.abstract


def test_records_fit_the_paper_table(kaggle):
    rows = [r.paper_row() for r in read_metadata(str(kaggle))]
    table = to_arrow(PAPER, rows)
    assert table.num_rows == 12
    assert table.column("has_metadata").to_pylist() == [True] * 12


def _write_lines(path, lines):
    path.write_text("".join(line if line.endswith("\n") else line + "\n" for line in lines))


def test_malformed_lines_are_recorded_with_their_line_numbers(kaggle, tmp_path):
    lines = kaggle.read_text().splitlines(keepends=True)
    broken = lines[:4] + ['{"id": "0704.9999", "categories": "astro-ph", \n'] + lines[4:]
    broken.append(json.dumps({"id": "0704.0101", "categories": "astro-ph"}) + "\n")  # no versions
    broken.append("\n")  # blank lines are not errors
    broken.append(json.dumps(["not", "an", "object"]) + "\n")
    path = tmp_path / "meta.jsonl"
    path.write_text("".join(broken))
    stats = MetadataStats()
    items = list(read_metadata(str(path), MetadataFilter(categories=["astro-ph*"]), stats=stats))
    errors = [i for i in items if isinstance(i, MetadataError)]
    assert [(e.line, e.path) for e in errors] == [(5, str(path)), (102, str(path)), (104, str(path))]
    assert "invalid JSON" in errors[0].reason and "versions" in errors[1].reason
    assert errors[0].item_id == f"{path}:5"
    assert _ids(items) == ASTRO_IDS  # the other lines still ingest
    assert stats.errors == 3 and stats.blank == 1 and stats.lines == 104


def test_gzipped_snapshot_reads_the_same(kaggle, tmp_path):
    gz = tmp_path / "meta.jsonl.gz"
    gz.write_bytes(gzip.compress(kaggle.read_bytes()))
    assert _ids(read_metadata(str(gz), MetadataFilter(categories=["astro-ph*"]))) == ASTRO_IDS


@pytest.mark.parametrize("dedup", ["two_pass", "memory"])
def test_duplicate_ids_keep_the_row_with_most_versions(kaggle, tmp_path, dedup):
    lines = kaggle.read_text().splitlines()
    rec = json.loads(next(line for line in lines if '"0704.0009"' in line))
    newer = dict(rec, versions=rec["versions"] + [{"version": "v2", "created": "Tue, 1 May 2007 10:00:00 GMT"}], title="Newer")
    same = dict(rec, title="Same versions, later line")
    path = tmp_path / "dups.jsonl"
    _write_lines(path, [json.dumps(newer)] + lines + [json.dumps(same)])
    stats = MetadataStats()
    got = list(read_metadata(str(path), MetadataFilter(categories=["astro-ph*"]), dedup=dedup, stats=stats))
    assert _ids(got) == ASTRO_IDS
    kept = next(r for r in got if r.paper_id == "0704.0009")
    assert kept.version == "v2" and kept.title == "Newer" and kept.updated == date(2007, 5, 1)
    assert stats.duplicates == 2 and stats.yielded == 8


@pytest.mark.parametrize("dedup", ["two_pass", "memory"])
def test_duplicate_ids_with_equal_versions_keep_the_later_line(kaggle, tmp_path, dedup):
    lines = kaggle.read_text().splitlines()
    rec = json.loads(next(line for line in lines if '"0704.0009"' in line))
    path = tmp_path / "dups.jsonl"
    _write_lines(path, lines + [json.dumps(dict(rec, title="Later copy"))])
    got = [r for r in read_metadata(str(path), dedup=dedup) if r.paper_id == "0704.0009"]
    assert [r.title for r in got] == ["Later copy"] and got[0].line == 101


def test_dedup_none_passes_duplicates_through(kaggle, tmp_path):
    lines = kaggle.read_text().splitlines()
    path = tmp_path / "dups.jsonl"
    _write_lines(path, lines + [next(line for line in lines if '"0704.0009"' in line)])
    got = _ids(read_metadata(str(path), MetadataFilter(categories=["astro-ph*"]), dedup="none"))
    assert got.count("0704.0009") == 2


def test_reading_streams_rather_than_loading_the_file(kaggle):
    stats = MetadataStats()
    it = read_metadata(str(kaggle), MetadataFilter(categories=["astro-ph*"]), dedup="none", stats=stats)
    first = next(it)
    assert first.paper_id == "0704.0009"
    assert stats.lines == first.line == 9  # nothing past the first match has been read yet
    it.close()


def test_unarxive_records_read_through_their_metadata_key(fixtures):
    path = str(fixtures / "metadata" / "unarxive_2212_astro_subset4.jsonl")
    with_cross = _ids(read_metadata(path, MetadataFilter(categories=["astro-ph*"])))
    assert with_cross == ["2212.11816", "2212.11889", "2212.11899", "2212.11817"]
    primary = _ids(read_metadata(path, MetadataFilter(categories=["astro-ph*"], include_cross_lists=False)))
    assert primary == ["2212.11816", "2212.11889", "2212.11899"]  # 2212.11817 is nucl-th primary
