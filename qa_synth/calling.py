"""What Generate and Grade share: the model's config, the budget and cost estimate, and a shard's calls.

A model-calling stage (:class:`CallingStage`) turns its items into :class:`ChatRequest` objects, keys
each by :meth:`ChatRequest.key` (model, weights fingerprint, template version, messages, sampling
parameters, schema) and sends the ones its item store lacks through
:func:`corpus.run.concurrency.map_stored`, a bounded number in flight; each reply is stored the moment
it arrives. So after Ctrl+C or SIGKILL a rerun sends only what was in flight, and ``rebuild``
replays the store with no call (the store is opened replay-only: a missing reply is a
:class:`~corpus.run.item_store.ReplayMiss` naming it).

Failures, kept apart (see :mod:`qa_synth.backends.base`):

- a permanent one (the server refused the request) comes back as a reply with ``error``: it is
  stored and becomes an error row;
- a transient one (:class:`TransientError`, after the client's retries) is counted; once every other
  reply of the shard is stored the shard fails, saying how many and that a rerun resends just those;
- a refusal of the whole run (the HTTP client's ``fatal``: 401/403/404, no credit) or any other
  exception (a client bug) is fatal: nothing more is sent and the shard fails with the message.

Budget: :meth:`CallingStage.begin` runs in the driving process before any shard, each invocation:
it prints the number of requests, how many are stored, the estimated tokens and cost (configured
prices, or GPU-hours from a measured tokens/s), and writes this invocation's budget (``max_requests``,
``max_cost``) as a cutoff in plan order into the step's work folder. Shards send no request at or
beyond the cutoff and then fail with "budget reached ... rerun to continue", so nothing partial is
marked done; a rerun with the same limit sends the next batch.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from corpus.files import write_json_atomic
from corpus.run.concurrency import Outcome, map_stored
from corpus.run.item_store import ItemStore
from corpus.run.progress import note, progress
from corpus.run.secrets import redact_text
from corpus.run.stage import Stage, StageConfig, how_field, name_or_path_field, per_process
from qa_synth.backends.base import Backend, ChatRequest, Reply, TransientError
from qa_synth.prompts import Template, get_template

BUDGET_FILE = "budget.json"
WINDOW_PER_IN_FLIGHT = 16
"""A shard sends its requests in windows of this many times ``max_in_flight`` (at least 256): memory
stays bounded, and rows are written window by window."""
SAMPLE_FOR_ESTIMATE = 200
"""Stored replies whose token counts calibrate the estimate for the requests still to send."""
CHARS_PER_TOKEN = 4.0
"""Prompt characters per token assumed before any reply has given a measured count."""


class CallConfig(StageConfig):
    """The model a stage calls and how: the fields Generate and Grade share."""

    backend: Literal["openai", "transformers"] = Field(
        "openai", description="'openai': an OpenAI-compatible HTTP server (vLLM, SGLang, llama.cpp, TGI, "
        "transformers serve, OpenAI); 'transformers': a local model folder run in process")
    model: str = name_or_path_field(description="the model: its name on the server (openai), or the folder of a local "
                                    "model (transformers; a relative folder is taken from the recipe's or the current folder)")
    template: str = Field(description="the prompt template and version, e.g. 'generate@1'")
    structured: bool = Field(True, description="ask the server for JSON by response_format json_schema; off: the "
                             "prompt states the JSON shape (for servers without structured output)")
    temperature: float = Field(0.0, ge=0, description="sampling temperature")
    top_p: float | None = Field(None, gt=0, le=1, description="nucleus sampling (None: the server's default)")
    max_tokens: int = Field(1024, ge=1, description="most tokens of one reply")
    seed: int | None = Field(None, description="sampling seed sent with each request (servers that honour it)")
    endpoints: list[str] = how_field([], description="OpenAI-compatible base URLs (http://host:port/v1), used "
                                     "round-robin; repeat --endpoint for several", json_schema_extra={"flag": "endpoint"})
    key_env: str = how_field("OPENAI_API_KEY", description="environment variable holding the API key (never "
                             "given on the command line or in a config); unset or empty: no key is sent")
    max_in_flight: int = how_field(64, ge=1, description="requests in flight at once, per shard")
    timeout_s: float = how_field(120.0, gt=0, description="seconds before one attempt of a request is abandoned")
    max_retries: int = how_field(8, ge=0, description="retries of a request on 429, 5xx, timeouts and connection errors")
    backoff_s: float = how_field(1.0, gt=0, description="first retry delay in seconds (doubles each retry, with "
                                 "jitter; a server's Retry-After is honoured)")
    device: str = how_field("cpu", description="transformers: torch device, e.g. 'cuda:0'")
    dtype: str = how_field("auto", description="transformers: torch dtype ('auto', 'bfloat16', 'float32')")
    batch_size: int = how_field(8, ge=1, description="transformers: prompts generated together")
    max_requests: int | None = how_field(None, ge=0, description="send at most this many requests in this "
                                         "invocation, then stop (rerun to continue); 0 only prints the estimate")
    max_cost: float | None = how_field(None, ge=0, description="stop this invocation before its estimated cost "
                                       "passes this (USD; needs prices or tokens_per_s and gpu_hour_price)")
    price_input_per_m: float | None = how_field(None, ge=0, description="USD per million prompt tokens (cost estimate)")
    price_output_per_m: float | None = how_field(None, ge=0, description="USD per million completion tokens (cost estimate)")
    tokens_per_s: float | None = how_field(None, gt=0, description="measured completion tokens per second of the "
                                           "deployment (GPU-hours estimate)")
    gpu_hour_price: float | None = how_field(None, ge=0, description="USD per GPU-hour (cost from GPU-hours)")


def _api_key(config: CallConfig) -> str | None:
    return os.environ.get(config.key_env) or None if config.key_env else None


def make_backend(config: CallConfig) -> Backend:
    """The configured backend; a local model is loaded once per worker process."""
    if config.backend == "openai":
        from qa_synth.backends.openai_http import OpenAIBackend

        return OpenAIBackend(config.endpoints, api_key=_api_key(config), timeout_s=config.timeout_s,
                             max_retries=config.max_retries, backoff_s=config.backoff_s, structured=config.structured,
                             max_connections=config.max_in_flight)
    from qa_synth.backends.local import TransformersBackend

    key = f"qa_synth.transformers:{config.model}:{config.device}:{config.dtype}:{config.batch_size}:{_files_stat(config.model)}"
    return per_process(key, lambda: TransformersBackend(config.model, device=config.device, dtype=config.dtype,
                                                        batch_size=config.batch_size))


def _files_stat(folder: str) -> str:
    """Name, size and modification time of each file of a model folder: a process keeps its loaded model
    (and the weights' hash) only while these stay the same, so new weights in the same folder are seen."""
    try:
        return ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(Path(folder).iterdir()) if p.is_file())
    except OSError:
        return ""


class CallingStage(Stage):
    """A stage whose items become chat requests (see the module docstring).

    Subclasses implement :meth:`requests` (every request of the step, in plan order, with its budget
    index) and use :meth:`calls` in ``process``.
    """

    role: ClassVar[str] = "model"  # what the manifest calls the model: generator, grader
    config_class: ClassVar[type[CallConfig]]

    def summary(self, stats: dict) -> str:
        # sent and replayed together: a rebuild, which replays every reply, says the same
        requests = int(stats.get("requests.sent", 0) + stats.get("requests.stored", 0))
        tokens = int(stats.get("tokens.prompt", 0) + stats.get("tokens.completion", 0))
        return f"{super().summary(stats)}; {requests} requests to {self.model_id}, {tokens:,} tokens"

    @property
    def prompt(self) -> Template:
        return get_template(self.config.template)

    @cached_property
    def model_id(self) -> str:
        """The model as rows and request keys name it: its name on the server, or for a local folder the
        id of its weights (the config's name, else the folder's name; the weights' hash goes into every
        request key besides), so where the folder lies changes nothing written."""
        if self.config.backend == "transformers":
            return self.backend().model_info()["model_id"]
        return self.config.model

    def input_files(self) -> list[str]:
        """A local model's folder is an input: new weights redo the step (and its hashes are in the manifest)."""
        return super().input_files() + ([self.config.model] if self.config.backend == "transformers" else [])

    def requirements(self) -> dict[str, str]:
        if self.config.backend == "openai":
            return {"aiohttp": "qa"}
        return {"torch": "qa", "transformers": "qa"}

    def validate(self) -> None:
        c = self.config
        self.prompt  # noqa: B018  (an unknown template fails here)
        if c.backend == "openai" and not c.endpoints:
            raise ValueError(f"{self.name}: the openai backend needs an endpoint: --endpoint http://HOST:PORT/v1 "
                             "(an OpenAI-compatible server), or backend 'transformers' with a local model folder")
        if c.max_cost is not None and not self._priced():
            raise ValueError(f"{self.name}: max_cost needs prices (price_input_per_m, price_output_per_m) or "
                             "tokens_per_s and gpu_hour_price to estimate what requests cost")

    def _priced(self) -> bool:
        c = self.config
        return c.price_input_per_m is not None or c.price_output_per_m is not None or (
            c.tokens_per_s is not None and c.gpu_hour_price is not None)

    def params(self) -> tuple[tuple[str, Any], ...]:
        """Sampling parameters as the OpenAI API names them (sorted; unset ones left out)."""
        c = self.config
        values = {"temperature": c.temperature, "top_p": c.top_p, "max_tokens": c.max_tokens, "seed": c.seed}
        return tuple(sorted((k, v) for k, v in values.items() if v is not None))

    def request(self, fields: dict[str, Any]) -> ChatRequest:
        """The chat request of one item (the template rendered with ``fields``)."""
        t = self.prompt
        return ChatRequest(model=self.model_id, messages=t.messages(fields, self.config.structured),
                           params=self.params(), template=t.id,
                           schema=t.schema_json() if self.config.structured else None, schema_name=t.name)

    def backend(self) -> Backend:
        return make_backend(self.config)

    def models(self) -> list[dict]:
        c = self.config
        fingerprint = self.backend().fingerprint() if c.backend == "transformers" else ""
        return [{"stage": self.name, "role": self.role, "backend": c.backend, "model_id": self.model_id,
                 "sha256": fingerprint or None, "endpoints": [redact_text(e) for e in c.endpoints],
                 "template": c.template, "parameters": dict(self.params()), "structured": c.structured}]

    def requests(self) -> Iterator[tuple[int, ChatRequest]]:
        """Every request of the step as ``(budget index, request)``, in plan order (the index never
        decreases). :meth:`begin` walks it to estimate and budget."""
        raise NotImplementedError

    # -- before any shard: the estimate and this invocation's budget ---------------------------
    def begin(self) -> None:
        c = self.config
        fingerprint = self.backend().fingerprint()
        store = self.store()
        total, stored, seen = 0, 0, set()
        pending: list[tuple[int, int]] = []  # (budget index, prompt characters) of each request to send
        sample: list[tuple[int, dict]] = []  # (prompt characters, stored reply)
        for index, req in self.requests():
            key = req.key(fingerprint)
            if key in seen:
                continue
            seen.add(key)
            total += 1
            chars = sum(len(content) for _, content in req.messages)
            if key in store:
                stored += 1
                if len(sample) < SAMPLE_FOR_ESTIMATE:
                    value = store.get(key)
                    if value is not None and value.get("prompt_tokens") and value.get("completion_tokens") is not None:
                        sample.append((chars, value))
            else:
                pending.append((index, chars))
        store.close()
        if pending and c.backend == "openai":
            self.check_endpoints()
        if sample:
            chars_per_token = sum(ch for ch, _ in sample) / sum(v["prompt_tokens"] for _, v in sample)
            out_per_request = sum(v["completion_tokens"] for _, v in sample) / len(sample)
            basis = f"measured on {len(sample)} stored replies"
        else:
            chars_per_token, out_per_request = CHARS_PER_TOKEN, float(c.max_tokens)
            basis = f"{CHARS_PER_TOKEN:g} characters per prompt token, max_tokens per reply (an upper bound)"
        cutoff, sending, spent, tokens_in, tokens_out = None, 0, 0.0, 0.0, 0.0
        for index, chars in pending:
            t_in, t_out = chars / chars_per_token, out_per_request
            cost = self.cost(t_in, t_out) or 0.0
            if cutoff is None and ((c.max_requests is not None and sending >= c.max_requests)
                                   or (c.max_cost is not None and spent + cost > c.max_cost)):
                cutoff = index
            if cutoff is None:
                sending += 1
                spent += cost
            tokens_in += t_in
            tokens_out += t_out
        write_json_atomic(self.work_dir / BUDGET_FILE, {"cutoff": cutoff, "sending": sending})
        lines = [f"{total:,} requests to {self.model_id} ({self.prompt.id}): {stored:,} stored, {len(pending):,} to send",
                 f"estimated to send: {tokens_in:,.0f} prompt + {tokens_out:,.0f} completion tokens ({basis})"]
        cost = self.cost(tokens_in, tokens_out)
        if cost is not None:
            lines.append(f"estimated cost: ${cost:,.2f}")
        if c.tokens_per_s:
            lines.append(f"estimated GPU-hours: {tokens_out / c.tokens_per_s / 3600:,.2f} at {c.tokens_per_s:g} completion tokens/s")
        if cutoff is not None:
            lines.append(f"this invocation sends {sending:,} of them (max_requests {c.max_requests}, max_cost "
                         f"{c.max_cost}): rerun to continue")
        note(f"{self.name}: " + "; ".join(lines))

    def check_endpoints(self) -> None:
        """Refuse, before any request, endpoints that do not serve the model or refuse the key."""
        self.backend().ensure_serves(self.config.model, self.name)

    def cost(self, tokens_in: float, tokens_out: float) -> float | None:
        """Estimated USD for these tokens: configured prices, else GPU-hours times their price; None if neither."""
        c = self.config
        if c.price_input_per_m is not None or c.price_output_per_m is not None:
            return (tokens_in * (c.price_input_per_m or 0) + tokens_out * (c.price_output_per_m or 0)) / 1e6
        if c.tokens_per_s and c.gpu_hour_price is not None:
            return tokens_out / c.tokens_per_s / 3600 * c.gpu_hour_price
        return None

    def calls(self, store: ItemStore) -> Calls:
        """A shard's sender (close it with ``with``); see :class:`Calls`."""
        return Calls(self, store)


class _NotSent(Exception):
    """A request this shard did not send (budget reached, or an earlier fatal error)."""


class Calls:
    """One shard's requests: sends the ones not stored, within the budget, a bounded number in flight,
    on one event loop kept for the whole shard; counts what it did into the stage's stats; and
    :meth:`check` raises, after the shard's stored replies are safe, if anything was not answered."""

    def __init__(self, stage: CallingStage, store: ItemStore):
        self.stage = stage
        self.store = store
        self.config = stage.config
        budget = stage.work_dir / BUDGET_FILE if stage.work_dir else None
        self.cutoff = json.loads(budget.read_text())["cutoff"] if budget and budget.exists() else None
        self.backend = stage.backend()
        self.fingerprint = self.backend.fingerprint()
        self.window = max(256, WINDOW_PER_IN_FLIGHT * self.config.max_in_flight)
        self.sent = self.transient = self.over_budget = self.not_sent = 0
        self.first_transient: str | None = None
        self.fatal: str | None = None
        self.errors = 0
        self.started = time.monotonic()
        self.tokens_sent = 0
        self.bar = progress(desc=f"{stage.name} requests", unit="req", disable=stage.quiet)
        self.shown = 0.0
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.backend.__aenter__())

    def key(self, request: ChatRequest) -> str:
        return request.key(self.fingerprint)

    def run(self, entries: list[tuple[int, ChatRequest, str]]) -> list[Outcome]:
        """One :class:`Outcome` per ``(budget index, request, key)``, in order (a stored reply, a new
        one, or an error)."""
        outcomes = self.loop.run_until_complete(map_stored(
            entries, key=lambda e: e[2], call=self._send, store=self.store,
            max_in_flight=self.config.max_in_flight, what="request"))
        counted = set()
        for (_, _, key), outcome in zip(entries, outcomes):
            if outcome.value is None or key in counted:
                continue
            counted.add(key)
            reply = outcome.value
            self.stage.stat_update("requests.stored" if outcome.stored else "requests.sent")
            self.stage.stat_update("tokens.prompt", value=reply.get("prompt_tokens") or 0)
            self.stage.stat_update("tokens.completion", value=reply.get("completion_tokens") or 0)
            cost = self.stage.cost(reply.get("prompt_tokens") or 0, reply.get("completion_tokens") or 0)
            if cost is not None:
                self.stage.stat_update("cost.usd", value=cost)
        return outcomes

    async def _send(self, entry: tuple[int, ChatRequest, str]) -> dict:
        index, request, _ = entry
        if self.fatal is not None:
            self.not_sent += 1
            raise _NotSent("an earlier request failed fatally")
        if self.cutoff is not None and index >= self.cutoff:
            self.over_budget += 1
            raise _NotSent("beyond this invocation's budget")
        try:
            reply: Reply = await self.backend.complete(request)
        except TransientError as e:
            if getattr(self.backend, "fatal", None) is not None:  # the endpoint refuses the run (401/403/404)
                self.fatal = self.fatal or redact_text(str(self.backend.fatal))
            else:
                self.transient += 1
                self.first_transient = self.first_transient or redact_text(str(e))
            self._progress(error=True)
            raise
        except Exception as e:
            self.fatal = self.fatal or redact_text(f"{type(e).__name__}: {e}")
            self._progress(error=True)
            raise
        self.sent += 1
        self.tokens_sent += (reply.prompt_tokens or 0) + (reply.completion_tokens or 0)
        self._progress(error=reply.error is not None)
        return reply.to_json()

    def _progress(self, error: bool) -> None:
        self.errors += error
        self.bar.update(1)
        now = time.monotonic()
        if now - self.shown >= 0.5:
            self.shown = now
            elapsed = max(now - self.started, 1e-9)
            self.bar.set_postfix_str(f"{self.sent / elapsed:.1f} req/s, {self.tokens_sent / elapsed:.0f} tok/s, "
                                     f"{self.errors} errors", refresh=False)

    def check(self) -> None:
        """Raise if any request of the shard was not answered (every stored reply is safe by now)."""
        name, model = self.stage.name, self.config.model
        where = ", ".join(redact_text(e) for e in self.config.endpoints) or self.config.backend
        for label, value in (("requests.failed", self.transient), ("requests.over_budget", self.over_budget)):
            if value:
                self.stage.stat_update(label, value=value)
        if self.fatal is not None:
            raise RuntimeError(f"{name}: {model} at {where} failed: {self.fatal}; stopped sending ({self.not_sent} "
                               f"request(s) of this shard not sent). Fix it and rerun: the {self.sent} replies received "
                               "are stored and will not be sent again")
        if self.transient:
            raise RuntimeError(f"{name}: {self.transient} request(s) to {model} at {where} failed after their retries "
                               f"(e.g. {self.first_transient}); every other reply is stored, so a rerun resends only those")
        if self.over_budget:
            raise RuntimeError(f"{name}: budget reached: {self.sent} sent in this shard, {self.over_budget} left for "
                               "later (max_requests / max_cost); rerun to continue")

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.backend.__aexit__(None, None, None))
        finally:
            self.loop.close()
            self.bar.close()

    def __enter__(self) -> Calls:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def windows(items: list, size: int) -> Iterator[list]:
    """``items`` in consecutive slices of ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
