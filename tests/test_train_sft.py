"""SFT: the marked chat template (loss on assistant turns only) and the trainer (trainer/sft.py)."""

from __future__ import annotations

import pytest

from trainer.chat_template import CHATML, ChatTemplateError, check_marked, has_markers, training_template

CHAT = [
    {"role": "system", "content": "You are an astronomer."},
    {"role": "user", "content": "What is the Hubble law?"},
    {"role": "assistant", "content": "Galaxies recede with v = H0 d."},
    {"role": "user", "content": "And the CMB temperature?"},
    {"role": "assistant", "content": "It is 2.725 K."},
]

LLAMA_TOKENS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def _trl(name: str) -> str:
    from trl import chat_template_utils

    return getattr(chat_template_utils, f"{name}_chat_template")


def tokenizer_with(tiny_lm, template: str | None):
    """The tiny model's tokenizer, with Llama 3's special tokens added and ``template`` as its chat template."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    tok.add_tokens(LLAMA_TOKENS, special_tokens=True)
    tok.bos_token = "<|begin_of_text|>"
    tok.chat_template = template
    return tok


def masked_and_rest(tok, template: str, chat: list[dict]) -> tuple[str, str]:
    """The text of the tokens in the assistant mask, and of those outside it."""
    out = tok.apply_chat_template(chat, chat_template=template, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    return (tok.decode([i for i, m in zip(ids, mask) if m]), tok.decode([i for i, m in zip(ids, mask) if not m]))


@pytest.mark.parametrize(("name", "end", "source"), [
    ("llama3_1", "<|eot_id|>", "llama3"),  # Llama 3.1: our patch (TRL has no marked copy)
    ("llama3_2", "<|eot_id|>", "llama3"),
    ("llama3", "<|eot_id|>", "trl"),  # Llama 3: TRL's marked copy
    ("chatml", "<|im_end|>", "chatml"),
])
def test_marked_copy_masks_the_replies_and_their_end_of_turn_token_and_renders_the_same_text(tiny_lm, name, end,
                                                                                              source):
    original = CHATML if name == "chatml" else _trl(name)
    tok = tokenizer_with(tiny_lm, original)
    marked = training_template(tok)
    assert marked.source == source and marked.end_of_turn == end
    assert not has_markers(original) and has_markers(marked.template)

    masked, rest = masked_and_rest(tok, marked.template, CHAT)
    newline = "\n" if name == "chatml" else ""  # ChatML's newline after <|im_end|> sits in the span, harmlessly
    assert masked == f"Galaxies recede with v = H0 d.{end}{newline}It is 2.725 K.{end}{newline}"
    for m in CHAT:
        assert (m["content"] in rest) == (m["role"] != "assistant")

    for chat in (CHAT, CHAT[1:3], CHAT[:2]):
        for gen in (False, True):
            assert tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=gen, chat_template=marked.template) \
                == tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=gen, chat_template=original)


def test_a_template_that_already_has_markers_is_kept(tiny_lm):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm)  # tiny_lm's ChatML template is marked
    marked = training_template(tok)
    assert (marked.template, marked.source, marked.end_of_turn) == (tok.chat_template, "tokenizer", "<|im_end|>")


def test_a_config_template_wins_as_a_name_a_file_or_a_string(tiny_lm, tmp_path):
    tok = tokenizer_with(tiny_lm, CHATML)
    assert training_template(tok, "llama3_1").end_of_turn == "<|eot_id|>"
    (tmp_path / "chat.jinja").write_text(_trl("llama3_1"))
    from_file = training_template(tok, str(tmp_path / "chat.jinja"))
    assert from_file.source == "config+llama3" and from_file.end_of_turn == "<|eot_id|>"
    assert training_template(tok, CHATML).source == "config+chatml"
    with pytest.raises(ChatTemplateError, match="neither a file"):
        training_template(tok, "no_such_template")


def test_an_unknown_or_missing_template_is_refused_with_what_to_do(tiny_lm):
    tok = tokenizer_with(tiny_lm, "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}")
    with pytest.raises(ChatTemplateError, match="set chat_template in the config"):
        training_template(tok)
    with pytest.raises(ChatTemplateError, match="has no chat template"):
        training_template(tokenizer_with(tiny_lm, None))


def test_a_marked_template_that_leaves_the_end_of_turn_token_out_of_the_span_is_refused(tiny_lm):
    outside = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
               "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }}{% endgeneration %}"
               "{% else %}{{ message['content'] }}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}")
    tok = tokenizer_with(tiny_lm, outside)
    with pytest.raises(ChatTemplateError, match="exactly the reply and its end-of-turn token"):
        training_template(tok)
    with pytest.raises(ChatTemplateError, match="renders different text"):
        check_marked(tok, outside, original=CHATML.replace("'\\n' + message['content']", "' \\n' + message['content']"))
