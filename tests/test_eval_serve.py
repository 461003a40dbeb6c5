"""``sagecorpus eval`` against a real OpenAI-compatible server: ``transformers serve`` on loopback, offline,
serving the tiny random model (see tests/test_transformers_serve.py for the server itself)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from test_eval import ONE_PROCESS, rows, subset  # noqa: E402
from test_transformers_serve import start_server, stop_server  # noqa: E402

from trainer.evaluate import evaluate as run_eval  # noqa: E402

pytestmark = pytest.mark.slow  # the server takes a few seconds to start


@pytest.fixture(scope="module")
def served_tiny(tiny_lm, tmp_path_factory):
    log = tmp_path_factory.mktemp("eval_serve") / "serve.log"
    proc, port = start_server(tiny_lm, log)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_server(proc)


def test_generate_through_transformers_serve_gives_the_local_models_replies(served_tiny, tiny_lm, fixtures, tmp_path):
    questions = subset(fixtures, tmp_path, 4)
    served = run_eval(str(tiny_lm), [questions], tmp_path / "served", mode="generate", max_tokens=8,
                      endpoints=[served_tiny], executor=ONE_PROCESS)
    local = run_eval(str(tiny_lm), [questions], tmp_path / "local", mode="generate", max_tokens=8, batch_size=1,
                     executor=ONE_PROCESS)
    got, want = rows(tmp_path / "served/eval/results.parquet"), rows(tmp_path / "local/eval/results.parquet")
    assert [r["raw"] for r in got] == [r["raw"] for r in want]  # same model, same chat template, greedy
    assert [r["predicted"] for r in got] == [r["predicted"] for r in want]
    assert served["overall"]["questions"] == local["overall"]["questions"] == 4


def test_logprob_through_transformers_serve_says_it_gives_no_logprobs(served_tiny, tiny_lm, fixtures, tmp_path):
    questions = subset(fixtures, tmp_path, 2)
    with pytest.raises(RuntimeError, match="gives no log-probabilities.*use --mode generate"):
        run_eval(str(tiny_lm), [questions], tmp_path / "run", mode="logprob", endpoints=[served_tiny],
                 executor=ONE_PROCESS)
