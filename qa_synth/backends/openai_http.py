"""The OpenAI-compatible HTTP backend: vLLM, SGLang, llama.cpp server, TGI, ``transformers serve``, OpenAI.

One :class:`OpenAIBackend` holds one aiohttp session (opened by ``async with``) whose connection pool
is sized for the stage's requests in flight, and POSTs each :class:`~qa_synth.backends.base.ChatRequest`
to ``{endpoint}/chat/completions``, the endpoints taken in turn (round-robin; a retry goes to the
next endpoint). aiohttp rather than the ``openai`` package: at tens of millions of calls the client's
own CPU matters (``bench/qa_client.py`` measures both).

What a reply becomes (the module :mod:`qa_synth.backends.base` states the contract):

- **2xx with the API's JSON** -> :class:`Reply` with the message content as ``text`` ('' when null;
  never parsed here: checking it against the schema is the caller's job, so a reply that is not
  valid JSON comes back as text), ``finish_reason``, ``usage`` token counts and ``extra``
  (``model``: the server's model id, ``system_fingerprint``, the choice's ``logprobs`` when the
  request asked for them) when given. A ``refusal`` from the model is a permanent error
  (``error="refusal: ..."``) with the content kept.
- **permanent** (400, 409, 413, 422 and any other 4xx not listed below) -> a :class:`Reply` with
  ``error="HTTP 400: <the server's message, shortened>"``: stored, never re-sent.
- **transient** (408, 425, 429, every 5xx, connection refused or reset, a timeout, a 2xx whose body is
  not the API's JSON) -> retried after an exponential backoff with full jitter (a uniform wait in
  ``[0, min(max_backoff_s, backoff_s * 2**retry)]``); a ``Retry-After`` header (seconds or an
  HTTP date; OpenAI's ``retry-after-ms`` too) replaces that wait by the server's, plus a jitter of up
  to a quarter of it so that the requests told to wait do not all come back at once, capped at
  ``max_backoff_s`` (a server asking for hours would otherwise park the run silently: the retry
  count, not the wait, is what bounds a request). After ``max_retries`` retries
  :class:`~qa_synth.backends.base.TransientError` names the last endpoint and the last problem.
- **fatal for the run** (401, 403: the credentials are refused; 404: the base URL or the model name
  is wrong; OpenAI's 429 ``insufficient_quota``: no credit left, which waiting does not fix) -> :class:`FatalEndpointError`, a :class:`TransientError` (nothing stored, a rerun
  sends the request again), and from then on every call of this backend raises it at once without
  sending anything. These answers are about the configuration, not the request: stored as
  permanent error rows they would turn a whole run into errors that a rerun with the right key or
  URL would replay instead of asking again. The stage checks :attr:`OpenAIBackend.fatal` to stop
  the shard with that message.

Structured output: when ``structured`` is on and the request has a schema, the body carries
``response_format: {"type": "json_schema", "json_schema": {"name": ..., "schema": ..., "strict": true}}``
(OpenAI's form, accepted as is by vLLM and SGLang). ``strict`` is sent only for a schema inside
OpenAI's strict subset (every object lists all its properties as ``required`` and sets
``additionalProperties: false``): OpenAI refuses a strict request whose schema is outside it with a
400, which would make every request a stored error, while a non-strict json_schema is still followed
(best effort by OpenAI; vLLM and SGLang constrain decoding to the schema either way).

The API key is sent as ``Authorization: Bearer`` only when given, and never appears in a message,
a log line or ``repr``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from typing import Any

import aiohttp
from yarl import URL

from corpus.run.secrets import REDACTED, redact_text
from qa_synth.backends.base import Backend, ChatRequest, Reply, TransientError

try:  # orjson is ~3x faster both ways; optional (the stdlib gives the same bytes' meaning)
    import orjson

    _dumps = orjson.dumps
    _loads = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None
    _encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

    def _dumps(obj: Any) -> bytes:
        return _encoder.encode(obj).encode()

    _loads = json.loads

TRANSIENT_STATUS = frozenset({408, 425, 429})
"""4xx answers that mean "not now" (plus every 5xx)."""
FATAL_STATUS = frozenset({401, 403, 404})
"""Answers about the run's configuration (key, URL, model name), not the request."""
MESSAGE_CHARS = 300
"""How much of a server's error message a reply or an exception keeps."""


class FatalEndpointError(TransientError):
    """The endpoint refuses every request of this run (401/403: the API key; 404: the URL or the model;
    429 ``insufficient_quota``: no credit left):
    nothing is stored, the run must stop and be rerun once the configuration is fixed."""


class OpenAIBackend(Backend):
    """An OpenAI-compatible chat completions client (see the module docstring for what each answer becomes).

    ``endpoints``: base URLs (``http://host:port/v1``), used in turn. ``api_key``: sent as a Bearer
    token when given. ``timeout_s``: the whole of one HTTP request (connect, send, wait, read).
    ``max_retries``: re-sends of a request after a transient failure before :class:`TransientError`.
    ``backoff_s`` / ``max_backoff_s``: the exponential backoff's first ceiling and its cap (also the
    cap on a server's ``Retry-After``). ``structured``: send the request's schema as
    ``response_format`` (off: the prompt alone describes it). ``max_connections``: the connection
    pool's size: at least the stage's requests in flight, since ``timeout_s`` also runs while a
    request waits for a free connection.

    ``ledger``: ``requests`` counts HTTP requests sent, retries included (so answered calls are
    ``requests - retries``); ``retries`` the re-sends; ``prompt_tokens`` / ``completion_tokens``
    from ``usage``; ``errors.permanent`` replies with an error; ``errors.transient`` calls that
    raised :class:`TransientError` (a fatal refusal included).
    """

    def __init__(self, endpoints: list[str], api_key: str | None = None, timeout_s: float = 120.0,
                 max_retries: int = 8, backoff_s: float = 1.0, max_backoff_s: float = 60.0,
                 structured: bool = True, max_connections: int = 256):
        super().__init__()
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        if not endpoints:
            raise ValueError("OpenAIBackend needs at least one endpoint (a base URL like http://host:8000/v1)")
        for e in endpoints:
            url = URL(str(e))
            if url.scheme not in ("http", "https") or not url.host:
                raise ValueError(f"endpoint {redact_text(str(e))!r} is not an http(s) base URL like http://host:8000/v1")
        if timeout_s <= 0 or max_retries < 0 or backoff_s < 0 or max_backoff_s < 0 or max_connections < 1:
            raise ValueError("OpenAIBackend: timeout_s and max_connections must be positive, "
                             "max_retries, backoff_s and max_backoff_s not negative")
        self.endpoints = [str(e).rstrip("/") for e in endpoints]
        self._urls = [e + "/chat/completions" for e in self.endpoints]
        self._names = [redact_text(e) for e in self.endpoints]  # for messages (user:password@ removed)
        self._api_key = api_key or None
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.structured = structured
        self.max_connections = int(max_connections)
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            self._headers["Authorization"] = f"Bearer {self._api_key}"
        self._formats: dict[tuple[str, str], Any] = {}  # (schema text, name) -> response_format value
        self._turn = 0  # round-robin position
        self._session: aiohttp.ClientSession | None = None
        self._sleep = asyncio.sleep  # tests record the waits through this
        self.fatal: FatalEndpointError | None = None

    def __repr__(self) -> str:
        return (f"OpenAIBackend(endpoints={self._names!r}, api_key={'<set>' if self._api_key else None}, "
                f"timeout_s={self.timeout_s}, max_retries={self.max_retries}, structured={self.structured})")

    async def __aenter__(self) -> OpenAIBackend:
        connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                                              skip_auto_headers=("User-Agent",))
        return self

    async def __aexit__(self, *exc) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------------------------- request

    def response_format(self, schema: str, name: str) -> Any:
        """The ``response_format`` value sent for a schema (canonical JSON text), built once per schema."""
        value = self._formats.get((schema, name))
        if value is None:
            parsed = json.loads(schema)
            spec: dict[str, Any] = {"name": name, "schema": parsed}
            if strict_compatible(parsed):
                spec["strict"] = True
            value = {"type": "json_schema", "json_schema": spec}
            if orjson is not None and hasattr(orjson, "Fragment"):  # orjson >= 3.9
                value = orjson.Fragment(orjson.dumps(value))  # serialised once, spliced into every body
            self._formats[(schema, name)] = value
        return value

    def body(self, request: ChatRequest) -> bytes:
        """The JSON body POSTed for ``request``."""
        body: dict[str, Any] = {"model": request.model,
                                "messages": [{"role": r, "content": c} for r, c in request.messages]}
        if request.params:
            body.update(request.params)
        if self.structured and request.schema is not None:
            body["response_format"] = self.response_format(request.schema, request.schema_name)
        return _dumps(body)

    def ensure_serves(self, model: str, who: str) -> None:
        """:meth:`check_model` from synchronous code (a step's ``begin``), opening and closing the client;
        an endpoint that cannot be reached stops ``who`` with an error saying nothing was sent."""

        async def check() -> None:
            async with self:
                await self.check_model(model)

        try:
            asyncio.run(check())
        except TransientError as e:
            raise RuntimeError(f"{who}: {e}; nothing was sent") from None

    async def check_model(self, model: str) -> None:
        """Before a run sends anything: ask each endpoint's ``/models`` whether it serves ``model``.

        Raises :class:`FatalEndpointError` when an endpoint lists its models and ``model`` is not among
        them, or refuses the key (401/403): a server pinned to another model (``transformers serve``)
        answers every request with a 400, which would otherwise be stored as an error row per request.
        An endpoint that cannot list its models (no such route, no answer) is not judged here.
        """
        if self._session is None:
            raise RuntimeError("OpenAIBackend is not open: use `async with OpenAIBackend(...) as backend:`")
        for endpoint, name in zip(self.endpoints, self._names):
            try:
                async with self._session.get(endpoint + "/models", headers=self._headers) as resp:
                    if resp.status in (401, 403):
                        raise FatalEndpointError(f"{name} refused the API key with HTTP {resp.status}: "
                                                 f"{self._server_message(await resp.read())}")
                    if resp.status != 200:
                        continue
                    body = _loads(await resp.read())
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                continue
            listed = body.get("data") if isinstance(body, dict) else None
            ids = [m["id"] for m in listed if isinstance(m, dict) and isinstance(m.get("id"), str)] if isinstance(listed, list) else []
            if ids and model not in ids:
                shown = ", ".join(repr(i) for i in ids[:10]) + (", ..." if len(ids) > 10 else "")
                raise FatalEndpointError(f"{name} does not serve model {model!r}: it lists {shown}")

    async def complete(self, request: ChatRequest) -> Reply:
        if self.fatal is not None:
            self.ledger["errors.transient"] += 1
            raise FatalEndpointError(str(self.fatal))
        session = self._session
        if session is None:
            raise RuntimeError("OpenAIBackend is not open: use `async with OpenAIBackend(...) as backend:`")
        data = self.body(request)
        ledger = self.ledger
        n = len(self._urls)
        turn = self._turn
        self._turn = turn + 1
        problem = ""
        where = 0
        for attempt in range(self.max_retries + 1):
            if attempt and self.fatal is not None:  # refused while this request waited to retry
                ledger["errors.transient"] += 1
                raise FatalEndpointError(str(self.fatal))
            where = (turn + attempt) % n
            ledger["requests"] += 1
            if attempt:
                ledger["retries"] += 1
            wait = None
            try:
                async with session.post(self._urls[where], data=data, headers=self._headers) as resp:
                    status = resp.status
                    raw = await resp.read()
                    if 200 <= status < 300:
                        reply = self._reply(raw)
                        if reply is not None:
                            return reply
                        problem = f"HTTP {status} with a body that is not a chat completion: {self._clip(raw)!r}"
                    elif status in FATAL_STATUS or (status == 429 and b"insufficient_quota" in raw):
                        hint = FATAL_HINT.get(status, "the account's quota or credit is spent")
                        self.fatal = FatalEndpointError(f"{self._names[where]} refused the request with HTTP {status}"
                                                        f" ({hint}): {self._server_message(raw)}")
                        ledger["errors.transient"] += 1
                        raise self.fatal
                    elif status in TRANSIENT_STATUS or status >= 500:
                        problem = f"HTTP {status}: {self._server_message(raw)}"
                        wait = retry_after(resp.headers)
                    else:
                        ledger["errors.permanent"] += 1
                        return Reply(error=f"HTTP {status}: {self._server_message(raw)}")
            except TimeoutError:  # aiohttp's timeouts are TimeoutErrors (some also ClientErrors)
                problem = f"timeout: no complete answer within timeout_s={self.timeout_s:g}"
            except aiohttp.ClientError as e:  # connection refused or reset, broken body
                problem = self._scrub(f"{type(e).__name__}: {e}")
            if attempt < self.max_retries:
                await self._sleep(self.delay(attempt, wait))
        ledger["errors.transient"] += 1
        raise TransientError(f"{self._names[where]}: no answer after {self.max_retries + 1} attempts; "
                             f"last: {problem}")

    def delay(self, retry: int, server_wait: float | None = None) -> float:
        """Seconds to wait before re-send number ``retry + 1``: the server's ``Retry-After`` (plus up to a
        quarter of it as jitter) when given, else a full-jitter exponential backoff; ``max_backoff_s`` caps both."""
        if server_wait is not None:
            return min(self.max_backoff_s, server_wait * (1.0 + 0.25 * random.random()))
        return random.uniform(0.0, min(self.max_backoff_s, self.backoff_s * 2.0 ** retry))

    # ------------------------------------------------------------------------------------- reply

    def _reply(self, raw: bytes) -> Reply | None:
        """The :class:`Reply` of a 2xx body, or None when it is not a chat completion."""
        try:
            data = _loads(raw)
            choice = data["choices"][0]
            message = choice["message"]
            content = message.get("content")
            finish = choice.get("finish_reason")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return None
        if content is None:
            content = ""
        elif not isinstance(content, str):
            return None
        usage = data.get("usage") or {}
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        ledger = self.ledger
        if prompt:
            ledger["prompt_tokens"] += prompt
        if completion:
            ledger["completion_tokens"] += completion
        extra = {}
        if (model := data.get("model")) is not None:
            extra["model"] = model
        if (fp := data.get("system_fingerprint")) is not None:
            extra["system_fingerprint"] = fp
        if (logprobs := choice.get("logprobs")) is not None:  # asked for with logprobs/top_logprobs
            extra["logprobs"] = logprobs
        error = None
        if refusal := message.get("refusal"):
            error = f"refusal: {' '.join(str(refusal).split())[:MESSAGE_CHARS]}"
            ledger["errors.permanent"] += 1
        return Reply(text=content, finish_reason=finish, prompt_tokens=prompt, completion_tokens=completion,
                     error=error, extra=extra)

    def _scrub(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, REDACTED)
        return redact_text(text)

    def _clip(self, raw: bytes) -> str:
        return self._scrub(" ".join(raw[:MESSAGE_CHARS * 2].decode("utf-8", "replace").split())[:MESSAGE_CHARS])

    def _server_message(self, raw: bytes) -> str:
        """The error message of an error body (OpenAI's ``{"error": {"message"}}``, vLLM's ``{"message"}``,
        FastAPI's ``{"detail"}``), else the start of the body, shortened and without secrets."""
        try:
            data = _loads(raw)
        except ValueError:
            return self._clip(raw) or "(empty body)"
        msg: Any = data
        if isinstance(data, dict):
            err = data.get("error")
            if isinstance(err, dict) and err.get("message"):
                msg = err["message"]
            elif isinstance(err, str) and err:
                msg = err
            elif data.get("message"):
                msg = data["message"]
            elif data.get("detail"):
                msg = data["detail"]
        if not isinstance(msg, str):
            msg = json.dumps(msg, ensure_ascii=False)
        return self._scrub(" ".join(msg.split())[:MESSAGE_CHARS])


FATAL_HINT = {401: "the API key is missing or wrong", 403: "the API key may not use this endpoint or model",
              404: "check the endpoint's base URL (it usually ends in /v1) and the model name"}


def retry_after(headers) -> float | None:
    """The wait a server asks for, in seconds: ``retry-after-ms`` (OpenAI), else ``Retry-After`` as
    seconds or an HTTP date; None when absent or unreadable."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def strict_compatible(schema: Any) -> bool:
    """Whether a JSON schema is inside OpenAI's strict subset as far as objects go: every object
    schema sets ``additionalProperties: false`` and lists all its properties as ``required``."""
    if not isinstance(schema, dict):
        return True
    props = schema.get("properties")
    kind = schema.get("type")
    if props is not None or kind == "object" or (isinstance(kind, list) and "object" in kind):
        props = props or {}
        if schema.get("additionalProperties") is not False or set(schema.get("required", ())) != set(props):
            return False
    children = list((props or {}).values())
    for k in ("items", "prefixItems", "anyOf", "allOf", "oneOf"):
        v = schema.get(k)
        children.extend(v if isinstance(v, list) else [v] if v is not None else [])
    for k in ("$defs", "definitions"):
        children.extend((schema.get(k) or {}).values())
    return all(strict_compatible(c) for c in children)
