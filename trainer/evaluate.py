"""Evaluate a model on multiple-choice benchmarks: AstroMLab-1 and Astro-QA, as the AstroMLab papers do.

``sagecorpus eval MODEL QUESTIONS... --mode logprob|generate --out DIR [--endpoint URL]``, the recipe
stage ``eval`` and :func:`evaluate` (Python) are one thing: a step of stage ``eval`` in a run folder,
writing ``eval/results.parquet`` (:data:`schemas.EVAL_RESULT`, one row per question),
``eval/summary.json`` (accuracy and its 95% Wilson interval per benchmark) and
``decisions/eval.parquet``.

**Questions.** The readers of decontamination (:func:`corpus.curate.decontaminate.load_questions`):
JSON, JSONL, CSV (UTF-8 byte-order mark allowed) or Parquet with ``question``, ``A``..``D`` and an
optional ``answer``; the AstroMLab-1 layout (``index``, no answers: its keys are private) and the
Astro-QA layout (``id``, ``answer``, ``explanation``) both load. The benchmark's name is the file's
name without its suffix. A row that cannot be asked (no question text, an answer that is not A-D or
whose option is blank, a repeated id, a JSONL line that is not JSON) is left out with a decision row
saying why; a row with a blank option, or the same question and options as an earlier row, is asked
and scored, and its result row and decision carry a flag (``blank_option:C``,
``duplicate_question:<first id>``). Nothing of this is fatal; a file with no usable row is.

**Two scoring modes.**

- ``logprob``: the fixed prompt :data:`LOGPROB_PROMPT` (question, the four options, ``Answer:``),
  and the probability of each option letter as the next token; the prediction is the most probable
  letter. A local model (``transformers``, batched forward passes with left padding) scores the raw
  prompt (base and instruct models alike; ``chat_template: true`` wraps it as a user turn first).
  A served model is asked through the OpenAI-compatible chat endpoint (its chat template applies)
  for one token with ``logprobs`` and ``top_logprobs``; a letter's log-probability is the log of the
  summed probabilities of the returned tokens that are that letter (``"B"``, ``" B"``), a letter
  not among them gets probability 0. A server that returns no log-probabilities (``transformers
  serve``, many hosted APIs) cannot score this way: the step stops with an error saying so and
  naming ``--mode generate``, and nothing is stored.
- ``generate``: the chat template applied to :data:`GENERATE_PROMPT`, a greedy reply of at most
  ``max_tokens``, and the letter extracted from it by :func:`extract_answer` (the rule is in its
  docstring); no letter found is a row with ``predicted`` null and an error, scored as wrong.

**Replays.** Every model output (a reply, or a local model's four letter log-probabilities) is stored
in the step's item store under the request's key (model id, weights hash, prompt, parameters) the
moment it arrives (:func:`corpus.run.concurrency.map_stored`), so an interrupted step resumes where it
stopped and ``sagecorpus rebuild`` replays the outputs with no model loaded or called.

**Summary.** Accuracy is correct answers over questions with a gold answer (a question with no
prediction counts as wrong), with the 95% Wilson score interval (:func:`wilson_interval`). A file
without answers gives predictions only: its accuracy is null.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from corpus.curate.decontaminate import OPTIONS, Question, load_questions
from corpus.files import write_json_atomic
from corpus.run.concurrency import map_stored
from corpus.run.progress import note
from corpus.run.secrets import redact_text
from corpus.run.stage import (
    OUT,
    Stage,
    StageConfig,
    folder_in_run,
    how_field,
    name_or_path_field,
    path_field,
    per_process,
    register_stage,
)
from qa_synth.backends.base import ChatRequest, Reply
from qa_synth.backends.local import ModelFolderError, TransformersBackend, load_model
from schemas import EVAL_RESULT, read_polars

RESULTS = "eval/results.parquet"
SUMMARY = "eval/summary.json"
LETTERS = OPTIONS  # ("A", "B", "C", "D")
Z95 = 1.959963984540054
"""The standard normal quantile of 0.975: a 95% two-sided interval."""

LOGPROB_PROMPT = (
    "The following is a multiple-choice question about astronomy. Answer with the letter of the correct option.\n\n"
    "Question: {question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\nAnswer:"
)
"""The logprob mode's prompt; the next token is the answer's letter."""
GENERATE_PROMPT = (
    "Answer the following multiple-choice question about astronomy. You may reason briefly first; end your "
    "reply with a line of the form \"Answer: X\", where X is the letter (A, B, C or D) of the correct option.\n\n"
    "Question: {question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}"
)
"""The generate mode's user message (the model's chat template is applied to it)."""
PROMPT_VERSION = 1
"""Bumped whenever a prompt above changes: it is part of every request key."""
TOP_LOGPROBS = 20
"""``top_logprobs`` asked of a server (20 is the OpenAI API's maximum)."""


# ------------------------------------------------------------------------------------------ questions

@dataclass(frozen=True)
class BenchmarkQuestion:
    """A question of one benchmark file, with the problems of its row (``flags``) that do not stop it."""

    benchmark: str
    question: Question
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Benchmark:
    """One question file: its usable questions, and one line per row left out (why)."""

    name: str
    path: str
    questions: list[BenchmarkQuestion]
    skipped: list[str]


def load_benchmark(path: str | Path) -> Benchmark:
    """The questions of one file (see the module docstring): rows that cannot be asked are in
    ``skipped``; a blank option or a repeated question (same question and options, ignoring case
    and spacing) is a flag on the question. Raises ``QuestionFileError`` for a file that cannot be
    read or has no usable row."""
    path = Path(path)
    skipped: list[str] = []
    questions = load_questions(path, skipped)
    first: dict[str, str] = {}
    out = []
    for q in questions:
        flags = [f"blank_option:{k}" for k in LETTERS if not q.options[k]]
        text = " ".join(" ".join([q.question, *(q.options[k] for k in LETTERS)]).lower().split())
        if text in first:
            flags.append(f"duplicate_question:{first[text]}")
        else:
            first[text] = q.id
        out.append(BenchmarkQuestion(path.stem, q, tuple(flags)))
    return Benchmark(path.stem, str(path), out, skipped)


def prompt_fields(q: Question) -> dict[str, str]:
    return {"question": q.question, **q.options}


# ------------------------------------------------------------------------------------------ scoring

_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL | re.IGNORECASE)
_MARKUP = re.compile(r"[*_`]+")
_STATED_TAIL = (r"(?:\s+(?i:is|would\s+be|should\s+be|must\s+be))?(?:\s+(?i:therefore|thus|clearly|then))?"
                r"[\"']?\s*[:=\-]?\s*[\"'(\[{]?\s*([A-D])(?![A-Za-z0-9])")
_ANSWER = re.compile(r"(?i:\banswer)" + _STATED_TAIL)
_OPTION = re.compile(r"(?i:\b(?:option|choice))" + _STATED_TAIL)
_BOXED = re.compile(r"\\boxed\{\s*(?:\\text\{)?\s*\(?([A-D])\b")
_LEADING = re.compile(r"^\s*[\"'(\[]?([A-D])(?:\s*$|[)\].:,]|\s+[-\u2013\u2014]\s)")
_MARKER = re.compile(r"\(([A-D])\)|(?<![A-Za-z.])([A-D])[).](?=\s|$)")


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def extract_answer(reply: str, options: dict[str, str] | None = None) -> str | None:
    """The option letter a free reply chooses, or None. The rule, first that applies:

    0. reasoning in ``<think>...</think>`` is removed (an unclosed one runs to the end), and Markdown
       emphasis (``*``, ``_``, backticks) is ignored;
    1. the last statement of an answer: ``Answer: C``, ``the correct answer is (B)``,
       ``"ANSWER": "A"`` (AstroMLab's JSON format), ``\\boxed{C}`` (the letter must be a capital); else
       the last naming of an option: ``option D``, ``the correct choice is B``;
    2. a reply that starts with a letter on its own: ``B``, ``B.``, ``(C)``, ``D) ...``, ``A: ...``,
       ``C - ...`` (but not the article in ``A star ...``);
    3. option markers anywhere (``(B)``, ``B.``, ``B)``) naming exactly one letter;
    4. the text of exactly one option (given ``options``) found in the reply, words compared without
       case and punctuation.
    """
    text = _MARKUP.sub("", _THINK.sub(" ", reply or ""))
    for patterns in ((_ANSWER, _BOXED), (_OPTION,)):
        stated = [(m.end(), m.group(1)) for p in patterns for m in p.finditer(text)]
        if stated:
            return max(stated)[1]  # the last one: a reply may weigh options before it concludes
    if m := _LEADING.match(text):
        return m.group(1)
    marked = {a or b for a, b in _MARKER.findall(text)}
    if len(marked) == 1:
        return marked.pop()
    if options:
        reply_words = f" {_norm(text)} "
        found = [k for k in LETTERS if _norm(options.get(k) or "") and f" {_norm(options[k])} " in reply_words]
        if len(found) == 1:
            return found[0]
    return None


def letter_logprobs_from_top(top: Sequence[dict]) -> list[float | None]:
    """Each letter's log-probability from a server's ``top_logprobs`` (``[{"token", "logprob"}...]``):
    the log of the summed probabilities of the tokens that are that letter once stripped of spaces
    (``"B"``, ``" B"``); None for a letter with no such token."""
    out: list[float | None] = []
    for letter in LETTERS:
        values = [float(t["logprob"]) for t in top if isinstance(t, dict) and str(t.get("token", "")).strip() == letter
                  and t.get("logprob") is not None]
        out.append(_logsumexp(values) if values else None)
    return out


def _logsumexp(values: Sequence[float]) -> float:
    m = max(values)
    if m == float("-inf"):
        return m
    return m + math.log(sum(math.exp(v - m) for v in values))


def letter_probabilities(logprobs: Sequence[float | None]) -> list[float] | None:
    """The four letters' probabilities renormalised over them (a missing letter: 0); None when none is known."""
    known = [v for v in logprobs if v is not None and v != float("-inf")]
    if not known:
        return None
    total = _logsumexp(known)
    return [math.exp(v - total) if v is not None else 0.0 for v in logprobs]


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion ``correct / n`` (95% by default); None when ``n`` is 0."""
    if n <= 0:
        return None
    if not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct ({correct}) <= n ({n})")
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


# ------------------------------------------------------------------------------------------ local letter scoring

class NoLogprobsError(RuntimeError):
    """A served model's reply carries no log-probabilities: the logprob mode cannot score with it."""


class LetterScorer(TransformersBackend):
    """A local model scoring the next token instead of generating: each request's last message is
    the prompt (as raw text; with ``chat``, rendered by the chat template with the generation
    prompt), and its reply is the most probable letter with ``extra["letter_logprobs"]`` the
    log-probability of each letter A-D as the next token (a letter's tokens, with and without a
    leading space, summed). Requests are batched like :class:`TransformersBackend`'s."""

    def __init__(self, model_dir: str, chat: bool, **kwargs: Any) -> None:
        super().__init__(model_dir, **kwargs)
        self.chat = chat

    @property
    def loaded(self):
        if self._loaded is None:
            key = f"letters:{Path(self.model_dir).resolve()}:{self.device}:{self.dtype}:{self.chat}"
            self._loaded = per_process(key, lambda: load_model(self.model_dir, self.device, self.dtype, chat=self.chat))
        return self._loaded

    @cached_property
    def letter_ids(self) -> list[list[int]]:
        """Each letter's single-token spellings (``" A"``, ``"A"``); at least the first token of ``"A"``."""
        tok = self.loaded.tokenizer
        out = []
        for letter in LETTERS:
            ids = []
            for spelling in (" " + letter, letter):
                enc = tok.encode(spelling, add_special_tokens=False)
                if len(enc) == 1 and enc[0] not in ids:
                    ids.append(enc[0])
            if not ids:
                ids = tok.encode(letter, add_special_tokens=False)[:1]
            if not ids:
                raise ModelFolderError(f"{self.model_dir}: the tokenizer cannot encode the letter {letter!r}")
            out.append(ids)
        return out

    def answer_batch(self, requests: list) -> list:
        """Replies to ``requests`` (blocking): one forward pass for all that are valid, in order."""
        lm = self.loaded
        prompts: list[list[int] | Reply] = []
        for request in requests:
            text = request.messages[-1][1]
            if self.chat:
                try:
                    text = lm.tokenizer.apply_chat_template(request.messages_json(), tokenize=False,
                                                            add_generation_prompt=True)
                except Exception as exc:  # noqa: BLE001 - a template failing on these messages: this request's error
                    prompts.append(Reply(error=f"chat template failed: {type(exc).__name__}: {exc}"))
                    continue
            ids = lm.tokenizer(text, add_special_tokens=not self.chat)["input_ids"]
            limit = min(self.max_input_tokens or lm.context, lm.context)
            prompts.append(ids if len(ids) <= limit else
                           Reply(error=f"prompt of {len(ids)} tokens exceeds the model's context of {limit}",
                                 prompt_tokens=len(ids)))
        rows = [(i, p) for i, p in enumerate(prompts) if not isinstance(p, Reply)]
        if rows:
            for (i, _), reply in zip(rows, self._score_or_split([p for _, p in rows])):
                prompts[i] = reply
        return prompts  # type: ignore[return-value]  # every prompt is now its Reply

    def _score_or_split(self, rows: list[list[int]]) -> list[Reply]:
        """One batched forward pass; out of device memory, one prompt at a time (alone: an error reply)."""
        import torch

        try:
            return self._score(rows)
        except torch.OutOfMemoryError:
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()
            if len(rows) == 1:
                return [Reply(error=f"out of memory on {self.device} with a prompt of {len(rows[0])} tokens",
                              prompt_tokens=len(rows[0]))]
        self.ledger["retries"] += len(rows)
        return [reply for row in rows for reply in self._score_or_split([row])]

    def _score(self, rows: list[list[int]]) -> list[Reply]:
        """Each prompt's letter log-probabilities, from one left-padded forward pass over all of them."""
        import torch

        lm = self.loaded
        width = max(len(p) for p in rows)
        input_ids = torch.full((len(rows), width), lm.pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for j, p in enumerate(rows):  # left padding: every prompt's last token is the last column
            input_ids[j, width - len(p):] = torch.tensor(p, dtype=torch.long)
            attention[j, width - len(p):] = 1
        positions = (attention.cumsum(-1) - 1).clamp(min=0)  # a padded row's positions start at 0
        device = lm.model.device
        inputs = {"input_ids": input_ids.to(device), "attention_mask": attention.to(device),
                  "position_ids": positions.to(device)}
        with lm.lock, torch.inference_mode():
            try:  # logits of the last position only: a whole batch's (batch x length x vocabulary) would not fit
                logits = lm.model(**inputs, logits_to_keep=1).logits[:, -1, :]
            except TypeError:  # a model class without logits_to_keep
                logits = lm.model(**inputs).logits[:, -1, :]
        logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        replies = []
        for j, p in enumerate(rows):
            letters = [float(torch.logsumexp(logprobs[j, ids], dim=0)) for ids in self.letter_ids]
            best = max(range(len(LETTERS)), key=lambda k: letters[k])
            replies.append(Reply(text=LETTERS[best], finish_reason="stop", prompt_tokens=len(p), completion_tokens=0,
                                 extra={"letter_logprobs": letters}))
        return replies


# ------------------------------------------------------------------------------------------ the stage

class EvalConfig(StageConfig):
    """Evaluation of one model on multiple-choice question files."""

    model: str = name_or_path_field(description="the model: a local folder (transformers), or with --endpoint "
                                    "its name on an OpenAI-compatible server")
    questions: list[str] = path_field(description="question files (JSON, JSONL, CSV, Parquet: question, A-D, "
                                      "optional answer); each is one benchmark, named by its file name")
    mode: Literal["logprob", "generate"] = Field("logprob", description="'logprob': probability of the option "
                                                 "letters as the next token after a fixed prompt; 'generate': "
                                                 "the letter extracted from a free reply (chat template applied)")
    backend: Literal["transformers", "openai"] | None = Field(
        None, description="'transformers': a local model folder run in process; 'openai': a served model "
        "(default: 'openai' when an endpoint is given, else 'transformers')")
    chat_template: bool = Field(False, description="logprob with a local model: render the prompt as a user "
                                "turn with the chat template (instruct models) instead of raw text (a served "
                                "model's chat endpoint and the generate mode always apply it)")
    max_tokens: int = Field(512, ge=1, description="generate: most tokens of a reply")
    endpoints: list[str] = how_field([], description="OpenAI-compatible base URLs (http://host:port/v1) serving "
                                     "the model; repeat --endpoint for several", json_schema_extra={"flag": "endpoint"})
    key_env: str = how_field("OPENAI_API_KEY", description="environment variable holding the API key; unset or "
                             "empty: no key is sent")
    max_in_flight: int = how_field(16, ge=1, description="requests in flight at once, per shard (a local model "
                                   "takes them batch_size at a time)")
    timeout_s: float = how_field(120.0, gt=0, description="seconds before one attempt of a request is abandoned")
    max_retries: int = how_field(8, ge=0, description="retries of a request on 429, 5xx, timeouts and connection errors")
    device: str = how_field("cpu", description="transformers: torch device, e.g. 'cuda:0'")
    dtype: str = how_field("auto", description="transformers: torch dtype ('auto', 'bfloat16', 'float32')")
    batch_size: int = how_field(8, ge=1, description="transformers: questions scored or generated together")

    @model_validator(mode="before")
    @classmethod
    def _default_backend(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("backend") is None:
            values = {**values, "backend": "openai" if values.get("endpoints") else "transformers"}
        return values


@register_stage
class Evaluate(Stage):
    name = "eval"
    config_class = EvalConfig
    description = ("evaluate a model on multiple-choice benchmarks (AstroMLab-1, Astro-QA) by next-token letter "
                   "probabilities or answers extracted from replies (-> eval/results.parquet, eval/summary.json)")
    role: ClassVar[str] = "evaluated"
    recipe_only = True  # its command has a form of its own: sagecorpus eval MODEL QUESTIONS... --out DIR

    def __init__(self, config: EvalConfig | dict | None = None):
        super().__init__(config)
        if self.config.backend == "transformers" and self.config.device.startswith("cuda"):
            self.gpus_per_task = 1

    # -- what it reads and writes --------------------------------------------------------------
    def outputs(self):
        return {RESULTS: EVAL_RESULT, SUMMARY: None, **super().outputs()}

    def input_files(self) -> list[str]:
        """The question files, and a local model's folder (new weights redo the step)."""
        local = self.config.backend == "transformers" and not self.config.model.startswith(OUT)
        return super().input_files() + ([self.config.model] if local else [])

    def reads(self) -> list[str]:
        """A local model written by an earlier step of the run (``{out}/models/sft``): its folder, by digest."""
        model = folder_in_run(self.config.model) if self.config.backend == "transformers" else None
        return super().reads() + ([model] if model else [])

    def requirements(self) -> dict[str, str]:
        if self.config.backend == "openai":
            return {"aiohttp": "qa"}
        return {"torch": "train", "transformers": "train"}

    def validate(self) -> None:
        c = self.config
        if not c.questions:
            raise ValueError(f"{self.name}: no question files given")
        if c.backend == "openai" and not c.endpoints:
            raise ValueError(f"{self.name}: a served model needs an endpoint: --endpoint http://HOST:PORT/v1")
        if c.backend == "openai" and c.chat_template:
            raise ValueError(f"{self.name}: chat_template is for a local model (a server's chat endpoint applies "
                             "the model's template itself)")
        if c.backend == "transformers" and not c.model.startswith(OUT) and not (Path(c.model) / "config.json").is_file():
            raise ValueError(f"{self.name}: {c.model}: not a local model folder (no config.json); to evaluate a "
                             "served model give its name with --endpoint URL")
        for b in self.benchmarks:  # a file that cannot be read fails here, before any model is loaded
            for line in b.skipped:
                note(f"{self.name}: left out: {line}")

    # -- questions and requests ----------------------------------------------------------------
    @cached_property
    def benchmarks(self) -> list[Benchmark]:
        names = Counter(Path(p).stem for p in self.config.questions)
        clash = sorted(n for n, k in names.items() if k > 1)
        if clash:
            raise ValueError(f"{self.name}: two question files share the benchmark name {clash[0]!r} (the file's "
                             "name without its suffix); rename one")
        return [load_benchmark(self.path(p)) for p in self.config.questions]

    def plan(self) -> list[tuple[int, str, int]]:
        """``(file, "skip", n)`` for each row left out, then ``(file, "q", n)`` for each question, file by file."""
        items: list[tuple[int, str, int]] = []
        for f, b in enumerate(self.benchmarks):
            items += [(f, "skip", n) for n in range(len(b.skipped))]
            items += [(f, "q", n) for n in range(len(b.questions))]
        return items

    @cached_property
    def model_id(self) -> str:
        """The model as rows name it: the server's name, or a local folder's model id (its weights' hash
        is in every request key and the manifest), so where the folder lies changes nothing written."""
        if self.config.backend == "transformers":
            return self.backend().model_info()["model_id"]
        return self.config.model

    @property
    def template(self) -> str:
        c = self.config
        if c.mode == "generate":
            return f"eval-generate@{PROMPT_VERSION}"
        chat = c.backend == "openai" or c.chat_template
        return f"eval-logprob@{PROMPT_VERSION}" + ("+chat" if chat else "")

    def params(self) -> tuple[tuple[str, Any], ...]:
        c = self.config
        if c.mode == "generate":
            return (("max_tokens", c.max_tokens), ("temperature", 0.0))
        if c.backend == "openai":
            return (("logprobs", True), ("max_tokens", 1), ("temperature", 0.0), ("top_logprobs", TOP_LOGPROBS))
        return ()

    def request(self, q: Question):
        prompt = (GENERATE_PROMPT if self.config.mode == "generate" else LOGPROB_PROMPT).format(**prompt_fields(q))
        return ChatRequest(model=self.model_id, messages=(("user", prompt),), params=self.params(), template=self.template)

    def backend(self):
        """The backend, built once per worker process (a local model is loaded on its first request)."""
        c = self.config
        if c.backend == "openai":
            from qa_synth.backends.openai_http import OpenAIBackend

            api_key = (os.environ.get(c.key_env) or None) if c.key_env else None
            return OpenAIBackend(c.endpoints, api_key=api_key, timeout_s=c.timeout_s, max_retries=c.max_retries,
                                 structured=False, max_connections=c.max_in_flight)
        folder = self.path(c.model)
        stat = ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(Path(folder).glob("*"))
                        if p.is_file())
        if c.mode == "logprob":
            key = f"eval.letters:{folder}:{c.device}:{c.dtype}:{c.batch_size}:{c.chat_template}:{stat}"
            return per_process(key, lambda: LetterScorer(folder, chat=c.chat_template, device=c.device, dtype=c.dtype,
                                                         batch_size=c.batch_size))
        key = f"eval.generate:{folder}:{c.device}:{c.dtype}:{c.batch_size}:{stat}"
        return per_process(key, lambda: TransformersBackend(folder, device=c.device, dtype=c.dtype,
                                                            batch_size=c.batch_size))

    def models(self) -> list[dict]:
        c = self.config
        local = c.backend == "transformers"
        return [{"stage": self.name, "role": self.role, "backend": c.backend, "model_id": self.model_id,
                 "sha256": self.backend().fingerprint() if local else None,
                 "endpoints": [redact_text(e) for e in c.endpoints], "template": self.template,
                 "parameters": dict(self.params()), "mode": c.mode}]

    # -- the work ------------------------------------------------------------------------------
    def begin(self) -> None:
        """A served model: before anything is sent, the endpoints must serve it (``/models``); a server
        pinned to another model would otherwise answer each question with an error row. Skipped when
        every output is stored (a rerun of a finished step, a rebuild: no server needed)."""
        if self.config.backend != "openai":
            return
        keys = [self.request(bq.question).key() for b in self.benchmarks for bq in b.questions]
        with self.store() as store:
            if all(k in store for k in keys):
                return
        self.backend().ensure_serves(self.config.model, self.name)

    def process(self, items: list[tuple[int, str, int]]) -> Iterator[tuple[str, list[dict]]]:
        asked = [(f, n) for f, kind, n in items if kind == "q"]
        replies = dict(zip(asked, self._replies([self.benchmarks[f].questions[n] for f, n in asked]))) if asked else {}
        for f, kind, n in items:
            b = self.benchmarks[f]
            if kind == "skip":
                self.stat_update("questions.left_out")
                yield self.decisions_file, [self.decision(f"{b.name}/left_out:{n}", "dropped", "unusable_row",
                                                          benchmark=b.name, problem=b.skipped[n])]
                continue
            bq = b.questions[n]
            key, reply = replies[(f, n)]
            row = self._row(bq, key, reply)
            yield RESULTS, [row]
            yield self.decisions_file, [self._decision(bq, row)]

    def _replies(self, questions: list[BenchmarkQuestion]) -> list[tuple[str, dict]]:
        """``(request key, stored reply)`` of each question, in order, from the store or the model; raises,
        after storing what came back, when any request had no answer (a rerun asks again for those only)."""
        c = self.config
        backend = self.backend()
        fingerprint = backend.fingerprint()
        entries = []
        for bq in questions:
            req = self.request(bq.question)
            entries.append((bq, req, req.key(fingerprint)))
        opened: dict[str, Any] = {}
        lock = asyncio.Lock()

        async def call(entry) -> dict:
            async with lock:  # the backend (a local model's loading) is opened by the first request that needs it
                if "backend" not in opened:
                    opened["backend"] = await backend.__aenter__()
            reply: Reply = await backend.complete(entry[1])
            if c.mode == "logprob" and c.backend == "openai":
                lp = reply.extra.get("logprobs") if reply.error is None else None
                if (reply.error is not None and "logprob" in reply.error.lower()) or (
                        reply.error is None and not (isinstance(lp, dict) and lp.get("content"))):
                    raise NoLogprobsError(reply.error or "the reply has no logprobs")
            return reply.to_json()

        async def run() -> list:
            try:
                with self.store(replay_only=True) as store:
                    return await map_stored(entries, key=lambda e: e[2], call=call, store=store,
                                            max_in_flight=c.max_in_flight, what="model output")
            finally:
                if "backend" in opened:
                    await backend.__aexit__(None, None, None)

        outcomes = asyncio.run(run())
        errors = [o.error for o in outcomes if o.error is not None]
        stored = sum(o.stored for o in outcomes if o.error is None)
        self.stat_update("requests.stored", value=stored)
        self.stat_update("requests.sent", value=len(outcomes) - stored - len(errors))
        if errors:
            where = ", ".join(redact_text(e) for e in c.endpoints) or self.path(c.model)
            if any(e.startswith("NoLogprobsError") for e in errors):
                first = next(e for e in errors if e.startswith("NoLogprobsError"))
                raise RuntimeError(f"{self.name}: the server at {where} gives no log-probabilities for {c.model!r} "
                                   f"({first.split(': ', 1)[-1]}); --mode logprob needs a server that returns "
                                   "logprobs/top_logprobs (vLLM, SGLang, llama.cpp, OpenAI): use --mode generate, "
                                   "or evaluate the model's folder locally")
            raise RuntimeError(f"{self.name}: {len(errors)} of {len(outcomes)} request(s) to {c.model} at {where} got no "
                               f"answer (e.g. {errors[0]}); every answer received is stored, so a rerun asks only "
                               "for the rest")
        return [(key, o.value) for (_, _, key), o in zip(entries, outcomes)]

    def _row(self, bq: BenchmarkQuestion, key: str, value: dict) -> dict:
        reply = Reply.from_json(value)
        q = bq.question
        row = {"model": self.model_id, "benchmark": bq.benchmark, "question_id": q.id, "method": self.config.mode,
               "predicted": None, "answer": q.answer, "correct": None, "probabilities": None, "logprobs": None,
               "raw": None, "error": None, "flags": list(bq.flags), "request_key": key,
               "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens}
        if reply.error is not None:  # refused by the server (HTTP 4xx), a prompt longer than the context...
            row["error"] = reply.error
        elif self.config.mode == "generate":
            row["raw"] = reply.text
            row["predicted"] = extract_answer(reply.text, q.options)
            if row["predicted"] is None:
                row["error"] = "no option letter found in the reply"
        else:
            if "letter_logprobs" in reply.extra:
                logprobs = [float(v) for v in reply.extra["letter_logprobs"]]
            else:
                top = (reply.extra.get("logprobs") or {}).get("content") or [{}]
                logprobs = letter_logprobs_from_top(top[0].get("top_logprobs") or [])
            probs = letter_probabilities(logprobs)
            row["logprobs"] = logprobs
            row["probabilities"] = probs
            if probs is None:
                row["error"] = "no option letter among the next-token candidates"
            else:
                row["predicted"] = LETTERS[max(range(len(LETTERS)), key=lambda k: probs[k])]
        if q.answer is not None:
            row["correct"] = row["predicted"] == q.answer
        return row

    def _decision(self, bq: BenchmarkQuestion, row: dict) -> dict:
        for flag in bq.flags:
            self.stat_update(f"questions.flagged.{flag.split(':', 1)[0]}")
        self.stat_update("questions")
        if row["predicted"] is None:
            self.stat_update("questions.no_prediction")
            reason = "no_prediction"
        elif row["correct"] is None:
            reason = "predicted"
        else:
            reason = "correct" if row["correct"] else "wrong"
        if row["correct"] is not None:
            self.stat_update("questions.correct" if row["correct"] else "questions.wrong")
        score = max(row["probabilities"]) if row["probabilities"] else None
        return self.decision(f"{bq.benchmark}/{bq.question.id}", "kept", reason, score=score, benchmark=bq.benchmark,
                             predicted=row["predicted"], answer=row["answer"], flags=list(bq.flags),
                             error=row["error"])

    def finish(self, stats: dict[str, float]) -> dict[str, float]:
        summary = summarize(self.path(f"{OUT}/{RESULTS}"), self.model_id, self.config.mode,
                            left_out={b.name: len(b.skipped) for b in self.benchmarks})
        path = Path(self.path(f"{OUT}/{SUMMARY}"))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, summary)
        for line in summary_lines(summary):
            note(f"{self.name}: {line}")
        overall = summary["overall"]
        if overall["accuracy"] is None:
            return {}
        low, high = overall["ci95"]
        return {"accuracy": overall["accuracy"], "accuracy.ci95_low": low, "accuracy.ci95_high": high}

    def summary(self, stats: dict) -> str:
        line = f"{super().summary(stats)}; {int(stats.get('questions.correct', 0))} correct, " \
               f"{int(stats.get('questions.wrong', 0))} wrong"
        if "accuracy" in stats:
            line += (f": accuracy {stats['accuracy']:.1%}, 95% CI [{stats['accuracy.ci95_low']:.1%}, "
                     f"{stats['accuracy.ci95_high']:.1%}]")
        return line


def summarize(results: str | Path, model: str, method: str, left_out: dict[str, int] | None = None) -> dict:
    """The summary of a results table: per benchmark and overall, the counts, accuracy over questions with
    a gold answer, and its 95% Wilson interval (null without answers). ``left_out``: rows of each
    benchmark's file that could not be asked (reported with the counts)."""
    left_out = left_out or {}
    df = read_polars(results, EVAL_RESULT, columns=["benchmark", "predicted", "answer", "correct", "flags"])

    def block(rows, skipped: int) -> dict:
        n = rows.height
        with_answer = int(rows["answer"].is_not_null().sum())
        correct = int(rows["correct"].fill_null(False).sum())
        interval = wilson_interval(correct, with_answer)
        return {"questions": n, "predicted": int(rows["predicted"].is_not_null().sum()),
                "no_prediction": int(rows["predicted"].is_null().sum()), "with_answer": with_answer,
                "correct": correct if with_answer else None,
                "accuracy": correct / with_answer if with_answer else None,
                "ci95": list(interval) if interval else None,
                "flagged": int((rows["flags"].list.len() > 0).sum()), "left_out": skipped}

    names = list(dict.fromkeys(df["benchmark"].to_list()))
    return {"model": model, "method": method, "interval": "Wilson score, 95%",
            "benchmarks": {name: block(df.filter(df["benchmark"] == name), left_out.get(name, 0)) for name in names},
            "overall": block(df, sum(left_out.values()))}


def summary_lines(summary: dict) -> list[str]:
    """One line per benchmark (and overall, for several): accuracy with its interval, or prediction counts."""
    items = list(summary["benchmarks"].items())
    if len(items) > 1:
        items.append(("overall", summary["overall"]))
    lines = []
    for name, s in items:
        if s["accuracy"] is None:
            lines.append(f"{name}: {s['predicted']} of {s['questions']} questions predicted (no answers in the file: "
                         "predictions only)")
        else:
            lo, hi = s["ci95"]
            lines.append(f"{name}: accuracy {s['accuracy']:.1%} ({s['correct']}/{s['with_answer']}), 95% CI "
                         f"[{lo:.1%}, {hi:.1%}]; {s['no_prediction']} without a prediction")
        problems = [f"{s[k]} {what}" for k, what in (("flagged", "flagged (blank option or duplicated question)"),
                                                     ("left_out", "rows left out")) if s.get(k)]
        if problems:
            lines[-1] += "; " + ", ".join(problems) + " (see decisions/eval.parquet)"
    return lines


# ------------------------------------------------------------------------------------------ Python API

def evaluate(model: str, questions: Sequence[str | Path], out: str | Path, mode: str = "logprob",
             endpoints: Sequence[str] = (), executor: Any = None, argv: list[str] | None = None,
             **config: Any) -> dict:
    """Evaluate ``model`` on ``questions`` as the step ``eval`` of the run folder ``out`` (added to its chain
    of steps, with a manifest, so ``sagecorpus rebuild`` replays it); returns the summary
    (``eval/summary.json``). ``config``: any other :class:`EvalConfig` field (``max_tokens``,
    ``batch_size``, ``chat_template``...). ``executor``: a :class:`corpus.run.executor.ExecutorConfig`
    (default: in process)."""
    from corpus.run.executor import ExecutorConfig
    from corpus.run.recipe import Step, add_step, run_recipe
    from corpus.run.stage import absolutize

    values = EvalConfig(model=str(model), questions=[str(q) for q in questions], mode=mode,
                        endpoints=list(endpoints), **config)
    values = absolutize(values).model_copy(update={"model": values.model} if values.backend == "openai" else {})
    step = Step(stage=Evaluate.name, config=values.model_dump(mode="json"))
    recipe = add_step(out, step, executor or ExecutorConfig())
    run_recipe(recipe, out, argv=argv)
    return json.loads((Path(out) / SUMMARY).read_text(encoding="utf-8"))
