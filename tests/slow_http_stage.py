"""A test stage that asks a (slow) HTTP server one question per item, many at once, each reply stored.

It is the shape of a model-calling stage: requests keyed by model, template and input, sent with
a bounded number in flight on one event loop (:func:`corpus.run.concurrency.map_stored`), kept in
the stage's item store the moment they come back, replayed (never re-sent) by ``rebuild``.
"""

from __future__ import annotations

import asyncio

import aiohttp
from pydantic import Field

from corpus.run.concurrency import map_stored
from corpus.run.item_store import ItemStore, open_store, request_key
from corpus.run.stage import Stage, StageConfig, how_field, register_stage

TEMPLATE_VERSION = 1


class AskConfig(StageConfig):
    n_items: int = Field(40, ge=0, description="questions item000, item001, ...")
    model: str = Field("echo-1", description="the model asked (part of every request's key)")
    url: str = how_field(description="the server's endpoint")
    max_in_flight: int = how_field(4, ge=1, description="requests in flight at once")


@register_stage
class AskServer(Stage):
    name = "askserver"
    config_class = AskConfig

    def plan(self) -> list[str]:
        return [f"item{i:03d}" for i in range(self.config.n_items)]

    def key(self, item: str) -> str:
        return request_key(model=self.config.model, template=TEMPLATE_VERSION, input=item, params={})

    async def ask_all(self, items: list[str], store: ItemStore):
        async with aiohttp.ClientSession() as session:
            async def ask(item: str):
                async with session.post(self.config.url, json={"model": self.config.model, "input": item}) as resp:
                    resp.raise_for_status()
                    return await resp.json()

            return await map_stored(items, self.key, ask, store, self.config.max_in_flight, what="request")

    def process(self, items):
        with open_store(self, replay_only=True) as store:
            outcomes = asyncio.run(self.ask_all(items, store))
        for item, outcome in zip(items, outcomes):
            if outcome.error:
                yield self.decisions_file, [self.decision(item, "failed", "request_failed", error=outcome.error)]
            else:
                yield self.decisions_file, [self.decision(item, "kept", "answered", answer=outcome.value)]
