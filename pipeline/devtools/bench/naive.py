"""The naive peer of `bench ingress`: what a user would write in an afternoon instead.

A FastAPI app on uvicorn (uvloop, httptools) that JSON-decodes the callback's query parameter
and awaits aiokafka's `send_and_wait` of it as a JSON value, one record per request, acks=all.
No validation, no Avro, no dead letters, no spool: the peer does less than the ingress, never
more, so the ratio flatters the peer if anything. It reaches the cluster with the pipeline's own
client settings (KAFKA_*), so it runs on a secured cluster too.

Run: `uvicorn pipeline.devtools.bench.naive:app` with NAIVE_TOPIC set.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Request

from pipeline.kafka.config import KafkaClientConfig

__all__ = ["app"]

_producer: dict[str, Any] = {}


@asynccontextmanager
async def _lifespan(_: FastAPI) -> AsyncIterator[None]:
    config = KafkaClientConfig.from_env(os.environ)
    producer = AIOKafkaProducer(**config.aiokafka(), acks="all")
    await producer.start()
    _producer["p"] = producer
    try:
        yield
    finally:
        await producer.stop()


app = FastAPI(lifespan=_lifespan)


@app.api_route("/callbacks/{token}", methods=["GET", "POST"])
async def callback(token: str, request: Request) -> dict[str, bool]:
    """One callback: its parameter as JSON, sent and acknowledged before answering."""
    for _name, value in request.query_params.items():
        payload = json.loads(value)
        await _producer["p"].send_and_wait(os.environ["NAIVE_TOPIC"], json.dumps(payload).encode())
    return {"ok": True}


@app.get("/healthz")
async def healthz() -> dict[str, bool]:
    return {"ok": True}
