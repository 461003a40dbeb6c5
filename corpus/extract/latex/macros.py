"""User macros: record ``\\newcommand``/``\\def``/``\\let``/... definitions and expand their uses."""

from __future__ import annotations

import re
from dataclasses import dataclass

from corpus.extract.latex.errors import LatexError
from corpus.extract.latex.scanner import (
    find_env_end,
    match_brace,
    read_arg,
    read_cs,
    read_group,
    read_optional,
    resolve_ifmmode,
    skip_ws,
)


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
    body = resolve_ifmmode(body, math=True) if "\\ifmmode" in body else body
    for m in re.finditer(r"\\([A-Za-z@]+)", body):
        name = m.group(1)
        if "@" in name or name in _PROGRAMMING_WORDS or (name.startswith("if") and name != "iff"):
            return True
    return False


class Expander:
    """One pass over the document: records definitions (removing them) and expands uses."""

    def __init__(self, max_depth: int, notes: list[str], size_limit: int) -> None:
        self.max_depth = max_depth
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
            name, end = read_cs(s, j)
            if name == "verb":
                m = re.match(r"\\verb\*?([^A-Za-z\s*])", s[j:])
                if m:
                    close = s.find(m.group(1), j + m.end())
                    close = n if close == -1 else close + 1
                    out.append(s[j:close])
                    i = close
                    continue
            if name == "begin":
                g = read_group(s, end, newlines=False)
                if g and g[0] in ("verbatim", "verbatim*", "Verbatim", "lstlisting", "minted"):
                    _, after = find_env_end(s, g[1], g[0])
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
                opt = read_optional(s, i)
                if opt is None:
                    args.append(macro.default)
                else:
                    args.append(opt[0])
                    i = opt[1]
            while len(args) < macro.nargs:
                arg, i = read_arg(s, i)
                args.append(arg)
            if macro.complex:
                continue
            if depth >= self.max_depth:
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
        j = skip_ws(s, i)
        if j < len(s) and s[j] == "{":
            g = read_group(s, j)
            if g is None:  # an unbalanced brace: no name
                return None, j + 1
            inner = g[0].strip()
            m = re.fullmatch(r"\\([A-Za-z@]+|.)", inner)
            return (m.group(1) if m else None), g[1]
        if j < len(s) and s[j] == "\\":
            name, end = read_cs(s, j)
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
        j = skip_ws(s, i, newlines=False)
        if j < len(s) and s[j] == "*":
            i = j + 1
        if kind in ("newcommand", "renewcommand", "providecommand", "DeclareRobustCommand"):
            name, i = self._macro_name(s, i)
            nargs_s = read_optional(s, i)
            nargs = 0
            if nargs_s is not None:
                i = nargs_s[1]
                nargs = int(nargs_s[0].strip()) if nargs_s[0].strip().isdigit() else 0
            default = None
            if nargs:
                opt = read_optional(s, i)
                if opt is not None:
                    default, i = opt
            body, i = read_arg(s, i)
            if name:
                self._register(name, _Macro(nargs, default, body, _is_programming(body)), provide=kind == "providecommand")
            return i
        if kind in ("def", "gdef", "edef", "xdef"):
            j = skip_ws(s, i)
            if j >= len(s) or s[j] != "\\":
                return i
            name, i = read_cs(s, j)
            brace = s.find("{", i)
            if brace == -1:
                return len(s)
            params = s[i:brace]
            end = match_brace(s, brace)
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
            j = skip_ws(s, i)
            if j >= len(s) or s[j] != "\\":
                return i
            name, i = read_cs(s, j)
            j = skip_ws(s, i)
            if j < len(s) and s[j] == "=":
                j = skip_ws(s, j + 1)
            if j < len(s) and s[j] == "\\":
                target, i = read_cs(s, j)
                if target in self.macros:
                    self._register(name, self.macros[target])
                else:
                    self._register(name, _Macro(0, None, "\\" + target, False))
            else:
                i = min(j + 1, len(s))
            return i
        if kind == "DeclareMathOperator":
            star = ""
            j = skip_ws(s, i, newlines=False)
            if j < len(s) and s[j] == "*":
                star, i = "*", j + 1
            name, i = self._macro_name(s, i)
            text, i = read_arg(s, i)
            if name:
                self._register(name, _Macro(0, None, f"\\operatorname{star}{{{text}}}"))
            return i
        if kind in ("newenvironment", "renewenvironment", "provideenvironment"):
            env, i = read_arg(s, i)
            env = env.strip()
            nargs_s = read_optional(s, i)
            spec = ""
            if nargs_s is not None:
                i = nargs_s[1]
                n = int(nargs_s[0].strip()) if nargs_s[0].strip().isdigit() else 0
                opt = read_optional(s, i) if n else None
                if opt is not None:
                    i = opt[1]
                    spec = "o" + "m" * (n - 1)
                else:
                    spec = "m" * n
            _, i = read_arg(s, i)  # begin code
            _, i = read_arg(s, i)  # end code
            if env:
                self.env_args[env] = spec
            return i
        if kind == "newtheorem":
            env, i = read_arg(s, i)
            opt = read_optional(s, i)
            if opt is not None:
                i = opt[1]
            title, i = read_arg(s, i)
            opt = read_optional(s, i)
            if opt is not None:
                i = opt[1]
            if env.strip():
                self.theorems[env.strip()] = title.strip()
            return i
        return i
