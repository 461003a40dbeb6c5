"""A scripted OpenAI-compatible server on loopback, for client and stage tests.

``POST /v1/chat/completions`` answers like the API (``choices[0].message.content``, ``finish_reason``,
``usage``, ``model``, ``system_fingerprint``). By default the content is deterministic from the
prompt (``content``: a fixed text, a function of the request body, or ``"echo: <last message>"``).
Each request is counted under its *key*, the content of its last message (``counts``), and kept
(``requests``: body and headers), so a test can assert what was sent and what was re-sent.

What a request gets can be scripted, per key (or ``"*"`` for any request), as a queue of *actions*
(JSON-able dicts, used once each in order; an unscripted request gets the default action, ``{}``):

- ``{}``: a normal reply; ``{"content": "..."}``: a normal reply with that message content
  (``{"content": "{not json"}`` for a reply the caller cannot parse); ``{"refusal": "..."}`` too;
  ``{"logprobs": {...}}`` puts that value as the choice's ``logprobs`` (a server that offers them);
- ``{"status": 429, "headers": {"Retry-After": "0.2"}}``: that status with an OpenAI-style error body
  (``"message"`` sets its text); ``{"status": 200, "body": "<html>"}``: that raw body;
- ``{"delay": 2.0, ...}``: wait first (longer than the client's timeout: a timeout);
- ``{"drop": true}``: close the connection without answering.

In a test: ``with FakeOpenAI() as server: server.script("q1", {"status": 500}); ... server.url``.
From another process (e.g. a SIGKILL-resume test): ``python tests/fake_openai.py --port 0
[--content TEXT] [--delay S]`` prints ``listening on http://127.0.0.1:PORT/v1`` and serves until
killed; ``POST /_script`` with ``{"key": ..., "actions": [...]}`` (or ``{"default": {...}}``) scripts
it and ``GET /_stats`` gives ``{"total": n, "counts": {key: n}}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

Content = str | Callable[[dict], str] | None


class FakeOpenAI:
    """The scripted server, run in its own thread (``start``/``stop`` or ``with``); ``url`` is its base URL."""

    def __init__(self, content: Content = None, delay: float = 0.0, host: str = "127.0.0.1", port: int = 0,
                 models: list[str] | None = None):
        self.content = content
        self.models = models  # ids listed at GET /v1/models (None: no such route, a 404 like some servers)
        self.delay = delay
        self.host, self.port = host, port
        self.default: dict[str, Any] = {}
        self.scripts: dict[str, deque] = defaultdict(deque)
        self.counts: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []  # {"body": ..., "headers": {...}, "at": loop time}
        self.url = ""
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------- scripting

    def script(self, key: str, *actions: dict[str, Any]) -> None:
        """Queue ``actions`` for the next requests whose last message is ``key`` (``"*"``: any request)."""
        with self._lock:
            self.scripts[key].extend(actions)

    def sent(self, key: str | None = None) -> list[dict[str, Any]]:
        """The request bodies received (for ``key`` only when given), in arrival order."""
        with self._lock:
            return [r["body"] for r in self.requests if key is None or r["key"] == key]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def _next_action(self, key: str) -> dict[str, Any]:
        with self._lock:
            for k in (key, "*"):
                if self.scripts.get(k):
                    return self.scripts[k].popleft()
            return self.default

    # ------------------------------------------------------------------------------- serving

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/_script", self._script)
        app.router.add_get("/_stats", self._stats)
        app.router.add_get("/v1/models", self._models)
        return app

    async def _models(self, request: web.Request) -> web.StreamResponse:
        if self.models is None:
            return web.json_response({"error": {"message": "not found"}}, status=404)
        return web.json_response({"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]})

    def reply_content(self, body: dict) -> str:
        if callable(self.content):
            return self.content(body)
        if self.content is not None:
            return self.content
        return f"echo: {last_message(body)}"

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return web.json_response({"error": {"message": "body is not JSON", "type": "invalid_request_error"}},
                                     status=400)
        key = last_message(body)
        with self._lock:
            self.counts[key] += 1
            self.requests.append({"key": key, "body": body, "headers": dict(request.headers),
                                  "at": asyncio.get_running_loop().time()})
        action = self._next_action(key)
        delay = action.get("delay", self.delay)
        if delay:
            await asyncio.sleep(delay)
        if action.get("drop"):
            request.transport.close()
            return web.Response(status=500)  # never reaches the client: the connection is gone
        status = action.get("status", 200)
        headers = action.get("headers") or {}
        if "body" in action:
            return web.Response(status=status, text=action["body"], headers=headers, content_type="application/json")
        if status != 200:
            message = action.get("message", f"scripted HTTP {status}")
            return web.json_response({"error": {"message": message, "type": "scripted", "code": status}},
                                     status=status, headers=headers)
        content = action.get("content", None)
        if content is None:
            content = self.reply_content(body)
        words = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        message = {"role": "assistant", "content": content}
        if action.get("refusal"):
            message["refusal"] = action["refusal"]
        return web.json_response({
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": 0,
            "model": body.get("model"), "system_fingerprint": "fake-openai",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop",
                         **({"logprobs": action["logprobs"]} if "logprobs" in action else {})}],
            "usage": {"prompt_tokens": words, "completion_tokens": len(str(content).split()),
                      "total_tokens": words + len(str(content).split())},
        }, headers=headers)

    async def _script(self, request: web.Request) -> web.Response:
        spec = await request.json()
        if "default" in spec:
            self.default = spec["default"]
        if "key" in spec:
            self.script(spec["key"], *spec.get("actions", []))
        return web.json_response({"ok": True})

    async def _stats(self, request: web.Request) -> web.Response:
        with self._lock:
            return web.json_response({"total": self.total, "counts": dict(self.counts)})

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        failed: list[BaseException] = []

        def serve():
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._start())
            except BaseException as e:  # reported to start()'s caller
                failed.append(e)
                started.set()
                return
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True, name="fake-openai")
        self._thread.start()
        if not started.wait(10) or failed:
            raise RuntimeError(f"the fake OpenAI server did not start: {failed[0] if failed else 'timeout'}")
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def last_message(body: dict) -> str:
    messages = body.get("messages") or [{}]
    return str(messages[-1].get("content", ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    ap.add_argument("--content", default=None, help="the message content of every normal reply (default: echo)")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds before each reply")
    args = ap.parse_args()
    server = FakeOpenAI(content=args.content, delay=args.delay, host=args.host, port=args.port)

    async def serve():
        await server._start()
        print(f"listening on {server.url}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
