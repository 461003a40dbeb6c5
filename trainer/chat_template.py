"""A chat template that marks what the assistant says, for loss on assistant turns only.

TRL's ``assistant_only_loss`` takes its loss mask from ``apply_chat_template(...,
return_assistant_tokens_mask=True)``, which needs ``{% generation %}`` ... ``{% endgeneration %}``
around the assistant's text in the chat template. Few shipped templates have them.
:func:`training_template` returns a marked template for a tokenizer, in this order:

1. a template given in the config (a ``.jinja`` file, a template string, or a family name from
   :data:`NAMED`), used as is when marked, else marked like a shipped one;
2. the tokenizer's own template when it already has the markers;
3. TRL's marked copy of a template it knows exactly (``trl.chat_template_utils.get_training_chat_template``:
   Llama 3, Qwen 2.5/3, Gemma, Phi-3, ...);
4. our patch for a template family, found by the expression that renders a whole message: Llama 3.1/3.2/3.3
   (``'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim +
   '<|eot_id|>'``) and ChatML (``'<|im_start|>' + message['role'] + '\\n' + message['content'] +
   '<|im_end|>' + '\\n'``): the assistant gets its own branch, the header outside the span and the text plus
   end-of-turn token inside it.

Anything else is refused with an error saying to give a marked template in the config. There is no
"generic" rewrite: a template whose structure we do not know cannot be marked safely.

Every marked template is checked before use (:func:`check_marked`): on probe chats it renders exactly the
text of the original (markers change no byte of the prompt the model sees at inference), and its mask
covers each assistant turn's text and its end-of-turn token, and nothing of the system or user turns. The
end-of-turn token is inside the span, so the model learns to stop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")

CHATML = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""The plain ChatML template (as shipped by many ChatML models), unmarked."""


def _trl_template(name: str) -> str:
    from trl import chat_template_utils

    return getattr(chat_template_utils, f"{name}_chat_template")


NAMED = {
    "chatml": lambda: CHATML,
    "llama3": lambda: _trl_template("llama3"),
    "llama3_1": lambda: _trl_template("llama3_1"),
    "llama3_2": lambda: _trl_template("llama3_2"),
}
"""Template families a config may name in ``chat_template`` (for a base model that ships none): the
original template text (TRL's stored copies for Llama), marked by :func:`training_template`."""

# Pieces of the one-expression-per-message pattern that the family patches recognise.
_LIT = r"(?:'[^'\\]*(?:\\.[^'\\]*)*'|\"[^\"\\]*(?:\\.[^\"\\]*)*\")"
_ROLE = r"message(?:\['role'\]|\[\"role\"\]|\.role)"
_CONTENT = r"message(?:\['content'\]|\[\"content\"\]|\.content)(?:\s*\|\s*trim)?"


@dataclass(frozen=True)
class _Family:
    name: str
    start: str  # the literal that opens a message
    end: str  # the end-of-turn token that closes it

    def pattern(self) -> re.Pattern:
        opening = rf"(?:'{re.escape(self.start)}'|\"{re.escape(self.start)}\")"
        closing = rf"(?:'{re.escape(self.end)}[^'\\]*(?:\\.[^'\\]*)*'|\"{re.escape(self.end)}[^\"\\]*(?:\\.[^\"\\]*)*\")"
        return re.compile(
            r"\{\{(?P<lead>-?)\s*"
            rf"(?P<head>{opening}\s*\+\s*(?P<role>{_ROLE})(?:\s*\+\s*{_LIT})?)\s*\+\s*"
            rf"(?P<tail>{_CONTENT}\s*\+\s*{closing}(?:\s*\+\s*{_LIT})*)"
            r"\s*(?P<trail>-?)\}\}"
        )


FAMILIES = (
    _Family("llama3", "<|start_header_id|>", "<|eot_id|>"),
    _Family("chatml", "<|im_start|>", "<|im_end|>"),
)


class ChatTemplateError(ValueError):
    """No marked chat template can be had; the message says what to give in the config."""


@dataclass(frozen=True)
class MarkedTemplate:
    """A chat template with ``{% generation %}`` markers, checked by :func:`check_marked`."""

    template: str
    source: str  # "config", "tokenizer", "trl" or a family name ("llama3", "chatml")
    end_of_turn: str  # the token that ends an assistant turn (inside the span): generation must stop on it


def has_markers(template: str) -> bool:
    """Whether a template has ``{% generation %}`` markers (any whitespace-control variant)."""
    return GENERATION.search(template) is not None


def read_template(value: str) -> str:
    """A config's ``chat_template``: a family name from :data:`NAMED`, a file (``.jinja``/``.j2``/any text
    file) or the template itself (anything holding ``{{`` or ``{%``)."""
    if value in NAMED:
        return NAMED[value]()
    if "{{" in value or "{%" in value:
        return value
    path = Path(value).expanduser()
    try:
        if path.is_file():
            return path.read_text(encoding="utf-8")
    except OSError as e:
        raise ChatTemplateError(f"chat_template {value!r:.80}: cannot read it: {e}") from e
    raise ChatTemplateError(
        f"chat_template {value!r} is neither a file, nor a Jinja template (no '{{{{' or '{{%'), nor one of the "
        f"known families {sorted(NAMED)}"
    )


def mark_family(template: str) -> tuple[str, str] | None:
    """Our marked copy of a template of a known family, and the family's name; ``None`` when no family's
    whole-message expression occurs in it."""
    for family in FAMILIES:
        pattern = family.pattern()
        if not pattern.search(template):
            continue

        def patch(m: re.Match) -> str:
            lead, trail, role = m["lead"], m["trail"], m["role"]
            # The empty expressions keep the original's whitespace handling: block tags at the ends would
            # let transformers' trim_blocks/lstrip_blocks eat a newline or indent that the expression kept.
            return (
                f"{{{{{lead} '' }}}}{{% if {role} == 'assistant' %}}"
                f"{{{{ {m['head']} }}}}{{% generation %}}{{{{ {m['tail']} }}}}{{% endgeneration %}}"
                f"{{% else %}}{{{{ {m['head']} + {m['tail']} }}}}{{% endif %}}{{{{ '' {trail}}}}}"
            )

        return pattern.sub(patch, template), family.name
    return None


PROBES = (
    [
        {"role": "user", "content": "Question one about the flux density?"},
        {"role": "assistant", "content": "Answer one: twelve mJy."},
    ],
    [
        {"role": "system", "content": "System rule: answer briefly."},
        {"role": "user", "content": "Question two about the Hubble law?"},
        {"role": "assistant", "content": "Answer two: v equals H0 d."},
        {"role": "user", "content": "Question three about dark matter?"},
        {"role": "assistant", "content": "Answer three: halos dominate."},
    ],
)
"""Chats on which a marked template is checked against its original."""


def _render(tokenizer, template: str, messages: list[dict], **kwargs) -> str:
    return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False, **kwargs)


def check_marked(tokenizer, marked: str, original: str | None = None, probes=PROBES) -> str:
    """Check a marked template on probe chats; return its end-of-turn token.

    When ``original`` is given, the marked template must render the same text for each probe (with and
    without a generation prompt). In every probe the assistant mask must hold one span per assistant turn,
    each the turn's text followed by one special token (the end-of-turn token, the same in every turn) and
    at most whitespace: nothing of the system or user turns. Raises :class:`ChatTemplateError` otherwise.
    """
    added = set(tokenizer.get_added_vocab())
    end_tokens = set()
    for messages in probes:
        if original is not None:
            for gen in (False, True):
                chat = messages[:-1] if gen else messages
                a, b = _render(tokenizer, original, chat, add_generation_prompt=gen), _render(
                    tokenizer, marked, chat, add_generation_prompt=gen)
                if a != b:
                    raise ChatTemplateError(
                        "the marked chat template renders different text from the original (it must only add "
                        f"markers):\noriginal: {a!r}\nmarked:   {b!r}")
        out = tokenizer.apply_chat_template(messages, chat_template=marked, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
        spans, start = [], None
        for i, m in enumerate([*mask, 0]):
            if m and start is None:
                start = i
            elif not m and start is not None:
                spans.append(ids[start:i])
                start = None
        replies = [m["content"] for m in messages if m["role"] == "assistant"]
        if len(spans) != len(replies):
            raise ChatTemplateError(
                f"the chat template's assistant mask has {len(spans)} span(s) for {len(replies)} assistant turn(s): "
                "are {% generation %} ... {% endgeneration %} around each assistant message?")
        for span, reply in zip(spans, replies):
            tokens = tokenizer.convert_ids_to_tokens(span)
            while tokens and tokenizer.convert_tokens_to_string([tokens[-1]]).strip() == "":
                tokens.pop()  # a newline after the end-of-turn token may sit inside the span
            end = tokens[-1] if tokens else None
            text = tokenizer.decode(span[: len(tokens) - 1]).strip() if tokens else ""
            if end not in added or text != reply.strip():
                raise ChatTemplateError(
                    "the chat template's assistant mask must cover exactly the reply and its end-of-turn token; "
                    f"for reply {reply!r} it covers {tokenizer.decode(span)!r}")
            end_tokens.add(end)
    if len(end_tokens) != 1:
        raise ChatTemplateError(f"assistant turns end with different tokens: {sorted(end_tokens)}")
    return end_tokens.pop()


def training_template(tokenizer, override: str | None = None) -> MarkedTemplate:
    """The marked chat template to train ``tokenizer``'s model with (see the module docstring for the order).

    ``override``: the config's ``chat_template`` (a family name, a file or a template string); without it,
    the tokenizer's own template. Raises :class:`ChatTemplateError` when none can be had or a marked copy
    fails :func:`check_marked`.
    """
    if override is not None:
        template, source = read_template(override), "config"
    else:
        template, source = tokenizer.chat_template, "tokenizer"
        if isinstance(template, dict):
            template = template.get("default")
        if not template:
            raise ChatTemplateError(
                f"the base model's tokenizer has no chat template: set chat_template in the config to a marked "
                f"template (a .jinja file or a string) or to one of {sorted(NAMED)}")
    if has_markers(template):
        return MarkedTemplate(template, source, check_marked(tokenizer, template))

    marked, how = None, None
    from trl.chat_template_utils import get_training_chat_template

    saved = tokenizer.chat_template
    try:
        tokenizer.chat_template = template
        marked, how = get_training_chat_template(tokenizer), "trl"
    except ValueError:
        pass  # not a template TRL knows
    finally:
        tokenizer.chat_template = saved
    if marked is None or not has_markers(marked):
        found = mark_family(template)
        if found is None:
            raise ChatTemplateError(
                f"the chat template ({source}) has no {{% generation %}} markers and is of no family we can mark "
                f"(TRL's known templates, Llama 3.x, ChatML): set chat_template in the config to a copy with "
                "{% generation %} ... {% endgeneration %} around each assistant reply and its end-of-turn token "
                "(a .jinja file or a string), or set assistant_only_loss: false")
        marked, how = found
    return MarkedTemplate(marked, how if source == "tokenizer" else f"config+{how}",
                          check_marked(tokenizer, marked, original=template))
