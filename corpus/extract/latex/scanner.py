"""Reading TeX text at the character level: comments, braces, command names and arguments.

Every other module of the package (the source reader, the macro expander, the converter, the
bibliography parsers) reads TeX through these functions, so they all agree on what a group, an
optional argument or a comment is.

**An unbalanced ``{`` opens no group.** ``read_group`` returns None for it, exactly as when no
``{`` is there at all, and ``read_arg`` reads the stray brace as an empty argument and goes on just
after it: the text that follows is read as ordinary text. So one stray brace (a typo TeX itself would
stop on, or a brace our reader miscounts) costs at most a command's argument, never the rest of the
paper -- taking "everything to the end" as the argument would let ``\\label{`` or ``\\author{``
swallow every later section. An ``\\input{`` without its ``}`` is not an input.
"""

from __future__ import annotations

import re

_VERB_RE = re.compile(r"\\verb\*?([^A-Za-z\s*])")
_VERBATIM_ENVS = ("verbatim", "verbatim*", "Verbatim", "lstlisting", "minted", "comment")


def strip_comments(text: str) -> str:
    """Remove TeX comments: an unescaped ``%`` to the end of the line, the newline included.

    ``\\%`` is kept, ``\\verb|..%..|`` and verbatim-like environments are copied untouched, and
    the ``comment`` environment is removed whole. Leading blanks of the line after a comment are
    dropped (TeX skips them too). A line that held only a comment disappears without merging the
    lines around it.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if text.startswith("\\begin{", i):
                end_name = text.find("}", i + 7)
                name = text[i + 7 : end_name] if end_name != -1 else ""
                if name in _VERBATIM_ENVS:
                    close = f"\\end{{{name}}}"
                    j = text.find(close, end_name)
                    j = n if j == -1 else j + len(close)
                    if name != "comment":
                        out.append(text[i:j])
                    i = j
                    continue
            m = _VERB_RE.match(text, i)
            if m:
                j = text.find(m.group(1), m.end())
                j = n if j == -1 else j + 1
                out.append(text[i:j])
                i = j
                continue
            out.append(text[i : i + 2])
            i += 2
            continue
        if c == "%":
            j = text.find("\n", i)
            if j == -1:
                break
            line_start = text.rfind("\n", 0, i) + 1
            if text[line_start:i].strip() == "":
                # a line holding only a comment disappears, its indentation too
                while out and out[-1] in (" ", "\t"):
                    out.pop()
                i = j + 1
                continue
            # the comment eats its newline and the next line's indentation (as in TeX), but a
            # blank line after it still ends the paragraph
            i = j + 1
            while i < n and text[i] in " \t":
                i += 1
            if i < n and text[i] == "\n":
                out.append("\n")
            continue
        out.append(c)
        i += 1
    return "".join(out)


def match_brace(text: str, i: int) -> int:
    """Index just after the ``}`` closing the ``{`` at text[i] (escaped braces skipped); -1 when unbalanced."""
    depth = 0
    n = len(text)
    j = i
    while j < n:
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return -1


_NAME_RE = re.compile(r"[A-Za-z@]+")


def skip_ws(s: str, i: int, newlines: bool = True) -> int:
    n = len(s)
    while i < n and (s[i] in " \t" or (newlines and s[i] in "\n\r")):
        i += 1
    return i


def read_cs(s: str, i: int) -> tuple[str, int]:
    """At a backslash: the control-sequence name (letters and @, or one character) and its end."""
    m = _NAME_RE.match(s, i + 1)
    if m:
        return m.group(0), m.end()
    if i + 1 < len(s):
        return s[i + 1], i + 2
    return "", i + 1


def read_group(s: str, i: int, newlines: bool = True) -> tuple[str, int] | None:
    """After blanks (and newlines unless ``newlines=False``), a balanced ``{...}`` group.

    Returns (inside, index after the ``}``), or None when no ``{`` starts there or when that ``{``
    is never closed (see the module doc: an unbalanced ``{`` opens no group).
    """
    j = skip_ws(s, i, newlines)
    if j >= len(s) or s[j] != "{":
        return None
    end = match_brace(s, j)
    if end == -1:
        return None
    return s[j + 1 : end - 1], end


def read_optional(s: str, i: int) -> tuple[str, int] | None:
    """After spaces (not newlines), a ``[...]`` argument, braces respected: (inside, end) or None."""
    j = skip_ws(s, i, newlines=False)
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
            end = match_brace(s, k)
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


def read_arg(s: str, i: int) -> tuple[str, int]:
    """One mandatory argument: a group's inside, or the next single token; ("", i) if none.

    An unbalanced ``{`` gives an empty argument ending just after that brace.
    """
    j = skip_ws(s, i)
    if j >= len(s):
        return "", j
    if s[j] == "{":
        return read_group(s, j) or ("", j + 1)
    if s[j] == "\\":
        _, end = read_cs(s, j)
        return s[j:end], end
    if s[j] == "}":
        return "", j
    return s[j], j + 1


def read_args(s: str, i: int, spec: str) -> tuple[list[str | None], int]:
    """Read arguments by spec: ``s`` optional star, ``o`` optional ``[..]``, ``m`` mandatory."""
    args: list[str | None] = []
    for kind in spec:
        if kind == "s":
            j = skip_ws(s, i, newlines=False)
            if j < len(s) and s[j] == "*":
                args.append("*")
                i = j + 1
            else:
                args.append(None)
        elif kind == "o":
            opt = read_optional(s, i)
            if opt is None:
                args.append(None)
            else:
                args.append(opt[0])
                i = opt[1]
        else:
            arg, i = read_arg(s, i)
            args.append(arg)
    return args, i


def find_unescaped(s: str, target: str, start: int) -> int:
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


_BLANK_LINE = re.compile(r"\n[ \t\r]*\n")


def find_inline_math_end(s: str, start: int) -> int:
    """Index of the ``$`` closing an inline math opened just before ``start``; -1 when there is none.

    As in TeX, inline math cannot run past the end of its paragraph (a blank line) or past the
    ``}`` closing the group it was opened in: a ``$`` with no closing one before either is a lone
    dollar (``\\texttt{$HOME}``, a ``$5`` price), and must not swallow the text after it.
    """
    end = find_unescaped(s, "$", start)
    if end == -1:
        return -1
    if _BLANK_LINE.search(s, start, end) is not None:
        return -1
    j = start  # skip the groups opened inside the math; a "}" met outside them closes the outer group
    while True:
        close = find_unescaped(s, "}", j)
        if close == -1 or close > end:
            return end
        opening = find_unescaped(s, "{", j)
        if opening == -1 or opening > close:
            return -1
        j = match_brace(s, opening)
        if j == -1 or j > end:
            return end


def find_env_end(s: str, i: int, name: str) -> tuple[int, int]:
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


def split_top_level(s: str, sep_re: re.Pattern[str]) -> list[str]:
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


ROW_SEP = re.compile(r"\\\\\*?(\s*\[[^\]]*\])?")


def resolve_ifmmode(s: str, math: bool, first_only: bool = False) -> str:
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
