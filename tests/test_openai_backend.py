"""The OpenAI-compatible HTTP backend against a scripted loopback server (tests/fake_openai.py):
what it sends, what each kind of answer becomes, retries, round-robin and the ledger."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")
sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import FakeOpenAI  # noqa: E402

from corpus.run.concurrency import map_stored  # noqa: E402
from corpus.run.item_store import ItemStore  # noqa: E402
from qa_synth.backends.base import ChatRequest, Reply, TransientError  # noqa: E402
from qa_synth.backends.openai_http import (  # noqa: E402
    FatalEndpointError, OpenAIBackend, retry_after, strict_compatible,
)

KEY = "sk-test-0123456789abcdefghij"
SCHEMA = {"type": "object", "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
          "required": ["question", "answer"], "additionalProperties": False}


def req(prompt: str, schema: dict | None = None, **params) -> ChatRequest:
    return ChatRequest(model="m-1", messages=(("system", "be brief"), ("user", prompt)),
                       params=tuple(sorted(params.items())),
                       schema=json.dumps(schema, sort_keys=True) if schema is not None else None, schema_name="qa")


def ask(backend: OpenAIBackend, *requests: ChatRequest, record_sleeps: list | None = None) -> list:
    """The replies (or the exceptions raised) of ``requests``, sent at once inside one ``async with``."""
    async def go():
        async with backend:
            if record_sleeps is not None:
                async def sleep(s):
                    record_sleeps.append(s)
                backend._sleep = sleep
            return await asyncio.gather(*(backend.complete(r) for r in requests), return_exceptions=True)

    return asyncio.run(go())


@pytest.fixture
def server():
    with FakeOpenAI() as s:
        yield s


@pytest.fixture
def server2():
    with FakeOpenAI() as s:
        yield s


def test_reply_fields_and_ledger(server):
    backend = OpenAIBackend([server.url])
    (reply,) = ask(backend, req("what is a pulsar"))
    assert reply == Reply(text="echo: what is a pulsar", finish_reason="stop", prompt_tokens=6, completion_tokens=5,
                          extra={"model": "m-1", "system_fingerprint": "fake-openai"})
    assert backend.ledger == {"requests": 1, "retries": 0, "prompt_tokens": 6, "completion_tokens": 5,
                              "errors.permanent": 0, "errors.transient": 0}
    assert Reply.from_json(json.loads(json.dumps(reply.to_json()))) == reply


def test_body_sent_with_params_and_response_format(server):
    ask(OpenAIBackend([server.url + "/"]), req("q1", SCHEMA, temperature=0.7, max_tokens=64, seed=3),
        req("q2", {"type": "object", "properties": {"a": {"type": "string"}}}), req("q3"))
    body = server.sent("q1")[0]
    assert body["model"] == "m-1"
    assert body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q1"}]
    assert (body["temperature"], body["max_tokens"], body["seed"]) == (0.7, 64, 3)
    assert body["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "qa", "schema": SCHEMA, "strict": True}}
    # a schema outside OpenAI's strict subset is sent without strict (OpenAI would refuse it with a 400)
    assert "strict" not in server.sent("q2")[0]["response_format"]["json_schema"]
    assert "response_format" not in server.sent("q3")[0]


def test_unstructured_sends_no_response_format(server):
    ask(OpenAIBackend([server.url], structured=False), req("q1", SCHEMA))
    assert "response_format" not in server.sent("q1")[0]


def test_authorization_only_with_a_key_and_never_in_repr(server):
    ask(OpenAIBackend([server.url]), req("nokey"))
    ask(OpenAIBackend([server.url], api_key=KEY), req("withkey"))
    headers = {r["key"]: r["headers"] for r in server.requests}
    assert "Authorization" not in headers["nokey"]
    assert headers["withkey"]["Authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(OpenAIBackend([server.url], api_key=KEY))


def test_429_with_retry_after_then_200(server):
    server.script("q", {"status": 429, "headers": {"Retry-After": "0.3"}})
    backend = OpenAIBackend([server.url], backoff_s=0)
    (reply,) = ask(backend, req("q"))
    assert reply.text == "echo: q" and reply.error is None
    assert server.counts["q"] == 2
    first, second = (r["at"] for r in server.requests)
    assert second - first >= 0.3  # the server's wait, not the (zero) backoff
    assert backend.ledger["retries"] == 1 and backend.ledger["requests"] == 2


def test_retry_after_is_capped_and_read_as_date_or_ms():
    assert retry_after({"Retry-After": "2"}) == 2.0
    assert retry_after({"retry-after-ms": "250", "Retry-After": "1"}) == 0.25
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 < retry_after({"Retry-After": date}) <= 31
    assert retry_after({"Retry-After": "soon"}) is None and retry_after({}) is None
    backend = OpenAIBackend(["http://127.0.0.1:1/v1"], max_backoff_s=5)
    assert backend.delay(0, 3600) == 5
    assert 2 <= backend.delay(0, 2) <= 2.5
    assert all(0 <= backend.delay(10) <= 5 for _ in range(100))


def test_500_then_200_and_backoff_grows(server):
    server.script("q", {"status": 500}, {"status": 502}, {"status": 503})
    sleeps = []
    backend = OpenAIBackend([server.url], backoff_s=0.01, max_backoff_s=100)
    (reply,) = ask(backend, req("q"), record_sleeps=sleeps)
    assert reply.text == "echo: q"
    assert server.counts["q"] == 4 and backend.ledger["retries"] == 3
    assert len(sleeps) == 3 and all(0 <= s <= 0.01 * 2 ** i for i, s in enumerate(sleeps))


def test_timeout_then_200(server):
    server.script("slow", {"delay": 2.0})
    backend = OpenAIBackend([server.url], timeout_s=0.3, backoff_s=0)
    (reply,) = ask(backend, req("slow"))
    assert reply.text == "echo: slow"
    assert server.counts["slow"] == 2 and backend.ledger["retries"] == 1


def test_200_with_a_body_that_is_not_the_api_json_is_retried(server):
    server.script("q", {"body": "<html>bad gateway</html>"}, {"body": '{"object": "error"}'})
    backend = OpenAIBackend([server.url], backoff_s=0)
    (reply,) = ask(backend, req("q"))
    assert reply.text == "echo: q" and server.counts["q"] == 3


def test_dropped_connection_is_retried(server):
    server.script("q", {"drop": True})
    (reply,) = ask(OpenAIBackend([server.url], backoff_s=0), req("q"))
    assert reply.text == "echo: q" and server.counts["q"] == 2


def test_content_that_is_not_json_comes_back_as_text(server):
    server.script("q", {"content": '{"question": "unterminated'})
    backend = OpenAIBackend([server.url])
    (reply,) = ask(backend, req("q", SCHEMA))
    assert reply.text == '{"question": "unterminated' and reply.error is None
    assert server.counts["q"] == 1


def test_null_content_and_refusal(server):
    server.script("q", {"content": None, "refusal": "I can't help with that."})
    backend = OpenAIBackend([server.url])
    (reply,) = ask(backend, req("q"))
    assert reply.error == "refusal: I can't help with that."
    assert backend.ledger["errors.permanent"] == 1


def test_400_is_a_permanent_error_reply_sent_once(server):
    server.script("long", {"status": 400, "message": "This model's maximum context length is 8192 tokens."})
    server.script("big", {"status": 413, "body": "request entity too large"})
    backend = OpenAIBackend([server.url])
    long, big = ask(backend, req("long"), req("big"))
    assert long == Reply(error="HTTP 400: This model's maximum context length is 8192 tokens.")
    assert big.error == "HTTP 413: request entity too large"
    assert server.counts["long"] == 1 and server.counts["big"] == 1
    assert backend.ledger["errors.permanent"] == 2 and backend.ledger["retries"] == 0


def test_transient_error_after_the_retries_names_endpoint_and_problem(server):
    server.default = {"status": 503, "message": f"overloaded (key {KEY})"}
    backend = OpenAIBackend([server.url], api_key=KEY, max_retries=2, backoff_s=0)
    (err,) = ask(backend, req("q"))
    assert isinstance(err, TransientError)
    assert server.url in str(err) and "HTTP 503" in str(err) and "3 attempts" in str(err)
    assert KEY not in str(err)
    assert server.counts["q"] == 3
    assert backend.ledger["errors.transient"] == 1 and backend.ledger["retries"] == 2


def test_connection_refused_is_transient():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the request: nothing listens there
    backend = OpenAIBackend([f"http://127.0.0.1:{port}/v1"], max_retries=1, backoff_s=0)
    (err,) = ask(backend, req("q"))
    assert isinstance(err, TransientError) and not isinstance(err, FatalEndpointError)
    assert f"127.0.0.1:{port}" in str(err) and backend.ledger["requests"] == 2


@pytest.mark.parametrize("status", [401, 403, 404])
def test_refused_credentials_or_url_stop_the_backend(server, status):
    server.default = {"status": status, "message": f"Incorrect API key provided: {KEY}"}
    backend = OpenAIBackend([server.url], api_key=KEY, backoff_s=0)

    async def go():
        async with backend:
            first = await asyncio.gather(backend.complete(req("a")), return_exceptions=True)
            later = await asyncio.gather(*(backend.complete(req(f"b{i}")) for i in range(5)), return_exceptions=True)
            return first + later

    errors = asyncio.run(go())
    assert all(isinstance(e, FatalEndpointError) for e in errors)
    assert isinstance(backend.fatal, FatalEndpointError) and f"HTTP {status}" in str(backend.fatal)
    assert all(KEY not in str(e) for e in errors)
    assert server.total == 1  # nothing sent after the refusal
    assert backend.ledger["errors.transient"] == 6 and backend.ledger["errors.permanent"] == 0


def test_insufficient_quota_is_fatal_not_retried(server):
    server.default = {"status": 429, "body": json.dumps({"error": {
        "message": "You exceeded your current quota.", "type": "insufficient_quota", "code": "insufficient_quota"}})}
    backend = OpenAIBackend([server.url], backoff_s=0)
    (err,) = ask(backend, req("q"))
    assert isinstance(err, FatalEndpointError) and "quota" in str(err)
    assert server.total == 1


def test_a_request_waiting_to_retry_is_not_resent_after_a_refusal(server):
    server.script("a", {"status": 503, "headers": {"Retry-After": "1"}})
    server.script("b", {"status": 401})
    backend = OpenAIBackend([server.url], api_key=KEY)
    a, b = ask(backend, req("a"), req("b"))
    assert isinstance(a, FatalEndpointError) and isinstance(b, FatalEndpointError)
    assert server.counts == {"a": 1, "b": 1}


def test_round_robin_and_a_retry_goes_to_the_next_endpoint(server, server2):
    backend = OpenAIBackend([server.url, server2.url], backoff_s=0)
    replies = ask(backend, *(req(f"q{i}") for i in range(10)))
    assert [r.text for r in replies] == [f"echo: q{i}" for i in range(10)]
    assert server.total == 5 and server2.total == 5
    server.default = server2.default = {"status": 500}
    (err,) = ask(OpenAIBackend([server.url, server2.url], max_retries=1, backoff_s=0), req("retried"))
    assert isinstance(err, TransientError)
    assert server.counts["retried"] == 1 and server2.counts["retried"] == 1


def test_invalid_endpoint_or_unopened_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="http"):
        OpenAIBackend(["localhost:8000/v1"])
    with pytest.raises(ValueError, match="at least one endpoint"):
        OpenAIBackend([])
    with pytest.raises(RuntimeError, match="async with"):
        asyncio.run(OpenAIBackend(["http://127.0.0.1:1/v1"]).complete(req("q")))


def test_strict_compatible():
    assert strict_compatible(SCHEMA)
    assert strict_compatible({"type": "array", "items": SCHEMA})
    assert not strict_compatible({"type": "array", "items": {**SCHEMA, "required": ["question"]}})
    assert not strict_compatible({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]})


def test_through_map_stored_each_reply_stored_and_never_resent(server, tmp_path):
    """How a stage uses it: replies kept in the item store as they come; a rerun sends nothing again."""
    server.script("p3", {"status": 400})
    server.default = {}
    requests = [req(f"p{i}") for i in range(20)]

    async def run_once():
        with ItemStore(tmp_path / "store") as store:
            async with OpenAIBackend([server.url], backoff_s=0) as backend:
                async def call(r):
                    return (await backend.complete(r)).to_json()
                return await map_stored(requests, lambda r: r.key(), call, store, max_in_flight=8, what="request")

    first = asyncio.run(run_once())
    assert [Reply.from_json(o.value).text for o in first if o.value["error"] is None] == \
        [f"echo: p{i}" for i in range(20) if i != 3]
    assert first[3].value["error"].startswith("HTTP 400")
    assert server.total == 20
    second = asyncio.run(run_once())
    assert server.total == 20 and all(o.stored for o in second)
    assert [o.value for o in second] == [o.value for o in first]


def test_fake_server_as_a_separate_process():
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "fake_openai.py"), "--port", "0",
                             "--content", '{"ok": true}'], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.split()[-1]
        base = url.removesuffix("/v1")
        script = json.dumps({"key": "q", "actions": [{"status": 500}]}).encode()
        urllib.request.urlopen(urllib.request.Request(base + "/_script", data=script, method="POST"), timeout=10)
        (reply,) = ask(OpenAIBackend([url], backoff_s=0), req("q"))
        assert reply.text == '{"ok": true}'
        stats = json.loads(urllib.request.urlopen(base + "/_stats", timeout=10).read())
        assert stats == {"total": 2, "counts": {"q": 2}}
    finally:
        proc.kill()
        proc.wait(10)
