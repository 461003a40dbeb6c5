"""arXiv id parsing: the forms bulk files, buckets and metadata spell ids in."""

from __future__ import annotations

import hashlib

import pytest

from corpus.arxiv_ids import (
    content_id,
    id_or_content_id,
    is_content_id,
    normalise_id,
    parse_arxiv_id,
    safe_name,
    version_number,
)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("astro-ph/0701001", ("astro-ph/0701001", None)),
        ("astro-ph/0701001v2", ("astro-ph/0701001", "v2")),
        ("astro-ph0701001", ("astro-ph/0701001", None)),
        ("astro-ph_0701001", ("astro-ph/0701001", None)),
        ("0704.0001v2", ("0704.0001", "v2")),
        ("2212.11816", ("2212.11816", None)),
        # members of bulk chunks
        ("0001/astro-ph0001001.gz", ("astro-ph/0001001", None)),
        ("2212/2212.11816.gz", ("2212.11816", None)),
        ("0001/astro-ph0001001v1.pdf", ("astro-ph/0001001", "v1")),
        # gs://arxiv-dataset layout, new and old ids
        ("gs://arxiv-dataset/arxiv/arxiv/pdf/2212/2212.11816v3.pdf", ("2212.11816", "v3")),
        ("gs://arxiv-dataset/arxiv/astro-ph/pdf/0001/0001001v1.pdf", ("astro-ph/0001001", "v1")),
        # prefixes and subject classes
        ("arXiv:2212.11816v1", ("2212.11816", "v1")),
        ("https://arxiv.org/abs/astro-ph/0701001v1", ("astro-ph/0701001", "v1")),
        ("math.GT/0309136", ("math/0309136", None)),
        ("gr-qc/9901001", ("gr-qc/9901001", None)),
    ],
)
def test_parse_arxiv_id_reads_every_spelling(name, expected):
    assert parse_arxiv_id(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "notes.pdf",
        "0704.00001",  # 5-digit serials only from 1501
        "1501.0001",  # 4-digit serials only up to 1412
        "2213.11816",  # month 13
        "astro-ph0713001",  # month 13 in an old id
        "foo/1234567",  # a bare number needs an archive folder
        "widget0701001",  # not an arXiv archive
        "ms.tex",
        "",
    ],
)
def test_parse_arxiv_id_rejects_non_ids(name):
    assert parse_arxiv_id(name) is None


def test_normalise_id_drops_version_and_raises_on_garbage():
    assert normalise_id("arXiv:astro-ph/0701001v3") == "astro-ph/0701001"
    with pytest.raises(ValueError, match="not an arXiv identifier"):
        normalise_id("figure1.png")


def test_version_number_orders_versions():
    assert version_number(None) < version_number("v1") < version_number("v2") < version_number("v10")
    with pytest.raises(ValueError):
        version_number("2")


def test_safe_name_round_trips_through_the_parser():
    for pid in ("astro-ph/0701001", "2212.11816"):
        assert parse_arxiv_id(safe_name(pid)) == (pid, None)
    assert "/" not in safe_name("astro-ph/0701001")


def test_content_id_for_files_without_metadata():
    digest = hashlib.sha256(b"a pdf").hexdigest()
    cid = content_id(digest.upper())
    assert cid == f"sha256:{digest}"
    assert is_content_id(cid) and not is_content_id("2212.11816")
    with pytest.raises(ValueError, match="sha256"):
        content_id("abc")
    assert id_or_content_id("uploads/paper.pdf", digest) == (cid, None)
    assert id_or_content_id("pdf/2212.11816v2.pdf", digest) == ("2212.11816", "v2")
