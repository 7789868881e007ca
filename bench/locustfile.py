"""Locust users for the gateway soak test (``python -m bench.load`` runs it; see that module).

A mix of OpenAI traffic against driftgate in front of ``bench.mock_upstream``: plain chat completions,
streamed ones (read to ``data: [DONE]``), and model listings. Any status other than 200, a body without
``choices``, or a stream that does not end properly counts as a failure. Each request carries a different
prompt, so the gateway (guards, request log) never sees one payload over and over.

    locust -f bench/locustfile.py --headless -u 32 -r 8 -t 60s --host http://127.0.0.1:8000
"""

from __future__ import annotations

import itertools
import json
import os

from locust import FastHttpUser, constant, task

MODEL = os.environ.get("LOAD_MODEL", "bench-model")
PROMPT = (
    "Request {n}: I run a small bakery and plan next month's menu. Suggest three autumn breads with local "
    "apples, pumpkins, walnuts or honey, with a one-line description for the chalkboard and proving times."
)
_counter = itertools.count()


def _chat(stream: bool) -> bytes:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT.format(n=next(_counter))}],
        "max_tokens": 32,
        "stream": stream,
    }
    return json.dumps(body).encode()


class OpenAIClient(FastHttpUser):
    wait_time = constant(0)  # closed loop: each user sends its next request as soon as one ends
    headers = {"content-type": "application/json"}

    @task(6)
    def chat(self) -> None:
        with self.client.post(
            "/v1/chat/completions", data=_chat(False), headers=self.headers, name="chat", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}: {(response.text or '')[:200]}")
            elif b'"choices"' not in (response.content or b""):
                response.failure("no choices in the answer")

    @task(3)
    def chat_stream(self) -> None:
        with self.client.post(
            "/v1/chat/completions", data=_chat(True), headers=self.headers, name="chat stream", catch_response=True
        ) as response:
            body = response.content or b""
            if response.status_code != 200:
                response.failure(f"status {response.status_code}: {body[:200]!r}")
            elif not body.rstrip().endswith(b"data: [DONE]") or b'"error"' in body:
                response.failure(f"stream did not end cleanly: {body[-200:]!r}")

    @task(1)
    def models(self) -> None:
        with self.client.get("/v1/models", name="models", catch_response=True) as response:
            if response.status_code != 200 or MODEL not in (response.text or ""):
                response.failure(f"status {response.status_code}: {(response.text or '')[:200]}")
