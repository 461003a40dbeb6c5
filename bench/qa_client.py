"""Benchmark: the OpenAI-compatible client's requests/s and CPU per request against a zero-latency server.

A minimal OpenAI-compatible server (raw asyncio protocol, one canned chat completion, HTTP/1.1
keep-alive) runs in its own process pinned to core 1; the clients run in this process pinned to core 0,
256 requests in flight, one event loop, each request a realistic generate call (a system prompt,
a ~1,800-character chunk, a json_schema ``response_format``; a ~1,200-character JSON reply with
``usage``). Figures (one JSON line each at the end):

* ``requests_per_s`` — :class:`qa_synth.backends.openai_http.OpenAIBackend` ``complete`` (target >= 1,000
  on one core), anchored on ``openai.AsyncOpenAI`` ``chat.completions.create`` in the same run (its
  httpx pool raised to 256 keep-alive connections, so that it is not penalised by its default of 100;
  ``requests_per_s_openai_default_pool`` reports it with the default pool, as a user gets it);
* ``cpu_ms_per_request`` — the client process's CPU time (user + system) per request, same anchor;
* ``requests_per_s_map_stored`` — ours as a stage runs it: ``ChatRequest.key`` hashed, the call through
  :func:`corpus.run.concurrency.map_stored`, each reply put in a real
  :class:`~corpus.run.item_store.ItemStore` (fresh, in a temporary folder);
* ``requests_per_s_stdlib_json`` — ours with the standard library's ``json`` instead of ``orjson``
  (information: orjson is used when installed);
* ``requests_per_s_aiohttp_plain`` — plain aiohttp (pre-serialised body, ``read`` + ``json.loads``): the
  reference ceiling of an aiohttp client doing nothing else;
* ``server_ceiling_requests_per_s`` — the server's own ceiling, driven by a raw asyncio client
  (pre-built request bytes over 256 connections), so the figures above are the clients', not the server's.

Configurations alternate in rounds (``--rounds``, best round kept) so that load from other processes
falls on all of them. Usage: ``python bench/qa_client.py [--requests N] [--anchor-requests N] [--rounds R]
[--quick]``. Linux only (``os.sched_setaffinity``); on a machine with one core both sides share it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from functools import partial
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _emit import emit as emit_figure  # noqa: E402

NAME = "qa_client"
IN_FLIGHT = 256
MODEL = "bench-model"
SYSTEM = ("You write question-answer pairs about an astronomy paper. Each pair stands alone: name the "
          "paper as 'Surname et al. (Year)', never 'the paper'. Answer in JSON following the schema.")
CHUNK = ("We present deep spectroscopic observations of the nearby dwarf galaxy with the integral field "
         "unit, measuring the stellar velocity dispersion profile out to three effective radii. ") * 11
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["pairs"],
          "properties": {"pairs": {"type": "array", "items": {
              "type": "object", "additionalProperties": False, "required": ["question", "answer", "type"],
              "properties": {"question": {"type": "string"}, "answer": {"type": "string"},
                             "type": {"type": "string", "enum": ["factual", "conceptual", "quantitative", "methods"]}}}}}}
REPLY_CONTENT = json.dumps({"pairs": [
    {"question": "What velocity dispersion profile did Smith et al. (2021) measure for the dwarf galaxy?",
     "answer": "A flat profile of about 11 km/s out to three effective radii, from integral field spectroscopy, "
               "which they model with a cored dark matter halo rather than a cusp.", "type": "quantitative"},
] * 3})


emit = partial(emit_figure, NAME, digits=3)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- server


def response_bytes() -> bytes:
    body = json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY_CONTENT, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 512, "completion_tokens": 300, "total_tokens": 812},
    }).encode()
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body


class CannedHTTP(asyncio.Protocol):
    """Answers every complete HTTP/1.1 request on the connection with the same canned response."""

    RESPONSE = response_bytes()

    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""

    def data_received(self, data):
        buf = self.buf + data if self.buf else data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15:head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None]) if at >= 0 else 0
            if len(buf) < end + 4 + length:
                break
            buf = buf[end + 4 + length:]
            self.transport.write(self.RESPONSE)
        self.buf = buf


def serve(port_file: str) -> None:
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {1})

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(CannedHTTP, "127.0.0.1", 0, backlog=1024)
        Path(port_file).write_text(str(server.sockets[0].getsockname()[1]))
        await asyncio.Event().wait()

    asyncio.run(main())


def start_server() -> tuple[subprocess.Popen, str]:
    port_file = Path(tempfile.mkdtemp(prefix="bench-qa-")) / "port"
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)])
    for _ in range(200):
        if port_file.exists() and port_file.read_text():
            return proc, f"http://127.0.0.1:{port_file.read_text()}/v1"
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the bench server did not start")


# ------------------------------------------------------------------------------------------- clients


def messages(i: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Chunk {i}:\n{CHUNK}"}]


PARAMS = {"temperature": 0.7, "max_tokens": 1024, "seed": 0}


async def pool(n: int, call) -> None:
    """``call(i)`` for i in range(n), IN_FLIGHT at once (the shape of map_stored's workers)."""
    jobs = iter(range(n))

    async def worker():
        for i in jobs:
            await call(i)

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


async def run_ours(url: str, n: int) -> None:
    from qa_synth.backends.base import ChatRequest
    from qa_synth.backends.openai_http import OpenAIBackend

    schema = json.dumps(SCHEMA, sort_keys=True)
    params = tuple(sorted(PARAMS.items()))
    requests = [ChatRequest(model=MODEL, messages=tuple((m["role"], m["content"]) for m in messages(i)),
                            params=params, schema=schema, schema_name="qa_pairs") for i in range(n)]
    async with OpenAIBackend([url], max_connections=IN_FLIGHT) as backend:
        async def call(i):
            reply = await backend.complete(requests[i])
            assert reply.error is None and reply.text
        await pool(n, call)


async def run_map_stored(url: str, n: int) -> None:
    from corpus.run.concurrency import map_stored
    from corpus.run.item_store import ItemStore
    from qa_synth.backends.base import ChatRequest
    from qa_synth.backends.openai_http import OpenAIBackend

    schema = json.dumps(SCHEMA, sort_keys=True)
    params = tuple(sorted(PARAMS.items()))
    requests = [ChatRequest(model=MODEL, messages=tuple((m["role"], m["content"]) for m in messages(i)),
                            params=params, schema=schema, schema_name="qa_pairs", template="generate@1")
                for i in range(n)]
    with tempfile.TemporaryDirectory(prefix="bench-qa-store-") as tmp, ItemStore(tmp) as store:
        async with OpenAIBackend([url], max_connections=IN_FLIGHT) as backend:
            async def call(r):
                return (await backend.complete(r)).to_json()
            outcomes = await map_stored(requests, lambda r: r.key(), call, store, IN_FLIGHT, what="request")
    assert all(o.error is None for o in outcomes)


async def run_openai(url: str, n: int, default_pool: bool = False) -> None:
    import openai

    http = None
    if not default_pool:
        import httpx2

        http = openai.DefaultAsyncHttpxClient(limits=httpx2.Limits(max_connections=IN_FLIGHT,
                                                                    max_keepalive_connections=IN_FLIGHT))
    client = openai.AsyncOpenAI(base_url=url, api_key="bench", http_client=http, max_retries=0)
    response_format = {"type": "json_schema", "json_schema": {"name": "qa_pairs", "schema": SCHEMA, "strict": True}}

    async def call(i):
        r = await client.chat.completions.create(model=MODEL, messages=messages(i), response_format=response_format,
                                                 **PARAMS)
        assert r.choices[0].message.content
    try:
        await pool(n, call)
    finally:
        await client.close()


async def run_aiohttp(url: str, n: int) -> None:
    import aiohttp

    response_format = {"type": "json_schema", "json_schema": {"name": "qa_pairs", "schema": SCHEMA, "strict": True}}
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=IN_FLIGHT)) as session:
        async def call(i):
            body = json.dumps({"model": MODEL, "messages": messages(i), "response_format": response_format,
                               **PARAMS}).encode()
            async with session.post(url + "/chat/completions", data=body, headers=headers) as resp:
                assert json.loads(await resp.read())["choices"][0]["message"]["content"]
        await pool(n, call)


async def run_raw(url: str, n: int) -> None:
    """The server's ceiling: pre-built request bytes on IN_FLIGHT connections, responses counted by length."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    body = json.dumps({"model": MODEL, "messages": messages(0)}).encode()
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body)) + body
    size = len(CannedHTTP.RESPONSE)
    per = n // IN_FLIGHT + 1

    async def conn():
        reader, writer = await asyncio.open_connection(host, int(port))
        for _ in range(per):
            writer.write(request)
            await reader.readexactly(size)
        writer.close()

    await asyncio.gather(*(conn() for _ in range(IN_FLIGHT)))
    return per * IN_FLIGHT


def with_stdlib_json(fn):
    """``fn`` run with OpenAIBackend's JSON functions switched to the standard library."""
    async def run(url, n):
        import qa_synth.backends.openai_http as m

        saved = m._dumps, m._loads, m.orjson
        enc = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
        m._dumps, m._loads, m.orjson = (lambda o: enc.encode(o).encode()), json.loads, None
        try:
            await fn(url, n)
        finally:
            m._dumps, m._loads, m.orjson = saved
    return run


def measure(fn, url: str, n: int) -> tuple[float, float]:
    """(requests/s, CPU ms per request) of ``fn(url, n)`` on a fresh event loop."""
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    done = asyncio.run(fn(url, n))
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    n = done or n
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return n / wall, 1000.0 * cpu / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=6000, help="requests per round for our client and aiohttp")
    ap.add_argument("--anchor-requests", type=int, default=1500, help="requests per round for AsyncOpenAI")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1,500 / 500 requests, 2 rounds")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args.serve)
    if args.quick:
        args.requests, args.anchor_requests, args.rounds = 1500, 500, 2
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    else:
        log("one core (or no sched_setaffinity): client and server share it; figures are lower bounds")
    log(f"load average before: {os.getloadavg()}")
    try:
        import openai  # noqa: F401
        have_openai = True
    except ImportError:
        log("openai is not installed: the AsyncOpenAI anchor is null (pip install openai)")
        have_openai = False
    try:
        import orjson  # noqa: F401
        log("orjson is installed: OpenAIBackend uses it")
    except ImportError:
        log("orjson is not installed: OpenAIBackend uses the standard library's json")

    proc, url = start_server()
    try:
        configs = {"server": (run_raw, args.requests * 2), "ours": (run_ours, args.requests),
                   "map_stored": (run_map_stored, args.requests), "ours_stdlib_json": (with_stdlib_json(run_ours), args.requests),
                   "aiohttp": (run_aiohttp, args.requests)}
        if have_openai:
            configs["openai"] = (run_openai, args.anchor_requests)
            configs["openai_default"] = (lambda u, n: run_openai(u, n, default_pool=True), args.anchor_requests)
        for name, (fn, n) in configs.items():  # warm-up: imports, first connections
            measure(fn, url, min(n, 512))
        best: dict[str, tuple[float, float]] = {}
        for r in range(args.rounds):
            for name, (fn, n) in configs.items():
                rps, cpu = measure(fn, url, n)
                log(f"round {r + 1} {name:17s} {rps:9.0f} requests/s  {cpu:6.3f} ms CPU/request")
                if name not in best or rps > best[name][0]:
                    best[name] = (rps, cpu)
    finally:
        proc.kill()
        proc.wait(10)
    log(f"load average after: {os.getloadavg()}")

    anchor = "openai.AsyncOpenAI chat.completions.create, 256 in flight (same run)"
    o_rps, o_cpu = best.get("openai", (None, None))
    rps, cpu = best["ours"]
    emit("requests_per_s", round(rps, 1), "requests/s", anchor, o_rps and round(o_rps, 1), target=1000)
    emit("cpu_ms_per_request", round(cpu, 4), "ms", anchor, o_cpu and round(o_cpu, 4), better="lower")
    emit("requests_per_s_map_stored", round(best["map_stored"][0], 1), "requests/s", anchor,
         o_rps and round(o_rps, 1), target=1000)
    emit("cpu_ms_per_request_map_stored", round(best["map_stored"][1], 4), "ms", anchor, o_cpu and round(o_cpu, 4),
         better="lower")
    emit("requests_per_s_stdlib_json", round(best["ours_stdlib_json"][0], 1), "requests/s",
         "OpenAIBackend with orjson (same run)", round(rps, 1))
    emit("requests_per_s_aiohttp_plain", round(best["aiohttp"][0], 1), "requests/s", anchor, o_rps and round(o_rps, 1))
    if have_openai:
        emit("requests_per_s_openai_default_pool", round(best["openai_default"][0], 1), "requests/s",
             "OpenAIBackend (same run)", round(rps, 1))
    emit("server_ceiling_requests_per_s", round(best["server"][0], 1), "requests/s",
         "OpenAIBackend (same run)", round(rps, 1))


if __name__ == "__main__":
    main()
