"""LaTeX source -> Markdown-flavoured plain text, with math kept as LaTeX.

A small TeX reader of our own (careful brace matching plus a table of known commands), not a full TeX
engine: it aims to keep every sentence of a paper's prose and every equation, and to drop what is
not prose. ``latex_to_text(source)`` is pure (string in, string out); ``convert_source(path)`` adds
the file side: it finds the main file of a folder, inlines ``\\input``/``\\include``
(``corpus.ingest.latex_source``) and reads the ``.bbl``/``.bib`` so citations can name authors.

What the output looks like (behaviour users depend on; the tests pin it down):

- **Structure**: the title becomes ``# Title`` at the top; the abstract ``# Abstract`` and its text;
  ``\\section``/``\\subsection``/``\\subsubsection`` become ``#``/``##``/``###`` headings
  (``\\paragraph`` ``####``); lists become ``- item`` / ``1. item`` lines; paragraphs are separated by
  one blank line; ``\\keywords{..}`` becomes a ``Keywords: ..`` line.
- **Dropped**: comments, the preamble, author/affiliation/email blocks, the bibliography (always),
  acknowledgments (unless ``keep_acknowledgments``), ``\\software``/``\\facilities`` (unless
  ``keep_software``), tables' cells, figure bodies, ``tikzpicture``, layout commands.
- **Floats**: a figure or table is reduced to its caption, ``Figure 3: caption`` / ``Table 1:
  caption``, in its own paragraph; a bare ``tabular`` without caption disappears.
- **Math stays LaTeX**: inline ``$...$`` and ``\\(...\\)`` become ``$...$``; display math
  (``equation``, ``align``, ``gather``, ``multline``, ``eqnarray``, ``flalign``, ``alignat``,
  ``displaymath``, their starred forms, ``\\[...\\]``, ``$$...$$``) becomes ``$$...$$`` on its own
  line; multi-line environments are wrapped in ``aligned``/``gathered`` so the block stays valid.
  ``\\label``, ``\\nonumber`` and ``\\notag`` are removed from math; user macros are expanded.
- **Macros**: ``\\newcommand``, ``\\renewcommand``, ``\\providecommand``, ``\\DeclareRobustCommand``,
  ``\\def`` (undelimited ``#1..#9``), ``\\let`` and ``\\DeclareMathOperator`` are expanded, with
  ``#1..#9`` arguments and an optional first argument's default. A macro whose body is TeX
  programming (``\\@ifnextchar``, ``\\if..``, ``\\csname``...) is removed with its arguments rather
  than expanded into garbage; ``\\ifmmode A\\else B\\fi`` is resolved by mode.
  ``\\newenvironment`` records the environment's argument count so the arguments are skipped.
- **Citations**: parenthetical ones (``\\citep``, ``\\parencite``, ``\\autocite``, ``\\nocite``) are
  removed together with the blank before them, so prose reads "black holes, and" (set
  ``parenthetical_citations="author_year"`` to keep them as ``(Peters 1964)``). Textual ones
  (``\\citet``, ``\\cite`` -- natbib's author-year meaning --, ``\\citealt``, ``\\citealp``,
  ``\\citeauthor``, ``\\citeyear``, ``\\textcite``) become ``Peters (1964)`` from the paper's
  ``.bbl``/``.bib``/``thebibliography``; when the key is unknown the key itself is written.
- **References**: ``\\ref``/``\\eqref``/``\\autoref``/``\\cref`` become the number LaTeX would
  print in common cases (sections, appendices, figures, tables, equations; ``\\tablenum`` honoured),
  ``?`` when unknown.
- **Text**: formatting commands are unwrapped (``\\emph``, ``\\textbf``, ``\\textit``, ``\\texttt``,
  ...), ``\\href{u}{text}`` keeps the text, ``\\url{u}`` the URL; accents become Unicode (``\\'e``,
  ``{\\"o}``, ``\\c{c}``, ``\\v{s}``...), ``~`` a space, ``--``/``---`` en/em dashes, ``````..''``
  curly quotes, ``\\%`` ``\\&`` ``\\$`` ``\\#`` ``\\_`` their characters. Footnotes are moved after
  the paragraph that calls them (``footnotes="paragraph"``; ``"inline"`` or ``"drop"`` also).
- **Failure**: any exception inside the converter surfaces as ``LatexError`` with the file and a
  reason (``converter_error``, ``empty_output``, ``no_document_body``, ``macro_expansion_limit``),
  so the caller can fall back to the PDF and record why.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from corpus.ingest.latex_source import (
    LatexError,
    SourceTree,
    decode_tex,
    find_main_file,
    match_brace,
    resolve_inputs,
    strip_comments,
)

__all__ = [
    "LatexConfig",
    "LatexError",
    "convert_source",
    "latex_to_text",
    "parse_bbl",
    "parse_bib",
]


@dataclass
class LatexConfig:
    """How LaTeX is turned into text. Every field has a default that suits a training corpus."""

    keep_title: bool = True
    """Write the title as a ``# Title`` heading at the top."""
    keep_abstract: bool = True
    """Write the abstract under a ``# Abstract`` heading."""
    keep_keywords: bool = True
    """Write ``\\keywords{..}`` as a ``Keywords: ..`` line."""
    keep_acknowledgments: bool = False
    """Keep the acknowledgments (environment, ``\\acknowledgments`` or a section of that name)."""
    keep_appendix: bool = True
    """Keep everything after ``\\appendix``; False drops it."""
    keep_software: bool = False
    """Keep AASTeX ``\\software{..}`` and ``\\facility``/``\\facilities{..}`` lists."""
    keep_captions: bool = True
    """Reduce figures and tables to ``Figure N: caption``; False drops floats entirely."""
    footnotes: Literal["paragraph", "inline", "drop"] = "paragraph"
    """``paragraph``: footnote text goes after the paragraph that calls it; ``inline``: in
    parentheses where it is called; ``drop``: removed."""
    parenthetical_citations: Literal["drop", "author_year"] = "drop"
    """``drop`` removes ``\\citep``-like citations; ``author_year`` writes ``(Author Year)``."""
    max_expansion_depth: int = 32
    """Nested macro expansions deeper than this are dropped (and noted)."""
    max_expansion_factor: int = 20
    """Macro expansion may grow the text to this many times its size (at least 2 MB) before
    ``LatexError(reason="macro_expansion_limit")``."""


# =========================================================================== scanning helpers

_NAME_RE = re.compile(r"[A-Za-z@]+")


def _skip_ws(s: str, i: int, newlines: bool = True) -> int:
    n = len(s)
    while i < n and (s[i] in " \t" or (newlines and s[i] in "\n\r")):
        i += 1
    return i


def _read_cs(s: str, i: int) -> tuple[str, int]:
    """At a backslash: the control-sequence name (letters and @, or one character) and its end."""
    m = _NAME_RE.match(s, i + 1)
    if m:
        return m.group(0), m.end()
    if i + 1 < len(s):
        return s[i + 1], i + 2
    return "", i + 1


_match_brace = match_brace  # one brace matcher for the reader and the converter


def _read_group(s: str, i: int, newlines: bool = True) -> tuple[str, int] | None:
    """After blanks, a balanced ``{...}`` group: (inside, end), or None when none starts there."""
    j = _skip_ws(s, i, newlines)
    if j >= len(s) or s[j] != "{":
        return None
    end = _match_brace(s, j)
    if end == -1:
        return s[j + 1 :], len(s)  # unbalanced: take the rest rather than fail
    return s[j + 1 : end - 1], end


def _read_optional(s: str, i: int) -> tuple[str, int] | None:
    """After spaces (not newlines), a ``[...]`` argument, braces respected: (inside, end) or None."""
    j = _skip_ws(s, i, newlines=False)
    if j >= len(s) or s[j] != "[":
        return None
    depth = 0
    k = j + 1
    n = len(s)
    while k < n:
        c = s[k]
        if c == "\\":
            k += 2
            continue
        if c == "{":
            end = _match_brace(s, k)
            if end == -1:
                return None
            k = end
            continue
        if c == "[":
            depth += 1
        elif c == "]":
            if depth == 0:
                return s[j + 1 : k], k + 1
            depth -= 1
        k += 1
    return None


def _read_arg(s: str, i: int) -> tuple[str, int]:
    """One mandatory argument: a group's inside, or the next single token; ("", i) if none."""
    j = _skip_ws(s, i)
    if j >= len(s):
        return "", j
    if s[j] == "{":
        g = _read_group(s, j)
        assert g is not None
        return g
    if s[j] == "\\":
        _, end = _read_cs(s, j)
        return s[j:end], end
    if s[j] == "}":
        return "", j
    return s[j], j + 1


def _read_args(s: str, i: int, spec: str) -> tuple[list[str | None], int]:
    """Read arguments by spec: ``s`` optional star, ``o`` optional ``[..]``, ``m`` mandatory."""
    args: list[str | None] = []
    for kind in spec:
        if kind == "s":
            j = _skip_ws(s, i, newlines=False)
            if j < len(s) and s[j] == "*":
                args.append("*")
                i = j + 1
            else:
                args.append(None)
        elif kind == "o":
            opt = _read_optional(s, i)
            if opt is None:
                args.append(None)
            else:
                args.append(opt[0])
                i = opt[1]
        else:
            arg, i = _read_arg(s, i)
            args.append(arg)
    return args, i


def _find_unescaped(s: str, target: str, start: int) -> int:
    """First index >= start of target not preceded by an odd number of backslashes; -1 if none."""
    j = start
    while True:
        j = s.find(target, j)
        if j == -1:
            return -1
        k = j - 1
        slashes = 0
        while k >= 0 and s[k] == "\\":
            slashes += 1
            k -= 1
        if slashes % 2 == 0:
            return j
        j += 1


def _find_env_end(s: str, i: int, name: str) -> tuple[int, int]:
    """From i (just after ``\\begin{name}``): (start of matching ``\\end{name}``, index after it).

    Same-name environments nest. An environment never closed runs to the end of s.
    """
    pat = re.compile(r"\\(begin|end)\s*\{" + re.escape(name) + r"\}")
    depth = 1
    for m in pat.finditer(s, i):
        depth += 1 if m.group(1) == "begin" else -1
        if depth == 0:
            return m.start(), m.end()
    return len(s), len(s)


def _split_top_level(s: str, sep_re: re.Pattern[str]) -> list[str]:
    """Split s at matches of sep_re that are outside braces and nested environments."""
    parts: list[str] = []
    depth = 0
    env_depth = 0
    last = 0
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            if depth == 0 and env_depth == 0:
                m = sep_re.match(s, i)
                if m:
                    parts.append(s[last:i])
                    i = last = m.end()
                    continue
            if s.startswith("\\begin", i):
                env_depth += 1
            elif s.startswith("\\end", i):
                env_depth = max(0, env_depth - 1)
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth = max(0, depth - 1)
        i += 1
    parts.append(s[last:])
    return parts


_ROW_SEP = re.compile(r"\\\\\*?(\s*\[[^\]]*\])?")


def _resolve_ifmmode(s: str, math: bool, first_only: bool = False) -> str:
    """Replace ``\\ifmmode A\\else B\\fi`` (and ``\\ifmmode A\\fi``) by A in math, B in text.

    ``first_only`` resolves just the first one (the text-mode reader meets them one at a time).
    """
    pat = re.compile(r"\\ifmmode(?![A-Za-z@])")
    done = False
    while True:
        m = pat.search(s)
        if not m or done:
            return s
        done = first_only
        depth = 1
        else_at = None
        fi_end = len(s)
        for t in re.finditer(r"\\(if[A-Za-z@]*|else|fi)(?![A-Za-z@])", s[m.end() :]):
            word = t.group(1)
            if word == "fi":
                depth -= 1
                if depth == 0:
                    fi_end = m.end() + t.end()
                    fi_start = m.end() + t.start()
                    break
            elif word == "else":
                if depth == 1 and else_at is None:
                    else_at = (m.end() + t.start(), m.end() + t.end())
            elif word != "iff":
                depth += 1
        else:
            fi_start = len(s)
        if else_at is None:
            a, b = s[m.end() : fi_start], ""
        else:
            a, b = s[m.end() : else_at[0]], s[else_at[1] : fi_start]
        s = s[: m.start()] + (a if math else b).lstrip(" ") + s[fi_end:]  # TeX eats the blank


# =========================================================================== macro expansion


@dataclass
class _Macro:
    nargs: int
    default: str | None
    body: str
    complex: bool = False


_DEF_COMMANDS = {
    "newcommand", "renewcommand", "providecommand", "DeclareRobustCommand",
    "def", "gdef", "edef", "xdef", "let", "DeclareMathOperator",
    "newenvironment", "renewenvironment", "provideenvironment", "newtheorem",
}  # fmt: skip

# Commands the converter handles itself; a user (re)definition of these is ignored.
_STRUCTURAL = {
    "section", "subsection", "subsubsection", "paragraph", "subparagraph", "chapter", "part",
    "begin", "end", "item", "caption", "label", "ref", "eqref", "title", "author", "abstract",
    "footnote", "appendix", "bibliography", "cite", "citep", "citet", "emph", "textbf", "textit",
    "url", "href", "input", "include", "maketitle", "tablecaption", "keywords",
}  # fmt: skip

_PROGRAMMING_WORDS = {
    "else", "fi", "expandafter", "csname", "endcsname", "def", "gdef", "edef", "xdef", "let",
    "newcommand", "renewcommand", "providecommand", "futurelet", "afterassignment",
    "begingroup", "endgroup", "aftergroup", "noexpand", "makeatletter", "makeatother",
    "bgroup", "egroup", "global", "advance", "setbox", "box", "newif",
}  # fmt: skip


def _is_programming(body: str) -> bool:
    """True when a macro body is TeX programming rather than text/math to substitute."""
    body = _resolve_ifmmode(body, math=True) if "\\ifmmode" in body else body
    for m in re.finditer(r"\\([A-Za-z@]+)", body):
        name = m.group(1)
        if "@" in name or name in _PROGRAMMING_WORDS or (name.startswith("if") and name != "iff"):
            return True
    return False


class _Expander:
    """One pass over the document: records definitions (removing them) and expands uses."""

    def __init__(self, config: LatexConfig, notes: list[str], size_limit: int) -> None:
        self.config = config
        self.notes = notes
        self.macros: dict[str, _Macro] = {}
        self.env_args: dict[str, str] = {}
        self.theorems: dict[str, str] = {}
        self.size_limit = size_limit
        self.produced = 0

    def expand(self, s: str, depth: int = 0) -> str:
        out: list[str] = []
        i = 0
        n = len(s)
        while i < n:
            j = s.find("\\", i)
            if j == -1:
                out.append(s[i:])
                break
            out.append(s[i:j])
            name, end = _read_cs(s, j)
            if name == "verb":
                m = re.match(r"\\verb\*?([^A-Za-z\s*])", s[j:])
                if m:
                    close = s.find(m.group(1), j + m.end())
                    close = n if close == -1 else close + 1
                    out.append(s[j:close])
                    i = close
                    continue
            if name == "begin":
                g = _read_group(s, end, newlines=False)
                if g and g[0] in ("verbatim", "verbatim*", "Verbatim", "lstlisting", "minted"):
                    _, after = _find_env_end(s, g[1], g[0])
                    out.append(s[j:after])
                    i = after
                    continue
            if name in _DEF_COMMANDS:
                i = self._define(s, j, name, end)
                continue
            macro = self.macros.get(name)
            if macro is None:
                out.append(s[j:end])
                i = end
                continue
            i = end
            args: list[str] = []
            if macro.default is not None:
                opt = _read_optional(s, i)
                if opt is None:
                    args.append(macro.default)
                else:
                    args.append(opt[0])
                    i = opt[1]
            while len(args) < macro.nargs:
                arg, i = _read_arg(s, i)
                args.append(arg)
            if macro.complex:
                continue
            if depth >= self.config.max_expansion_depth:
                self.notes.append(f"macro expansion depth limit at \\{name}")
                continue
            body = macro.body
            if args:
                body = re.sub(
                    r"##|#([1-9])",
                    lambda m: "#" if m.group(0) == "##" else (args[int(m.group(1)) - 1] if int(m.group(1)) <= len(args) else ""),
                    body,
                )
            result = self.expand(body, depth + 1)
            self.produced += len(result)
            if self.produced > self.size_limit:
                raise LatexError(None, "macro_expansion_limit", f"expansion of \\{name} grew past {self.size_limit} characters")
            # a macro ending in a control word must not glue to the letters that follow
            if re.search(r"\\[A-Za-z@]+$", result) and i < n and s[i].isalpha():
                result += " "
            out.append(result)
        return "".join(out)

    def _macro_name(self, s: str, i: int) -> tuple[str | None, int]:
        """``{\\name}`` or ``\\name`` after a defining command."""
        j = _skip_ws(s, i)
        if j < len(s) and s[j] == "{":
            g = _read_group(s, j)
            assert g is not None
            inner = g[0].strip()
            m = re.fullmatch(r"\\([A-Za-z@]+|.)", inner)
            return (m.group(1) if m else None), g[1]
        if j < len(s) and s[j] == "\\":
            name, end = _read_cs(s, j)
            return name, end
        return None, j

    def _register(self, name: str, macro: _Macro, provide: bool = False) -> None:
        if name in _STRUCTURAL:
            self.notes.append(f"ignored redefinition of \\{name}")
            return
        if provide and name in self.macros:
            return
        self.macros[name] = macro

    def _define(self, s: str, start: int, kind: str, i: int) -> int:
        """Parse one definition at s[start:], record it, return the index after it."""
        j = _skip_ws(s, i, newlines=False)
        if j < len(s) and s[j] == "*":
            i = j + 1
        if kind in ("newcommand", "renewcommand", "providecommand", "DeclareRobustCommand"):
            name, i = self._macro_name(s, i)
            nargs_s = _read_optional(s, i)
            nargs = 0
            if nargs_s is not None:
                i = nargs_s[1]
                nargs = int(nargs_s[0].strip()) if nargs_s[0].strip().isdigit() else 0
            default = None
            if nargs:
                opt = _read_optional(s, i)
                if opt is not None:
                    default, i = opt
            body, i = _read_arg(s, i)
            if name:
                self._register(name, _Macro(nargs, default, body, _is_programming(body)), provide=kind == "providecommand")
            return i
        if kind in ("def", "gdef", "edef", "xdef"):
            j = _skip_ws(s, i)
            if j >= len(s) or s[j] != "\\":
                return i
            name, i = _read_cs(s, j)
            brace = s.find("{", i)
            if brace == -1:
                return len(s)
            params = s[i:brace]
            end = _match_brace(s, brace)
            end = len(s) if end == -1 else end
            body = s[brace + 1 : end - 1]
            if re.fullmatch(r"(#[1-9])*", params.strip()):
                nargs = params.count("#")
                self._register(name, _Macro(nargs, None, body, _is_programming(body)))
            else:  # delimited parameters: cannot be matched reliably, so the uses are removed
                self.notes.append(f"unsupported \\def with delimited parameters: \\{name}")
                self._register(name, _Macro(0, None, "", True))
            return end
        if kind == "let":
            j = _skip_ws(s, i)
            if j >= len(s) or s[j] != "\\":
                return i
            name, i = _read_cs(s, j)
            j = _skip_ws(s, i)
            if j < len(s) and s[j] == "=":
                j = _skip_ws(s, j + 1)
            if j < len(s) and s[j] == "\\":
                target, i = _read_cs(s, j)
                if target in self.macros:
                    self._register(name, self.macros[target])
                else:
                    self._register(name, _Macro(0, None, "\\" + target, False))
            else:
                i = min(j + 1, len(s))
            return i
        if kind == "DeclareMathOperator":
            star = ""
            j = _skip_ws(s, i, newlines=False)
            if j < len(s) and s[j] == "*":
                star, i = "*", j + 1
            name, i = self._macro_name(s, i)
            text, i = _read_arg(s, i)
            if name:
                self._register(name, _Macro(0, None, f"\\operatorname{star}{{{text}}}"))
            return i
        if kind in ("newenvironment", "renewenvironment", "provideenvironment"):
            env, i = _read_arg(s, i)
            env = env.strip()
            nargs_s = _read_optional(s, i)
            spec = ""
            if nargs_s is not None:
                i = nargs_s[1]
                n = int(nargs_s[0].strip()) if nargs_s[0].strip().isdigit() else 0
                opt = _read_optional(s, i) if n else None
                if opt is not None:
                    i = opt[1]
                    spec = "o" + "m" * (n - 1)
                else:
                    spec = "m" * n
            _, i = _read_arg(s, i)  # begin code
            _, i = _read_arg(s, i)  # end code
            if env:
                self.env_args[env] = spec
            return i
        if kind == "newtheorem":
            env, i = _read_arg(s, i)
            opt = _read_optional(s, i)
            if opt is not None:
                i = opt[1]
            title, i = _read_arg(s, i)
            opt = _read_optional(s, i)
            if opt is not None:
                i = opt[1]
            if env.strip():
                self.theorems[env.strip()] = title.strip()
            return i
        return i


# =========================================================================== bibliography


def _author_list(names: list[str]) -> str:
    if not names:
        return ""
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]} & {names[1]}"
    return f"{names[0]} et al."


def _plain(tex: str) -> str:
    """A short TeX fragment (a name, a label) as plain text."""
    conv = _Converter(LatexConfig(footnotes="drop"), {}, {}, {}, [])
    conv.inline_depth = 1
    return re.sub(r"\s+", " ", conv.restore(conv.text(tex))).strip()


def parse_bbl(text: str) -> dict[str, tuple[str, str]]:
    """Citation keys -> (authors, year) from natbib ``\\bibitem[Author(Year)Full]{key}`` lines.

    Works on a ``.bbl`` file or a ``thebibliography`` environment pasted into the paper. Numeric
    ``\\bibitem{key}`` entries carry no author-year label and are skipped.
    """
    found: dict[str, tuple[str, str]] = {}
    for m in re.finditer(r"\\bibitem(?![A-Za-z@])", text):
        opt = _read_optional(text, m.end())
        if opt is None:
            continue
        key = _read_group(text, opt[1])
        if key is None:
            continue
        label = _plain(opt[0])
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
        end = _match_brace(text, m.end() - len(m.group(0)) + m.group(0).index("{"))
        entry = text[m.end() : end if end != -1 else len(text)]
        fields: dict[str, str] = {}
        for f in re.finditer(r"(\w+)\s*=\s*", entry):
            name = f.group(1).lower()
            if name not in ("author", "year", "editor") or name in fields:
                continue
            k = f.end()
            if k < len(entry) and entry[k] == "{":
                g = _read_group(entry, k)
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
            surnames.append(_plain(surname))
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


# =========================================================================== conversion tables

_SECTION_LEVELS = {
    "part": 1, "chapter": 1, "section": 1, "subsection": 2, "subsubsection": 3,
    "paragraph": 4, "subparagraph": 5,
}  # fmt: skip

# Commands removed together with their arguments (s: star, o: optional, m: mandatory).
_DROP = {
    "label": "m", "author": "om", "affiliation": "m", "affil": "m", "altaffiliation": "m",
    "altaffilmark": "m", "altaffiltext": "mm", "email": "m", "correspondingauthor": "m",
    "collaboration": "mm", "nocollaboration": "m", "shorttitle": "m", "shortauthors": "m",
    "received": "m", "revised": "m", "accepted": "m", "published": "m", "submitjournal": "m",
    "journalinfo": "m", "date": "m", "thanks": "m", "institute": "m", "address": "om",
    "orcid": "m", "orcidlink": "m", "affilmark": "m", "inst": "m", "titlerunning": "m",
    "authorrunning": "m", "pubyear": "m", "pagerange": "m", "volume": "m", "doi": "",
    "bibliography": "m", "bibliographystyle": "m", "nocite": "m", "printbibliography": "o",
    "addbibresource": "m", "includegraphics": "som", "plotone": "m", "plottwo": "mm",
    "epsscale": "m", "figurenum": "m", "vspace": "sm", "hspace": "sm", "vskip": "", "hskip": "",
    "setlength": "mm", "addtolength": "mm", "setcounter": "mm", "addtocounter": "mm",
    "stepcounter": "m", "refstepcounter": "m", "newcounter": "mo", "newlength": "m",
    "settowidth": "mm", "definecolor": "mmm", "colorlet": "mm", "color": "om",
    "pagecolor": "m", "graphicspath": "m", "usepackage": "om", "RequirePackage": "om",
    "documentclass": "om", "pagestyle": "m", "thispagestyle": "m", "linenumbers": "",
    "marginpar": "om", "marginicon": "m", "script": "m", "todo": "om", "phantom": "m",
    "hphantom": "m", "vphantom": "m", "rule": "omm", "raisebox": "moo", "tablenum": "m",
    "figsetnum": "m", "figsettitle": "m", "figsetgrpnum": "m", "figsetgrptitle": "m",
    "figsetplot": "m", "figsetgrpnote": "m", "deleted": "m", "explain": "m",
    "authorcomments": "m", "listofchanges": "", "hypersetup": "m", "urlstyle": "m",
    "renewcommand": "mm", "setstretch": "m", "resizebox": "smm", "scalebox": "m",
    "tabletypesize": "m", "tablewidth": "m", "tablehead": "m", "tablecolumns": "m",
    "movetabledown": "", "AuthorCollaborationLimit": "", "watermark": "m",
    "setwatermarkfontsize": "m", "newpage": "", "clearpage": "", "pagebreak": "o",
    "linebreak": "o", "nolinebreak": "o", "nopagebreak": "o", "allowbreak": "", "maketitle": "",
    "tableofcontents": "", "noindent": "", "indent": "", "centering": "", "raggedright": "",
    "raggedleft": "", "bigskip": "", "medskip": "", "smallskip": "", "vfill": "", "hfill": "",
    "hfil": "", "vfil": "", "null": "", "relax": "", "protect": "", "xspace": "", "sloppy": "",
    "fussy": "", "onecolumn": "", "twocolumn": "o", "balance": "", "leavevmode": "",
    "nobreak": "", "break": "", "ignorespaces": "", "unskip": "", "strut": "", "quad": "",
    "qquad": "", "hline": "", "cline": "m", "toprule": "", "midrule": "", "bottomrule": "",
    "tightenlines": "", "startlongtable": "", "figsetstart": "", "figsetend": "",
    "figsetgrpstart": "", "figsetgrpend": "", "turnoffediting": "", "normalfont": "",
    "bf": "", "it": "", "rm": "", "sf": "", "tt": "", "sc": "", "sl": "", "em": "",
    "bfseries": "", "itshape": "", "rmfamily": "", "sffamily": "", "ttfamily": "",
    "scshape": "", "upshape": "", "slshape": "", "mdseries": "", "tiny": "", "scriptsize": "",
    "footnotesize": "", "small": "", "normalsize": "", "large": "", "Large": "", "LARGE": "",
    "huge": "", "Huge": "", "selectfont": "", "fontsize": "mm", "usefont": "mmmm",
    "fontfamily": "m", "fontseries": "m", "fontshape": "m", "footnotemark": "o",
    "today": "", "bibpunct": "omm", "citestyle": "m", "setcitestyle": "m", "ion": "",
    "faGithub": "", "affiliations": "", "acknowledgmentsfalse": "", "nodata": "",
    "begingroup": "", "endgroup": "", "makeatletter": "", "makeatother": "", "par": "",
    "newline": "", "and": "", "AND": "", "PACS": "m", "input": "m", "include": "m",
    "includeonly": "m", "subfile": "m", "import": "mm", "subimport": "mm",
}  # fmt: skip

# Commands replaced by the text of one argument: name -> (spec, index of the argument kept)
_UNWRAP = {
    "emph": ("m", 0), "textbf": ("m", 0), "textit": ("m", 0), "texttt": ("m", 0),
    "textrm": ("m", 0), "textsf": ("m", 0), "textsc": ("m", 0), "textup": ("m", 0),
    "textsl": ("m", 0), "textmd": ("m", 0), "textnormal": ("m", 0), "underline": ("m", 0),
    "uline": ("m", 0), "mbox": ("m", 0), "hbox": ("m", 0), "makebox": ("oom", 2),
    "fbox": ("m", 0), "framebox": ("oom", 2), "text": ("m", 0), "textsuperscript": ("m", 0),
    "textsubscript": ("m", 0), "href": ("mm", 1), "hyperref": ("om", 1),
    "hyperlink": ("mm", 1), "hypertarget": ("mm", 1), "textcolor": ("om m", 2),
    "colorbox": ("om m", 2), "added": ("m", 0), "replaced": ("mm", 1),
    "highlight": ("m", 0), "hl": ("m", 0), "texorpdfstring": ("mm", 1), "nolinkurl": ("m", 0),
    "object": ("om", 1), "dataset": ("om", 1), "sbox": ("mm", 1), "parbox": ("oomm", 3),
    "centerline": ("m", 0), "enquote": ("m", 0), "foreignlanguage": ("mm", 1),
    "textls": ("om", 1), "ensuretext": ("m", 0), "revision": ("m", 0), "change": ("m", 0),
    "new": ("m", 0), "referee": ("m", 0), "rev": ("m", 0), "mathrm": ("m", 0),
}  # fmt: skip
_UNWRAP = {k: (spec.replace(" ", ""), idx) for k, (spec, idx) in _UNWRAP.items()}

_SYMBOLS = {
    "AA": "Å", "aa": "å", "o": "ø", "O": "Ø", "ss": "ß", "ae": "æ", "AE": "Æ", "oe": "œ",
    "OE": "Œ", "l": "ł", "L": "Ł", "i": "ı", "j": "ȷ", "dh": "ð", "DH": "Ð", "th": "þ",
    "TH": "Þ", "copyright": "©", "textcopyright": "©", "textregistered": "®",
    "texttrademark": "™", "dag": "†", "ddag": "‡", "textdagger": "†", "textdaggerdbl": "‡",
    "S": "§", "P": "¶", "pounds": "£", "textsterling": "£", "euro": "€", "texteuro": "€",
    "ldots": "…", "dots": "…", "textellipsis": "…", "textbackslash": "\\",
    "textasciitilde": "~", "textasciicircum": "^", "textbar": "|", "textless": "<",
    "textgreater": ">", "textendash": "–", "textemdash": "—", "textbullet": "•",
    "textperiodcentered": "·", "textdegree": "°", "degree": "°", "textmu": "µ",
    "textquoteleft": "‘", "textquoteright": "’", "textquotedblleft": "“",
    "textquotedblright": "”", "guillemotleft": "«", "guillemotright": "»", "textunderscore": "_",
    "TeX": "TeX", "LaTeX": "LaTeX", "LaTeXe": "LaTeX2e", "BibTeX": "BibTeX", "AmS": "AMS",
    "sun": "☉", "earth": "⊕", "arcsec": "″", "arcmin": "′", "arcdeg": "°", "micron": "µm",
    "farcs": "″.", "farcm": "′.", "fdg": "°.", "sq": "□", "lesssim": "≲", "gtrsim": "≳",
    "la": "≲", "ga": "≳", "lsim": "≲", "gsim": "≳", "textpm": "±", "texttimes": "×",
    "textminus": "−", "slash": "/", "space": " ", "enspace": " ", "thinspace": " ",
    "nobreakspace": " ", "enskip": " ", "quad": " ", "qquad": " ", "textvisiblespace": "␣",
    "textsection": "§", "textparagraph": "¶", "checkmark": "✓", "permil": "‰",
}  # fmt: skip

_ESCAPES = {
    "%": "%", "&": "&", "$": "$", "#": "#", "_": "_", "{": "{", "}": "}", " ": " ",
    "\n": " ", "\t": " ", ",": " ", ";": " ", ":": " ", ">": " ", "!": "", "-": "",
    "/": "", "@": "", "*": "", "|": "‖", "\\": "\n",
}  # fmt: skip

_ACCENTS = {
    "'": "\u0301", "`": "\u0300", "^": "\u0302", '"': "\u0308", "~": "\u0303", "=": "\u0304",
    ".": "\u0307", "u": "\u0306", "v": "\u030c", "H": "\u030b", "c": "\u0327", "k": "\u0328",
    "r": "\u030a", "d": "\u0323", "b": "\u0331", "t": "\u0361",
}  # fmt: skip

_PAREN_CITES = {"citep", "citep*", "parencite", "parencites", "autocite", "autocites", "footcite", "Citep", "citepalias", "supercite"}
_TEXT_CITES = {
    "cite", "cite*", "citet", "citet*", "Citet", "Cite", "citealt", "citealt*", "citealp",
    "citealp*", "Citealt", "Citealp", "citeauthor", "citeauthor*", "Citeauthor", "citeyear",
    "citeyearpar", "textcite", "textcites", "Textcite", "citetalias",
}  # fmt: skip
_REFS = {"ref", "eqref", "autoref", "Autoref", "cref", "Cref", "vref", "pageref", "nameref", "ref*", "autopageref", "subref"}

_MATH_ENVS = {
    "equation": "", "displaymath": "", "math": "", "align": "aligned", "eqnarray": "aligned",
    "flalign": "aligned", "alignat": "aligned", "xalignat": "aligned", "gather": "gathered",
    "multline": "gathered", "dmath": "", "subeqnarray": "aligned",
}  # fmt: skip
_NUMBERED_SINGLE = {"equation", "multline", "dmath"}
_NUMBERED_ROWS = {"align", "eqnarray", "flalign", "alignat", "xalignat", "gather", "subeqnarray"}

_FIGURE_ENVS = {"figure", "figure*", "wrapfigure", "wrapfigure*", "sidewaysfigure", "sidewaysfigure*", "SCfigure", "subfigure", "subfigure*", "plotfigure"}
_TABLE_ENVS = {
    "table", "table*", "deluxetable", "deluxetable*", "splitdeluxetable", "splitdeluxetable*",
    "sidewaystable", "sidewaystable*", "longtable", "longtable*", "wraptable", "planotable",
    "splittabular", "splittabular*", "threeparttable", "mpsupertabular", "supertabular",
}  # fmt: skip
_DROP_ENVS = {
    "thebibliography", "tabular", "tabular*", "tabularx", "tabulary", "tabu", "array",
    "tikzpicture", "picture", "pgfpicture", "comment", "figure-set", "references", "filecontents",
    "filecontents*", "titlepage", "minted-options", "lrbox", "widetext_", "authors",
}  # fmt: skip
_VERBATIM = {"verbatim", "verbatim*", "Verbatim", "lstlisting", "minted", "alltt"}
_ACK_ENVS = {"acknowledgments", "acknowledgements", "acknowledgment", "acknowledgement", "acks"}
_LIST_ENVS = {"itemize", "enumerate", "description", "compactitem", "compactenum", "inparaenum", "list", "deflist"}
_ENV_ARGS = {
    "minipage": "om", "tabular": "om", "tabular*": "mom", "tabularx": "mom", "wrapfigure": "oom",
    "wraptable": "oom", "multicols": "m", "multicols*": "m", "subfigure": "om",
    "adjustbox": "m", "interactive": "mm", "deluxetable": "m", "deluxetable*": "m",
    "splitdeluxetable": "m", "splitdeluxetable*": "m", "longtable": "om", "array": "om",
    "alignat": "m", "alignat*": "m", "xalignat": "m", "thebibliography": "m", "list": "mm",
    "otherlanguage": "m", "turn": "m", "rotate": "m", "figure": "o", "figure*": "o",
    "table": "o", "table*": "o", "description": "o", "itemize": "o", "enumerate": "o",
    "splittabular": "m", "splittabular*": "m", "planotable": "m", "minted": "om", "tcolorbox": "o",
    "lstlisting": "o", "SCfigure": "o", "sidewaysfigure": "o", "sidewaystable": "o",
}  # fmt: skip
_ACK_TITLE = re.compile(r"^\s*acknowledge?ments?\s*$", re.I)
_REF_TITLE = re.compile(r"^\s*(references?|bibliography)\s*$", re.I)
_SECTION_STOP = re.compile(
    r"\\(section|chapter|part|appendix|bibliography|printbibliography)(?![A-Za-z@])|\\begin\s*\{(thebibliography|references)\}|\\end\s*\{document\}"
)

# Private-use sentinels (never produced by decoding real text and kept out of the final output).
_P_OPEN, _P_CLOSE = "\ue000", "\ue001"  # protected (math, URLs, verbatim): index inside
_F_OPEN, _F_CLOSE = "\ue002", "\ue003"  # footnote text, moved after its paragraph
_R_OPEN, _R_CLOSE = "\ue004", "\ue005"  # cross-reference label, resolved at the end
_PLAIN_RUN = re.compile(r"[^\\{}$~\-`'\n&\r]+")


class _Converter:
    """Text-mode TeX -> Markdown-ish text. Works on strings already macro-expanded."""

    def __init__(
        self,
        config: LatexConfig,
        env_args: Mapping[str, str],
        theorems: Mapping[str, str],
        citations: Mapping[str, tuple[str, str]],
        notes: list[str],
    ) -> None:
        self.config = config
        self.env_args = {**_ENV_ARGS, **env_args}
        self.theorems = dict(theorems)
        self.citations = citations
        self.notes = notes
        self.protected: list[str] = []
        self.labels: dict[str, tuple[str, str]] = {}
        self.target: tuple[str, str] = ("section", "?")
        self.sections = [0, 0, 0, 0, 0]
        self.appendix = False
        self.counters = {"figure": 0, "table": 0, "equation": 0}
        self.lists: list[list] = []  # [kind, count]
        self.inline_depth = 0  # >0: inside a title, heading or caption: no paragraphs/footnotes
        self.unknown: dict[str, int] = {}

    # ------------------------------------------------------------------ helpers

    def protect(self, s: str) -> str:
        self.protected.append(s)
        return f"{_P_OPEN}{len(self.protected) - 1}{_P_CLOSE}"

    def restore(self, s: str) -> str:
        pat = re.compile(_P_OPEN + r"(\d+)" + _P_CLOSE)
        for _ in range(5):  # protected text may itself hold placeholders
            new = pat.sub(lambda m: self.protected[int(m.group(1))], s)
            if new == s:
                break
            s = new
        return s

    def inline(self, s: str) -> str:
        """Convert a fragment for a one-line context (title, heading, caption)."""
        self.inline_depth += 1
        try:
            out = self.text(s)
        finally:
            self.inline_depth -= 1
        return re.sub(r"\s+", " ", out).strip()

    # ------------------------------------------------------------------ text mode

    def text(self, s: str) -> str:
        out: list[str] = []
        i = 0
        n = len(s)
        while i < n:
            c = s[i]
            if c == "\\":
                s, i = self.command(s, i, out)
                n = len(s)
            elif c == "{":
                end = _match_brace(s, i)
                if end == -1:
                    i += 1
                    continue
                out.append(self.text(s[i + 1 : end - 1]))
                i = end
            elif c == "}":
                i += 1
            elif c == "$":
                i = self.dollar_math(s, i, out)
            elif c == "~":
                out.append(" ")
                i += 1
            elif c == "-":
                if s.startswith("---", i):
                    out.append("—")
                    i += 3
                elif s.startswith("--", i):
                    out.append("–")
                    i += 2
                else:
                    out.append("-")
                    i += 1
            elif c == "`":
                if s.startswith("``", i):
                    out.append("“")
                    i += 2
                else:
                    out.append("'")
                    i += 1
            elif c == "'":
                if s.startswith("''", i):
                    out.append("”")
                    i += 2
                else:
                    out.append("'")
                    i += 1
            elif c in "\n\r":
                j = i
                newlines = 0
                while j < n and s[j] in " \t\n\r":
                    if s[j] == "\n":
                        newlines += 1
                    j += 1
                out.append("\n\n" if newlines >= 2 and not self.inline_depth else " ")
                i = j
            elif c == "&":
                out.append(" ")
                i += 1
            else:
                m = _PLAIN_RUN.match(s, i)
                out.append(m.group(0))
                i = m.end()
        return "".join(out)

    def dollar_math(self, s: str, i: int, out: list[str]) -> int:
        if s.startswith("$$", i):
            end = _find_unescaped(s, "$$", i + 2)
            if end == -1:
                self.notes.append("unclosed $$ math")
                end = len(s)
            out.append(self.display(s[i + 2 : end], ""))
            return end + 2
        end = _find_unescaped(s, "$", i + 1)
        if end == -1:
            self.notes.append("unclosed $ math")
            out.append("$")
            return i + 1
        out.append(self.inline_math(s[i + 1 : end]))
        return end + 1

    def clean_math(self, m: str, record_labels: bool = True) -> str:
        m = _resolve_ifmmode(m, math=True) if "\\ifmmode" in m else m
        if record_labels:
            for lab in re.finditer(r"\\label\s*\{([^}]*)\}", m):
                self.labels.setdefault(lab.group(1).strip(), ("equation", self.target[1]))
        m = re.sub(r"\\label\s*\{[^}]*\}", "", m)
        m = re.sub(r"\\(nonumber|notag|ensuremath|xspace)(?![A-Za-z@])", "", m)
        m = re.sub(r"^\s*\{\s*\}", "", m)
        lines = [ln.strip() for ln in m.strip().split("\n")]
        return "\n".join(ln for ln in lines if ln)

    def inline_math(self, m: str) -> str:
        m = self.clean_math(m)
        return self.protect(f"${m}$") if m else ""

    def display(self, m: str, wrapper: str) -> str:
        m = self.clean_math(m)
        if not m:
            return ""
        if wrapper:
            m = f"\\begin{{{wrapper}}}\n{m}\n\\end{{{wrapper}}}"
        block = self.protect(f"$${m}$$")
        return f" {block} " if self.inline_depth else f"\n{block}\n"

    # ------------------------------------------------------------------ commands

    def command(self, s: str, i: int, out: list[str]) -> tuple[str, int]:
        name, end = _read_cs(s, i)
        if not name:
            return s, end
        if not (name[0].isalpha() or name[0] == "@"):
            return s, self.control_symbol(s, i, name, end, out)
        if name in _ACCENTS:  # \c{c}, \v{s}, \u{a}, ...
            return s, self.accent(s, name, end, out)
        handler = getattr(self, f"cmd_{name}", None)
        if handler is not None:
            return s, handler(s, end, out)
        if name == "ifmmode":
            return _resolve_ifmmode(s[i:], math=False, first_only=True), 0
        if name in _SECTION_LEVELS:
            return s, self.heading(s, name, end, out)
        if name in _PAREN_CITES or name in _TEXT_CITES:
            return s, self.cite(s, name, end, out)
        if name in _REFS:
            return s, self.ref(s, name, end, out)
        if name in _UNWRAP:
            spec, idx = _UNWRAP[name]
            args, j = _read_args(s, end, spec)
            kept = args[idx] or ""
            out.append(self.text(kept))
            return s, j
        if name in _DROP:
            if name in ("vskip", "hskip", "movetabledown", "AuthorCollaborationLimit"):
                m = re.match(r"\s*=?\s*-?[\d.]+\s*[a-z]{2}(\s*(plus|minus)\s*-?[\d.]+\s*[a-z]{2,4})*", s[end:])
                return s, end + (m.end() if m else 0)
            _, j = _read_args(s, end, _DROP[name])
            return s, j
        if name in _SYMBOLS:
            out.append(_SYMBOLS[name])
            return s, end
        if re.fullmatch(r"(edit|authorcomments)[123]?", name):  # AASTeX \edit1{..}
            j = end + 1 if end < len(s) and s[end].isdigit() else end
            arg, j = _read_arg(s, j)
            if name.startswith("edit"):
                out.append(self.text(arg))
            return s, j
        # unknown command: dropped; its brace arguments are read as ordinary groups
        self.unknown[name] = self.unknown.get(name, 0) + 1
        if end < len(s) and s[end] == "*":
            end += 1
        return s, end

    def control_symbol(self, s: str, i: int, name: str, end: int, out: list[str]) -> int:
        if name in _ACCENTS:
            return self.accent(s, name, end, out)
        if name == "\\":
            # \\ with an optional star and [length]
            j = end
            if j < len(s) and s[j] == "*":
                j += 1
            opt = _read_optional(s, j)
            if opt is not None and re.fullmatch(r"\s*-?[\d.]+\s*[a-z]{2}\s*", opt[0]):
                j = opt[1]
            out.append(" " if self.inline_depth else "\n")
            return j
        if name == "(":
            close = s.find("\\)", end)
            close = len(s) if close == -1 else close
            out.append(self.inline_math(s[end:close]))
            return close + 2
        if name == "[":
            close = s.find("\\]", end)
            close = len(s) if close == -1 else close
            out.append(self.display(s[end:close], ""))
            return close + 2
        out.append(_ESCAPES.get(name, ""))
        return end

    def accent(self, s: str, name: str, end: int, out: list[str]) -> int:
        j = _skip_ws(s, end, newlines=False) if name.isalpha() else end
        if j < len(s) and s[j] == "{":
            g = _read_group(s, j)
            assert g is not None
            base, j = g[0].strip(), g[1]
        elif j < len(s) and s[j] == "\\":
            base, j = s[j:_read_cs(s, j)[1]], _read_cs(s, j)[1]
        elif j < len(s):
            base, j = s[j], j + 1
        else:
            base = ""
        base = {"\\i": "i", "\\j": "j", "{\\i}": "i"}.get(base, base)
        if base.startswith("\\"):
            base = _SYMBOLS.get(base[1:], "")
        if not base:
            return j
        out.append(unicodedata.normalize("NFC", base[0] + _ACCENTS[name]) + base[1:])
        return j

    # --- structure

    def heading(self, s: str, name: str, end: int, out: list[str]) -> int:
        args, j = _read_args(s, end, "som")
        star, title_tex = args[0], args[2] or ""
        level = _SECTION_LEVELS[name]
        plain_title = re.sub(r"\\label\s*\{[^}]*\}", "", title_tex)
        if _REF_TITLE.match(plain_title) or (_ACK_TITLE.match(plain_title) and not self.config.keep_acknowledgments):
            stop = _SECTION_STOP.search(s, j)
            return stop.start() if stop else len(s)
        if not star and level <= 3:
            idx = level - 1
            self.sections[idx] += 1
            for k in range(idx + 1, len(self.sections)):
                self.sections[k] = 0
            first = chr(ord("A") + self.sections[0] - 1) if self.appendix and self.sections[0] <= 26 else str(self.sections[0])
            number = ".".join([first, *(str(x) for x in self.sections[1 : idx + 1])])
            self.target = ("appendix" if self.appendix and level == 1 else "section", number)
        title = self.inline(title_tex)
        if title:
            out.append(f"\n\n{'#' * level} {title}\n\n")
        return j

    def cmd_title(self, s: str, end: int, out: list[str]) -> int:
        _, j = _read_args(s, end, "om")  # the title itself is written at the top
        return j

    def cmd_appendix(self, s: str, end: int, out: list[str]) -> int:
        if not self.config.keep_appendix:
            stop = re.compile(r"\\(bibliography|printbibliography)(?![A-Za-z@])|\\begin\s*\{thebibliography\}|\\end\s*\{document\}").search(s, end)
            return stop.start() if stop else len(s)
        self.appendix = True
        self.sections = [0, 0, 0, 0, 0]
        return end

    def acknowledgments(self, s: str, end: int, out: list[str]) -> int:
        if self.config.keep_acknowledgments:
            out.append("\n\n# Acknowledgments\n\n")
            return end
        stop = _SECTION_STOP.search(s, end)
        soft = re.compile(r"\\(software|facilit(y|ies))(?![A-Za-z@])").search(s, end)
        candidates = [m.start() for m in (stop, soft) if m]
        return min(candidates) if candidates else len(s)

    cmd_acknowledgments = acknowledgments
    cmd_acknowledgements = acknowledgments

    def software(self, s: str, end: int, out: list[str]) -> int:
        arg, j = _read_arg(s, end)
        if self.config.keep_software:
            out.append("\n\n" + self.inline(arg) + "\n\n")
        return j

    cmd_software = software
    cmd_facility = software
    cmd_facilities = software

    def cmd_keywords(self, s: str, end: int, out: list[str]) -> int:
        arg, j = _read_arg(s, end)
        if self.config.keep_keywords:
            kw = self.inline(arg)
            if kw:
                out.append(f"\n\nKeywords: {kw}\n\n")
        return j

    cmd_keyword = cmd_keywords
    cmd_subjclass = cmd_keywords

    def cmd_abstract(self, s: str, end: int, out: list[str]) -> int:  # \abstract{..} form (A&A)
        j = _skip_ws(s, end)
        if j < len(s) and s[j] == "{":
            arg, j = _read_arg(s, end)
            if self.config.keep_abstract:
                out.append("\n\n# Abstract\n\n" + self.text(arg) + "\n\n")
            return j
        return end

    def cmd_item(self, s: str, end: int, out: list[str]) -> int:
        opt = _read_optional(s, end)
        j = end
        label = None
        if opt is not None:
            label, j = self.inline(opt[0]), opt[1]
        indent = "  " * max(0, len(self.lists) - 1)
        if self.lists and self.lists[-1][0] in ("enumerate", "compactenum", "inparaenum") and label is None:
            self.lists[-1][1] += 1
            marker = f"{self.lists[-1][1]}."
        else:
            marker = "-"
        text = f"{marker} {label} " if label else f"{marker} "
        out.append(f" {text}" if self.inline_depth else f"\n{indent}{text}")
        return j

    def cmd_footnote(self, s: str, end: int, out: list[str]) -> int:
        args, j = _read_args(s, end, "om")
        body = args[1] or ""
        if self.inline_depth or self.config.footnotes == "drop":
            return j
        text = self.inline(body)
        if not text:
            return j
        if self.config.footnotes == "inline":
            out.append(f" ({text})")
        else:
            out.append(f"{_F_OPEN}{text}{_F_CLOSE}")
        return j

    cmd_footnotetext = cmd_footnote
    cmd_tablenotetext = lambda self, s, end, out: _read_args(s, end, "mm")[1]  # noqa: E731

    def cmd_url(self, s: str, end: int, out: list[str]) -> int:
        arg, j = _read_arg(s, end)
        out.append(self.protect(re.sub(r"\\([_#%&~$])", r"\1", arg.strip())))
        return j

    def cmd_doi(self, s: str, end: int, out: list[str]) -> int:
        arg, j = _read_arg(s, end)
        out.append(self.protect("doi:" + arg.strip()))
        return j

    def cmd_verb(self, s: str, end: int, out: list[str]) -> int:
        j = end + 1 if end < len(s) and s[end] == "*" else end
        if j >= len(s):
            return j
        delim = s[j]
        close = s.find(delim, j + 1)
        close = len(s) if close == -1 else close
        out.append(self.protect(s[j + 1 : close]))
        return close + 1

    def cmd_string(self, s: str, end: int, out: list[str]) -> int:
        if end < len(s) and s[end] == "\\":
            _, j = _read_cs(s, end)
            out.append(self.protect(s[end:j]))
            return j
        if end < len(s):
            out.append(s[end])
            return end + 1
        return end

    def cmd_ensuremath(self, s: str, end: int, out: list[str]) -> int:
        arg, j = _read_arg(s, end)
        out.append(self.inline_math(arg))
        return j

    def cmd_caption(self, s: str, end: int, out: list[str]) -> int:  # a caption outside a float
        args, j = _read_args(s, end, "om")
        text = self.inline(args[1] or "")
        if text and self.config.keep_captions:
            out.append(f"\n\n{text}\n\n")
        return j

    cmd_tablecaption = cmd_caption
    cmd_figcaption = cmd_caption

    def cmd_captionof(self, s: str, end: int, out: list[str]) -> int:
        args, j = _read_args(s, end, "mom")
        kind = (args[0] or "").strip().rstrip("*")
        text = self.inline(args[2] or "")
        if text and self.config.keep_captions:
            if kind in self.counters:
                self.counters[kind] += 1
                text = f"{kind.capitalize()} {self.counters[kind]}: {text}"
            out.append(f"\n\n{text}\n\n")
        return j

    def cmd_label(self, s: str, end: int, out: list[str]) -> int:
        arg, j = _read_arg(s, end)
        self.labels.setdefault(arg.strip(), self.target)
        return j

    def cmd_par(self, s: str, end: int, out: list[str]) -> int:
        out.append(" " if self.inline_depth else "\n\n")
        return end

    def cmd_newline(self, s: str, end: int, out: list[str]) -> int:
        out.append(" " if self.inline_depth else "\n")
        return end

    def cmd_figsetstart(self, s: str, end: int, out: list[str]) -> int:  # AASTeX figure sets
        close = s.find("\\figsetend", end)
        return len(s) if close == -1 else close + len("\\figsetend")

    def cmd_end(self, s: str, end: int, out: list[str]) -> int:  # a stray \end{..}
        _, j = _read_arg(s, end)
        return j

    # --- citations and references

    def _cite_parts(self, key: str) -> tuple[str, str]:
        if key in self.citations:
            return self.citations[key]
        return key, ""

    def cite(self, s: str, name: str, end: int, out: list[str]) -> int:
        args, j = _read_args(s, end, "soom")
        pre, post = args[1], args[2]
        if args[2] is None:  # one optional argument is the post-note
            pre, post = None, args[1]
        keys = [k.strip() for k in (args[3] or "").split(",") if k.strip()]
        base = name.rstrip("*").lower()
        parenthetical = name.rstrip("*") in {n.rstrip("*") for n in _PAREN_CITES}
        if parenthetical and self.config.parenthetical_citations == "drop":
            while out and out[-1].endswith((" ", "\t")):
                last = out.pop().rstrip(" \t")
                if last:
                    out.append(last)
                    break
            return j
        pieces = []
        for k in keys:
            who, year = self._cite_parts(k)
            if base in ("citeauthor",):
                pieces.append(who)
            elif base in ("citeyear",):
                pieces.append(year or who)
            elif base in ("citeyearpar",):
                pieces.append(f"({year or who})")
            elif parenthetical or base in ("citealt", "citealp"):
                pieces.append(f"{who} {year}".strip())
            else:  # citet, cite, textcite
                pieces.append(f"{who} ({year})" if year else who)
        sep = "; " if parenthetical or base in ("citealp", "citealt") else ", "
        text = sep.join(pieces)
        if pre and pre.strip():
            text = f"{self.inline(pre)} {text}"
        if post and post.strip():
            text = f"{text}, {self.inline(post)}"
        if parenthetical:
            text = f"({text})"
        out.append(self.protect(text))
        return j

    def ref(self, s: str, name: str, end: int, out: list[str]) -> int:
        args, j = _read_args(s, end, "sm")
        raw = args[1] or ""
        labels = [lab.strip() for lab in (raw.split(",") if name in ("cref", "Cref") else [raw]) if lab.strip()]
        typed = name.lower() in ("autoref", "cref", "vref")
        parts = []
        for lab in labels:
            marker = f"{_R_OPEN}{'T' if typed else 'N'}{lab}{_R_CLOSE}"
            parts.append(f"({marker})" if name == "eqref" else marker)
        out.append(", ".join(parts))
        return j

    def resolve_refs(self, s: str) -> str:
        names = {"section": "Section", "appendix": "Appendix", "figure": "Figure", "table": "Table", "equation": "Equation"}

        def sub(m: re.Match) -> str:
            typed, lab = m.group(1) == "T", m.group(2)
            kind, number = self.labels.get(lab, ("", "?"))
            if typed and kind:
                return f"{names.get(kind, kind.capitalize())} {number}"
            return number

        return re.sub(_R_OPEN + r"([TN])(.*?)" + _R_CLOSE, sub, s)

    # --- environments

    def cmd_begin(self, s: str, end: int, out: list[str]) -> int:
        g = _read_group(s, end, newlines=False)
        if g is None:
            return end
        name, j = g[0].strip(), g[1]
        if name in _VERBATIM:
            close = s.find(f"\\end{{{name}}}", j)
            close_end = len(s) if close == -1 else close + len(name) + 6
            body = s[j : close if close != -1 else len(s)]
            opt = re.match(r"\[[^\]\n]*\]", body)  # lstlisting options
            if opt:
                body = body[opt.end() :]
            if not self.inline_depth:
                out.append("\n\n" + self.protect("```\n" + body.strip("\n") + "\n```") + "\n\n")
            return close_end
        body_end, after = _find_env_end(s, j, name)
        spec = self.env_args.get(name, "")
        env_opts, k = _read_args(s, j, spec) if spec else ([], j)
        body = s[k:body_end] if k <= body_end else ""
        base = name.rstrip("*")
        if base in _MATH_ENVS:
            out.append(self.math_env(base, name.endswith("*"), body))
        elif name in _FIGURE_ENVS or name in _TABLE_ENVS:
            out.append(self.float_env(name, body))
        elif name in _DROP_ENVS:
            pass
        elif name == "abstract":
            if self.config.keep_abstract:
                out.append("\n\n# Abstract\n\n" + self.text(body) + "\n\n")
        elif name in _ACK_ENVS:
            if self.config.keep_acknowledgments:
                out.append("\n\n# Acknowledgments\n\n" + self.text(body) + "\n\n")
        elif name in ("keywords", "keyword"):
            if self.config.keep_keywords:
                out.append(f"\n\nKeywords: {self.inline(body)}\n\n")
        elif name in _LIST_ENVS:
            self.lists.append([name, 0])
            try:
                out.append("\n" + self.text(body) + "\n")
            finally:
                self.lists.pop()
        elif name in self.theorems or name in ("proof",):
            title = self.theorems.get(name, "Proof")
            extra = f" ({self.inline(env_opts[0])})" if env_opts and env_opts[0] else ""
            if name == "proof":
                opt = _read_optional(s, j)
                if opt is not None:
                    title, body = self.inline(opt[0]), s[opt[1] : body_end]
            out.append(f"\n\n**{title}{extra}.** " + self.text(body) + "\n\n")
        else:
            out.append(self.text(body))
        return after

    def math_env(self, base: str, starred: bool, body: str) -> str:
        wrapper = _MATH_ENVS[base]
        if not starred and base in _NUMBERED_ROWS:
            for row in _split_top_level(body, _ROW_SEP):
                if re.search(r"\\(nonumber|notag)(?![A-Za-z@])", row) or not row.strip():
                    continue
                number = self.next_equation(row)
                for lab in re.finditer(r"\\label\s*\{([^}]*)\}", row):
                    self.labels.setdefault(lab.group(1).strip(), ("equation", number))
        elif not starred and base in _NUMBERED_SINGLE and not re.search(r"\\(nonumber|notag)(?![A-Za-z@])", body):
            number = self.next_equation(body)
            for lab in re.finditer(r"\\label\s*\{([^}]*)\}", body):
                self.labels.setdefault(lab.group(1).strip(), ("equation", number))
        if base == "math":
            return self.inline_math(body)
        if base in ("alignat", "xalignat"):
            wrapper = "aligned"
        return self.display(body, wrapper)

    def next_equation(self, tex: str) -> str:
        tag = re.search(r"\\tag\*?\s*\{([^}]*)\}", tex)
        if tag:
            return tag.group(1).strip()
        self.counters["equation"] += 1
        return str(self.counters["equation"])

    def float_env(self, name: str, body: str) -> str:
        kind = "figure" if name in _FIGURE_ENVS else "table"
        tablenum = re.search(r"\\tablenum\s*\{([^}]*)\}", body)
        if tablenum:
            number = tablenum.group(1).strip()
        else:
            self.counters[kind] += 1
            number = str(self.counters[kind])
        saved = self.target
        self.target = (kind, number)
        try:
            for lab in re.finditer(r"\\label\s*\{([^}]*)\}", body):
                self.labels.setdefault(lab.group(1).strip(), (kind, number))
            captions = []
            for m in re.finditer(r"\\(caption|tablecaption|figcaption|subcaption)(?![A-Za-z@])\*?", body):
                args, _ = _read_args(body, m.end(), "om")
                text = self.inline(args[1] or "")
                if text:
                    captions.append(text)
            # floats nested in this one (a table inside a rotating wrapper) are handled by recursion
            if not captions:
                nested = re.search(r"\\begin\s*\{(" + "|".join(re.escape(e) for e in sorted(_FIGURE_ENVS | _TABLE_ENVS)) + r")\}", body)
                if nested:
                    self.counters[kind] -= 0 if tablenum else 1
                    self.target = saved
                    return self.text(body[nested.start() :])
        finally:
            self.target = saved
        if not captions or not self.config.keep_captions:
            return ""
        return f"\n\n{kind.capitalize()} {number}: {' '.join(captions)}\n\n"

    # ------------------------------------------------------------------ finishing

    def finish(self, s: str) -> str:
        s = self.resolve_refs(s)
        s = s.replace("\r", "")
        s = re.sub(r"[ \t\u00a0]+", " ", s)
        s = re.sub(r" *\n *", "\n", s)
        s = re.sub(r"\n{3,}", "\n\n", s)
        s = re.sub(r"\(\s*[,;]?\s*\)|\[\s*\]", "", s)  # empty brackets left by dropped items
        s = re.sub(r"(?<=\S) +([,.;:)])(?=\s|$)", r"\1", s)
        s = re.sub(r"\( +", "(", s)
        s = re.sub(r" {2,}", " ", s)
        s = self.move_footnotes(s)
        s = self.restore(s)
        return s.strip() + "\n"

    def move_footnotes(self, s: str) -> str:
        pat = re.compile(_F_OPEN + r"(.*?)" + _F_CLOSE, re.S)
        paragraphs = []
        for para in s.split("\n\n"):
            notes = [m.group(1).strip() for m in pat.finditer(para)]
            para = pat.sub("", para)
            para = re.sub(r" +([,.;:])(?=\s|$)", r"\1", para)
            para = re.sub(r" {2,}", " ", para).strip()
            if para:
                paragraphs.append(para)
            paragraphs.extend(n for n in notes if n)
        return "\n\n".join(paragraphs)


# =========================================================================== public API

_BEGIN_DOC = re.compile(r"\\begin\s*\{document\}")
_END_DOC = re.compile(r"\\end\s*\{document\}")


def _first_command_arg(s: str, name: str, spec: str = "om") -> tuple[str | None, str]:
    """The mandatory argument of the first ``\\name`` in s, and s without that command."""
    m = re.search(r"\\" + name + r"(?![A-Za-z@])", s)
    if not m:
        return None, s
    args, end = _read_args(s, m.end(), spec)
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
    for ch in (_P_OPEN, _P_CLOSE, _F_OPEN, _F_CLOSE, _R_OPEN, _R_CLOSE):
        text = text.replace(ch, "")
    limit = max(config.max_expansion_factor * len(text), 2_000_000)
    expander = _Expander(config, notes, limit)
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
        end_at, _ = _find_env_end(text, m.end(), "thebibliography")
        for key, value in parse_bbl(text[m.start() : end_at]).items():
            citations.setdefault(key, value)

    conv = _Converter(config, expander.env_args, expander.theorems, citations, notes)
    title, preamble = _first_command_arg(preamble, "title")
    if title is None:
        title, body = _first_command_arg(body, "title")
    # an abstract or keywords written in the preamble belong at the top of the body
    front = []
    for pat in (r"\\begin\s*\{abstract\}.*?\\end\s*\{abstract\}", r"\\abstract\s*\{", r"\\keywords\s*\{"):
        m = re.search(pat, preamble, re.S)
        if m:
            if pat.endswith("\\{"):
                end = _match_brace(preamble, m.end() - 1)
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


def _bibliography_for(tree: SourceTree, text: str) -> dict[str, tuple[str, str]]:
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
    citations = _bibliography_for(tree, tree.text)
    text = latex_to_text(tree.text, config, citations=citations, path=tree.main, notes=notes)
    tree.problems.extend(f"converter: {note}" for note in notes)
    return text, tree
