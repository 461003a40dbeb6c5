"""Read a model's reply as the JSON its template asked for: a tolerant repair step, then validation.

A reply that cannot be read this way raises :class:`ReplyError` with a short reason; the stage then
writes an error row keeping the raw reply. Nothing is guessed: each repair below only removes what
is around or after the JSON, or fixes what strict JSON forbids but has one sure meaning.

Repairs, each named in the ``repairs`` list returned (and recorded in the stage's decisions):

- ``code_fence``: the JSON is taken out of a Markdown code fence (```` ```json ... ``` ````).
- ``prose``: text before the first ``{`` / ``[`` or after the end of that JSON value is dropped.
- ``latex_escapes``: inside strings, a backslash that does not start a JSON escape (``\\alpha``,
  ``\\sigma``, ``\\(``) is doubled, and so is one starting a known LaTeX command that JSON would read
  as a control character (``\\frac``, ``\\beta``, ``\\nu``, ``\\rho``, ``\\theta``: see
  :data:`LATEX_COMMANDS`); a real escape (``\\n`` before other text, ``\\"``, ``\\u00e9``) is kept.
- ``trailing_comma``: a comma before a closing ``}`` or ``]`` is dropped.
- ``truncated``: a reply cut off mid-value (``finish_reason`` length) keeps its complete array items;
  the unfinished last item is dropped. A truncated reply with no complete item is an error.
- ``key_names``: object keys are matched to the schema's property names ignoring case, spaces,
  hyphens and underscores (``"Stand-alone"`` -> ``standalone``, ``"Question Type"`` -> ``question_type``).
- ``enum_case``: a string from a fixed set is matched ignoring case (``"Factual"`` -> ``factual``).
- ``number_type``: an integer field given as an integral float or a string of digits (``4.0``, ``"4"``).
- ``bare_list``: for pairs, a top-level list instead of ``{"pairs": [...]}`` is taken as the list.

Also accepted without a note: raw control characters (newlines) inside strings, surrounding
whitespace of string values, and keys the schema does not name (ignored).

Not repaired (an error): single-quoted pseudo-JSON (apostrophes and backslashes make its reading
ambiguous), anything that is not JSON after the repairs, a value of the wrong type, a grade
outside 1-5, a question type outside the allowed set, an empty question or answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any


class ReplyError(ValueError):
    """A reply that does not give what the template asked for (the message says why)."""


_FENCE = re.compile(r"```[a-zA-Z]*[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_TRAILING_COMMA = re.compile(r'("(?:[^"\\]|\\.)*")|,(\s*[}\]])', re.DOTALL)
_BACKSLASH = re.compile(r'\\(\\|"|/|u[0-9a-fA-F]{4}|[a-zA-Z]+|.)', re.DOTALL)

LATEX_COMMANDS = frozenset("""
bar beta begin bf big Big bigg Bigg bigl bigr binom bmod bold boldsymbol bot bowtie box breve bullet
forall frac flat footnote footnotesize
nabla natural ne nearrow neg neq newline ni nleq ngeq nolimits nonumber not nu nwarrow
rangle rceil Re ref rfloor rho right rightarrow rightleftharpoons rm
tan tanh tau tfrac text textbf textit textrm textsc textstyle tfrac theta therefore thinspace tilde times to top triangle tt
""".split())
"""LaTeX commands that start with b, f, n, r or t, which JSON would read as an escape (``\\f`` form feed)."""


def _fix_backslashes(match: re.Match) -> str:
    """One JSON string literal with its LaTeX backslashes doubled (see ``latex_escapes``)."""
    def one(m: re.Match) -> str:
        body = m.group(1)
        if body in ("\\", '"', "/") or (body[0] == "u" and re.fullmatch(r"u[0-9a-fA-F]{4}", body[:5])):
            return m.group(0)
        if body[0] in "bfnrt" and body.isalpha() and body not in LATEX_COMMANDS:
            return m.group(0)  # a JSON escape followed by text (\nThe ...)
        return "\\" + m.group(0)

    return _BACKSLASH.sub(one, match.group(0))


def _walk(s: str) -> tuple[int | None, list[tuple[int, tuple[str, ...]]]]:
    """Walk the JSON value starting at ``s[0]`` (``{`` or ``[``): the index just after its end (None
    when the text ends first), and after each value closed directly inside an array, its end and the
    brackets still open there."""
    stack: list[str] = []
    in_string = escaped = False
    cuts: list[tuple[int, tuple[str, ...]]] = []
    for i, c in enumerate(s):
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
            continue
        if c == '"':
            in_string = True
        elif c in "{[":
            stack.append(c)
        elif c in "}]":
            if not stack:
                break
            stack.pop()
            if not stack:
                return i + 1, cuts
            if stack[-1] == "[":
                cuts.append((i + 1, tuple(stack)))
    return None, cuts


def extract_json(text: str) -> tuple[Any, list[str]]:
    """The JSON value in a reply, and the repairs it took (see the module docstring)."""
    repairs: list[str] = []
    s = text
    fence = _FENCE.search(s)
    if fence:
        s = fence.group(1)
        repairs.append("code_fence")
    starts = [i for i in (s.find("{"), s.find("[")) if i >= 0]
    if not starts:
        raise ReplyError("no JSON object in the reply" if text.strip() else "empty reply")
    start = min(starts)
    if s[:start].strip():
        repairs.append("prose")
    s = s[start:]
    fixed = _STRING.sub(_fix_backslashes, s)
    if fixed != s:
        repairs.append("latex_escapes")
        s = fixed
    end, cuts = _walk(s)
    if end is not None:
        if s[end:].strip() and "prose" not in repairs:
            repairs.append("prose")
        s = s[:end]
    else:
        if not cuts:
            raise ReplyError("the reply's JSON is cut off before its first complete item")
        cut, still_open = cuts[-1]
        s = s[:cut] + "".join("]" if b == "[" else "}" for b in reversed(still_open))
        repairs.append("truncated")
    no_commas = _TRAILING_COMMA.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(2), s)
    if no_commas != s:
        repairs.append("trailing_comma")
        s = no_commas
    try:
        return json.loads(s, strict=False), repairs
    except json.JSONDecodeError as e:
        raise ReplyError(f"not JSON after repairs ({e.msg} at character {e.pos})") from None


def _squash(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


def conform(value: Any, schema: dict, where: str = "reply") -> tuple[Any, list[str], list[str]]:
    """``(value, repairs, problems)``: ``value`` with the sure fixes applied (``key_names``,
    ``enum_case``, ``number_type``, strings stripped) and what still breaks ``schema``.

    The schema subset understood: ``type`` (object, array, string, integer), ``properties``,
    ``required``, ``items``, ``minItems``, ``maxItems``, ``minLength``, ``enum``, ``minimum``,
    ``maximum``. Keys the schema does not name are dropped without a note."""
    kind = schema.get("type")
    repairs: list[str] = []
    problems: list[str] = []
    if kind == "object":
        if not isinstance(value, dict):
            return value, repairs, [f"{where}: expected an object, got {type(value).__name__}"]
        names = {_squash(n): n for n in schema.get("properties", {})}
        out = {}
        for key, item in value.items():
            name = key if key in schema.get("properties", {}) else names.get(_squash(str(key)))
            if name is None or name in out:
                continue
            if name != key:
                repairs.append("key_names")
            out[name], r, p = conform(item, schema["properties"][name], f"{where}.{name}")
            repairs += r
            problems += p
        problems += [f"{where}: no {name!r}" for name in schema.get("required", []) if name not in out]
        return out, repairs, problems
    if kind == "array":
        if not isinstance(value, list):
            return value, repairs, [f"{where}: expected a list, got {type(value).__name__}"]
        if len(value) < schema.get("minItems", 0):
            problems.append(f"{where}: {len(value)} items, fewer than {schema['minItems']}")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append(f"{where}: {len(value)} items, more than {schema['maxItems']}")
        out = []
        for i, item in enumerate(value):
            v, r, p = conform(item, schema.get("items", {}), f"{where}[{i}]")
            out.append(v)
            repairs += r
            problems += p
        return out, repairs, problems
    if kind == "string":
        if not isinstance(value, str):
            return value, repairs, [f"{where}: expected a string, got {type(value).__name__}"]
        value = value.strip()
        if "enum" in schema and value not in schema["enum"]:
            match = [e for e in schema["enum"] if e.lower() == value.lower()]
            if not match:
                return value, repairs, [f"{where}: {value[:40]!r} is not one of {schema['enum']}"]
            value = match[0]
            repairs.append("enum_case")
        if len(value) < schema.get("minLength", 0):
            problems.append(f"{where}: empty")
        return value, repairs, problems
    if kind == "integer":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
            repairs.append("number_type")
        elif isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
            repairs.append("number_type")
        if not isinstance(value, int) or isinstance(value, bool):
            return value, repairs, [f"{where}: expected an integer, got {json.dumps(value)[:40]}"]
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            problems.append(f"{where}: {value} is outside {schema.get('minimum')}-{schema.get('maximum')}")
        return value, repairs, problems
    return value, repairs, problems


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def parse_reply(text: str, schema: dict) -> tuple[Any, list[str]]:
    """The reply's JSON, repaired and conformed to ``schema``; raises :class:`ReplyError` on any problem."""
    value, repairs = extract_json(text)
    value, more, problems = conform(value, schema)
    if problems:
        raise ReplyError("; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else ""))
    return value, _unique(repairs + more)


@dataclass
class PairsReply:
    """What a generate reply gave: ``pairs`` (position in the reply, pair), the positions and reasons of
    items set aside (invalid, or beyond the n asked for), and the repairs it took."""

    pairs: list[tuple[int, dict]]
    dropped: list[tuple[int, str]]
    repairs: list[str]


def parse_pairs(text: str, schema: dict, n: int) -> PairsReply:
    """A generate reply read against its template's schema, item by item: an invalid pair is set aside
    (with its reason) and the valid ones are kept, at most ``n``. Raises :class:`ReplyError` when the
    reply is not JSON of the right shape or gives no valid pair."""
    value, repairs = extract_json(text)
    if isinstance(value, list):
        value = {"pairs": value}
        repairs.append("bare_list")
    list_schema = schema["properties"]["pairs"]
    value, more, problems = conform(value, {**schema, "properties": {"pairs": {"type": "array"}}})
    repairs += more
    if problems:
        raise ReplyError("; ".join(problems))
    pairs, dropped = [], []
    for i, item in enumerate(value["pairs"]):
        pair, more, problems = conform(item, list_schema["items"], f"pairs[{i}]")
        if problems:
            dropped.append((i, "; ".join(problems)))
        elif len(pairs) >= n:
            dropped.append((i, f"beyond the {n} pairs asked for"))
        else:
            pairs.append((i, pair))
            repairs += more
    if not pairs:
        why = "; ".join(reason for _, reason in dropped[:3]) or "an empty list of pairs"
        raise ReplyError(f"no valid pair: {why}")
    return PairsReply(pairs, dropped, _unique(repairs))


__all__ = ["LATEX_COMMANDS", "PairsReply", "ReplyError", "conform", "extract_json", "parse_pairs", "parse_reply"]
