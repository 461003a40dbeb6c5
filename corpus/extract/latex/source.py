"""A folder of LaTeX sources -> one TeX string: find the main file, inline ``\\input`` / ``\\include``.

An arXiv source bundle (already unpacked into a folder by the archive step) holds many files: the
main ``.tex``, sections, tables, macros, figures, a ``.bbl``. This module finds the main file and
inlines everything it pulls in, the way TeX would read it, so the converter
(``corpus.extract.latex.document``) sees one string. It is pure: it reads files under one folder and never writes.

Rules (each one a behaviour tests pin down):

- **Main file**: arXiv's ``00README.json`` / ``00README.XXX`` ``toplevel`` marker wins when present;
  otherwise the ``.tex`` file with a ``\\documentclass`` (or LaTeX 2.09 ``\\documentstyle``) outside a
  comment, preferring one with ``\\begin{document}``, then the one that inputs the most of the other
  files, then a conventional name (``ms``, ``main``, ``paper``...), then the shallowest, the largest,
  and finally the alphabetically first (so the choice is deterministic). No candidate ->
  ``LatexError(reason="no_main_file")``.
- **Inputs**: ``\\input{f}``, ``\\input{f.tex}``, the primitive ``\\input f``, ``\\include{f}``,
  ``\\subfile{f}`` (only its document body), ``\\import{dir/}{f}`` and ``\\subimport{dir/}{f}``.
  Names are looked up as TeX does, relative to the main file's folder (then relative to the
  including file), trying ``f.tex`` before ``f``. Comments are removed while reading (a commented-out
  ``\\input`` is not followed) and ``\\endinput`` ends a file.
- **Never fatal, always recorded** in ``SourceTree.problems``: a missing file, an input cycle
  (``input cycle: a.tex -> b.tex -> a.tex``; the repeated input is dropped), too deep nesting, a
  name that leaves the source folder (absolute paths, ``..``, symlinks pointing out, ``|`` pipes)
  and non-text files. The offending command is replaced by nothing and reading goes on.
- **Encodings**: UTF-8 (with or without BOM), else Windows-1252, else Latin-1 (which decodes any
  byte), so a paper in a legacy encoding is read rather than dropped; ``SourceTree.encodings``
  says which one each file needed.
- **Limits**: more than ``max_bytes`` of inlined text raises ``LatexError(reason="source_too_large")``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from corpus.extract.latex.errors import LatexError
from corpus.extract.latex.scanner import read_group, strip_comments

TEX_SUFFIXES = (".tex", ".ltx", ".latex")
CONVENTIONAL_MAIN_NAMES = ("ms", "main", "paper", "manuscript", "article", "draft")


@dataclass
class SourceTree:
    """The main file with its inputs inlined.

    ``text`` is TeX with comments removed; ``files_used`` lists the files read, relative to the
    source folder, main first; ``problems`` lists what was refused or missing, one readable line
    each; ``encodings`` maps each file read to the codec that decoded it.
    """

    folder: Path
    main: Path
    text: str
    files_used: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    encodings: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- reading


def decode_tex(data: bytes) -> tuple[str, str]:
    """Decode TeX bytes: UTF-8 (BOM allowed), else cp1252, else latin-1. Returns (text, codec)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for codec in ("utf-8", "cp1252"):
        try:
            return data.decode(codec), codec
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1"), "latin-1"


def read_tex(path: str | Path) -> str:
    """Read one TeX file as text with the UTF-8 -> cp1252 -> latin-1 fallback of ``decode_tex``.

    Raises ``LatexError(reason="unreadable")`` naming the file when it cannot be read.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LatexError(path, "unreadable", f"{type(exc).__name__}: {exc.strerror or exc}") from exc
    return decode_tex(data)[0]



def _has_documentclass(text: str) -> bool:
    return re.search(r"\\document(class|style)\b", text) is not None


# --------------------------------------------------------------------------- input commands

# \input{x} | \include{x} | \subfile{x} | \import{dir}{x} | \subimport{dir}{x} | \input x
_INPUT_RE = re.compile(
    r"\\(?P<cmd>input|include|subfile|import|subimport|subinputfrom|inputfrom)\*?(?![A-Za-z@])"
)


def _parse_input(text: str, m: re.Match) -> tuple[str, str, str, int] | None:
    """Parse the arguments of an input command at match m: (cmd, dir, name, end) or None."""
    cmd = m.group("cmd")
    i = m.end()
    if cmd in ("import", "subimport", "inputfrom", "subinputfrom"):
        first = read_group(text, i)
        if first is None:
            return None
        second = read_group(text, first[1])
        if second is None:
            return None
        return cmd, first[0].strip(), second[0].strip(), second[1]
    group = read_group(text, i)
    if group is not None:
        return cmd, "", group[0].strip(), group[1]
    if cmd != "input":
        return None
    # TeX primitive form: \input file  (name runs to a blank, brace or backslash)
    j = i
    while j < len(text) and text[j] in " \t":
        j += 1
    k = j
    while k < len(text) and text[k] not in " \t\n{}\\%":
        k += 1
    if k == j:
        return None
    return cmd, "", text[j:k], k


def _document_body(text: str) -> str:
    """The part of a ``\\subfile``'d file between ``\\begin{document}`` and ``\\end{document}``."""
    b = text.find("\\begin{document}")
    if b == -1:
        return text
    e = text.find("\\end{document}", b)
    return text[b + len("\\begin{document}") : e if e != -1 else len(text)]


# --------------------------------------------------------------------------- main file


def _readme_toplevel(folder: Path) -> Path | None:
    """The main file named by arXiv's 00README.json / 00README.XXX, if any and inside folder."""
    root = folder.resolve()
    names: list[str] = []
    readme_json = folder / "00README.json"
    if readme_json.is_file():
        try:
            data = json.loads(readme_json.read_text(encoding="utf-8", errors="replace"))
            for src in data.get("sources", []) if isinstance(data, dict) else []:
                if isinstance(src, dict) and src.get("usage") == "toplevel" and src.get("filename"):
                    names.append(str(src["filename"]))
        except (OSError, ValueError):
            pass
    readme_xxx = folder / "00README.XXX"
    if readme_xxx.is_file():
        try:
            for line in readme_xxx.read_text(encoding="utf-8", errors="replace").splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[1].lower() in ("toplevelfile", "toplevel"):
                    names.append(parts[0])
        except OSError:
            pass
    for name in names:
        candidate = (folder / name).resolve()
        if candidate.is_file() and candidate.is_relative_to(root):
            return candidate
    return None


def _tex_files(folder: Path) -> list[Path]:
    root = folder.resolve()
    files = []
    for p in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        if p.suffix.lower() in TEX_SUFFIXES and p.is_file() and p.resolve().is_relative_to(root):
            files.append(p)
    return files


def find_main_file(folder: str | Path) -> Path:
    """Return the main ``.tex`` file of a source folder (see the module doc for the rules).

    Raises ``LatexError(reason="no_main_file")`` when no file has a ``\\documentclass``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise LatexError(folder, "no_main_file", "not a folder")
    readme = _readme_toplevel(folder)
    if readme is not None:
        return readme
    files = _tex_files(folder)
    texts: dict[Path, str] = {}
    for p in files:
        try:
            texts[p] = strip_comments(decode_tex(p.read_bytes())[0])
        except OSError:
            continue
    candidates = [p for p, t in texts.items() if _has_documentclass(t)]
    if not candidates:
        raise LatexError(
            folder, "no_main_file", f"no .tex file with \\documentclass among {len(files)} .tex files"
        )
    stems = {p.relative_to(folder).with_suffix("").as_posix() for p in files}
    stems |= {p.stem for p in files}

    def inputs_found(p: Path) -> int:
        count = 0
        for m in _INPUT_RE.finditer(texts[p]):
            parsed = _parse_input(texts[p], m)
            if parsed is None:
                continue
            _, sub, name, _ = parsed
            name = (sub.rstrip("/") + "/" + name) if sub else name
            name = name.removeprefix("./")
            if name in stems or Path(name).with_suffix("").as_posix() in stems:
                count += 1
        return count

    def key(p: Path):
        t = texts[p]
        return (
            "\\begin{document}" not in t,
            -inputs_found(p),
            p.stem.lower() not in CONVENTIONAL_MAIN_NAMES,
            len(p.relative_to(folder).parts),
            -len(t),
            p.as_posix(),
        )

    return min(candidates, key=key)


# --------------------------------------------------------------------------- inlining


def resolve_inputs(
    folder: str | Path,
    main: str | Path | None = None,
    max_depth: int = 20,
    max_bytes: int = 20_000_000,
) -> SourceTree:
    """Inline every ``\\input``-like command of the main file, recursively, inside ``folder``.

    ``main`` defaults to ``find_main_file(folder)``; a relative ``main`` is taken inside ``folder``.
    Returns a ``SourceTree``; problems (missing, cyclic, hostile or non-text inputs, depth limit)
    are recorded there and never raise. Raises ``LatexError`` only when the main file cannot be
    read (``unreadable``) or the inlined text passes ``max_bytes`` (``source_too_large``).
    """
    folder = Path(folder)
    root = folder.resolve()
    main_path = find_main_file(folder) if main is None else Path(main)
    if not main_path.is_absolute() and not main_path.exists():
        main_path = folder / main_path
    main_path = main_path.resolve()
    if not main_path.is_relative_to(root):
        raise LatexError(main_path, "unreadable", f"main file is outside the source folder {folder}")
    if not main_path.is_file():
        raise LatexError(main_path, "unreadable", "main file not found")

    tree = SourceTree(folder=folder, main=main_path, text="")
    base_dir = main_path.parent
    total = 0

    def rel(p: Path) -> str:
        return p.relative_to(root).as_posix()

    def load(p: Path) -> str:
        nonlocal total
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise LatexError(p, "unreadable", f"{type(exc).__name__}: {exc.strerror or exc}") from exc
        total += len(data)
        if total > max_bytes:
            raise LatexError(folder, "source_too_large", f"inlined sources exceed {max_bytes} bytes")
        if b"\x00" in data[:8192]:
            raise ValueError("binary")
        text, codec = decode_tex(data)
        tree.encodings[rel(p)] = codec
        if rel(p) not in tree.files_used:
            tree.files_used.append(rel(p))
        text = strip_comments(text)
        end = re.search(r"\\endinput(?![A-Za-z@])", text)
        return text[: end.start()] if end else text

    def locate(name: str, cmd: str, current_dir: Path) -> Path | str:
        """A safe existing path for an input name, or a problem string."""
        if "#" in name:
            return f"unresolved input (macro parameter): {name}"
        if name.startswith("|"):
            return f"refused input (shell pipe): {name}"
        if not name or Path(name).is_absolute() or name.startswith("~"):
            return f"refused input outside source folder: {name}"
        names = [name] if cmd == "include" and name.endswith(".tex") else []
        if cmd == "include":
            names = names or [name + ".tex"]
        elif Path(name).suffix:
            names = [name, name + ".tex"]
        else:
            names = [name + ".tex", name]
        dirs = [current_dir] if cmd in ("subimport", "subinputfrom") else [base_dir, current_dir]
        outside = False
        for d in dirs:
            for nm in names:
                cand = (d / nm).resolve()
                if not cand.is_relative_to(root):
                    outside = True
                    continue
                if cand.is_file():
                    return cand
        if outside:
            return f"refused input outside source folder: {name}"
        return f"missing input: {name}"

    def inline(p: Path, text: str, stack: list[Path]) -> str:
        out: list[str] = []
        pos = 0
        for m in _INPUT_RE.finditer(text):
            if m.start() < pos:
                continue
            parsed = _parse_input(text, m)
            if parsed is None:
                continue
            cmd, sub, name, end = parsed
            out.append(text[pos : m.start()])
            pos = end
            if cmd in ("import", "subimport", "inputfrom", "subinputfrom"):
                name = (sub.rstrip("/") + "/" + name) if sub else name
            found = locate(name, cmd, p.parent)
            where = f" (in {rel(p)})"
            if isinstance(found, str):
                tree.problems.append(found + where)
                continue
            if found in stack:
                chain = " -> ".join(rel(s) for s in [*stack, found])
                tree.problems.append(f"input cycle: {chain}")
                continue
            if len(stack) > max_depth:
                tree.problems.append(f"input depth limit ({max_depth}) at {rel(found)}{where}")
                continue
            try:
                sub_text = load(found)
            except ValueError:
                tree.problems.append(f"refused input (not a text file): {rel(found)}{where}")
                continue
            if cmd == "subfile":
                sub_text = _document_body(sub_text)
            sub_text = inline(found, sub_text, [*stack, found])
            if cmd == "include":
                out.append("\n\\clearpage\n" + sub_text + "\n\\clearpage\n")
            else:
                out.append(sub_text)
        out.append(text[pos:])
        return "".join(out)

    try:
        main_text = load(main_path)
    except ValueError:
        raise LatexError(main_path, "unreadable", "main file is not a text file") from None
    tree.text = inline(main_path, main_text, [main_path])
    return tree
