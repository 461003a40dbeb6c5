"""Typed Parquet: explicit schemas on write, validation naming file/column/expected/found on read."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas import (
    ALL_TABLES, DECISION, DOCUMENT, PAPER, SchemaError, TableWriter, read_polars, read_table, sha256_file,
    table_of, write_table,
)


def paper_row(i: int) -> dict:
    return {
        "paper_id": f"0704.{i:04d}", "version": "v2", "title": f"Paper {i}", "authors": "A. Author",
        "first_author": "Author", "abstract": "We study stars.", "categories": ["astro-ph.GA", "gr-qc"],
        "license": None, "doi": None, "journal_ref": None, "submitted": dt.date(2007, 4, 2),
        "updated": dt.date(2007, 5, 1), "versions": ["v1", "v2"], "has_metadata": True, "source_path": None,
        "source_kind": None, "source_sha256": None, "pdf_path": None, "pdf_sha256": None, "flags": [],
    }


def doc_row(i: int) -> dict:
    return {
        "paper_id": f"p{i}", "text": "# Intro\n\n$E=mc^2$", "extractor": "pdf", "reason": "no_source",
        "n_pages": 1, "n_chars": 17, "input_sha256": None,
        "pages": [{"page": 1, "extractor": "pdf", "start": 0, "end": 17, "chars": 17, "garbled": 0.0, "reason": None, "flags": []}],
    }


def test_every_table_uses_large_string_for_text():
    for table in ALL_TABLES.values():
        for f in table.schema:
            assert f.type != pa.string(), f"{table.name}.{f.name} must be large_string"


def test_write_uses_explicit_schema_and_metadata(tmp_path):
    # first row has nulls everywhere optional: an inferring writer would pick type null
    rows = [paper_row(1) | {"title": None, "license": None}, paper_row(2) | {"license": "http://x"}]
    path = tmp_path / "papers.parquet"
    write_table(PAPER, rows, path)
    schema = pq.read_schema(path)
    assert schema.field("title").type == pa.large_string()
    assert schema.field("submitted").type == pa.date32()
    assert schema.metadata[b"sagecorpus.schema"] == b"paper"
    assert schema.metadata[b"sagecorpus.schema_version"] == b"1"
    assert table_of(path) is PAPER
    assert read_table(path, PAPER).num_rows == 2


def test_wrong_column_type_names_file_column_expected_and_found(tmp_path):
    path = tmp_path / "bad.parquet"
    table = pa.table({n: pa.array([None] * 1, type=f.type) for n, f in zip(DECISION.schema.names, DECISION.schema)})
    table = table.set_column(table.schema.get_field_index("score"), "score", pa.array(["high"], pa.large_string()))
    pq.write_table(table.replace_schema_metadata({b"sagecorpus.schema": b"decision", b"sagecorpus.schema_version": b"1"}), path)
    with pytest.raises(SchemaError) as e:
        read_table(path, DECISION)
    msg = str(e.value)
    assert str(path) in msg and "'score'" in msg and "double" in msg and "large_string" in msg


def test_missing_column_other_table_and_other_version_are_refused(tmp_path):
    path = tmp_path / "d.parquet"
    write_table(DECISION, [{"stage": "s", "item_id": "i", "action": "kept", "reason": "r", "detail": "{}"}], path)
    with pytest.raises(SchemaError, match="holds table 'decision'.*expected table 'paper'"):
        read_table(path, PAPER)
    t = pq.read_table(path)
    pq.write_table(t.drop_columns(["reason"]), tmp_path / "m.parquet")
    with pytest.raises(SchemaError, match="column 'reason' is missing"):
        read_table(tmp_path / "m.parquet", DECISION)
    pq.write_table(t.replace_schema_metadata({b"sagecorpus.schema": b"decision", b"sagecorpus.schema_version": b"9"}), tmp_path / "v.parquet")
    with pytest.raises(SchemaError, match="version 9, expected version 1"):
        read_table(tmp_path / "v.parquet", DECISION)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(SchemaError, match="junk.parquet: not a readable Parquet file"):
        read_table(tmp_path / "junk.parquet", DECISION)


def test_missing_required_value_is_an_error():
    with pytest.raises(SchemaError, match="non-nullable column 'action'"):
        write_table(DECISION, [{"stage": "s", "item_id": "i", "reason": "r", "detail": "{}"}], "/tmp/never.parquet")


def test_same_rows_same_bytes_however_batched(tmp_path):
    rows = [doc_row(i) for i in range(700)]
    write_table(DOCUMENT, rows, tmp_path / "a.parquet")
    with TableWriter(DOCUMENT, tmp_path / "b.parquet") as w:
        for i in range(0, 700, 33):
            w.write(rows[i:i + 33])
    assert sha256_file(tmp_path / "a.parquet") == sha256_file(tmp_path / "b.parquet")
    assert pq.ParquetFile(tmp_path / "a.parquet").metadata.num_row_groups == 3  # 256-row groups


def test_a_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "x.parquet"
    with pytest.raises(RuntimeError):
        with TableWriter(DECISION, path) as w:
            w.write([{"stage": "s", "item_id": "i", "action": "kept", "reason": "r", "detail": "{}"}])
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def logical(t: pa.DataType) -> str:
    return str(t).replace(" not null", "").replace("element:", "item:")


def test_files_load_in_polars_pyarrow_and_datasets_with_same_types(tmp_path):
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "documents.parquet"
    write_table(DOCUMENT, [doc_row(i) for i in range(5)], path)
    arrow = pq.read_table(path)
    df = pl.read_parquet(path)
    assert df.schema["text"] == pl.String and df.schema["n_chars"] == pl.Int64
    assert df.schema["pages"] == pl.List(pl.Struct({
        "page": pl.Int32, "extractor": pl.String, "start": pl.Int64, "end": pl.Int64, "chars": pl.Int32,
        "garbled": pl.Float64, "reason": pl.String, "flags": pl.List(pl.String)}))
    ds = datasets.load_dataset("parquet", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.num_rows == 5
    # datasets drops nested nullability and names list items "item": the logical types must agree
    for name in DOCUMENT.columns:
        assert logical(ds.data.table.schema.field(name).type) == logical(arrow.schema.field(name).type), name
    assert ds.features["text"].dtype == "large_string"
    assert read_polars(path, DOCUMENT)["paper_id"].to_list() == [f"p{i}" for i in range(5)]


def test_sha256_file_hashes_a_path_or_an_open_file_in_blocks(tmp_path):
    import hashlib
    import io

    data = bytes(range(256)) * 10_000  # 2.56 MB: three 1 MiB blocks
    (tmp_path / "f.bin").write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    assert sha256_file(tmp_path / "f.bin") == want
    stream = io.BytesIO(b"skipped" + data)
    stream.read(7)
    blocks: list[bytes] = []
    assert sha256_file(stream, on_block=blocks.append) == want  # from the current position
    assert [len(b) for b in blocks] == [1 << 20, 1 << 20, len(data) - (2 << 20)]
    assert b"".join(blocks) == data and not stream.closed
