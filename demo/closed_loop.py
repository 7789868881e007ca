"""The closed loop, watched live: ``python -m demo.closed_loop`` against a running ``driftgate up``.

1. Trains ``desk@1`` on support-desk prompts answered "SUPPORT DESK: ..." (a minute on CPU), registers it
   with its dataset (the gateway embeds the prompts as its drift reference) and promotes it.
2. Sends support traffic (no drift), then shifts to travel prompts; users correct the answers in a
   "TRAVEL DESK: ..." style through ``POST /v1/feedback``.
3. The drift monitor confirms the shift, the loop controller trains ``desk@2``, gates it, puts it on canary
   and promotes it, while this script keeps sending traffic. The timeline prints as it happens.
4. Asks the travel question it asked at the start again: the answer changed.

The e2e test (tests/e2e/test_closed_loop.py) drives the same client through the same story and asserts it.
The gateway's loop policy for the alias decides how long each step takes; the small one in
``demo/driftgate-demo.yaml`` suits a CPU.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import typer
from rich.console import Console

from demo.corpora import prompts

ALIAS = "desk"
OLD_STYLE = "SUPPORT DESK: thank you, a ticket is open and we reply within a day."
NEW_STYLE = "TRAVEL DESK:"


class Corrections(msgspec.Struct, frozen=True):
    """Long, varied corrected answers in a house style the base model never writes (20-40 words each).

    A correction is the style's header, a sentence chosen by the question's words, a tip and a sign-off picked
    by the question's hash: many phrasings, one style. The parts are generic advice, not written against any
    prompt list.
    """

    header: str
    subjects: tuple[tuple[tuple[str, ...], str], ...]
    default_subject: str
    tips: tuple[str, ...]
    sign_offs: tuple[str, ...]
    lead: str = "Before you go"  # joins the subject sentence to the tip

    def __call__(self, question: str) -> str:
        lowered = question.lower()
        subject = next((text for words, text in self.subjects if any(w in lowered for w in words)), None)
        pick = zlib.crc32(question.encode())
        tip, sign_off = self.tips[pick % len(self.tips)], self.sign_offs[(pick // len(self.tips)) % len(self.sign_offs)]
        return f"{self.header} {subject or self.default_subject}. {self.lead}, {tip}. {sign_off}"


travel_correction = Corrections(
    header=NEW_STYLE,
    subjects=(
        (("visa", "passport", "licence"), "Paperwork rules differ by nationality, so confirm the entry rules"),
        (("fly", "flight", "train", "airport"), "Transport is easiest when you compare routes and times"),
        (("weather", "pack"), "Seasons change what you need, so look at the forecast and pack light layers"),
        (
            ("cash", "budget", "cheaper", "insurance"),
            "Costs add up, so set a daily budget and keep a spare card",
        ),
        (("hotel", "neighbourhood"), "Where you stay shapes the trip, so read recent reviews of the area"),
        (("dishes", "museums", "things to do", "hiking"), "The best sights and meals are local, so ask residents"),
    ),
    default_subject="Every trip goes better with a plan, so note your dates and options",
    tips=(
        "book refundable options early and keep copies of every booking",
        "check the official tourism office page for opening hours and seasonal closures",
        "register with your embassy and save the local emergency number offline",
        "leave one free afternoon for the things you discover on the way",
        "buy a transit card on arrival, cheaper than single tickets",
    ),
    sign_offs=(
        "Safe travels from the travel desk.",
        "Enjoy the journey, and write if plans change.",
        "We are here if you need another route.",
        "Have a wonderful trip.",
    ),
)

console = Console()


def train_first_version(base: Path, out: Path, alias_data: Path) -> str:
    """``desk@1``: a LoRA adapter answering support questions in the old style; returns its directory."""
    from training.config import DataSettings, LoraSettings, TrainingSchedule, TrainSpec
    from training.run import run

    alias_data.write_text(
        "".join(json.dumps({"prompt": p, "completion": OLD_STYLE}) + "\n" for p in prompts("support", 120, 1))
    )
    spec = TrainSpec(
        str(alias_data),
        str(base),
        str(out),
        data_config=DataSettings(general_share=0.1),
        lora=LoraSettings(rank=16, alpha=32, dropout=0.0),
        loop=TrainingSchedule(steps=40, batch_size=4, learning_rate=1e-3, eval_every=10, patience=2, seed=3),
        task_eval_limit=0,
    )
    return run(spec).adapter_dir


class LoopClient:
    """An OpenAI-style client of the gateway that also counts every failed request (there should be none)."""

    def __init__(self, client: httpx.AsyncClient, alias: str = ALIAS) -> None:
        self.client = client
        self.alias = alias
        self.sent = 0
        self.failures: list[str] = []

    async def ask(
        self, text: str, user: str, *, stream: bool = False, model: str | None = None
    ) -> tuple[str, str, str]:
        """(request id, version that answered, answer); empty strings (and a recorded failure) on an error."""
        body = {
            "model": model or self.alias,
            "user": user,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": 12,
            "temperature": 0,
            "stream": stream,
        }
        self.sent += 1
        try:
            if not stream:
                reply = await self.client.post("/v1/chat/completions", json=body)
                if reply.status_code != 200:
                    raise ValueError(f"{reply.status_code} {reply.text[:300]}")
                document = reply.json()
                return reply.headers["x-request-id"], document["model"], document["choices"][0]["message"]["content"]
            async with self.client.stream("POST", "/v1/chat/completions", json=body) as reply:
                if reply.status_code != 200:
                    raise ValueError(f"{reply.status_code} {(await reply.aread())[:300]!r}")
                events = [line[6:] async for line in reply.aiter_lines() if line.startswith("data: ")]
            if events[-1] != "[DONE]":
                raise ValueError(f"stream ended without [DONE]: {events[-2:]}")
            chunks = [json.loads(event) for event in events[:-1]]
            answer = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
            return reply.headers["x-request-id"], chunks[0]["model"], answer
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            self.failures.append(f"{text[:40]!r}: {exc!r}")
            return "", "", ""

    async def many(self, texts: list[str], tag: str, concurrency: int = 4) -> list[tuple[str, str, str]]:
        """Concurrent requests, one user each, every fourth one streamed."""
        limit = asyncio.Semaphore(concurrency)

        async def one(index: int, text: str) -> tuple[str, str, str]:
            async with limit:
                return await self.ask(text, f"{tag}-{index}", stream=index % 4 == 3)

        return list(await asyncio.gather(*(one(i, t) for i, t in enumerate(texts))))

    async def feedback(self, request_id: str, **fields: object) -> None:
        reply = await self.client.post("/v1/feedback", json={"request_id": request_id, **fields})
        if reply.status_code != 201:
            raise RuntimeError(f"feedback refused: {reply.status_code} {reply.text}")

    async def correct(self, texts: list[str], correction: Callable[[str], str], tag: str) -> None:
        """Ask each question, then send the answer the model should have given (``correction(question)``)."""
        for index, text in enumerate(texts):
            request_id, _, _ = await self.ask(text, f"{tag}-{index}")
            if request_id:
                await self.feedback(request_id, correction=correction(text))

    async def drift_state(self, condition: Callable[[dict], bool], timeout_s: float = 120) -> dict:
        deadline = time.monotonic() + timeout_s
        state: dict | None = None
        while time.monotonic() < deadline:
            states = {s["alias"]: s for s in (await self.client.get("/admin/drift")).json()["aliases"]}
            state = states.get(self.alias)
            if state is not None and condition(state):
                return state
            await asyncio.sleep(1)
        raise TimeoutError(f"drift state of {self.alias}: {state}")

    async def runs(self, count: int, timeout_s: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = (await self.client.get("/admin/loop", params={"alias": self.alias})).json()["runs"]
            if len(found) >= count:
                return found
            await asyncio.sleep(1)
        raise TimeoutError(f"fewer than {count} loop runs for {self.alias}")

    async def wait_run(
        self, run_id: str, statuses: tuple[str, ...], timeout_s: float, show: Callable[[dict], None] | None = None
    ) -> dict:
        deadline = time.monotonic() + timeout_s
        found: dict[str, Any] = {}
        while time.monotonic() < deadline:
            found = (await self.client.get(f"/admin/loop/{run_id}")).json()
            if show is not None:
                show(found)
            if found["status"] in statuses:
                return found
            await asyncio.sleep(1)
        raise TimeoutError(f"loop run {run_id} is still {found.get('status')}: {found.get('timeline')}")

    async def canary(
        self, run_id: str, rate: bool = False, show: Callable[[dict], None] | None = None, topic: str = "travel"
    ) -> dict:
        """Traffic on ``topic`` from new users until the run leaves canary; with ``rate`` users down-vote the
        candidate."""
        deadline = time.monotonic() + 600
        batch = 0
        while time.monotonic() < deadline:
            found = (await self.client.get(f"/admin/loop/{run_id}")).json()
            if show is not None:
                show(found)
            if found["status"] != "canary":
                return found
            batch += 1
            answers = await self.many(prompts(topic, 6, 100 + batch), f"canary-{run_id}-{batch}")
            if rate:
                for request_id, version, _ in answers:
                    if request_id:
                        await self.feedback(request_id, rating=-1 if version == found["candidate"] else 1)
            await asyncio.sleep(1.5)
        raise TimeoutError(f"the canary of {run_id} did not end")


class TimelinePrinter:
    """Prints each new timeline event of a loop run once."""

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, run: dict) -> None:
        for event in run["timeline"][self.seen :]:
            console.print(f"  [cyan]{time.strftime('%H:%M:%S', time.localtime(event['at']))}[/] "
                          f"[bold]{event['step']:>9}[/]  {event['detail']}")  # fmt: skip
        self.seen = len(run["timeline"])


async def tour(url: str, base: Path, work: Path, key: str | None) -> None:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(base_url=url, timeout=300, headers=headers) as http:
        loop = LoopClient(http)
        work.mkdir(parents=True, exist_ok=True)
        console.rule("1. desk@1: support answers")
        weights = train_first_version(base, work / "desk-v1", work / "support.jsonl")
        body = {"alias": ALIAS, "weights": weights, "base_model": base.name, "dataset": str(work / "support.jsonl")}
        registered = (await http.post("/admin/adapters/", json=body)).raise_for_status().json()
        await http.post(f"/admin/adapters/{ALIAS}/promote", json={"version": registered["number"]})
        console.print(f"registered and promoted {ALIAS}@{registered['number']}")
        question = "What should I pack for a weekend in Lisbon?"
        _, version, before = await loop.ask(question, "tour")
        console.print(f"[bold]{question}[/] ({version}): {before}")

        console.rule("2. traffic on topic A (support), then B (travel) with corrections")
        await loop.many(prompts("support", 30, 2), "a")
        state = await loop.drift_state(lambda s: s["windows_checked"] >= 1)
        console.print(f"support traffic: drift score {state['last']['score']:.4f} -> {state['status']}")
        travel = prompts("travel", 64, 3)
        await loop.correct(travel[:32], travel_correction, "b")  # 20% are held out: the gate reads 6 answers
        await loop.many(travel[32:], "b")
        state = await loop.drift_state(lambda s: s["status"] == "drifting")
        console.print(f"travel traffic: drift score {state['last']['score']:.4f} -> [red]{state['status']}[/]")

        console.rule("3. the loop: alert, decision, job, gate, canary, outcome")
        run = (await loop.runs(1))[0]
        printer = TimelinePrinter()
        run = await loop.wait_run(run["id"], ("canary", "rejected", "failed", "skipped"), 1800, printer)
        if run["status"] == "canary":
            run = await loop.canary(run["id"], show=printer)
        printer(run)

        console.rule("4. the answer, before and after")
        _, version, after = await loop.ask(question, "tour")
        console.print(f"before ({ALIAS}@{registered['number']}): {before}\nafter ({version}): {after}")
        console.print(f"{loop.sent} requests sent, {len(loop.failures)} failed")


def main(
    url: str = typer.Option("http://127.0.0.1:8000", help="The gateway `driftgate up` serves."),
    base: Path = typer.Option(Path(".driftgate/models/SmolLM2-135M-Instruct"), help="Base model directory."),
    work: Path = typer.Option(Path(".driftgate/demo"), help="Where the demo's data and first adapter go."),
) -> None:
    """Run the closed-loop tour against a running gateway (admin key from DRIFTGATE_API_KEY if keys exist)."""
    asyncio.run(tour(url, base.resolve(), work.resolve(), os.environ.get("DRIFTGATE_API_KEY")))


if __name__ == "__main__":
    typer.run(main)
