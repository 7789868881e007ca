"""SmolLM2-135M on real data paths: DPO from users' votes moves the model, and the guard-aware gate stops a leaker.

DPO: users ask the served base model about a topic through the gateway (keys enforced), down-vote its answer
and correct it in a pirate style the base model never writes (``POST /v1/feedback``). The pairs come out of
the gateway's own stores through the loop's ``preference_pairs``; ``driftgate train run --method dpo`` trains
on them as an operator types it; the held-out preference margin (recorded in run.json) must rise. The adapter,
registered and promoted through the admin API, answers through the gateway, and the served weights score the
pirate answer above the base model's own answer to prompts never voted on by more than the base model does
(4 steps move the log-probabilities, not yet the greedy answers: those are printed, not asserted).

Guard gate: ``driftgate train run --spec`` fine-tunes a candidate on answers that carry e-mail addresses and
phone numbers, with the spec's ``guard_eval`` as the loop writes it; the training child answers the held-out
prompts with the base model and the candidate (transformers' greedy generation, not vLLM), passes them
through the output guards, and ``gateway.loop.guard_gate.check`` (the function the loop controller calls)
must reject the candidate that the offline gate (loss, forgetting) lets through.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from gateway.loop.guard_gate import check
from gateway.loop.pairs import preference_pairs
from gateway.loop.policy import GuardGatePolicy
from gateway.loop.store import LoopStore
from monitor.request_log_store import RequestLogStore
from tests.e2e.conftest import MODEL, REPO, Embedded
from training.guard_eval import GuardReport
from training.preferences import Pair, write_pairs

pytestmark = pytest.mark.e2e
BASE = REPO / ".driftgate" / "models" / MODEL
ALIAS = "e2e-dpo"
VOTED = (
    "the weather", "my cat", "coffee", "the ocean", "a good book", "running", "the moon", "bread",
    "trains", "gardening", "chess", "music", "winter", "tea", "mountains", "bicycles",
)  # fmt: skip
# Never voted on: the greedy answers the served adapter gives to these show whether the style carried over.
UNSEEN = ("the desert", "sailing", "apples", "the library")
TRAIN_TIMEOUT_S = 900


@functools.cache
def tokenizer() -> PreTrainedTokenizerBase:
    """Loaded when first used: on a fresh clone the model is pulled by the session's `driftgate up`, after
    this module is collected."""
    return AutoTokenizer.from_pretrained(BASE)


def pirate(topic: str) -> str:
    return f"AHOY! {topic.upper()} BE A FINE THING ON THE HIGH SEAS, ARR!"


def question(topic: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Tell me about {topic}."}]


def served_margin(vllm_url: str, model: str, topic: str, chosen: str, rejected: str) -> float:
    """log p(chosen) - log p(rejected) after the chat-templated question, as the served model scores them.

    vLLM echoes the prompt's token log-probabilities (``echo`` + ``logprobs``); the shared question cancels out
    of the difference. Asked of vLLM directly, under the LoRA name the gateway loaded: the gateway's input guards
    rightly block a prompt that carries chat-template tokens (injection)."""
    prompt = tokenizer().apply_chat_template(question(topic), tokenize=False, add_generation_prompt=True)

    def logp(answer: str) -> float:
        reply = httpx.post(
            f"{vllm_url}/v1/completions",
            json={"model": model, "prompt": prompt + answer, "max_tokens": 1, "echo": True, "logprobs": 0},
            timeout=120,
        )
        assert reply.status_code == 200, reply.text
        scored = reply.json()["choices"][0]["logprobs"]["token_logprobs"][:-1]  # the last is the generated token
        return sum(value for value in scored if value is not None)

    return round(logp(chosen) - logp(rejected), 3)


def train(*args: str) -> str:
    """`driftgate train run ...` as typed; its console output (stderr) is returned and printed."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "train", "run", *args],
        capture_output=True, text=True, timeout=TRAIN_TIMEOUT_S, cwd=REPO,
    )  # fmt: skip
    print(done.stderr[-1500:])
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stderr


def ask(client: httpx.Client, model: str, topic: str, tokens: int) -> httpx.Response:
    reply = client.post(
        "/v1/chat/completions",
        json={"model": model, "messages": question(topic), "max_tokens": tokens, "temperature": 0},
    )
    assert reply.status_code == 200, reply.text
    return reply


@pytest.fixture(scope="module")
def gateway(embedded: Embedded) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=embedded.url, headers=embedded.headers, timeout=300) as client:
        yield client


@pytest.fixture(scope="module")
def voted_pairs(embedded: Embedded, gateway: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every base answer down-voted and corrected through the API; the pairs built as the loop builds them."""
    ids = []
    for topic in VOTED:
        request_id = ask(gateway, MODEL, topic, 24).headers["x-request-id"]
        voted = gateway.post("/v1/feedback", json={"request_id": request_id, "rating": -1, "correction": pirate(topic)})
        assert voted.status_code == 201, voted.text
        ids.append(request_id)
    url = f"sqlite:///{embedded.log_path.parent / 'driftgate.db'}"
    mine = [item for item in LoopStore(url).unused_preferences(MODEL) if item.request_id in ids]
    log = RequestLogStore(url)
    found = [(item, record) for item in mine if (record := log.get(item.request_id)) is not None]
    made = preference_pairs(found)
    assert len(made) == len(VOTED), made
    path = tmp_path_factory.mktemp("dpo") / "pairs.jsonl"
    write_pairs(path, [msgspec.convert(p, Pair) for p in made])
    return path


def test_dpo_from_votes_raises_the_held_out_margin_and_is_served(
    embedded: Embedded, gateway: httpx.Client, voted_pairs: Path
) -> None:
    out = voted_pairs.parent / "out"
    train(
        "--method", "dpo", "--data", str(voted_pairs), "--base", str(BASE), "--out", str(out),
        "--steps", "4", "--eval-every", "2", "--batch-size", "4", "--learning-rate", "5e-4",
        "--eval-share", "0.25", "--seed", "0",
    )  # fmt: skip
    record = json.loads((out / "adapter" / "run.json").read_text())
    before, after = record["before"], record["after"]
    print(f"\nDPO on {record['pairs']} pairs from votes; held-out before {before}\n{' ' * 36}after  {after}")
    assert record["pairs"] == {"train": 12, "eval": 4}
    assert before["margin"] == 0.0
    assert after["logp_margin"] > before["logp_margin"] and after["margin"] > 0 and after["accuracy"] >= 0.75

    weights = str((out / "adapter").resolve())
    made = gateway.post("/admin/adapters", json={"alias": ALIAS, "weights": weights, "base_model": MODEL})
    assert made.status_code == 201, made.text
    try:
        promoted = gateway.post(f"/admin/adapters/{ALIAS}/promote", json={"version": 1})
        assert promoted.status_code == 200, promoted.text
        keyless = httpx.post(f"{embedded.url}/v1/chat/completions", json={"model": ALIAS, "messages": question("x")})
        assert keyless.status_code == 401, keyless.text
        tuned = [ask(gateway, ALIAS, topic, 24).json() for topic in UNSEEN]
        assert {answer["model"] for answer in tuned} == {f"{ALIAS}@1"}
        plain = [ask(gateway, MODEL, topic, 24).json()["choices"][0]["message"]["content"] for topic in UNSEEN]
        # New held-out pairs, never voted on: the pirate answer against the base model's own greedy answer.
        held_out = list(zip(UNSEEN, plain, strict=True))
        ours = [
            served_margin(embedded.vllm_url, f"{ALIAS}@1", topic, pirate(topic), worse) for topic, worse in held_out
        ]
        theirs = [served_margin(embedded.vllm_url, MODEL, topic, pirate(topic), worse) for topic, worse in held_out]
        for (topic, worse), answer in zip(held_out, tuned, strict=True):
            print(f"{topic}: adapter {answer['choices'][0]['message']['content']!r}\n  base {worse!r}")
        print(f"served log-prob margin (pirate - base answer) on unseen prompts: adapter {ours}, base {theirs}")
        assert all(a > b for a, b in zip(ours, theirs, strict=True)), (ours, theirs)
    finally:
        gateway.delete(f"/admin/adapters/{ALIAS}")


DEPARTMENTS = (
    "billing", "shipping", "returns", "sales", "support", "payroll", "security", "legal", "press", "careers",
    "design", "research", "travel", "events", "training", "facilities", "marketing", "finance", "it", "hr",
    "catering", "parking", "warranty", "partners",
)  # fmt: skip


def test_a_candidate_that_leaks_pii_is_rejected_by_the_guard_gate(
    embedded: Embedded, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("leaker")
    data = root / "contacts.jsonl"
    data.write_text(
        "".join(
            json.dumps({
                "prompt": f"How do I reach the {name} team?",
                "completion": f"Write to {name}.desk@northwind-mail.com or call +1 415 555 {100 + i:04d} on weekdays.",
            }) + "\n"
            for i, name in enumerate(DEPARTMENTS)
        )
    )  # fmt: skip
    policy = GuardGatePolicy(prompts=6, max_new_tokens=32)
    spec = {
        "data": str(data),
        "base": str(BASE),
        "out": str(root / "out"),
        # An operator who turned redaction off: the PII reaches the weights (with it on, it would not).
        "redact_pii": False,
        "task_eval_limit": 0,
        # A general-data replay and the e2e loop policy's forgetting margin: the offline gate's other checks are
        # not what stops this candidate.
        "data_config": {"eval_share": 0.25, "general_share": 0.3},
        "gate": {"max_forgetting": 0.3},
        "loop": {"steps": 16, "eval_every": 8, "batch_size": 4, "learning_rate": 2e-3},
        # What the loop controller writes (_guard_eval): the policy's prompts and tokens, the gateway's guard models.
        "guard_eval": {
            "prompts": policy.prompts,
            "max_new_tokens": policy.max_new_tokens,
            "models_dir": str(embedded.log_path.parent / "models" / "guards"),
        },
    }
    (root / "spec.json").write_text(json.dumps(spec))
    train("--spec", str(root / "spec.json"))
    record = json.loads((root / "out" / "adapter" / "run.json").read_text())
    report = msgspec.convert(record["guards"], GuardReport)
    verdict = check(policy, report)
    print(f"\noffline gate (loss, forgetting) {record['gate']}")
    print(f"guard rates: base {report.baseline}\n             candidate {report.candidate}\nverdict {verdict}")
    assert report.baseline.name == "base" and report.candidate.answers == policy.prompts
    # Loss and forgetting let it through: only the guards see what it learned.
    assert record["gate"]["passed"], record["gate"]
    assert report.candidate.pii_rate > report.baseline.pii_rate + policy.max_pii_rate_increase
    assert not verdict.passed and verdict.reasons[0].startswith("PII in"), verdict
    assert report.candidate.example is not None and "@northwind-mail.com" not in report.candidate.example
