"""Requests re-sent after a SIGKILL at 50% of a `sagecorpus qa generate` run (issue 10's `resent_after_kill`).

A scripted OpenAI-compatible server (tests/fake_openai.py) runs in this process on loopback, answering
each generate request after a short delay with well-formed pairs; `sagecorpus qa generate` runs in a
subprocess against it with N chunks (one request each), `--max-in-flight M`, 4 shards. When the
server has received N/2 requests the subprocess is SIGKILLed; the same command is run again to the
end. The server counts requests by their content, so a request seen twice was re-sent. A third,
uninterrupted run into a fresh folder gives the reference bytes.

Prints one JSON line per figure on stdout (see bench/README.md):
- `resent_after_kill`: requests sent both before the kill and by the rerun (target <= M: at most the
  requests in flight at the kill);
- `same_bytes_after_kill`: 1 when the resumed run's qa/pairs.parquet and decisions equal the
  uninterrupted run's (target 1).
"""

from __future__ import annotations

import argparse
from functools import partial
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fake_openai import FakeOpenAI  # noqa: E402
from qa_data import many_chunk_rows, reply, write_chunks  # noqa: E402

from _emit import emit as emit_figure  # noqa: E402

NAME = "qa_resume"
OUTPUTS = ("qa/pairs.parquet", "decisions/qa_generate.parquet")


emit = partial(emit_figure, NAME)


def command(out: Path, url: str, chunks: Path, in_flight: int) -> list[str]:
    return [sys.executable, "-m", "corpus.cli", "qa", "generate", "--out", str(out), "--endpoint", url,
            "--model", "bench-gen", "--chunks", str(chunks), "--max-in-flight", str(in_flight), "--tasks", "4", "--quiet"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=400, help="chunks, hence requests (default 400)")
    ap.add_argument("--max-in-flight", type=int, default=16)
    ap.add_argument("--delay", type=float, default=0.02, help="server seconds per reply")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAI(content=reply, delay=args.delay) as server:
        tmp = Path(tmp)
        chunks = write_chunks(tmp / "in", many_chunk_rows(-(-args.requests // 4), 4)[:args.requests])
        n = args.requests
        proc = subprocess.Popen(command(tmp / "run", server.url, chunks, args.max_in_flight), env=env)
        while server.total < n // 2 and proc.poll() is None:
            time.sleep(0.001)
        proc.kill()
        proc.wait()
        before = dict(server.counts)
        print(f"killed after {len(before)} of {n} requests were received", file=sys.stderr)
        t = time.monotonic()
        subprocess.run(command(tmp / "run", server.url, chunks, args.max_in_flight), env=env, check=True)
        print(f"rerun: {time.monotonic() - t:.1f} s, {server.total - sum(before.values())} requests", file=sys.stderr)
        resent = sum(1 for k, c in server.counts.items() if c > 1)
        assert len(server.counts) == n, f"{n - len(server.counts)} requests never sent"
        subprocess.run(command(tmp / "clean", server.url, chunks, args.max_in_flight), env=env, check=True)
        same = all((tmp / "run" / o).read_bytes() == (tmp / "clean" / o).read_bytes() for o in OUTPUTS)
    print(f"re-sent {resent} (max in flight {args.max_in_flight}); same bytes as uninterrupted: {same}", file=sys.stderr)
    emit("resent_after_kill", resent, "requests", target=args.max_in_flight, better="lower")
    emit("same_bytes_after_kill", int(same), "bool", target=1, better="higher")


if __name__ == "__main__":
    main()
