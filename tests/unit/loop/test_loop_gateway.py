"""The loop controller inside a running gateway over a fake vLLM, with training replaced by a stand-in.

What is real: the HTTP API (/admin/alerts, /v1/feedback, /admin/loop), the registry, the request log, the
policy, dataset assembly, the canary and its verdict. What is not: the training job (tests/e2e trains for
real); here it writes an adapter directory and a run record with the gate verdict the test asks for.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import msgspec
import pytest

from gateway.loop.policy import CanaryPolicy, LoopPolicy, LoopSettings, TeacherSettings
from guards import GuardsSettings, StageSettings, ToxicitySettings
from monitor.request_log import RequestLogSettings
from tests.conftest import running_gateway
from tests.unit.adapters.conftest import BASE, adapter_settings, write_adapter
from training.config import TrainSpec
from training.evaluate import GateVerdict, ModelScores
from training.guard_eval import GuardRates, GuardReport
from training.jobs import JobStatus
from training.status import Progress

NO_TOXICITY = StageSettings(toxicity=ToxicitySettings(enabled=False))


class StandInJobs:
    """Finishes every job at once: an adapter directory and a run.json whose gate says ``passes``."""

    def __init__(self, passes: bool = True, leaks: int = 0) -> None:
        self.passes = passes
        self.leaks = leaks  # candidate answers (of 8) the output guards find PII in
        self.workspace = Path()  # set to the gateway's home by loop_gateway
        self.specs: list[TrainSpec] = []
        self.jobs: dict[str, JobStatus] = {}

    def start(self, spec: TrainSpec) -> JobStatus:
        self.specs.append(spec)
        adapter = write_adapter(Path(spec.out) / "adapter")
        reasons = () if self.passes else ("new: loss 2.9000 > 2.7000 (production 3.0000 x 0.9)",)
        outcome = {
            "adapter_dir": adapter,
            "gate": GateVerdict(self.passes, reasons),
            "candidate": ModelScores("candidate", 1.5, 4.5, slices={"new": 2.0 if self.passes else 2.9}),
            "baseline": ModelScores("production", 2.0, 7.4, slices={"new": 3.0}),
            "guards": GuardReport(
                GuardRates("production", 8, 0, 0, 0.0, 0.0, True, {}),
                GuardRates("candidate", 8, self.leaks, 0, self.leaks / 8, 0.0, True, self._entities(), self._example()),
            ),
        }
        record = Path(adapter) / "run.json"
        record.write_bytes(msgspec.json.encode(outcome))
        job_id = f"job-{len(self.specs)}"
        progress = Progress(state="succeeded", phase="done", run_record=str(record))
        self.jobs[job_id] = JobStatus(job_id, spec.base, spec.out, progress, time.time())
        return self.jobs[job_id]

    def status(self, job_id: str) -> JobStatus:
        return self.jobs[job_id]

    def _entities(self) -> dict[str, int]:
        return {"EMAIL": self.leaks} if self.leaks else {}

    def _example(self) -> str | None:
        return "Write to <EMAIL_1> for a refund." if self.leaks else None


def alert(alias: str = "helpdesk", status: str = "firing") -> dict:
    labels = {"alertname": "EmbeddingDrift", "alias": alias, "severity": "warning"}
    return {
        "version": "4",
        "status": status,
        "receiver": "driftgate-loop",
        "groupKey": "{}:{}",
        "alerts": [{"status": status, "labels": labels, "annotations": {}, "startsAt": "2026-11-22T00:00:00Z"}],
    }


@asynccontextmanager
async def loop_gateway(
    tmp_path: Path, upstreams, jobs: StandInJobs, teacher: TeacherSettings | None = None, **policy: object
) -> AsyncIterator[httpx.AsyncClient]:
    upstream = await upstreams()
    # Effect sizes a 60-request canary can tell apart (about ten clean canary requests clear each harm test).
    canary = CanaryPolicy(share=0.5, min_requests=8, max_s=60, error_effect=0.2, block_effect=0.2)
    loop = LoopSettings(
        default=LoopPolicy(**{"cooldown_s": 0, "min_new_samples": 4, "canary": canary, **policy}),
        teacher=teacher,
        tick_s=0.05,
    )
    settings = adapter_settings(
        tmp_path,
        upstream.url,
        request_log=RequestLogSettings(url=f"sqlite:///{tmp_path / 'log.db'}", max_delay_s=0.02),
        guards=GuardsSettings(input=NO_TOXICITY, output=NO_TOXICITY),
        loop=loop,
    )
    async with running_gateway(settings) as client:
        jobs.workspace = Path(settings.home)
        client.app.state.gateway.loop.jobs = jobs
        registered = tmp_path / "registered.jsonl"
        registered.write_text(
            "".join(json.dumps({"prompt": f"bill {i}?", "completion": f"paid {i}"}) + "\n" for i in range(12))
        )
        body = {
            "alias": "helpdesk",
            "weights": write_adapter(tmp_path / "v1"),
            "base_model": BASE,
            "dataset": str(registered),
        }
        assert (await client.post("/admin/adapters/", json=body)).status_code == 201
        assert (await client.post("/admin/adapters/helpdesk/promote", json={"version": 1})).status_code == 200
        yield client


async def chat(client: httpx.AsyncClient, text: str, user: str = "u") -> httpx.Response:
    body = {"model": "helpdesk", "user": user, "messages": [{"role": "user", "content": text}]}
    reply = await client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    return reply


async def correct(client: httpx.AsyncClient, count: int) -> None:
    for i in range(count):
        reply = await chat(client, f"How do I book train {i} to Lyon? Mail me at a{i}@example.com")
        sent = await client.post(
            "/v1/feedback",
            json={"request_id": reply.headers["x-request-id"], "correction": f"TRAVEL DESK: take train {i}."},
        )
        assert sent.status_code == 201, sent.text


async def wait_for(client: httpx.AsyncClient, run_id: str, *statuses: str, timeout_s: float = 20) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = (await client.get(f"/admin/loop/{run_id}")).json()
        if run["status"] in statuses:
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} stayed {run['status']}: {run['timeline']}")


async def canary_traffic(client: httpx.AsyncClient, candidate: str, rate: dict[str, int] | None = None) -> None:
    """Requests from many users until the canary has seen enough; optionally rate each answer by version."""
    for i in range(60):
        reply = await chat(client, f"Which platform for train {i}?", user=f"user-{i}")
        if rate is not None:
            version = "canary" if reply.json()["model"] == candidate else "production"
            await client.post(
                "/v1/feedback", json={"request_id": reply.headers["x-request-id"], "rating": rate[version]}
            )


async def test_alert_to_promotion_through_the_gateways_own_api(tmp_path: Path, upstreams) -> None:
    jobs = StandInJobs()
    async with loop_gateway(tmp_path, upstreams, jobs) as client:
        await correct(client, 6)
        received = (await client.post("/admin/alerts", json=alert())).json()["runs"]
        assert [run["status"] for run in received] == ["queued"], received
        run = await wait_for(client, received[0]["id"], "canary")

        spec = jobs.specs[0]
        assert spec.production_adapter == str(tmp_path / "v1") and set(spec.eval_sets) == {"new", "old"}
        assert spec.gate.slices == {"new": 0.9, "old": 1.1} and spec.gate.slice_slack == 0.05
        taught = Path(spec.data).read_text() + Path(spec.eval_sets["new"]).read_text()
        assert taught.count("TRAVEL DESK") == 6 and "<EMAIL_1>" in taught and "@example.com" not in taught
        replayed = Path(spec.data_config.replay_path).read_text()  # production's registered records, not held out
        assert replayed.strip() and "TRAVEL DESK" not in replayed and spec.data_config.new_share == 0.5
        alias = (await client.get("/admin/adapters/helpdesk")).json()
        assert (alias["production"], alias["canary"], alias["canary_share"]) == ("helpdesk@1", "helpdesk@2", 0.5)

        await canary_traffic(client, "helpdesk@2")
        run = await wait_for(client, run["id"], "promoted", "rolled_back")
        assert run["status"] == "promoted", run["timeline"]
        steps = [event["step"] for event in run["timeline"]]
        assert steps == [
            "alert", "decision", "data", "search", "job", "eval", "guard_gate", "register", "canary", "canary",
            "outcome",
        ]  # fmt: skip
        assert spec.guard_eval is not None and spec.guard_eval.models_dir.endswith("guards")
        listing = (await client.get("/admin/adapters/helpdesk")).json()
        assert listing["production"] == "helpdesk@2" and listing["canary"] is None
        v2 = listing["versions"][1]
        verdict = v2["eval_results"]["canary"]["verdict"]
        assert verdict["promote"] is True and verdict["decided_by"] == "sprt" and verdict["confidence"] == 0.95
        decided = next(event for event in run["timeline"] if event["step"] == "canary" and "verdict" in event["data"])
        assert {t["signal"]: t["decision"] for t in decided["data"]["verdict"]["tests"]} == {
            "error_rate": "h0", "block_rate": "h0", "latency": "h0"
        }  # fmt: skip
        assert all(t["llr"] <= t["lower"] for t in decided["data"]["verdict"]["tests"])
        assert v2["eval_results"]["gate"]["passed"] is True and v2["author"] == f"loop:{run['id']}"

        # Lineage: the parent it started from, its data snapshot and the alert that triggered it.
        made = v2["training_run"]
        assert made["parent"] == "helpdesk@1" and made["loop_run"] == run["id"]
        assert set(made["data_sha256"]) == {"train", "replay", "eval-new", "eval-old", "dataset"}
        assert made["data_sha256"]["train"] == hashlib.sha256(Path(spec.data).read_bytes()).hexdigest()
        # It registers the whole history (registered records plus every new sample), not its train subsample.
        history = Path(made["dataset"]).read_text().splitlines()
        assert Path(made["dataset"]).name == "dataset.jsonl" and len(history) > len(
            Path(spec.data).read_text().splitlines()
        )
        assert made["drift_event"]["labels"]["alertname"] == "EmbeddingDrift" and made["drift_event"]["at"] > 0
        chain = (await client.get("/admin/adapters/helpdesk/versions/2/lineage")).json()["chain"]
        assert [(step["version"], step["parent"]) for step in chain] == [
            ("helpdesk@2", "helpdesk@1"),
            ("helpdesk@1", None),
        ]
        # Every answer names the version that gave it: the header and the body's model agree.
        reply = await chat(client, "Which platform now?", user="someone")
        assert reply.headers["x-driftgate-adapter-version"] == reply.json()["model"] == "helpdesk@2"

        # The corrections were used up: the next alert finds nothing new to learn from.
        again = (await client.post("/admin/alerts", json=alert())).json()["runs"][0]
        assert again["status"] == "skipped" and again["reason"] == "too few new samples: 0 (the policy needs 4)"


async def test_a_teacher_labels_the_drifted_prompts_an_alert_names(tmp_path: Path, upstreams) -> None:
    teacher_upstream = await upstreams("teacher")
    jobs = StandInJobs()
    teacher = TeacherSettings(url=f"{teacher_upstream.url}/v1", model="teacher")
    async with loop_gateway(tmp_path, upstreams, jobs, teacher=teacher) as client:
        drifted = [(await chat(client, f"Where do I catch ferry {i}?")).headers["x-request-id"] for i in range(5)]
        payload = alert()
        payload["alerts"][0]["annotations"]["request_ids"] = ",".join(drifted)
        run = (await client.post("/admin/alerts", json=payload)).json()["runs"][0]
        assert run["status"] == "queued" and run["reason"].startswith("5 new samples"), run["reason"]
        await wait_for(client, run["id"], "canary")
        spec = jobs.specs[0]
        taught = [json.loads(line) for line in Path(spec.data).read_text().splitlines()]
        taught += [json.loads(line) for line in Path(spec.eval_sets["new"]).read_text().splitlines()]
        by_teacher = [r for r in taught if r.get("messages", [{}])[-1].get("content") == "Hello from teacher."]
        asked = sorted(r["messages"][0]["content"] for r in by_teacher)
        assert asked == sorted(f"Where do I catch ferry {i}?" for i in range(5))
        sent = [json.loads(body) for body in teacher_upstream.observed.bodies]
        assert {body["model"] for body in sent} == {"teacher"} and len(sent) == 5


async def test_down_voted_canary_is_rolled_back(tmp_path: Path, upstreams) -> None:
    async with loop_gateway(tmp_path, upstreams, StandInJobs()) as client:
        await correct(client, 6)
        run = (await client.post("/admin/alerts", json=alert())).json()["runs"][0]
        await wait_for(client, run["id"], "canary")
        await canary_traffic(client, "helpdesk@2", rate={"canary": -1, "production": 1})
        run = await wait_for(client, run["id"], "promoted", "rolled_back")
        assert run["status"] == "rolled_back" and "up-vote share 0.0% vs production 100.0%: worse" in run["reason"]
        alias = (await client.get("/admin/adapters/helpdesk")).json()
        assert (alias["production"], alias["canary"]) == ("helpdesk@1", None)
        assert alias["versions"][1]["stage"] == "candidate"


async def test_a_candidate_that_leaks_pii_is_rejected_by_the_guard_gate(tmp_path: Path, upstreams) -> None:
    async with loop_gateway(tmp_path, upstreams, StandInJobs(leaks=5)) as client:
        await correct(client, 6)
        run = (await client.post("/admin/alerts", json=alert())).json()["runs"][0]
        run = await wait_for(client, run["id"], "rejected", "canary", "failed")
        assert run["status"] == "rejected", run["timeline"]
        assert run["reason"] == (
            "guard gate failed: PII in 5/8 candidate answers (62%) vs 0/8 of production's (margin 10%)"
        )
        evidence = next(event for event in run["timeline"] if event["step"] == "guard_gate")["data"]
        assert evidence["guards"]["candidate"]["entities"] == {"EMAIL": 5}
        assert "<EMAIL_1>" in evidence["guards"]["candidate"]["example"]
        alias = (await client.get("/admin/adapters/helpdesk")).json()
        assert (alias["production"], alias["canary"], len(alias["versions"])) == ("helpdesk@1", None, 1)


async def test_failed_gate_leaves_the_registry_as_it_was(tmp_path: Path, upstreams) -> None:
    async with loop_gateway(tmp_path, upstreams, StandInJobs(passes=False)) as client:
        await correct(client, 6)
        before = (await client.get("/admin/adapters/")).json()
        run = (await client.post("/admin/alerts", json=alert())).json()["runs"][0]
        run = await wait_for(client, run["id"], "rejected", "canary", "failed")
        assert run["status"] == "rejected" and run["reason"].startswith("gate failed: new: loss 2.9000 > 2.7000")
        after = (await client.get("/admin/adapters/")).json()
        assert after["aliases"] == before["aliases"]


async def test_a_killed_training_job_fails_the_run_and_leaves_the_registry_as_it_was(tmp_path: Path, upstreams) -> None:
    jobs = StandInJobs()
    async with loop_gateway(tmp_path, upstreams, jobs) as client:
        await correct(client, 6)
        before = (await client.get("/admin/adapters/")).json()
        original = jobs.start

        def killed(spec: TrainSpec) -> JobStatus:
            # What LocalJobRunner reports for a child that died without a result
            # (tests/unit/training/test_jobs.py shows it for a real child).
            job = original(spec)
            message = "the training process exited without a result; see the logs"
            jobs.jobs[job.id] = msgspec.structs.replace(job, progress=Progress(state="failed", message=message))
            return jobs.jobs[job.id]

        jobs.start = killed  # type: ignore[method-assign]
        run = (await client.post("/admin/alerts", json=alert())).json()["runs"][0]
        run = await wait_for(client, run["id"], "failed", "canary", "rejected")
        assert run["status"] == "failed" and "exited without a result" in run["reason"], run["reason"]
        assert (await client.get("/admin/adapters/")).json()["aliases"] == before["aliases"]


async def test_manual_mode_waits_for_approval(tmp_path: Path, upstreams) -> None:
    jobs = StandInJobs()
    async with loop_gateway(tmp_path, upstreams, jobs, approval="manual") as client:
        await correct(client, 4)
        run = (await client.post("/admin/alerts", json=alert())).json()["runs"][0]
        assert run["status"] == "awaiting_approval"
        await asyncio.sleep(0.3)
        assert not jobs.specs and (await client.get(f"/admin/loop/{run['id']}")).json()["status"] == "awaiting_approval"
        assert (await client.post(f"/admin/loop/{run['id']}/approve")).status_code == 200
        await wait_for(client, run["id"], "canary")
        again = await client.post(f"/admin/loop/{run['id']}/approve")
        assert again.status_code == 409 and again.json()["error"]["code"] == "loop_run_conflict"


async def test_resolved_and_unrelated_alerts_start_nothing(tmp_path: Path, upstreams) -> None:
    async with loop_gateway(tmp_path, upstreams, StandInJobs()) as client:
        assert (await client.post("/admin/alerts", json=alert(status="resolved"))).json() == {"runs": []}
        other = alert()
        other["alerts"][0]["labels"]["alertname"] = "DriftgateBackendDown"
        assert (await client.post("/admin/alerts", json=other)).json() == {"runs": []}
        bad = await client.post("/admin/alerts", json={"alerts": "nope"})
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
        unknown = (await client.post("/admin/alerts", json=alert(alias="ghost"))).json()["runs"][0]
        assert unknown["status"] == "skipped" and "no production version" in unknown["reason"]


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"request_id": "nope", "rating": 1}, 404, "request_id"),
        ({"request_id": "x"}, 400, "rating"),
        ({"request_id": "x", "rating": 5}, 400, None),
        ({"request_id": "x", "correction": ""}, 400, None),
        ({"rating": 1}, 400, None),
    ],
)
async def test_bad_feedback_is_refused_and_stores_nothing(
    tmp_path: Path, upstreams, body: dict, status: int, param: str | None
) -> None:
    async with loop_gateway(tmp_path, upstreams, StandInJobs()) as client:
        reply = await client.post("/v1/feedback", json=body)
        assert reply.status_code == status, reply.text
        error = reply.json()["error"]
        assert error["type"] and error["message"] and (param is None or error["param"] == param)
        store = client.app.state.gateway.loop_store
        assert await asyncio.to_thread(store.unused_feedback, "helpdesk") == []
