"""A whole LaTeX document to text: ``latex_to_text`` (a string) and ``convert_source`` (a folder or file)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from corpus.extract.latex.bibliography import bibliography_for, parse_bbl
from corpus.extract.latex.converter import SENTINELS, LatexConfig, Converter
from corpus.extract.latex.errors import LatexError
from corpus.extract.latex.macros import Expander
from corpus.extract.latex.scanner import find_env_end, match_brace, read_args, strip_comments
from corpus.extract.latex.source import SourceTree, find_main_file, resolve_inputs


_BEGIN_DOC = re.compile(r"\\begin\s*\{document\}")
_END_DOC = re.compile(r"\\end\s*\{document\}")


def _first_command_arg(s: str, name: str, spec: str = "om") -> tuple[str | None, str]:
    """The mandatory argument of the first ``\\name`` in s, and s without that command."""
    m = re.search(r"\\" + name + r"(?![A-Za-z@])", s)
    if not m:
        return None, s
    args, end = read_args(s, m.end(), spec)
    return args[-1], s[: m.start()] + s[end:]


def latex_to_text(
    source: str,
    config: LatexConfig | None = None,
    *,
    citations: Mapping[str, tuple[str, str]] | None = None,
    path: str | Path | None = None,
    notes: list[str] | None = None,
) -> str:
    """Convert one LaTeX document (inputs already inlined) to Markdown-flavoured text.

    ``citations`` maps citation keys to ``(authors, year)`` (see ``parse_bbl``/``parse_bib``); keys
    from a ``thebibliography`` inside the source are added. ``path`` only names the source in
    errors. ``notes``, when given, receives the converter's remarks (unsupported macros, unclosed
    math, ...). A source without ``\\documentclass`` and ``\\begin{document}`` is treated as a body
    fragment. Raises ``LatexError`` (never another exception) when conversion fails.
    """
    config = config or LatexConfig()
    notes = notes if notes is not None else []
    try:
        return _latex_to_text(source, config, dict(citations or {}), notes)
    except LatexError as exc:
        if exc.path is None and path is not None:
            raise LatexError(path, exc.reason, exc.detail) from exc
        raise
    except RecursionError as exc:
        raise LatexError(path, "converter_error", "nesting too deep") from exc
    except Exception as exc:  # noqa: BLE001 - any converter bug becomes a typed, recordable error
        raise LatexError(path, "converter_error", f"{type(exc).__name__}: {exc}") from exc


def _latex_to_text(source: str, config: LatexConfig, citations: dict, notes: list[str]) -> str:
    text = strip_comments(source.replace("\r\n", "\n").replace("\r", "\n"))
    for ch in SENTINELS:
        text = text.replace(ch, "")
    limit = max(config.max_expansion_factor * len(text), 2_000_000)
    expander = Expander(config.max_expansion_depth, notes, limit)
    text = expander.expand(text)

    begin = _BEGIN_DOC.search(text)
    if begin:
        preamble = text[: begin.start()]
        end = _END_DOC.search(text, begin.end())
        body = text[begin.end() : end.start() if end else len(text)]
    elif re.search(r"\\document(class|style)\b", text):
        raise LatexError(None, "no_document_body", "\\documentclass without \\begin{document}")
    else:
        preamble, body = "", text

    for m in re.finditer(r"\\begin\s*\{thebibliography\}", text):
        end_at, _ = find_env_end(text, m.end(), "thebibliography")
        for key, value in parse_bbl(text[m.start() : end_at]).items():
            citations.setdefault(key, value)

    conv = Converter(config, expander.env_args, expander.theorems, citations, notes)
    title, preamble = _first_command_arg(preamble, "title")
    if title is None:
        title, body = _first_command_arg(body, "title")
    # an abstract or keywords written in the preamble belong at the top of the body
    front = []
    for pat in (r"\\begin\s*\{abstract\}.*?\\end\s*\{abstract\}", r"\\abstract\s*\{", r"\\keywords\s*\{"):
        m = re.search(pat, preamble, re.S)
        if m:
            if pat.endswith("\\{"):
                end = match_brace(preamble, m.end() - 1)
                end = len(preamble) if end == -1 else end
            else:
                end = m.end()
            front.append(preamble[m.start() : end])
    body = "\n\n".join(front + [body])

    parts = []
    if title is not None and config.keep_title:
        title_text = conv.inline(title)
        if title_text:
            parts.append(f"# {title_text}\n\n")
    parts.append(conv.text(body))
    result = conv.finish("".join(parts))
    if conv.unknown:
        notes.append("unknown commands dropped: " + ", ".join(f"\\{k}" for k in sorted(conv.unknown)))
    if not re.sub(r"^#.*$", "", result, flags=re.M).strip():
        raise LatexError(None, "empty_output", "no text left after conversion")
    return result


def convert_source(path: str | Path, config: LatexConfig | None = None) -> tuple[str, SourceTree]:
    """Convert a LaTeX source -- a folder of unpacked files or one ``.tex`` file -- to text.

    Finds the main file (``find_main_file``), inlines its inputs (``resolve_inputs``), reads
    citation labels from its ``.bbl`` or ``.bib``, and converts (``latex_to_text``). Returns the
    text and the ``SourceTree``, whose ``problems`` also carry the converter's notes (prefixed
    ``converter:``). Raises ``LatexError`` naming the file and the reason on failure.
    """
    path = Path(path)
    if path.is_dir():
        folder, main = path, find_main_file(path)
    elif path.is_file():
        folder, main = path.parent, path
    else:
        raise LatexError(path, "unreadable", "no such file or folder")
    tree = resolve_inputs(folder, main)
    notes: list[str] = []
    citations = bibliography_for(tree, tree.text)
    text = latex_to_text(tree.text, config, citations=citations, path=tree.main, notes=notes)
    tree.problems.extend(f"converter: {note}" for note in notes)
    return text, tree
