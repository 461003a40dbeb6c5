"""Issue 8's acceptance for the item store: a stage calling a slow HTTP server, SIGKILLed mid-shard,
re-sends at most what was in flight, gives the same bytes as an uninterrupted run, and rebuilds
with zero requests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import slow_http_stage  # noqa: E402,F401  (registers the 'askserver' stage)

from corpus.run.executor import ExecutorConfig  # noqa: E402
from corpus.run.item_store import ItemStore, store_dir  # noqa: E402
from corpus.run.recipe import Recipe, Step, rebuild, run_recipe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
N, IN_FLIGHT, DELAY = 40, 4, 0.1


class SlowServer:
    """An aiohttp server on a loopback port, in its own thread, answering each question after DELAY
    seconds and recording what it was asked (``asked``) and what it answered (``answered``)."""

    def __init__(self):
        self.asked: list[str] = []
        self.answered: list[str] = []
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(started,), daemon=True)
        self.thread.start()
        assert started.wait(10), "the test server did not start"

    async def _answer(self, request):
        body = await request.json()
        self.asked.append(body["input"])
        await asyncio.sleep(DELAY)
        self.answered.append(body["input"])
        return web.json_response({"model": body["model"], "answer": body["input"].upper(), "score": 1 / 3})

    def _serve(self, started):
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/ask", self._answer)
        self.runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/ask"
        started.set()
        self.loop.run_forever()

    def stop(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def server():
    s = SlowServer()
    yield s
    s.stop()


def recipe(url: str) -> Recipe:
    return Recipe(steps=[Step(stage="askserver", config={"n_items": N, "url": url, "max_in_flight": IN_FLIGHT})],
                  executor=ExecutorConfig(tasks=2, quiet=True))


RUN = """
import json, sys
sys.path.insert(0, sys.argv[3])
import slow_http_stage
from corpus.run.recipe import Recipe, run_recipe
run_recipe(Recipe.model_validate(json.loads(sys.argv[1])), sys.argv[2])
"""


def test_a_sigkilled_shard_resends_only_what_was_in_flight_and_rebuild_sends_nothing(server, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN, recipe(server.url).model_dump_json(), str(out), str(Path(__file__).parent)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 60
    while len(server.answered) < 10 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill()  # SIGKILL, mid-shard: a third of the questions or so are answered
    assert proc.wait(10) == -9
    first = list(server.asked)
    assert 10 <= len(first) < N, "the kill came too late to interrupt the shard"
    stored = len(ItemStore(store_dir(out, "askserver")))
    assert stored >= len(first) - IN_FLIGHT

    server.asked.clear()
    run_recipe(recipe(server.url), out)
    second = list(server.asked)
    resent = set(first) & set(second)
    assert len(resent) <= IN_FLIGHT  # at most the requests in flight at the kill
    assert len(second) == N - stored and len(set(second)) == len(second)
    assert set(first) | set(second) == {f"item{i:03d}" for i in range(N)}

    server.asked.clear()
    run_recipe(recipe(server.url), tmp_path / "fresh")
    assert len(server.asked) == N
    out_bytes = (out / "decisions/askserver.parquet").read_bytes()
    assert out_bytes == (tmp_path / "fresh" / "decisions/askserver.parquet").read_bytes()

    server.asked.clear()
    manifest, diffs = rebuild(out / "manifest.json", tmp_path / "rebuilt")
    assert server.asked == [] and diffs == []
    assert manifest.stats["00-askserver"]["decisions.kept"] == N
