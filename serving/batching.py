"""Adaptive micro-batching inside the service process.

BentoML's own batching dispatcher only applies to HTTP calls into a batchable endpoint, so calling
the model step in the same process would get no batching at all. This batcher merges whatever
requests are waiting while the model is busy into the next call: no added latency when idle, and
larger batches exactly when load makes them pay off. It never sheds load; the server's
max_concurrency bounds the queue.

`finish` turns a batch's outputs into each submission's result in one call, after the model and
before any submitter resumes: the service builds its answers there and logs them all
in one write, so each is in the prediction log before any is sent (a record built and written
per request cost ~2 points more of the throughput: README, "Prediction and actuals logs").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

# One submission of a finished batch: its tag (given to `submit`), its rows and their outputs.
Part = tuple[Any, list[Any], Sequence[Any]]


class MicroBatcher:
    def __init__(
        self,
        predict: Callable[[list[Any]], Sequence[Any]],
        max_batch_rows: int,
        finish: Callable[[list[Part]], Sequence[Any]],
        threaded: bool = True,
    ) -> None:
        self._predict = predict
        self._max_rows = max_batch_rows
        self._threaded = threaded
        self._finish = finish
        self._queue: asyncio.Queue[tuple[list[Any], Any, asyncio.Future[Any]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0  # calls of the model, for tests and metrics

    async def submit(self, rows: list[Any], tag: Any = None) -> Any:
        """What `finish` made of the outputs of `rows`; `tag` is handed to `finish` with them."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._run(), name="micro-batcher")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put((rows, tag, future))
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
            rows = [row for part, _, _ in batch for row in part]
            try:
                # A slow model runs in a thread, so the event loop keeps reading and validating
                # requests meanwhile; a fast one runs inline, cheaper than the thread handoff.
                if self._threaded:
                    out = await asyncio.to_thread(self._predict, rows)
                else:
                    out = self._predict(rows)
                self.batches += 1
                parts: list[Part] = []
                start = 0
                for part, tag, _ in batch:
                    parts.append((tag, part, out[start : start + len(part)]))
                    start += len(part)
                results = self._finish(parts)
            except Exception as exc:  # the model's or finish's: every submission of the batch fails
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, _, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
