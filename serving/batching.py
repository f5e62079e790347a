"""Adaptive micro-batching inside the service process.

BentoML's own batching dispatcher only applies to HTTP calls into a batchable endpoint, so calling
the model step in the same process would get no batching at all. This batcher merges whatever
requests are waiting while the model is busy into the next call: no added latency when idle, and
larger batches exactly when load makes them pay off. It never sheds load; the server's
max_concurrency bounds the queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any


class MicroBatcher:
    def __init__(
        self,
        predict: Callable[[list[Any]], Sequence[Any]],
        max_batch_rows: int,
        threaded: bool = True,
    ) -> None:
        self._predict = predict
        self._max_rows = max_batch_rows
        self._threaded = threaded
        self._queue: asyncio.Queue[tuple[list[Any], asyncio.Future[Sequence[Any]]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0  # calls of the model, for tests and metrics

    async def submit(self, rows: list[Any]) -> Sequence[Any]:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._run(), name="micro-batcher")
        future: asyncio.Future[Sequence[Any]] = asyncio.get_running_loop().create_future()
        await self._queue.put((rows, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            total = len(batch[0][0])
            while not self._queue.empty() and total < self._max_rows:
                item = self._queue.get_nowait()
                batch.append(item)
                total += len(item[0])
            rows = [row for part, _ in batch for row in part]
            try:
                # A slow model runs in a thread, so the event loop keeps reading and validating
                # requests meanwhile; a fast one runs inline, cheaper than the thread handoff.
                if self._threaded:
                    out = await asyncio.to_thread(self._predict, rows)
                else:
                    out = self._predict(rows)
                self.batches += 1
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for part, future in batch:
                if not future.done():
                    future.set_result(out[start : start + len(part)])
                start += len(part)
