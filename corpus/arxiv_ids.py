"""arXiv identifiers: parse them out of file names and paths, normalise them, and name files that
have none.

arXiv has used two identifier schemes:

* old (1991-2007): ``<archive>/<YYMMNNN>``, e.g. ``astro-ph/0701001``. Bulk files spell it without the
  slash (``astro-ph0701001``) or with an underscore (``astro-ph_0701001``), and the public Google bucket
  puts the archive in a folder (``arxiv/astro-ph/pdf/0701/0701001v1.pdf``).
* new (2007-): ``<YYMM>.<NNNN>`` up to 1412 and ``<YYMM>.<NNNNN>`` from 1501, e.g. ``0704.0001``,
  ``2212.11816``.

Either may carry a version suffix ``vN``. The canonical form used as ``paper_id`` throughout
sagecorpus is the versionless id with the slash (``astro-ph/0701001``) or the dotted new id; old ids
given with a subject class (``math.GT/0309136``) are reduced to their archive (``math/0309136``), as
arXiv itself does. A file with no arXiv id gets :func:`content_id` of its bytes instead.
"""

from __future__ import annotations

import re

#: Archives that issued old-style identifiers (arXiv's list, including retired ones).
OLD_ARCHIVES: frozenset[str] = frozenset(
    """
    acc-phys adap-org alg-geom ao-sci astro-ph atom-ph bayes-an chao-dyn chem-ph cmp-lg comp-gas
    cond-mat cs dg-ga funct-an gr-qc hep-ex hep-lat hep-ph hep-th math math-ph mtrl-th nlin nucl-ex
    nucl-th patt-sol physics plasm-ph q-alg q-bio q-fin quant-ph solv-int stat supr-con
    """.split()
)

# Extensions stripped from a file name before parsing (only these: '.0001' in '0704.0001' is not one).
_EXTENSIONS = (".gz", ".pdf", ".tar", ".tex", ".ps", ".html", ".htm", ".abs", ".json", ".txt", ".xml", ".tgz", ".zip")

_EXT_RE = re.compile("(?:" + "|".join(re.escape(e) for e in _EXTENSIONS) + ")+$", re.I)
_ARCHIVE = r"(?P<archive>[a-z]+(?:-[a-z]+)?)(?:\.[A-Za-z]{2})?"
_OLD_NUM = r"(?P<num>\d{7})"
_VERSION = r"(?P<version>v[1-9]\d*)?"
_NEW_RE = re.compile(r"(?P<yymm>\d{4})\.(?P<num>\d{4,5})" + _VERSION)
_OLD_SLASH_RE = re.compile(_ARCHIVE + "/" + _OLD_NUM + _VERSION)
_OLD_JOINED_RE = re.compile(_ARCHIVE + "[_]?" + _OLD_NUM + _VERSION)
_BARE_OLD_RE = re.compile(_OLD_NUM + _VERSION)
_PREFIX_RE = re.compile(r"^(?:arxiv:|https?://(?:export\.)?arxiv\.org/(?:abs|pdf|e-print|src)/)", re.I)
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def _valid_yymm(yymm: str, *, old: bool) -> bool:
    yy, mm = int(yymm[:2]), int(yymm[2:])
    if not 1 <= mm <= 12:
        return False
    if old:  # old scheme ran from 9108 to 0703
        return yy >= 91 or yy <= 7
    return True


def _new(m: re.Match[str]) -> tuple[str, str | None] | None:
    yymm, num = m["yymm"], m["num"]
    if not _valid_yymm(yymm, old=False):
        return None
    # 4-digit serials were used up to 1412, 5-digit ones from 1501 (both YY >= 07).
    if int(yymm[:2]) < 7 or (len(num) == 4) != (int(yymm) < 1501):
        return None
    return f"{yymm}.{num}", m["version"]


def _old(archive: str, num: str, version: str | None) -> tuple[str, str | None] | None:
    archive = archive.lower()
    if archive not in OLD_ARCHIVES or not _valid_yymm(num[:4], old=True):
        return None
    return f"{archive}/{num}", version


def _strip_extensions(name: str) -> str:
    return _EXT_RE.sub("", name) or name


def parse_arxiv_id(name: str) -> tuple[str, str | None] | None:
    """Find the arXiv id in a file name, path, URL or id string.

    Returns ``(canonical_id, version)`` with ``version`` like ``"v2"`` or ``None`` when the name
    carries none, or ``None`` when no valid arXiv id is found. Examples::

        parse_arxiv_id("astro-ph/0701001v2")            -> ("astro-ph/0701001", "v2")
        parse_arxiv_id("0001/astro-ph0001001.gz")       -> ("astro-ph/0001001", None)
        parse_arxiv_id("astro-ph_0701001")              -> ("astro-ph/0701001", None)
        parse_arxiv_id("pdf/2212/2212.11816v1.pdf")     -> ("2212.11816", "v1")
        parse_arxiv_id("arxiv/astro-ph/pdf/0001/0001001v1.pdf") -> ("astro-ph/0001001", "v1")
        parse_arxiv_id("notes.pdf")                     -> None

    Only the last path component is read, except that an old-style number (``0001001v1``) takes
    its archive from the nearest enclosing folder named like one (``astro-ph/``), which is how the
    old ``astro-ph/0701001`` form and the ``gs://arxiv-dataset`` layout spell it.
    """
    s = _PREFIX_RE.sub("", name.strip().replace("\\", "/")).rstrip("/")
    parts = [p for p in s.split("/") if p]
    if not parts:
        return None
    base = _strip_extensions(parts[-1])
    if m := _NEW_RE.fullmatch(base):
        return _new(m)
    if m := _OLD_JOINED_RE.fullmatch(base):
        return _old(m["archive"], m["num"], m["version"])
    if m := _BARE_OLD_RE.fullmatch(base):
        for folder in reversed(parts[:-1]):
            archive = folder.split(".")[0].lower()  # 'math.GT' -> 'math'
            if archive in OLD_ARCHIVES:
                return _old(archive, m["num"], m["version"])
    return None


def normalise_id(name: str) -> str:
    """The canonical, versionless arXiv id in ``name``; raises ``ValueError`` when there is none.

    ``normalise_id("arXiv:astro-ph/0701001v3") == "astro-ph/0701001"``.
    """
    parsed = parse_arxiv_id(name)
    if parsed is None:
        raise ValueError(f"not an arXiv identifier: {name!r}")
    return parsed[0]


def version_number(version: str | None) -> int:
    """``"v3" -> 3``; ``None`` (no version given) -> 0, so any explicit version sorts after it."""
    if version is None:
        return 0
    if not re.fullmatch(r"v[1-9]\d*", version):
        raise ValueError(f"not an arXiv version: {version!r} (expected 'v1', 'v2', ...)")
    return int(version[1:])


def safe_name(paper_id: str) -> str:
    """A file-system-safe name for a paper id: ``astro-ph/0701001 -> astro-ph_0701001``,
    ``sha256:ab.. -> sha256_ab..``. :func:`parse_arxiv_id` reads the result back."""
    return paper_id.replace("/", "_").replace(":", "_")


def content_id(sha256_hex: str) -> str:
    """The paper id of a file that matched no metadata: ``"sha256:<64 lowercase hex>"``."""
    h = sha256_hex.lower()
    if not _SHA256_RE.fullmatch(h):
        raise ValueError(f"not a sha256 hex digest: {sha256_hex!r}")
    return f"sha256:{h}"


def is_content_id(paper_id: str) -> bool:
    """True for ids made by :func:`content_id`."""
    return paper_id.startswith("sha256:") and bool(_SHA256_RE.fullmatch(paper_id[7:]))


def id_or_content_id(name: str, sha256_hex: str) -> tuple[str, str | None]:
    """``(paper_id, version)`` from the file name when it holds an arXiv id, else
    ``(content_id(sha256_hex), None)``."""
    parsed = parse_arxiv_id(name)
    return parsed if parsed is not None else (content_id(sha256_hex), None)


# arXiv's stamp up the left margin of page 1 of the PDFs it serves: the id with its version, the
# primary category in brackets (new-style ids only), the date of that version.
_STAMP_RE = re.compile(
    r"arXiv:\s*(?P<id>\d{4}\.\d{4,5}v[1-9]\d*|[a-z]+(?:-[a-z]+)?(?:\.[A-Z]{2})?/\d{7}v[1-9]\d*)\s*"
    r"(?:\[[a-zA-Z.\-]{2,20}\]\s*)?\d{1,2}\s*[A-Z][a-z]{2}\s*(?:19|20)\d\d\b"
)


def find_arxiv_stamp(text: str) -> tuple[str, str | None] | None:
    """``(canonical_id, version)`` from arXiv's margin stamp in ``text`` (page 1 of a PDF arXiv served,
    or the start of the text extracted from it), or ``None``. Only the stamp's whole form counts,
    ``arXiv:2201.01234v2 [astro-ph.SR] 4 Jan 2022`` or ``arXiv:astro-ph/0701001v2 26 Jan 2007``:
    an id cited in the text (``arXiv:2201.01234``) has no version-category-date and is not one."""
    for m in _STAMP_RE.finditer(text):
        parsed = parse_arxiv_id(m["id"])
        if parsed is not None:
            return parsed
    return None
