"""The in-process transformers backend on a tiny random model: batching that does not change replies,
bounded batches, token counts, permanent error replies, out-of-memory retries, the weights fingerprint;
and the tiny model builder of examples/tiny_lm.py."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from corpus.model_files import ModelFolderError, model_fingerprint  # noqa: E402
from qa_synth.backends.base import ChatRequest  # noqa: E402
from qa_synth.backends.local import TransformersBackend  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import tiny_lm as builder  # noqa: E402

QUESTIONS = [f"What is the flux density of source {i}? " * (1 + i % 3) for i in range(10)]


def req(prompt: str, **params) -> ChatRequest:
    return ChatRequest(model="tiny", messages=(("system", "Answer briefly."), ("user", prompt)),
                       params=tuple(sorted(params.items())))


def answer(backend: TransformersBackend, requests: list[ChatRequest], at_once: bool = True) -> list:
    """The replies to ``requests``: all in flight together, or one after the other."""
    async def go():
        async with backend:
            if at_once:
                return await asyncio.gather(*(backend.complete(r) for r in requests))
            return [await backend.complete(r) for r in requests]

    return asyncio.run(go())


@pytest.fixture
def generate_calls(tiny_lm, monkeypatch):
    """The batch size of every ``generate`` call on the (per-process) tiny model."""
    model = TransformersBackend(str(tiny_lm)).loaded.model
    calls: list[int] = []
    real = model.generate

    def counted(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "generate", counted)
    return calls


def test_batched_replies_equal_unbatched_and_batches_are_bounded(tiny_lm, generate_calls):
    requests = [req(q, max_tokens=5 + 3 * i) for i, q in enumerate(QUESTIONS)]  # mixed lengths in one batch
    batched = answer(TransformersBackend(str(tiny_lm), batch_size=4), requests)
    assert generate_calls == [4, 4, 2]
    generate_calls.clear()
    alone = answer(TransformersBackend(str(tiny_lm), batch_size=4), requests, at_once=False)
    assert generate_calls == [1] * len(requests)
    assert [r.to_json() for r in batched] == [r.to_json() for r in alone]
    assert len({r.text for r in batched}) > 1  # a model that says something, and not always the same thing
    for r, request in zip(batched, requests):
        assert r.error is None and r.finish_reason in ("stop", "length")
        max_tokens = dict(request.params)["max_tokens"]
        assert 0 < r.completion_tokens <= max_tokens
        assert (r.completion_tokens == max_tokens) == (r.finish_reason == "length")


def test_sampling_follows_the_request_seed_whatever_the_batch(tiny_lm):
    backend = TransformersBackend(str(tiny_lm), batch_size=8)
    sampled = [req(q, max_tokens=12, temperature=0.9, top_p=0.95) for q in QUESTIONS[:6]]
    seeded = [req(QUESTIONS[0], max_tokens=12, temperature=0.9, seed=s) for s in (1, 1, 2)]
    greedy = req(QUESTIONS[0], max_tokens=12)
    together = answer(backend, [*sampled, *seeded, greedy])
    alone = answer(TransformersBackend(str(tiny_lm), batch_size=1), [*sampled, *seeded, greedy])
    assert [r.text for r in together] == [r.text for r in alone]
    s1, s1_again, s2, g = together[-4:]
    assert s1.text == s1_again.text and s1.extra["seed"] == 1
    assert s2.text != s1.text and g.text != s1.text and "seed" not in g.extra
    assert isinstance(together[0].extra["seed"], int)  # derived from the request when not given


def test_token_counts_come_from_the_tokenizer(tiny_lm):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_lm))
    request = req("How hot is the cosmic microwave background?", max_tokens=20)
    full = answer(TransformersBackend(str(tiny_lm)), [request])[0]
    prompt = tok.apply_chat_template(request.messages_json(), add_generation_prompt=True, tokenize=True,
                                     return_dict=True)["input_ids"]
    assert full.prompt_tokens == len(prompt) and full.completion_tokens == 20 and full.finish_reason == "length"
    # a stop string cuts the reply before it, and only the tokens up to it are counted
    stop = full.text[len(full.text) // 2:][:3]
    cut = answer(TransformersBackend(str(tiny_lm)), [req(request.messages[1][1], max_tokens=20, stop=[stop])])[0]
    assert cut.text == full.text[:full.text.find(stop)] and cut.finish_reason == "stop"
    assert 0 < cut.completion_tokens < 20


def test_a_reply_ended_by_eos_stops(tmp_path):
    """A model whose EOS always wins: the reply is empty, ``stop``, the EOS token counted."""
    from transformers import AutoModelForCausalLM

    folder = builder.build_tiny_lm(tmp_path / "eos", seed=3)
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    eos = model.config.eos_token_id
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 30.0  # a channel that is positive at every position
        model.lm_head.weight[:, 0] = 0.0
        model.lm_head.weight[eos, 0] = 50.0  # ... read only by EOS
    model.save_pretrained(folder)
    reply = answer(TransformersBackend(str(folder)), [req("anything", max_tokens=10)])[0]
    assert (reply.text, reply.finish_reason, reply.completion_tokens) == ("", "stop", 1)


def test_too_long_prompts_and_bad_parameters_are_permanent_error_replies(tiny_lm):
    long = req("galaxy " * 600, max_tokens=4)
    ok = req(QUESTIONS[0], max_tokens=4)
    backend = TransformersBackend(str(tiny_lm), batch_size=4)
    replies = answer(backend, [long, ok, req(QUESTIONS[1], n=2), req(QUESTIONS[1], presence_penalty=0.5, max_tokens=2),
                               req(QUESTIONS[1], max_tokens=0)])
    assert replies[0].error.startswith(f"prompt of {replies[0].prompt_tokens} tokens exceeds the model's context of 512")
    assert replies[1].error is None and replies[1].completion_tokens == 4
    assert "only one reply" in replies[2].error
    assert replies[3].error is None and replies[3].extra["ignored_params"] == ["presence_penalty"]
    assert replies[4].error == "bad parameters: max_tokens must be at least 1, not 0"
    assert backend.ledger["requests"] == 5 and backend.ledger["errors.permanent"] == 3
    assert backend.ledger["completion_tokens"] == 6
    capped = answer(TransformersBackend(str(tiny_lm), max_input_tokens=20), [ok])[0]
    assert capped.error == f"prompt of {replies[1].prompt_tokens} tokens exceeds max_input_tokens=20"


def test_out_of_memory_retries_one_by_one_then_errors_alone(tiny_lm, monkeypatch):
    requests = [req(q, max_tokens=6) for q in QUESTIONS[:4]]
    expected = answer(TransformersBackend(str(tiny_lm), batch_size=1), requests)
    model = TransformersBackend(str(tiny_lm)).loaded.model
    real = model.generate
    longest = max(e.prompt_tokens for e in expected)

    def scarce_memory(*args, **kwargs):
        ids = kwargs["input_ids"]
        if ids.shape[0] > 1 or ids.shape[1] == longest:  # no batch fits, nor the longest prompt alone
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "generate", scarce_memory)
    backend = TransformersBackend(str(tiny_lm), batch_size=4)
    got = answer(backend, requests)
    assert backend.ledger["retries"] == 4
    for r, e in zip(got, expected):
        if e.prompt_tokens == longest:
            assert r.error == f"out of memory on cpu with a prompt of {longest} tokens and max_tokens=6"
        else:
            assert r.to_json() == e.to_json()
    assert backend.ledger["errors.permanent"] == sum(e.prompt_tokens == longest for e in expected) > 0


def test_fingerprint_is_the_weights_hash(tiny_lm, tmp_path):
    backend = TransformersBackend(str(tiny_lm))
    assert backend.fingerprint() == model_fingerprint(tiny_lm)["sha256"]
    other = TransformersBackend(str(builder.build_tiny_lm(tmp_path / "seed1", seed=1)))
    assert other.fingerprint() != backend.fingerprint()
    request = req(QUESTIONS[0])
    assert request.key(other.fingerprint()) != request.key(backend.fingerprint())


def test_model_is_loaded_once_per_process_and_folder_errors_are_clear(tiny_lm, tmp_path):
    assert TransformersBackend(str(tiny_lm)).loaded is TransformersBackend(str(tiny_lm), batch_size=2).loaded
    with pytest.raises(ValueError, match="dtype must be one of"):
        TransformersBackend(str(tiny_lm), dtype="fp8")
    with pytest.raises(ModelFolderError, match="no config.json"):
        answer(TransformersBackend(str(tmp_path)), [req("hello")])


def test_tiny_lm_same_seed_same_bytes_and_a_chat_template_for_assistant_masks(tmp_path):
    from transformers import AutoTokenizer

    a = builder.build_tiny_lm(tmp_path / "a", seed=0)
    builder.main([str(tmp_path / "b"), "--seed", "0"])
    c = builder.build_tiny_lm(tmp_path / "c", seed=1)
    files = sorted(p.name for p in a.iterdir())
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json"} <= set(files)
    assert all((a / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()
    tok = AutoTokenizer.from_pretrained(str(a), local_files_only=True)
    chat = [{"role": "user", "content": "What is the CMB temperature?"}, {"role": "assistant", "content": "2.725 K"}]
    out = tok.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    assistant = [t for t, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(assistant) == "2.725 K<|im_end|>"
