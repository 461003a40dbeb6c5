"""Our HTTP client against a real OpenAI-compatible server: ``transformers serve`` on loopback, offline,
serving a tiny random model built in the test (the ``transformers[serving]`` extra).

What ``transformers serve`` (5.x) does that a run depends on, checked here:
- it answers ``/v1/chat/completions`` with the OpenAI JSON: message content, ``finish_reason``, ``usage``;
- greedy replies are the in-process backend's (same model, same chat template, same tokens);
- ``response_format`` is ignored (logged "Ignoring unsupported fields"), not refused: a structured
  request gets the model's free text, which from a random model is not JSON and reaches the caller
  as text (``error`` None) for the stage's parser to turn into an error row;
- the server is pinned to the model it was started with: a request naming any other model is an
  HTTP 400, a permanent error reply, so ``--model`` must be the served folder's path as given.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("torch")

from qa_synth.backends.base import ChatRequest  # noqa: E402
from qa_synth.backends.local import TransformersBackend  # noqa: E402
from qa_synth.backends.openai_http import FatalEndpointError, OpenAIBackend  # noqa: E402

pytestmark = pytest.mark.slow  # the server takes a few seconds to start

STARTUP_TIMEOUT_S = 180.0
SCHEMA = {"type": "object", "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
          "required": ["question", "answer"], "additionalProperties": False}


@dataclass
class Served:
    url: str  # the OpenAI base URL, http://127.0.0.1:PORT/v1
    model: str  # the model name the server answers to: the folder's path as given on its command line
    log: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: Path, log: Path) -> tuple[subprocess.Popen, int]:
    """``transformers serve MODEL_DIR`` on a free loopback port, offline; returns once /health answers."""
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1",
                        "TOKENIZERS_PARALLELISM": "false"}
    for _ in range(3):  # the free port may be taken between our probe and the server's bind
        port = free_port()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "transformers.cli.transformers", "serve", str(model_dir),
                 "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--log-level", "info"],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return proc, port
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.25)
        stop_server(proc)
        text = log.read_text(errors="replace")
        if "address already in use" not in text.lower():
            break
    pytest.fail(f"transformers serve did not answer /health within {STARTUP_TIMEOUT_S:.0f} s "
                f"(exit code {proc.returncode}); its log:\n{log.read_text(errors='replace')[-5000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from qa_data import tiny_model  # its context holds the Q&A prompts

    folder = tmp_path_factory.mktemp("serve")
    log = folder / "serve.log"
    model = tiny_model(folder / "model", seed=0)
    proc, port = start_server(model, log)
    try:
        yield Served(url=f"http://127.0.0.1:{port}/v1", model=str(model), log=log)
    finally:
        stop_server(proc)


def req(model: str, prompt: str, schema: dict | None = None, **params) -> ChatRequest:
    return ChatRequest(model=model, messages=(("system", "Answer briefly."), ("user", prompt)),
                       params=tuple(sorted(params.items())),
                       schema=json.dumps(schema, sort_keys=True) if schema is not None else None, schema_name="qa")


def ask(backend, *requests: ChatRequest) -> list:
    async def go():
        async with backend:
            return await asyncio.gather(*(backend.complete(r) for r in requests))

    return asyncio.run(go())


def client(served: Served, **kwargs) -> OpenAIBackend:
    return OpenAIBackend([served.url], timeout_s=60, max_retries=2, backoff_s=0.1, **kwargs)


def test_real_replies_carry_text_and_usage(served):
    questions = [f"What is the redshift of quasar {i}?" for i in range(6)]
    backend = client(served)
    replies = ask(backend, *(req(served.model, q, max_tokens=12, temperature=0) for q in questions))
    for r in replies:
        assert r.error is None, r.error
        assert r.text and r.finish_reason in ("stop", "length")
        assert r.prompt_tokens > 0 and 0 < r.completion_tokens <= 12
        assert (r.finish_reason == "length") == (r.completion_tokens == 12)
        assert r.extra["model"] == served.model
    assert backend.ledger["requests"] == len(questions) and backend.ledger["retries"] == 0
    assert backend.ledger["completion_tokens"] == sum(r.completion_tokens for r in replies)


def test_greedy_replies_match_the_in_process_backend(served):
    requests = [req(served.model, q, max_tokens=16, temperature=0)
                for q in ("How hot is the CMB?", "Which mission found the exoplanet?")]
    remote = ask(client(served), *requests)
    local = ask(TransformersBackend(served.model), *requests)
    for r, lo in zip(remote, local):
        assert (r.text, r.prompt_tokens, r.completion_tokens, r.finish_reason) == \
               (lo.text, lo.prompt_tokens, lo.completion_tokens, lo.finish_reason)


def test_structured_request_gets_free_text_that_reaches_the_caller(served):
    """response_format is ignored by transformers serve: the random model's reply is not JSON,
    and comes back as text with no error (the stage's parser makes it an error row)."""
    reply = ask(client(served, structured=True), req(served.model, "Write a question and its answer.",
                                                     schema=SCHEMA, max_tokens=24, temperature=0))[0]
    assert reply.error is None and reply.text
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.text)
    assert "Ignoring unsupported fields in the request: {'response_format'}" in served.log.read_text(errors="replace")
    # the same request without response_format (structured=False) gets the same reply
    plain = ask(client(served, structured=False), req(served.model, "Write a question and its answer.",
                                                      schema=SCHEMA, max_tokens=24, temperature=0))[0]
    assert plain.text == reply.text


def test_another_model_name_is_a_permanent_error_reply(served):
    backend = client(served)
    reply = ask(backend, req("some-other-model", "Hello?", max_tokens=4))[0]
    assert reply.error.startswith("HTTP 400") and "pinned" in reply.error
    assert backend.ledger["errors.permanent"] == 1 and backend.ledger["retries"] == 0


def test_the_model_check_refuses_a_name_the_server_does_not_serve_before_any_request(served):
    async def check(model: str):
        async with client(served) as backend:
            await backend.check_model(model)

    asyncio.run(check(served.model))  # the pinned model is listed at /v1/models
    with pytest.raises(FatalEndpointError, match="does not serve model 'some-other-model'"):
        asyncio.run(check("some-other-model"))


def test_qa_generate_and_rebuild_against_the_real_server(served, chunks, tmp_path):
    """The stage end to end on real replies: the random model's text does not parse, so every chunk is an
    error row with the raw reply and the server's token counts; the metadata pairs carry on; a rebuild
    replays the store (the same bytes) with the server's answers never asked for again."""
    from corpus.run.recipe import rebuild, run_recipe
    from qa_data import chunk_rows, generate, recipe
    from schemas import QA_PAIR, read_polars

    step = generate(served.url, chunks, model=served.model, max_tokens=16, n_pairs=1, max_in_flight=4)
    manifest = run_recipe(recipe(step, tasks=1), tmp_path / "run")
    pairs = read_polars(tmp_path / "run" / "qa/pairs.parquet", QA_PAIR)
    llm = pairs.filter(pairs["kind"] == "llm")
    assert llm.height == len(chunk_rows())
    assert llm["error"].null_count() == 0 and (llm["raw"].str.len_chars() > 0).all()
    assert (llm["prompt_tokens"] > 0).all() and (llm["completion_tokens"] <= 16).all()
    assert pairs.filter(pairs["kind"] == "template").height > 0
    assert manifest.models[0]["endpoints"] == [served.url]
    served_before = served.log.read_text(errors="replace").count("POST /v1/chat/completions")
    assert served_before >= len(chunk_rows())  # the server logs each request it answers
    rebuilt, diffs = rebuild(tmp_path / "run" / "manifest.json", tmp_path / "again")
    assert diffs == []
    assert served.log.read_text(errors="replace").count("POST /v1/chat/completions") == served_before
