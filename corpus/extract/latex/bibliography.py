"""Citation labels: ``(authors, year)`` for each key, from ``.bbl``, ``thebibliography`` or ``.bib``."""

from __future__ import annotations

import re

from corpus.extract.latex.converter import plain_text
from corpus.extract.latex.scanner import match_brace, read_group, read_optional, strip_comments
from corpus.extract.latex.source import SourceTree, decode_tex


def _author_list(names: list[str]) -> str:
    if not names:
        return ""
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]} & {names[1]}"
    return f"{names[0]} et al."



def parse_bbl(text: str) -> dict[str, tuple[str, str]]:
    """Citation keys -> (authors, year) from natbib ``\\bibitem[Author(Year)Full]{key}`` lines.

    Works on a ``.bbl`` file or a ``thebibliography`` environment pasted into the paper. Numeric
    ``\\bibitem{key}`` entries carry no author-year label and are skipped.
    """
    found: dict[str, tuple[str, str]] = {}
    for m in re.finditer(r"\\bibitem(?![A-Za-z@])", text):
        opt = read_optional(text, m.end())
        if opt is None:
            continue
        key = read_group(text, opt[1])
        if key is None:
            continue
        label = plain_text(opt[0])
        lm = re.match(r"\s*(.*?)\s*\(([^()]*)\)", label)
        if lm and lm.group(1):
            found[key[0].strip()] = (lm.group(1).strip(), lm.group(2).strip())
    return found


def parse_bib(text: str) -> dict[str, tuple[str, str]]:
    """Citation keys -> (authors, year) from a BibTeX file: ``Lamport (1994)``-style labels."""
    found: dict[str, tuple[str, str]] = {}
    for m in re.finditer(r"@\s*([A-Za-z]+)\s*\{\s*([^,\s]+)\s*,", text):
        if m.group(1).lower() in ("comment", "string", "preamble"):
            continue
        key = m.group(2)
        end = match_brace(text, m.end() - len(m.group(0)) + m.group(0).index("{"))
        entry = text[m.end() : end if end != -1 else len(text)]
        fields: dict[str, str] = {}
        for f in re.finditer(r"(\w+)\s*=\s*", entry):
            name = f.group(1).lower()
            if name not in ("author", "year", "editor") or name in fields:
                continue
            k = f.end()
            if k < len(entry) and entry[k] == "{":
                g = read_group(entry, k)
                fields[name] = g[0] if g else ""
            elif k < len(entry) and entry[k] == '"':
                close = entry.find('"', k + 1)
                fields[name] = entry[k + 1 : close if close != -1 else len(entry)]
            else:
                fields[name] = re.match(r"[^,}\s]*", entry[k:]).group(0)
        people = fields.get("author") or fields.get("editor") or ""
        surnames = []
        for person in re.split(r"\s+and\s+", people.strip()):
            person = person.strip()
            if not person:
                continue
            if person.lower() == "others":
                surnames.append("others")
                continue
            top = _strip_groups_depth(person, keep_braces=True)
            if "," in top:
                surname = person[: top.index(",")]
            elif " " in top.strip():
                surname = person[top.rstrip().rindex(" ") + 1 :]
            else:
                surname = person
            surnames.append(plain_text(surname))
        if "others" in surnames:
            surnames = [s for s in surnames if s != "others"] + ["x", "y"]
        year = re.sub(r"\D", "", fields.get("year", ""))[:4]
        if surnames:
            found[key] = (_author_list(surnames), year)
    return found


def _strip_groups_depth(s: str, keep_braces: bool = False) -> str:
    """s with brace groups blanked out (so a comma or blank inside {..} is not a separator).

    With ``keep_braces`` the result has the same length as s (group contents become ``_``), so
    indexes found in it are valid in s.
    """
    out = []
    depth = 0
    for c in s:
        if c == "{":
            depth += 1
            if keep_braces:
                out.append("_")
        elif c == "}":
            depth = max(0, depth - 1)
            if keep_braces:
                out.append("_")
        elif depth == 0:
            out.append(c)
        elif keep_braces:
            out.append("_")
    return "".join(out)




def bibliography_for(tree: SourceTree, text: str) -> dict[str, tuple[str, str]]:
    """Citation labels from the main file's ``.bbl`` (any ``.bbl`` as fallback) or its ``.bib``."""
    folder = tree.folder
    bbl = tree.main.with_suffix(".bbl")
    candidates = [bbl] if bbl.is_file() else sorted(folder.glob("*.bbl"))
    found: dict[str, tuple[str, str]] = {}
    for path in candidates[:1]:
        try:
            found.update(parse_bbl(strip_comments(decode_tex(path.read_bytes())[0])))
        except OSError:
            pass
    if found:
        return found
    root = folder.resolve()
    for m in re.finditer(r"\\(bibliography|addbibresource)\s*\{([^}]*)\}", text):
        for name in m.group(2).split(","):
            name = name.strip()
            if not name:
                continue
            path = (tree.main.parent / (name if name.endswith(".bib") else name + ".bib")).resolve()
            if path.is_file() and path.is_relative_to(root):
                try:
                    found.update(parse_bib(decode_tex(path.read_bytes())[0]))
                except OSError:
                    pass
    return found
