"""An in-process ``transformers`` model answering chat requests in batches: no server needed.

The embedded default of the CPU demo and the way to run a small local model on one GPU.
``TransformersBackend(model_dir)`` loads ``AutoModelForCausalLM`` + ``AutoTokenizer`` from a local
folder (``local_files_only``: nothing is downloaded) once per worker process
(:func:`corpus.run.stage.per_process`, keyed by folder, device and dtype, so every shard a worker
runs shares it).

Batching: :meth:`TransformersBackend.complete` is awaited once per request, a bounded number in
flight (:func:`corpus.run.concurrency.map_stored`); the requests queue up and one runner takes up to
``batch_size`` of them at a time into one batched ``generate`` (chat template with the generation
prompt, left padding, attention mask) in a worker thread, so the event loop keeps accepting
requests meanwhile. A stage with ``max_in_flight >= batch_size`` therefore gets full batches;
``2 * batch_size`` keeps the next batch queued while one runs.

Request parameters (``ChatRequest.params``, OpenAI names):
- ``max_tokens`` (or ``max_completion_tokens``) -> ``max_new_tokens``; absent: ``DEFAULT_MAX_TOKENS``;
  always clamped to what the model's context leaves after the prompt (then ``finish_reason`` is
  ``"length"`` when the reply fills it);
- ``temperature``: 0 or absent is greedy decoding; above 0, sampling (with ``top_p``) from a random
  stream of the request's own: ``seed`` if given, else one derived from the request's key. Each row
  of a batch samples from its own stream (Gumbel-max over the row's tempered, top-p-filtered
  logits), so a request's reply does not depend on which other requests share its batch, greedy or
  sampled, up to floating-point differences between batch shapes (which can flip a near-tie);
- ``stop`` (a string or a list): the reply is cut before the first stop string, ``finish_reason``
  ``"stop"``; generation itself runs on to EOS or ``max_tokens`` (the tokens after the stop are
  computed, then dropped, and not counted);
- ``n`` other than 1 is a permanent error reply; every other parameter (``presence_penalty``,
  ``frequency_penalty``, ``logprobs``, ``response_format``...) is ignored and named in the reply's
  ``extra["ignored_params"]``.

Structured output: there is no constrained decoding here. ``ChatRequest.schema`` is not enforced;
the caller describes the schema in the prompt and validates (and repairs) the reply, as for a
server run with ``structured=False``.

Replies: ``text`` decoded without special tokens; ``prompt_tokens`` the tokens of the rendered chat
prompt; ``completion_tokens`` the generated tokens kept (EOS included when the model ended the reply);
``finish_reason`` ``"stop"`` (EOS or a stop string) or ``"length"``. Permanent error replies (stored,
never retried): a prompt longer than ``max_input_tokens`` or than the model's context ("prompt of N
tokens exceeds ..."), a chat template that fails on the messages, bad parameter values, and a
request that runs out of device memory alone (a batch that runs out of memory is retried one
request at a time first). Any other exception from the model fails the requests of that batch
(nothing stored: a rerun sends them again).

``fingerprint()`` is the sha256 of the weight files (:func:`corpus.model_files.model_fingerprint`),
part of every request key, so changed weights never reuse a stored reply.
"""

from __future__ import annotations

import asyncio
import bisect
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corpus.model_files import ModelFolderError, model_fingerprint
from corpus.run.stage import per_process
from qa_synth.backends.base import Backend, ChatRequest, Reply

__all__ = ["DEFAULT_MAX_TOKENS", "DTYPES", "TransformersBackend"]

DEFAULT_MAX_TOKENS = 512
"""``max_new_tokens`` of a request that gives no ``max_tokens``."""

DTYPES = ("auto", "float32", "bfloat16", "float16")
"""Accepted ``dtype`` values; ``auto`` is the checkpoint's own dtype."""

HONOURED = frozenset({"max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop", "n"})


@dataclass
class LoadedModel:
    """A model and its tokenizer, loaded once per process; ``lock`` serialises ``generate`` calls."""

    model: Any
    tokenizer: Any
    context: int  # the model's maximum positions (prompt + reply)
    eos_ids: frozenset[int]
    pad_id: int
    lock: threading.Lock = field(default_factory=threading.Lock)


def load_model(model_dir: str | Path, device: str = "cpu", dtype: str = "auto", chat: bool = True) -> LoadedModel:
    """Load a causal LM and its tokenizer from a local folder (no download), in eval mode on ``device``.

    Raises :class:`ModelFolderError` naming the folder when it holds no loadable model or tokenizer,
    or, with ``chat`` (the default), no chat template (scoring raw prompts of a base model needs none).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(model_dir)
    if not (folder / "config.json").is_file():
        raise ModelFolderError(f"{folder}: no config.json; save a causal language model there first "
                               "(`hf download ORG/NAME --local-dir <folder>`, or examples/tiny_lm.py for a test model)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelFolderError(f"device {device!r} requested but CUDA is not available")
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # transformers' "Loading weights" bar would cut through the stage's own
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=torch_dtype)
    except Exception as exc:  # any loader failure is this folder's problem, said with its name
        raise ModelFolderError(f"{folder}: cannot load a causal language model: {type(exc).__name__}: {exc}") from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    if chat and not tokenizer.chat_template:
        raise ModelFolderError(f"{folder}: the tokenizer has no chat template (a base model, not a chat model?)")
    model.to(device).eval()
    gen = model.generation_config
    eos = gen.eos_token_id if gen.eos_token_id is not None else tokenizer.eos_token_id
    eos_ids = frozenset([eos] if isinstance(eos, int) else (eos or []))
    if not eos_ids:
        raise ModelFolderError(f"{folder}: neither the generation config nor the tokenizer names an EOS token")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos_ids)
    text_config = model.config.get_text_config()
    context = getattr(text_config, "max_position_embeddings", None) or tokenizer.model_max_length
    return LoadedModel(model=model, tokenizer=tokenizer, context=int(context), eos_ids=eos_ids, pad_id=pad_id)


@dataclass
class _Row:
    """One request ready to generate: its prompt tokens and decoding settings."""

    ids: list[int]
    max_new: int
    temperature: float
    top_p: float
    seed: int | None
    stop: list[str]
    ignored: list[str]


class TransformersBackend(Backend):
    """A local causal LM answering chat requests in batched ``generate`` calls. See the module docstring.

    ``model_dir``: a local model folder (``config.json``, weights, tokenizer with a chat template).
    ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... ``dtype``: one of :data:`DTYPES`.
    ``batch_size``: requests per ``generate`` call. ``max_input_tokens``: the longest prompt accepted
    (default: the model's context less one token).
    """

    def __init__(self, model_dir: str, device: str = "cpu", dtype: str = "auto", batch_size: int = 8,
                 max_input_tokens: int | None = None) -> None:
        super().__init__()
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        if max_input_tokens is not None and max_input_tokens < 1:
            raise ValueError(f"max_input_tokens must be at least 1, not {max_input_tokens}")
        self.model_dir = str(model_dir)
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.max_input_tokens = max_input_tokens
        self._loaded: LoadedModel | None = None
        self._fingerprint: dict[str, Any] | None = None
        self._queue: asyncio.Queue[tuple[ChatRequest, asyncio.Future[Reply]]] | None = None
        self._runner: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def loaded(self) -> LoadedModel:
        """The model of this folder, device and dtype, loaded once per process."""
        if self._loaded is None:
            key = f"transformers:{Path(self.model_dir).resolve()}:{self.device}:{self.dtype}"
            self._loaded = per_process(key, lambda: load_model(self.model_dir, self.device, self.dtype))
        return self._loaded

    async def __aenter__(self) -> TransformersBackend:
        await asyncio.to_thread(lambda: self.loaded)  # a folder that holds no model fails here, before any request
        self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            self._runner.cancel()
            try:
                await self._runner
            except asyncio.CancelledError:
                pass
            self._runner = None
        while self._queue is not None and not self._queue.empty():
            _, fut = self._queue.get_nowait()
            if not fut.done():
                fut.cancel()
        self._queue = None

    def _start(self) -> None:
        """The request queue and its batch runner (the model itself loads in the runner's thread if not yet)."""
        if self._runner is None:
            self._queue = asyncio.Queue()
            self._runner = asyncio.create_task(self._run_batches(), name="transformers-batches")

    def model_info(self) -> dict[str, Any]:
        """Model id, licence and weight hashes (:func:`corpus.model_files.model_fingerprint`), for the manifest."""
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.model_dir)
        return self._fingerprint

    def fingerprint(self) -> str:
        return self.model_info()["sha256"]

    # ------------------------------------------------------------------ requests
    async def complete(self, request: ChatRequest) -> Reply:
        self._start()
        assert self._queue is not None
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self.ledger["requests"] += 1
        self._queue.put_nowait((request, fut))
        reply = await fut
        self.ledger["prompt_tokens"] += reply.prompt_tokens or 0
        self.ledger["completion_tokens"] += reply.completion_tokens or 0
        if reply.error is not None:
            self.ledger["errors.permanent"] += 1
        return reply

    async def _run_batches(self) -> None:
        """Take up to ``batch_size`` waiting requests at a time and answer them in one ``generate``."""
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            await asyncio.sleep(0)  # let the requests started in the same tick join this batch
            while len(batch) < self.batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            batch = [(r, f) for r, f in batch if not f.done()]  # a cancelled caller no longer waits
            if not batch:
                continue
            try:
                replies = await asyncio.to_thread(self.answer_batch, [r for r, _ in batch])
            except Exception as exc:  # not a request's fault: its callers get the error, nothing is stored
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), reply in zip(batch, replies):
                if not fut.done():
                    fut.set_result(reply)

    def answer_batch(self, requests: list[ChatRequest]) -> list[Reply]:
        """Replies to ``requests`` (blocking): one ``generate`` for all that are valid, in order."""
        prepared: list[_Row | Reply] = [self._prepare(r) for r in requests]
        rows = [(i, p) for i, p in enumerate(prepared) if isinstance(p, _Row)]
        if rows:
            for (i, _), reply in zip(rows, self._generate_or_split([p for _, p in rows])):
                prepared[i] = reply
        return prepared  # type: ignore[return-value]  # every _Row is now its Reply

    def _prepare(self, request: ChatRequest) -> _Row | Reply:
        """The request's prompt tokens and settings, or a permanent error reply saying what is wrong."""
        lm = self.loaded
        params = dict(request.params)
        try:
            text = lm.tokenizer.apply_chat_template(request.messages_json(), tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # jinja's errors (an unknown role...) are this request's, not the run's
            return Reply(error=f"chat template failed: {type(exc).__name__}: {exc}")
        ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        n = len(ids)
        limit = min(self.max_input_tokens or lm.context - 1, lm.context - 1)
        if n > limit:
            what = (f"max_input_tokens={self.max_input_tokens}" if self.max_input_tokens and self.max_input_tokens < lm.context
                    else f"the model's context of {lm.context} tokens (less one for the reply)")
            return Reply(error=f"prompt of {n} tokens exceeds {what}", prompt_tokens=n)
        try:
            if params.get("n", 1) != 1:
                raise ValueError(f"n={params['n']}: only one reply per request is supported")
            max_tokens = next((int(params[k]) for k in ("max_tokens", "max_completion_tokens")
                               if params.get(k) is not None), DEFAULT_MAX_TOKENS)
            if max_tokens < 1:
                raise ValueError(f"max_tokens must be at least 1, not {max_tokens}")
            temperature = float(params.get("temperature") or 0.0)
            top_p = float(params.get("top_p") if params.get("top_p") is not None else 1.0)
            if temperature < 0 or not 0 < top_p <= 1:
                raise ValueError(f"temperature {temperature} must be >= 0 and top_p {top_p} in (0, 1]")
            stop = params.get("stop") or []
            stop = [stop] if isinstance(stop, str) else [str(s) for s in stop if s]
            seed = params.get("seed")
            if temperature > 0 and seed is None:
                seed = int(request.key()[:15], 16)
        except (TypeError, ValueError) as exc:
            return Reply(error=f"bad parameters: {exc}", prompt_tokens=n)
        ignored = sorted(set(params) - HONOURED)
        return _Row(ids=ids, max_new=min(max_tokens, lm.context - n), temperature=temperature, top_p=top_p,
                    seed=None if temperature == 0 else int(seed), stop=stop, ignored=ignored)

    def _generate_or_split(self, rows: list[_Row]) -> list[Reply]:
        """One batched ``generate``; out of device memory, one request at a time (alone: an error reply)."""
        import torch

        try:
            return self._generate(rows)
        except torch.OutOfMemoryError:
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()
            if len(rows) == 1:
                return [Reply(error=f"out of memory on {self.device} with a prompt of {len(rows[0].ids)} tokens "
                                    f"and max_tokens={rows[0].max_new}", prompt_tokens=len(rows[0].ids))]
        self.ledger["retries"] += len(rows)
        return [reply for row in rows for reply in self._generate_or_split([row])]

    def _generate(self, rows: list[_Row]) -> list[Reply]:
        import torch
        from transformers import LogitsProcessorList

        lm = self.loaded
        width = max(len(r.ids) for r in rows)
        input_ids = torch.full((len(rows), width), lm.pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):  # left padding: every prompt ends where generation starts
            input_ids[i, width - len(r.ids):] = torch.tensor(r.ids, dtype=torch.long)
            attention[i, width - len(r.ids):] = 1
        device = lm.model.device
        sampling = RowSampling([(r.temperature, r.top_p, r.seed) for r in rows], device)
        with lm.lock, torch.inference_mode():
            out = lm.model.generate(
                input_ids=input_ids.to(device), attention_mask=attention.to(device),
                max_new_tokens=max(r.max_new for r in rows), do_sample=False, num_beams=1,
                logits_processor=LogitsProcessorList([sampling]) if sampling.any else None,
                pad_token_id=lm.pad_id, eos_token_id=sorted(lm.eos_ids),
            )
        generated = out[:, width:].tolist()
        return [self._reply(r, tokens) for r, tokens in zip(rows, generated)]

    def _reply(self, row: _Row, tokens: list[int]) -> Reply:
        """The reply of one row from its generated tokens: cut at EOS, ``max_tokens`` or a stop string."""
        tok = self.loaded.tokenizer
        tokens = tokens[:row.max_new]
        finish = "length"
        end = next((j for j, t in enumerate(tokens) if t in self.loaded.eos_ids), None)
        if end is not None:
            tokens, finish = tokens[:end + 1], "stop"
        text = tok.decode(tokens, skip_special_tokens=True)
        cuts = [text.find(s) for s in row.stop if s in text]
        if cuts:
            text, finish = text[:min(cuts)], "stop"
            # the fewest tokens whose text reaches a stop string: what the reply cost up to it
            tokens = tokens[:bisect.bisect_left(range(len(tokens) + 1), True, key=lambda k: any(
                s in tok.decode(tokens[:k], skip_special_tokens=True) for s in row.stop))]
        extra: dict[str, Any] = {}
        if row.seed is not None:
            extra["seed"] = row.seed
        if row.ignored:
            extra["ignored_params"] = row.ignored
        return Reply(text=text, finish_reason=finish, prompt_tokens=len(row.ids), completion_tokens=len(tokens),
                     extra=extra)


class RowSampling:
    """A logits processor that samples each row of a batch from its own seeded random stream.

    ``rows``: (temperature, top_p, seed) per row; rows with temperature 0 are left alone (greedy).
    For the others it replaces the scores by the tempered, top-p-filtered logits plus Gumbel noise
    drawn from the row's generator, so the greedy argmax ``generate`` then takes is a sample from
    that row's distribution that no other row's presence changes.
    """

    def __init__(self, rows: list[tuple[float, float, int | None]], device: Any) -> None:
        import torch

        self.rows = []
        for temperature, top_p, seed in rows:
            gen = None
            if temperature > 0:
                gen = torch.Generator(device=device)
                gen.manual_seed(int(seed or 0))
            self.rows.append((temperature, top_p, gen))
        self.any = any(g is not None for _, _, g in self.rows)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        scores = scores.clone()
        for i, (temperature, top_p, gen) in enumerate(self.rows):
            if gen is None:
                continue
            logits = scores[i].float() / temperature
            if top_p < 1.0:
                sorted_logits, order = logits.sort(descending=True)
                probs = sorted_logits.softmax(-1)
                outside = probs.cumsum(-1) - probs > top_p  # the first token is always kept
                logits[order[outside]] = float("-inf")
            uniform = torch.rand(logits.shape, generator=gen, device=logits.device).clamp_(1e-12, 1.0 - 1e-7)
            scores[i] = (logits - torch.log(-torch.log(uniform))).to(scores.dtype)
        return scores
