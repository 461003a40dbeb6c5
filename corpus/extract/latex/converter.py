"""Text-mode TeX (macros already expanded) -> Markdown-flavoured text: the ``Converter`` and its config."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from corpus.extract.latex.scanner import (
    ROW_SEP,
    find_env_end,
    find_inline_math_end,
    find_unescaped,
    match_brace,
    read_arg,
    read_args,
    read_cs,
    read_group,
    read_optional,
    resolve_ifmmode,
    skip_ws,
    split_top_level,
)
from corpus.extract.latex.tables import (
    ACCENTS,
    ACK_ENVS,
    ACK_TITLE,
    DROP,
    DROP_ENVS,
    ENV_ARGS,
    ESCAPES,
    FIGURE_ENVS,
    LIST_ENVS,
    MATH_ENVS,
    NUMBERED_ROWS,
    NUMBERED_SINGLE,
    PAREN_CITES,
    REFS,
    REF_TITLE,
    SECTION_LEVELS,
    SECTION_STOP,
    SUBEQUATION_ENVS,
    SYMBOLS,
    TABLE_ENVS,
    TERM_LISTS,
    TEXT_CITES,
    UNWRAP,
    VERBATIM,
)


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


# Private-use sentinels (never produced by decoding real text and kept out of the final output).
_P_OPEN, _P_CLOSE = "\ue000", "\ue001"  # protected (math, URLs, verbatim): index inside
_F_OPEN, _F_CLOSE = "\ue002", "\ue003"  # footnote text, moved after its paragraph
_R_OPEN, _R_CLOSE = "\ue004", "\ue005"  # cross-reference label, resolved at the end
_PLAIN_RUN = re.compile(r"[^\\{}$~\-`'\n&\r]+")
SENTINELS = (_P_OPEN, _P_CLOSE, _F_OPEN, _F_CLOSE, _R_OPEN, _R_CLOSE)
_REF = re.compile(_R_OPEN + r"([TN])(.*?)" + _R_CLOSE)
# an unknown reference with what it alone gave a meaning to: the list separator and the word naming
# its kind before it, and up to two brackets around it
_REF_WORD = r"(?:Equations?|Eqns?\.?|Eqs?\.|Figures?|Figs?\.|Tables?|Tabs?\.|Sections?|Sects?\.|Secs?\.|Appendix|Appendices|Apps?\.|§)"
_UNKNOWN_REF = re.compile(
    rf"(?:[ \t]*,[ \t]*|[ \t]+(?:and|or|&)[ \t]+)?(?:(?<!\w){_REF_WORD}[ \t]*)?(?P<open>\([ \t]*(?:\([ \t]*)?)?"
    rf"{_R_OPEN}[TN].*?{_R_CLOSE}(?P<close>[ \t]*\)(?:[ \t]*\))?)?"
)
_PLACEMENT = re.compile(r"[ \t]*\n?[ \t]*\[[htbpH!]{1,6}\]")
# a protected piece followed by another with nothing between them (the second is not consumed)
_TOUCHING = re.compile(_P_OPEN + r"(\d+)" + _P_CLOSE + r"(?=" + _P_OPEN + r"(\d+)" + _P_CLOSE + r")")
LITERAL_DOLLAR = "\\$"
"""A dollar sign that is not math (``\\$``, a URL's, a lone one) is written escaped, so that in the
output every unescaped ``$`` delimits math and none opens math that swallows the text after it."""


class Converter:
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
        self.env_args = {**ENV_ARGS, **env_args}
        self.theorems = dict(theorems)
        self.citations = citations
        self.notes = notes
        self.protected: list[str] = []
        self.labels: dict[str, tuple[str, str]] = {}
        self.target: tuple[str, str] = ("section", "?")
        self.sections = [0, 0, 0, 0, 0]
        self.appendix = False
        self.counters = {"figure": 0, "table": 0, "equation": 0}
        self.subequation: list | None = None  # [number, equations so far] inside subequations
        self.lists: list[list] = []  # [kind, count]
        self.inline_depth = 0  # >0: inside a title, heading or caption: no paragraphs/footnotes
        self.unknown: dict[str, int] = {}

    # ------------------------------------------------------------------ helpers

    def protect(self, s: str) -> str:
        self.protected.append(s)
        return f"{_P_OPEN}{len(self.protected) - 1}{_P_CLOSE}"

    def literal(self, s: str) -> str:
        """Protect text that is copied as written (a URL, verbatim), its dollar signs escaped."""
        return self.protect(s.replace("$", LITERAL_DOLLAR))

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
                end = match_brace(s, i)
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
            end = find_unescaped(s, "$$", i + 2)
            if end == -1:
                self.notes.append("unclosed $$ math")
                end = len(s)
            out.append(self.display(s[i + 2 : end], ""))
            return end + 2
        end = find_inline_math_end(s, i + 1)
        if end == -1:  # TeX would stop at the paragraph or group end: a lone dollar, not math
            self.notes.append("unclosed $ math")
            out.append(LITERAL_DOLLAR)
            return i + 1
        out.append(self.inline_math(s[i + 1 : end]))
        return end + 1

    def clean_math(self, m: str, record_labels: bool = True) -> str:
        m = resolve_ifmmode(m, math=True) if "\\ifmmode" in m else m
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
        name, end = read_cs(s, i)
        if not name:
            return s, end
        if not (name[0].isalpha() or name[0] == "@"):
            return s, self.control_symbol(s, i, name, end, out)
        if name in ACCENTS:  # \c{c}, \v{s}, \u{a}, ...
            return s, self.accent(s, name, end, out)
        handler = getattr(self, f"cmd_{name}", None)
        if handler is not None:
            return s, handler(s, end, out)
        if name == "ifmmode":
            return resolve_ifmmode(s[i:], math=False, first_only=True), 0
        if name in SECTION_LEVELS:
            return s, self.heading(s, name, end, out)
        if name in PAREN_CITES or name in TEXT_CITES:
            return s, self.cite(s, name, end, out)
        if name in REFS:
            return s, self.ref(s, name, end, out)
        if name in UNWRAP:
            spec, idx = UNWRAP[name]
            args, j = read_args(s, end, spec)
            kept = args[idx] or ""
            out.append(self.text(kept))
            return s, j
        if name in DROP:
            if name in ("vskip", "hskip", "movetabledown", "AuthorCollaborationLimit"):
                m = re.match(r"\s*=?\s*-?[\d.]+\s*[a-z]{2}(\s*(plus|minus)\s*-?[\d.]+\s*[a-z]{2,4})*", s[end:])
                return s, end + (m.end() if m else 0)
            _, j = read_args(s, end, DROP[name])
            return s, j
        if name in SYMBOLS:
            out.append(SYMBOLS[name])
            return s, end
        if re.fullmatch(r"(edit|authorcomments)[123]?", name):  # AASTeX \edit1{..}
            j = end + 1 if end < len(s) and s[end].isdigit() else end
            arg, j = read_arg(s, j)
            if name.startswith("edit"):
                out.append(self.text(arg))
            return s, j
        # unknown command: dropped; its brace arguments are read as ordinary groups, with a blank
        # between two of them so that \\foo{term}{definition} does not read "termdefinition"
        self.unknown[name] = self.unknown.get(name, 0) + 1
        if end < len(s) and s[end] == "*":
            end += 1
        groups, j = [], end
        while (group := read_group(s, j, newlines=False)) is not None:
            groups.append(group[0])
            j = group[1]
        if len(groups) < 2:
            return s, end
        out.append(" ".join(self.text(g) for g in groups))
        return s, j

    def control_symbol(self, s: str, i: int, name: str, end: int, out: list[str]) -> int:
        if name in ACCENTS:
            return self.accent(s, name, end, out)
        if name == "\\":
            # \\ with an optional star and [length]
            j = end
            if j < len(s) and s[j] == "*":
                j += 1
            opt = read_optional(s, j)
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
        out.append(ESCAPES.get(name, ""))
        return end

    def accent(self, s: str, name: str, end: int, out: list[str]) -> int:
        j = skip_ws(s, end, newlines=False) if name.isalpha() else end
        if j < len(s) and s[j] == "{":
            base, j = read_arg(s, j)
            base = base.strip()
        elif j < len(s) and s[j] == "\\":
            base, j = s[j:read_cs(s, j)[1]], read_cs(s, j)[1]
        elif j < len(s):
            base, j = s[j], j + 1
        else:
            base = ""
        base = {"\\i": "i", "\\j": "j", "{\\i}": "i"}.get(base, base)
        if base.startswith("\\"):
            base = SYMBOLS.get(base[1:], "")
        if not base:
            return j
        out.append(unicodedata.normalize("NFC", base[0] + ACCENTS[name]) + base[1:])
        return j

    # --- structure

    def heading(self, s: str, name: str, end: int, out: list[str]) -> int:
        args, j = read_args(s, end, "som")
        star, title_tex = args[0], args[2] or ""
        level = SECTION_LEVELS[name]
        plain_title = re.sub(r"\\label\s*\{[^}]*\}", "", title_tex)
        if REF_TITLE.match(plain_title) or (ACK_TITLE.match(plain_title) and not self.config.keep_acknowledgments):
            stop = SECTION_STOP.search(s, j)
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
        _, j = read_args(s, end, "om")  # the title itself is written at the top
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
        stop = SECTION_STOP.search(s, end)
        soft = re.compile(r"\\(software|facilit(y|ies))(?![A-Za-z@])").search(s, end)
        candidates = [m.start() for m in (stop, soft) if m]
        return min(candidates) if candidates else len(s)

    cmd_acknowledgments = acknowledgments
    cmd_acknowledgements = acknowledgments

    def software(self, s: str, end: int, out: list[str]) -> int:
        arg, j = read_arg(s, end)
        if self.config.keep_software:
            out.append("\n\n" + self.inline(arg) + "\n\n")
        return j

    cmd_software = software
    cmd_facility = software
    cmd_facilities = software

    def cmd_keywords(self, s: str, end: int, out: list[str]) -> int:
        arg, j = read_arg(s, end)
        if self.config.keep_keywords:
            kw = self.inline(arg)
            if kw:
                out.append(f"\n\nKeywords: {kw}\n\n")
        return j

    cmd_keyword = cmd_keywords
    cmd_subjclass = cmd_keywords

    def cmd_abstract(self, s: str, end: int, out: list[str]) -> int:  # \abstract{..} form (A&A)
        j = skip_ws(s, end)
        if j < len(s) and s[j] == "{":
            arg, j = read_arg(s, end)
            if self.config.keep_abstract:
                out.append("\n\n# Abstract\n\n" + self.text(arg) + "\n\n")
            return j
        return end

    def cmd_item(self, s: str, end: int, out: list[str]) -> int:
        opt = read_optional(s, end)
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
        if label and self.lists and self.lists[-1][0] in TERM_LISTS and not re.search(r"[.:;,!?–—-]$", label):
            label += ":"  # a term, then its definition: "- Colours of noise: White, pink..."
        text = f"{marker} {label} " if label else f"{marker} "
        out.append(f" {text}" if self.inline_depth else f"\n{indent}{text}")
        return j

    def cmd_entry(self, s: str, end: int, out: list[str]) -> int:
        """ARA&A's glossary ``\\entry{term}{definition}`` (in a ``marginnote``): ``term: definition``."""
        args, j = read_args(s, end, "mm")
        term, definition = self.inline(args[0] or ""), self.inline(args[1] or "")
        if term and not re.search(r"[.:;,!?–—-]$", term):
            term += ":"
        line = f"{term} {definition}".strip()
        out.append(f" {line} " if self.inline_depth else f"\n\n{line}\n\n")
        return j

    def cmd_footnote(self, s: str, end: int, out: list[str]) -> int:
        args, j = read_args(s, end, "om")
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
    cmd_tablenotetext = lambda self, s, end, out: read_args(s, end, "mm")[1]  # noqa: E731

    def cmd_url(self, s: str, end: int, out: list[str]) -> int:
        arg, j = read_arg(s, end)
        out.append(self.literal(re.sub(r"\\([_#%&~$])", r"\1", arg.strip())))
        return j

    def cmd_doi(self, s: str, end: int, out: list[str]) -> int:
        arg, j = read_arg(s, end)
        out.append(self.literal("doi:" + arg.strip()))
        return j

    def cmd_verb(self, s: str, end: int, out: list[str]) -> int:
        """Inline verbatim: ``\\verb|..|``, and ``\\lstinline``/``\\Verb``/``\\path`` (with a
        delimiter or braces, after optional ``[options]``) and ``\\mintinline{lang}``: copied as written."""
        j = end + 1 if end < len(s) and s[end] == "*" else end
        if j >= len(s):
            return j
        delim = s[j]
        if delim == "{":
            group = read_group(s, j)
            code, after = group if group else (s[j + 1 :], len(s))
            out.append(self.literal(code))
            return after
        close = s.find(delim, j + 1)
        close = len(s) if close == -1 else close
        out.append(self.literal(s[j + 1 : close]))
        return close + 1

    def cmd_lstinline(self, s: str, end: int, out: list[str]) -> int:
        opt = read_optional(s, end)
        return self.cmd_verb(s, opt[1] if opt else end, out)

    cmd_Verb = cmd_lstinline
    cmd_path = cmd_lstinline

    def cmd_mintinline(self, s: str, end: int, out: list[str]) -> int:
        args, j = read_args(s, end, "om")  # options, language
        return self.cmd_verb(s, j, out)

    def cmd_string(self, s: str, end: int, out: list[str]) -> int:
        if end < len(s) and s[end] == "\\":
            _, j = read_cs(s, end)
            out.append(self.literal(s[end:j]))
            return j
        if end < len(s):
            out.append(s[end])
            return end + 1
        return end

    def cmd_ensuremath(self, s: str, end: int, out: list[str]) -> int:
        arg, j = read_arg(s, end)
        out.append(self.inline_math(arg))
        return j

    def cmd_caption(self, s: str, end: int, out: list[str]) -> int:  # a caption outside a float
        args, j = read_args(s, end, "om")
        text = self.inline(args[1] or "")
        if text and self.config.keep_captions:
            out.append(f"\n\n{text}\n\n")
        return j

    cmd_tablecaption = cmd_caption
    cmd_figcaption = cmd_caption

    def cmd_captionof(self, s: str, end: int, out: list[str]) -> int:
        args, j = read_args(s, end, "mom")
        kind = (args[0] or "").strip().rstrip("*")
        text = self.inline(args[2] or "")
        if text and self.config.keep_captions:
            if kind in self.counters:
                self.counters[kind] += 1
                text = f"{kind.capitalize()} {self.counters[kind]}: {text}"
            out.append(f"\n\n{text}\n\n")
        return j

    def cmd_label(self, s: str, end: int, out: list[str]) -> int:
        arg, j = read_arg(s, end)
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
        _, j = read_arg(s, end)
        return j

    # --- citations and references

    def _cite_parts(self, key: str) -> tuple[str, str]:
        if key in self.citations:
            return self.citations[key]
        return key, ""

    def cite(self, s: str, name: str, end: int, out: list[str]) -> int:
        args, j = read_args(s, end, "soom")
        pre, post = args[1], args[2]
        if args[2] is None:  # one optional argument is the post-note
            pre, post = None, args[1]
        keys = [k.strip() for k in (args[3] or "").split(",") if k.strip()]
        base = name.rstrip("*").lower()
        parenthetical = name.rstrip("*") in {n.rstrip("*") for n in PAREN_CITES}
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
        args, j = read_args(s, end, "sm")
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
        """Write each reference as the number LaTeX would print (``Figure 2`` for ``\\autoref``).

        A label defined nowhere in the source is dropped with what only it gave a meaning to: the
        word naming it just before (``Equation``, ``Fig.``, ``Table``...) and the brackets around
        it, so ``see \\eq{missing} and`` (``Equation~(\\ref{#1})``) reads ``see and``, never ``?``;
        a list loses the ``,``/``and`` before it too (``Sections 2 and \\ref{missing}``: ``Sections 2``).
        """
        names = {"section": "Section", "appendix": "Appendix", "figure": "Figure", "table": "Table", "equation": "Equation"}

        def number(m: re.Match) -> str:
            if m.group(2) not in self.labels:
                return m.group(0)  # left for the second pass, which reads its context
            kind, num = self.labels[m.group(2)]
            return f"{names.get(kind, kind.capitalize())} {num}" if m.group(1) == "T" else num

        def drop(m: re.Match) -> str:
            n_open, n_close = (m.group("open") or "").count("("), (m.group("close") or "").count(")")
            pairs = min(n_open, n_close)
            return "(" * (n_open - pairs) + ")" * (n_close - pairs)

        s = _REF.sub(number, s)
        return _UNKNOWN_REF.sub(drop, s) if _R_OPEN in s else s

    # --- environments

    def cmd_begin(self, s: str, end: int, out: list[str]) -> int:
        g = read_group(s, end, newlines=False)
        if g is None:
            return end
        name, j = g[0].strip(), g[1]
        if name in VERBATIM:
            close = s.find(f"\\end{{{name}}}", j)
            close_end = len(s) if close == -1 else close + len(name) + 6
            body = s[j : close if close != -1 else len(s)]
            opt = re.match(r"\[[^\]\n]*\]", body)  # lstlisting options
            if opt:
                body = body[opt.end() :]
            if not self.inline_depth:
                out.append("\n\n" + self.protect("```\n" + body.strip("\n") + "\n```") + "\n\n")
            return close_end
        body_end, after = find_env_end(s, j, name)
        spec = self.env_args.get(name, "")
        env_opts, k = read_args(s, j, spec) if spec else ([], j)
        placement = _PLACEMENT.match(s, k)  # [htb] of any float, known or not, even after a newline
        if placement:
            k = placement.end()
        body = s[k:body_end] if k <= body_end else ""
        base = name.rstrip("*")
        if base in MATH_ENVS:
            out.append(self.math_env(base, name.endswith("*"), body))
        elif name in FIGURE_ENVS or name in TABLE_ENVS:
            out.append(self.float_env(name, body))
        elif name in DROP_ENVS:
            pass
        elif name in SUBEQUATION_ENVS:
            out.append(self.subequations(body))
        elif name == "abstract":
            if self.config.keep_abstract:
                out.append("\n\n# Abstract\n\n" + self.text(body) + "\n\n")
        elif name in ACK_ENVS:
            if self.config.keep_acknowledgments:
                out.append("\n\n# Acknowledgments\n\n" + self.text(body) + "\n\n")
        elif name in ("keywords", "keyword"):
            if self.config.keep_keywords:
                out.append(f"\n\nKeywords: {self.inline(body)}\n\n")
        elif name in LIST_ENVS:
            self.lists.append([name, 0])
            try:
                out.append("\n" + self.text(body) + "\n")
            finally:
                self.lists.pop()
        elif name in self.theorems or name in ("proof",):
            title = self.theorems.get(name, "Proof")
            extra = f" ({self.inline(env_opts[0])})" if env_opts and env_opts[0] else ""
            if name == "proof":
                opt = read_optional(s, j)
                if opt is not None:
                    title, body = self.inline(opt[0]), s[opt[1] : body_end]
            out.append(f"\n\n**{title}{extra}.** " + self.text(body) + "\n\n")
        else:
            out.append(self.text(body))
        return after

    def math_env(self, base: str, starred: bool, body: str) -> str:
        wrapper = MATH_ENVS[base]
        if not starred and base in NUMBERED_ROWS:
            for row in split_top_level(body, ROW_SEP):
                if re.search(r"\\(nonumber|notag)(?![A-Za-z@])", row) or not row.strip():
                    continue
                number = self.next_equation(row)
                for lab in re.finditer(r"\\label\s*\{([^}]*)\}", row):
                    self.labels.setdefault(lab.group(1).strip(), ("equation", number))
        elif not starred and base in NUMBERED_SINGLE and not re.search(r"\\(nonumber|notag)(?![A-Za-z@])", body):
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
        if self.subequation is not None:  # 3a, 3b... inside subequations
            self.subequation[1] += 1
            return f"{self.subequation[0]}{chr(ord('a') + (self.subequation[1] - 1) % 26)}"
        self.counters["equation"] += 1
        return str(self.counters["equation"])

    def subequations(self, body: str) -> str:
        """``subequations`` (AASTeX ``mathletters``): one equation number N, the equations inside
        numbered Na, Nb...; a ``\\label`` outside them names N."""
        self.counters["equation"] += 1
        number = str(self.counters["equation"])
        saved, saved_sub = self.target, self.subequation
        self.target, self.subequation = ("equation", number), [number, 0]
        try:
            return self.text(body)
        finally:
            self.target, self.subequation = saved, saved_sub

    def float_env(self, name: str, body: str) -> str:
        kind = "figure" if name in FIGURE_ENVS else "table"
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
                args, _ = read_args(body, m.end(), "om")
                text = self.inline(args[1] or "")
                if text:
                    captions.append(text)
            # floats nested in this one (a table inside a rotating wrapper) are handled by recursion
            if not captions:
                nested = re.search(r"\\begin\s*\{(" + "|".join(re.escape(e) for e in sorted(FIGURE_ENVS | TABLE_ENVS)) + r")\}", body)
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

    def separate_maths(self, s: str) -> str:
        """A blank between two maths that touch (``$a$$b$`` in the source, or a macro's math right
        after other math), so that no ``$$`` appears where two inline maths meet."""

        def sub(m: re.Match) -> str:
            left, right = self.protected[int(m.group(1))], self.protected[int(m.group(2))]
            blank = " " if left.endswith("$") and right.startswith("$") else ""
            return m.group(0) + blank

        return _TOUCHING.sub(sub, s)

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
        s = self.separate_maths(s)
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


def plain_text(tex: str) -> str:
    """A short TeX fragment (a name, a label, a title) as plain Unicode text, through the converter:
    accents become Unicode (``Bal\\'azs`` -> ``Balázs``, ``Schr{\\"o}dinger`` -> ``Schrödinger``,
    ``{\\v S}imon`` -> ``Šimon``), ``\\&`` and the other escapes their characters, ``--`` a dash,
    braces go; math stays ``$...$``. Public as :func:`corpus.extract.latex.latex_to_unicode`."""
    conv = Converter(LatexConfig(footnotes="drop"), {}, {}, {}, [])
    conv.inline_depth = 1
    return re.sub(r"\s+", " ", conv.restore(conv.text(tex))).strip()
