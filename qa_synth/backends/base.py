"""What every model backend of qa_synth does: answer one chat request, asynchronously.

A stage builds :class:`ChatRequest` objects, keys each by :meth:`ChatRequest.key` in its item store
(:mod:`corpus.run.item_store`) and awaits :meth:`Backend.complete` for the ones not stored, a bounded
number in flight (:func:`corpus.run.concurrency.map_stored`). What comes back is a :class:`Reply`
as a plain dict (``Reply.to_json()``), which is what the store keeps and what a rerun or a rebuild
reads instead of calling the model again.

Two kinds of failure, kept apart because a rerun treats them differently:
- a *permanent* one (the server refused this request: HTTP 400, 404, 413, 422...) is a reply with
  ``error`` set; it is stored like any reply, becomes an error row, and is never re-sent;
- a *transient* one (connection refused or reset, timeout, 429, 5xx, a 200 whose body is not the
  API's JSON) is retried with backoff inside :meth:`Backend.complete`; when the retries are spent it
  raises :class:`TransientError`, nothing is stored, and the stage fails the shard after storing
  everything else, so a rerun re-sends just those requests.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

from corpus.run.item_store import request_key


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion to ask for.

    ``params``: sampling parameters as the OpenAI API names them (``temperature``, ``max_tokens``,
    ``top_p``, ``seed``...). ``schema``: a JSON schema the reply must follow (sent as
    ``response_format`` ``json_schema`` by backends that can, else only described in the prompt),
    named ``schema_name``. ``template``: the prompt template and version (``"generate@1"``).
    """

    model: str
    messages: tuple[tuple[str, str], ...]  # (role, content), in order
    params: tuple[tuple[str, Any], ...] = ()  # sorted (name, value) pairs
    template: str = ""
    schema: str | None = None  # the JSON schema as canonical JSON text (hashable), or None
    schema_name: str = "reply"

    def key(self, model_fingerprint: str = "") -> str:
        """The item-store key of this request: a hash of everything that changes the reply.

        ``model_fingerprint``: what identifies the weights beyond the model's name (a local model's
        weight hash), so a changed model never reuses an old reply.
        """
        return request_key(
            model=self.model, weights=model_fingerprint, template=self.template,
            messages=[list(m) for m in self.messages], params=dict(self.params), schema=self.schema,
        )

    def messages_json(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]


@dataclass
class Reply:
    """What a backend made of one request (stored as JSON in the item store).

    ``text``: the message content ('' when none). ``error``: a permanent failure (the request was
    refused), else None. Token counts come from the server's ``usage`` (or the local tokenizer);
    None when the server gave none.
    """

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the server's model id or system_fingerprint

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Reply:
        return cls(**value)


class TransientError(RuntimeError):
    """The request could not be answered after its retries (connection, timeout, 429, 5xx): nothing
    is stored, and a rerun sends it again."""


class Backend(ABC):
    """Answers chat requests. Use as ``async with backend: await backend.complete(request)``.

    ``ledger`` counts what this backend did in this process (requests, retries, tokens, errors),
    for the stage's stats and the progress line.
    """

    def __init__(self) -> None:
        self.ledger: dict[str, int] = {"requests": 0, "retries": 0, "prompt_tokens": 0, "completion_tokens": 0,
                                       "errors.permanent": 0, "errors.transient": 0}

    async def __aenter__(self) -> Backend:
        return self

    async def __aexit__(self, *exc) -> None:
        return None

    def fingerprint(self) -> str:
        """What identifies the model's weights beyond its name ('' when only the name is known)."""
        return ""

    @abstractmethod
    async def complete(self, request: ChatRequest) -> Reply:
        """The reply to ``request``; raises :class:`TransientError` when its retries are spent."""
