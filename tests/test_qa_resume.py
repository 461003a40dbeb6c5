"""Issue 10's "done means" for generate and grade: a SIGKILL at a random point then a rerun gives the
bytes of an uninterrupted run and re-sends at most what was in flight; 429, 500, timeouts and bodies
that are not the API's JSON are retried; requests that stay unanswered fail the step and a rerun
sends only them; --max-requests stops cleanly and reruns complete to the same bytes; rebuild makes
zero requests; the API key reaches the server and no file of the run."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import FakeOpenAI  # noqa: E402
from qa_data import generate, grade, many_chunk_rows, recipe, reply, user_turn, write_chunks  # noqa: E402

from corpus.run.recipe import rebuild, run_recipe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ROWS = many_chunk_rows(10, 4)
N, IN_FLIGHT = len(ROWS), 4
OUTPUTS = ("qa/pairs.parquet", "decisions/qa_generate.parquet")
KEY = "sk-test-" + "k3y" * 8


@pytest.fixture
def chunks(tmp_path) -> Path:
    return write_chunks(tmp_path / "in", ROWS)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict[str, bytes]:
    """The outputs of an uninterrupted generate run (its own server)."""
    tmp = tmp_path_factory.mktemp("clean")
    path = write_chunks(tmp / "in", ROWS)
    with FakeOpenAI(content=reply) as server:
        run_recipe(recipe(generate(server.url, path)), tmp / "run")
    return {o: (tmp / "run" / o).read_bytes() for o in OUTPUTS}


def outputs(out: Path) -> dict[str, bytes]:
    return {o: (out / o).read_bytes() for o in OUTPUTS}


def cli(out: Path, url: str, chunks: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "corpus.cli", "qa", "generate", "--out", str(out), "--endpoint", url, "--model", "gen-a",
            "--chunks", str(chunks), "--max-in-flight", str(IN_FLIGHT), "--backoff-s", "0.01", "--tasks", "2", "--quiet", *extra]


def test_sigkill_then_rerun_gives_the_uninterrupted_bytes_and_resends_only_what_was_in_flight(chunks, clean, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": KEY}
    kill_at = random.Random().randint(N // 5, 4 * N // 5)
    with FakeOpenAI(content=reply, delay=0.05) as server:
        proc = subprocess.Popen(cli(out, server.url, chunks), env=env)
        deadline = time.monotonic() + 60
        while server.total < kill_at and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.kill()
        assert proc.wait(10) == -9, f"killed at {kill_at} requests"
        first = dict(server.counts)
        assert kill_at <= len(first) < N

        subprocess.run(cli(out, server.url, chunks), env=env, check=True, timeout=120)
        resent = [k for k, n in server.counts.items() if n > 1]
        assert len(resent) <= IN_FLIGHT, f"killed at {kill_at}: {len(resent)} re-sent"
        assert len(server.counts) == N and max(server.counts.values()) <= 2  # every chunk asked, none more than twice
        assert {r["headers"].get("Authorization") for r in server.requests} == {f"Bearer {KEY}"}
    assert outputs(out) == clean  # no pair lost, none duplicated, same bytes
    for path in out.rglob("*"):  # the key is in no file of the run: manifest, logs, stores
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_429_500_timeouts_and_non_api_bodies_are_retried(chunks, clean, tmp_path):
    faults = [{"status": 429, "headers": {"Retry-After": "0.01"}}, {"status": 500}, {"delay": 2.0},
              {"status": 200, "body": "<html>gateway</html>"}, {"drop": True}]
    with FakeOpenAI(content=reply) as server:
        for row, fault in zip(ROWS, faults):
            server.script(user_turn(row), fault)
        manifest = run_recipe(recipe(generate(server.url, chunks, timeout_s=0.5)), tmp_path / "run")
        assert [server.counts[user_turn(r)] for r in ROWS[:len(faults)]] == [2] * len(faults)
        assert server.total == N + len(faults)
    assert outputs(tmp_path / "run") == clean
    assert manifest.stats["00-qa_generate"]["requests.sent"] == N


def test_requests_that_stay_unanswered_fail_the_step_and_a_rerun_sends_only_them(chunks, clean, tmp_path):
    out = tmp_path / "run"
    sick = user_turn(ROWS[5])
    with FakeOpenAI(content=reply) as server:
        server.script(sick, {"status": 503}, {"status": 503})
        with pytest.raises(RuntimeError, match=r"1 request\(s\) to gen-a .* failed after their retries.*rerun resends only those"):
            run_recipe(recipe(generate(server.url, chunks, max_retries=1)), out)
        assert not (out / "qa/pairs.parquet").exists()  # the step is not done
        assert server.counts[sick] == 2  # sent and retried once
        run_recipe(recipe(generate(server.url, chunks, max_retries=1)), out)
        assert server.counts[sick] == 3  # the only request sent again
        assert len(server.counts) == N and server.total == N + 2
    assert outputs(out) == clean


def test_max_requests_stops_cleanly_and_reruns_complete_to_the_same_bytes(chunks, clean, tmp_path):
    out = tmp_path / "run"
    with FakeOpenAI(content=reply) as server:
        runs = 0
        while True:
            before = server.total
            runs += 1
            try:
                run_recipe(recipe(generate(server.url, chunks, max_requests=7)), out)
                break
            except RuntimeError as e:
                assert "budget reached" in str(e) and "rerun to continue" in str(e)
                assert not (out / "qa/pairs.parquet").exists()
            assert server.total - before == 7
        assert runs == -(-N // 7)
        assert server.total == N and max(server.counts.values()) == 1
    assert outputs(out) == clean


def test_rebuild_of_generate_and_grade_makes_no_request_and_gives_the_same_bytes(chunks, tmp_path):
    out = tmp_path / "run"
    with FakeOpenAI(content=reply) as server:
        original = run_recipe(recipe(generate(server.url, chunks), grade(server.url, chunks)), out)
        url = server.url
    # the server is gone: any request would fail
    manifest, diffs = rebuild(out / "manifest.json", tmp_path / "rebuilt")
    assert diffs == []
    assert {e.path: e.sha256 for e in manifest.outputs} == {e.path: e.sha256 for e in original.outputs}
    assert manifest.stats["01-qa_grade"]["requests.stored"] == manifest.stats["01-qa_grade"]["grades.ok"] > 0
    assert "requests.sent" not in manifest.stats["00-qa_generate"]
    assert url in manifest.models[0]["endpoints"]


def test_max_cost_stops_at_the_estimated_budget(chunks, clean, tmp_path):
    out = tmp_path / "run"
    # before any reply is stored a request is estimated at max_tokens completion tokens: 1024 x $1000/M = $1.02
    priced = {"price_output_per_m": 1000.0, "max_cost": 3.0}
    with FakeOpenAI(content=reply) as server:
        with pytest.raises(RuntimeError, match="budget reached"):
            run_recipe(recipe(generate(server.url, chunks, **priced)), out)
        assert server.total == 2
        # now estimated from the stored replies (~100 completion tokens, $0.10 each): ~29 per invocation
        with pytest.raises(RuntimeError, match="budget reached"):
            run_recipe(recipe(generate(server.url, chunks, **priced)), out)
        assert 2 + 20 < server.total < N
        run_recipe(recipe(generate(server.url, chunks, **priced)), out)
        assert server.total == N and len(server.counts) == N
    assert outputs(out) == clean
    with pytest.raises(ValueError, match="max_cost needs prices"):
        run_recipe(recipe(generate("http://127.0.0.1:9/v1", chunks, max_cost=1.0)), tmp_path / "other")
