"""Versioned prompt templates: what Generate and Grade ask a model, and the JSON they expect back.

A template is a name and a version (``"generate@1"``: its :attr:`Template.id`, written in every row
and part of every request's key), a system and a user text with ``{field}`` placeholders, the JSON
schema of the reply and, for few-shot prompts, worked examples (a user turn's fields and the reply).
A template never changes once released: a new wording is a new version, so stored replies of the old
one are never mistaken for the new one's.

Placeholders are replaced in one pass (``{name}``, a word in braces), so a value holding braces or
LaTeX (``$\\frac{a}{b}$``) is inserted as is, and the JSON shown in a template needs no escaping.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def render(text: str, fields: dict[str, Any]) -> str:
    """``text`` with each ``{name}`` replaced by ``fields[name]`` (one pass; values are not re-read)."""
    def value(m: re.Match) -> str:
        if m.group(1) not in fields:
            raise KeyError(f"template placeholder {{{m.group(1)}}} has no value (given: {sorted(fields)})")
        return str(fields[m.group(1)])

    return _PLACEHOLDER.sub(value, text)


@dataclass(frozen=True)
class Example:
    """A worked example of a few-shot template: the user turn's fields and the reply it should get."""

    fields: dict[str, Any]
    reply: dict[str, Any]


@dataclass(frozen=True)
class Template:
    """One released prompt: see the module docstring. ``shape``: the reply's JSON shape as the prompt
    states it when structured output is off (the server then does not know the schema)."""

    name: str
    version: int
    system: str
    user: str
    schema: dict[str, Any]
    shape: str
    examples: tuple[Example, ...] = field(default_factory=tuple)

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def schema_json(self) -> str:
        """The schema as canonical JSON text (what a :class:`~qa_synth.backends.base.ChatRequest` holds)."""
        return json.dumps(self.schema, sort_keys=True, separators=(",", ":"))

    def messages(self, fields: dict[str, Any], structured: bool) -> tuple[tuple[str, str], ...]:
        """The chat messages: system, then each example as a user turn and its assistant reply, then the
        user turn of ``fields``. Without structured output the system text ends with the JSON shape."""
        system = render(self.system, fields)
        if not structured:
            system += f"\n\nReply with one JSON object only, no other text, in exactly this shape:\n{self.shape}"
        turns = [("system", system)]
        for ex in self.examples:
            turns += [("user", render(self.user, ex.fields)),
                      ("assistant", json.dumps(ex.reply, ensure_ascii=False))]
        return (*turns, ("user", render(self.user, fields)))


def get_template(template_id: str) -> Template:
    """A released template by id (``"generate@1"``)."""
    from qa_synth.prompts.generate import GENERATE_V1
    from qa_synth.prompts.grade import GRADE_V1

    known = {t.id: t for t in (GENERATE_V1, GRADE_V1)}
    try:
        return known[template_id]
    except KeyError:
        raise KeyError(f"unknown prompt template {template_id!r}; known: {sorted(known)}") from None


__all__ = ["Example", "Template", "get_template", "render"]
