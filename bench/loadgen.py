"""A small aiohttp load generator, run in its own process so it is not the gateway's code path.

Closed loop (``--concurrency N``: N clients, each sends its next request when the last one ends) or open
loop (``--rate R``: requests start at a fixed rate whatever the latency). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp
import msgspec


class Result(msgspec.Struct):
    requests: int
    errors: int
    seconds: float
    rps: float
    # Latency to the whole response (non-stream) or to the first body byte (stream: time to first token).
    p50_ms: float
    p99_ms: float
    # The gateway's own overhead header, where it sends one.
    overhead_p50_ms: float | None
    overhead_p99_ms: float | None
    # Streams: content events (tokens, for a backend that sends one per event) delivered per second.
    tokens_per_s: float | None = None


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class Recorder:
    def __init__(self, overhead_header: str | None) -> None:
        self.latencies: list[float] = []
        self.overheads: list[float] = []
        self.errors = 0
        self.tokens = 0
        self.recording = False
        self.overhead_header = overhead_header

    async def one(self, session: aiohttp.ClientSession, url: str, body: bytes, headers: dict, stream: bool) -> None:
        started = time.perf_counter()
        try:
            async with session.post(url, data=body, headers=headers) as response:
                tokens = 0
                if stream:
                    tokens = (await response.content.readany()).count(b'"content":')
                    first = time.perf_counter()
                    async for chunk in response.content.iter_any():
                        tokens += chunk.count(b'"content":')
                else:
                    await response.read()
                    first = time.perf_counter()
                ok = response.status == 200
                overhead = response.headers.get(self.overhead_header) if self.overhead_header else None
        except aiohttp.ClientError:
            ok, overhead, first, tokens = False, None, time.perf_counter(), 0
        if not self.recording:
            return
        if not ok:
            self.errors += 1
            return
        self.latencies.append((first - started) * 1000)
        self.tokens += tokens
        if overhead is not None:
            self.overheads.append(float(overhead))


async def run(args: argparse.Namespace) -> Result:
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {args.key}"} if args.key else {})}
    body = json.dumps(
        {
            "model": args.model,
            "messages": [{"role": "user", "content": args.prompt}],
            "max_tokens": 16,
            "stream": args.stream,
        }
    ).encode()
    recorder = Recorder(args.overhead_header)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        deadline = time.perf_counter() + args.warmup + args.duration
        record_from = time.perf_counter() + args.warmup

        async def closed_loop_client() -> None:
            while time.perf_counter() < deadline:
                recorder.recording = time.perf_counter() >= record_from
                await recorder.one(session, args.url, body, headers, args.stream)

        async def open_loop() -> None:
            interval = 1 / args.rate
            tasks = set()
            next_at = time.perf_counter()
            while next_at < deadline:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                recorder.recording = time.perf_counter() >= record_from
                task = asyncio.create_task(recorder.one(session, args.url, body, headers, args.stream))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                next_at += interval
            await asyncio.gather(*tasks)

        if args.rate:
            await open_loop()
        else:
            await asyncio.gather(*(closed_loop_client() for _ in range(args.concurrency)))
    count = len(recorder.latencies)
    return Result(
        requests=count,
        errors=recorder.errors,
        seconds=args.duration,
        rps=count / args.duration,
        p50_ms=percentile(recorder.latencies, 0.50),
        p99_ms=percentile(recorder.latencies, 0.99),
        overhead_p50_ms=percentile(recorder.overheads, 0.50) if recorder.overheads else None,
        overhead_p99_ms=percentile(recorder.overheads, 0.99) if recorder.overheads else None,
        tokens_per_s=recorder.tokens / args.duration if args.stream else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", default="bench-model")
    parser.add_argument("--key", default="")
    parser.add_argument("--prompt", default="Hello, how are you today?")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--overhead-header", default=None)
    args = parser.parse_args()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    print(msgspec.json.encode(asyncio.run(run(args))).decode())


if __name__ == "__main__":
    main()
