"""Typed schemas of every dataset sagecorpus writes, and validated Parquet I/O."""

from schemas.io import (
    SchemaError,
    TableWriter,
    count_rows,
    iter_batches,
    iter_row_range,
    iter_rows,
    read_polars,
    read_table,
    sha256_file,
    table_of,
    validate_schema,
    write_table,
)
from schemas.tables import (
    ALL_TABLES,
    CHUNK,
    DECISION,
    DOCUMENT,
    EVAL_RESULT,
    GRADE,
    OCR_PAGE,
    PAGE,
    PAPER,
    QA_PAIR,
    SFT_EXAMPLE,
    Table,
)

__all__ = [
    "ALL_TABLES", "CHUNK", "DECISION", "DOCUMENT", "EVAL_RESULT", "GRADE", "OCR_PAGE", "PAGE", "PAPER", "QA_PAIR",
    "SFT_EXAMPLE", "SchemaError", "Table", "TableWriter", "count_rows", "iter_batches", "iter_row_range", "iter_rows",
    "read_polars", "read_table", "sha256_file", "table_of", "validate_schema", "write_table",
]
