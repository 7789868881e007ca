"""One request's facts, gathered as it proceeds and recorded once when its answer is finished.

This is the single place that turns a request into metrics, so a streamed answer is counted when its
last chunk leaves, not when its headers do.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import msgspec

from monitor import metrics


class Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _WithUsage(msgspec.Struct):
    usage: Usage | None = None


_usage_decoder = msgspec.json.Decoder(_WithUsage)


class Observation:
    __slots__ = ("route", "model", "stream", "started", "upstream_s", "ttft_s", "usage")

    def __init__(self, route: str) -> None:
        self.route = route
        self.model = "unknown"  # a configured model name once routed: labels stay bounded
        self.stream = False
        self.started = time.perf_counter()
        self.upstream_s = 0.0
        self.ttft_s: float | None = None
        self.usage: Usage | None = None

    def overhead_ms(self) -> float:
        """Time in driftgate's own code so far: everything except waiting on the backend."""
        return (time.perf_counter() - self.started - self.upstream_s) * 1000

    def usage_from_body(self, body: bytes) -> None:
        try:
            self.usage = _usage_decoder.decode(body).usage
        except msgspec.DecodeError:
            pass

    def finish(self, status: int, overhead_ms: float | None = None) -> None:
        elapsed = time.perf_counter() - self.started
        metrics.REQUESTS.labels(self.route, self.model, str(status)).inc()
        metrics.REQUEST_DURATION.labels(self.route, self.model, "true" if self.stream else "false").observe(elapsed)
        if overhead_ms is not None:
            metrics.OVERHEAD.labels(self.route).observe(overhead_ms / 1000)
        if self.ttft_s is not None:
            metrics.TIME_TO_FIRST_TOKEN.labels(self.model).observe(self.ttft_s)
        if self.usage is not None:
            metrics.TOKENS.labels(self.model, "prompt").inc(self.usage.prompt_tokens)
            metrics.TOKENS.labels(self.model, "completion").inc(self.usage.completion_tokens)

    async def watch_stream(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Pass a stream through untouched, noting its first chunk, its usage event and its end."""
        try:
            async for chunk in chunks:
                if self.ttft_s is None:
                    self.ttft_s = time.perf_counter() - self.started
                if b'"usage":{' in chunk or b'"usage": {' in chunk:
                    self._usage_from_sse(chunk)
                yield chunk
        finally:
            self.finish(200)

    def _usage_from_sse(self, chunk: bytes) -> None:
        # An event split across two reads is not parsed: the usage count is best effort, the bytes are not.
        for line in chunk.split(b"\n"):
            if line.startswith(b"data: {") and b'"usage"' in line:
                self.usage_from_body(line[6:])
