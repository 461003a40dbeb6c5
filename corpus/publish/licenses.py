"""arXiv licences: the URL arXiv records for a paper, as a short id, and what the Hub calls it.

arXiv gives each paper one licence URL (the ``license`` field of its metadata; the ``paper`` table
keeps it as is). A null licence means the licence assumed for papers of 1991-2003. A paper with no
metadata row has no known licence: its id is ``unknown``, which no ``licenses`` filter keeps unless
named. The short ids of the Creative Commons licences are the Hub's own ids; the others are ours
and show on the Hub as ``other``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# short id -> (arXiv's URL without scheme and trailing slash, what it is)
LICENSES: dict[str, tuple[str | None, str]] = {
    "cc-by-4.0": ("creativecommons.org/licenses/by/4.0", "Creative Commons Attribution 4.0"),
    "cc-by-sa-4.0": ("creativecommons.org/licenses/by-sa/4.0", "Creative Commons Attribution-ShareAlike 4.0"),
    "cc-by-nc-sa-4.0": ("creativecommons.org/licenses/by-nc-sa/4.0",
                        "Creative Commons Attribution-NonCommercial-ShareAlike 4.0"),
    "cc-by-nc-nd-4.0": ("creativecommons.org/licenses/by-nc-nd/4.0",
                        "Creative Commons Attribution-NonCommercial-NoDerivatives 4.0"),
    "cc-by-3.0": ("creativecommons.org/licenses/by/3.0", "Creative Commons Attribution 3.0 (legacy)"),
    "cc-by-nc-sa-3.0": ("creativecommons.org/licenses/by-nc-sa/3.0",
                        "Creative Commons Attribution-NonCommercial-ShareAlike 3.0 (legacy)"),
    "cc0-1.0": ("creativecommons.org/publicdomain/zero/1.0", "CC0 1.0 public domain dedication"),
    "public-domain": ("creativecommons.org/licenses/publicdomain", "public domain (legacy arXiv option)"),
    "arxiv-nonexclusive": ("arxiv.org/licenses/nonexclusive-distrib/1.0",
                           "arXiv's non-exclusive licence to distribute (no right to redistribute)"),
    "assumed-1991-2003": ("arxiv.org/licenses/assumed-1991-2003",
                          "licence assumed for papers of 1991-2003 (arXiv records none)"),
    "unknown": (None, "no licence known: no metadata row for the paper, or a licence URL arXiv does not use"),
}

# ids the Hub knows (https://huggingface.co/docs/hub/repositories-licenses); ours show as "other"
HUB_IDS = {"cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-sa-4.0", "cc-by-nc-nd-4.0", "cc-by-3.0", "cc-by-nc-sa-3.0", "cc0-1.0"}

# licences whose terms let anyone redistribute the text (the ones a dataset meant for the Hub may hold)
REDISTRIBUTABLE = ("cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-sa-4.0", "cc-by-nc-nd-4.0", "cc-by-3.0", "cc-by-nc-sa-3.0",
                   "cc0-1.0", "public-domain")

_BY_URL = {url: lid for lid, (url, _) in LICENSES.items() if url}
_SCHEME = re.compile(r"^(?:https?://)?(?:www\.)?", re.IGNORECASE)


def license_id(url: str | None, has_metadata: bool = True) -> str:
    """The short id of an arXiv licence URL (``http``/``https``, ``www.`` and a trailing slash do not
    matter): null with a metadata row means ``assumed-1991-2003``; no metadata row, or a URL arXiv
    does not use, ``unknown``."""
    if not has_metadata:
        return "unknown"
    if url is None or not url.strip():
        return "assumed-1991-2003"
    key = _SCHEME.sub("", url.strip()).rstrip("/").lower()
    return _BY_URL.get(key, "unknown")


def hub_license(lid: str) -> str:
    """What the Hub's ``license`` metadata calls a licence: its own id, ``other`` or ``unknown``."""
    if lid in HUB_IDS:
        return lid
    return "unknown" if lid == "unknown" else "other"


def check_ids(ids: Iterable[str]) -> list[str]:
    """The ids, each checked against :data:`LICENSES`; raises ``ValueError`` naming the bad ones."""
    ids = [i.strip() for i in ids if i.strip()]
    bad = [i for i in ids if i not in LICENSES]
    if bad:
        raise ValueError(f"unknown licence id(s) {bad}; known: {', '.join(LICENSES)}")
    return list(dict.fromkeys(ids))


def parse_ids(text: str) -> list[str]:
    """``"cc-by-4.0,cc0-1.0"`` (comma- or space-separated) -> checked ids."""
    return check_ids(re.split(r"[,\s]+", text))
