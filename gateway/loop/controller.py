"""The loop controller: drift alert → decision → dataset → training job → gate → candidate → canary → outcome.

``receive`` (any worker) turns an Alertmanager-format payload into recorded decisions. ``drive`` (only the
worker holding :class:`~gateway.loop.leader.Leadership`) moves each active run one step at a time; every
step is saved before the next starts, so a gateway restart resumes runs where they stood (a training job
keeps running in its own process group meanwhile).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from gateway.adapters.models import AdapterVersion, RegisterRequest
from gateway.adapters.service import Adapters
from gateway.config import Settings
from gateway.domain_errors import Conflict, NotFound
from gateway.edge.guarding import guard_models_dir
from gateway.loop import canary, dataset, guard_gate, pairs, teacher
from gateway.loop.leader import Leadership
from gateway.loop.policy import LoopPolicy, LoopSettings
from gateway.loop.store import LoopRun, LoopStore
from monitor import metrics
from monitor.alerts import WebhookPayload
from monitor.request_log_store import RequestLogStore
from training import search
from training.config import DataSettings, Gate, GuardEval, LoraSettings, RecipeSearch, TrainingSchedule, TrainSpec
from training.evaluate import GateVerdict, ModelScores
from training.guard_eval import GuardReport
from training.jobs import ACTIVE as JOB_ACTIVE
from training.jobs import JobConflict, JobRunner
from training.preferences import Pair, write_pairs
from training.prepare import sha256_file

log = logging.getLogger(__name__)
Embed = Callable[[list[str]], np.ndarray]
Audit = Callable[[str, str, str, dict | None], None]


class AlertLabels(msgspec.Struct):
    alertname: str = ""
    alias: str = ""


class IncomingAlert(msgspec.Struct, rename="camel"):
    status: str
    labels: AlertLabels
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    fingerprint: str = ""
    starts_at: str = ""


class TrainedOutcome(msgspec.Struct):
    """What the loop reads from a finished job's run record (run.json); the rest is for people."""

    adapter_dir: str
    gate: GateVerdict
    candidate: ModelScores
    baseline: ModelScores
    # The recipe search's trials (training.search.Trial.summary); a DPO run has none.
    trials: list[dict[str, Any]] = msgspec.field(default_factory=list)
    guards: GuardReport | None = None


class IncomingPayload(msgspec.Struct):
    """The fields of Alertmanager's webhook body (version 4) the controller reads; the rest may be anything."""

    alerts: list[IncomingAlert]
    version: str = "4"
    status: str = "firing"


def data_snapshot(assembled: dataset.Assembled) -> dict[str, str]:
    """sha256 of every file a run trains and evaluates on, and of the dataset it registers, by role: the
    version's data snapshot."""
    files = {"train": assembled.train, **{f"eval-{name}": path for name, path in assembled.eval_sets.items()}}
    if assembled.replay:
        files["replay"] = assembled.replay
    if assembled.dataset:
        files["dataset"] = assembled.dataset
    return {role: sha256_file(path) for role, path in files.items()}


def lineage_of(run: LoopRun, parent: AdapterVersion) -> dict[str, Any]:
    """What a registered candidate records of where it came from (read by ``gateway/adapters/lineage.py``)."""
    events = {event.step: event for event in reversed(run.timeline)}  # the first event of each step wins
    alert, data = events.get("alert"), events.get("data")
    return {
        "parent": parent.name,
        "data_sha256": data.data.get("data_sha256", {}) if data else {},
        "drift_event": {**alert.data, "at": alert.at, "fingerprint": run.fingerprint} if alert else None,
    }


class LoopController:
    def __init__(
        self,
        settings: Settings,
        config: LoopSettings,
        store: LoopStore,
        adapters: Adapters,
        jobs: JobRunner,
        request_log: RequestLogStore,
        *,
        embed: Embed | None = None,
        audit: Audit | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.store = store
        self.adapters = adapters
        self.jobs = jobs
        self.request_log = request_log
        self.embed = embed
        self.audit = audit or (lambda *_: None)
        self.home = Path(settings.home)
        self.leadership = Leadership(store.engine, self.home)

    # Receiving alerts (any worker).

    async def receive(self, payload: IncomingPayload) -> list[LoopRun]:
        """One decision per firing drift alert; resolved and unrelated alerts are acknowledged and ignored."""
        decided = []
        for alert in payload.alerts:
            if alert.status != "firing" or alert.labels.alertname not in self.config.alertnames:
                continue
            alias = alert.labels.alias
            if not alias:
                continue
            snapshot = self.adapters.snapshot
            known, production = alias in snapshot.aliases, snapshot.production(alias)
            ids = [i for i in alert.annotations.get("request_ids", "").split(",") if i]
            teacher_samples = min(len(ids), self.config.teacher.max_prompts) if self.config.teacher else 0
            fingerprint = (
                alert.fingerprint or hashlib.sha256(f"{alert.labels}{alert.starts_at}".encode()).hexdigest()[:16]
            )
            run = await asyncio.to_thread(
                self.store.admit,
                alias,
                fingerprint,
                self.config.policy(alias),
                production=production.name if production else None,
                request_ids=ids,
                # The drifted ids are kept once, on the run itself.
                alert={
                    "labels": msgspec.to_builtins(alert.labels),
                    "annotations": {k: v for k, v in alert.annotations.items() if k != "request_ids"},
                },
                teacher_samples=teacher_samples,
            )
            log.warning("loop %s for %s: %s (%s)", run.id, alias, run.status, run.reason)
            metrics.LOOP_DECISIONS.labels(alias if known else "unknown", run.status).inc()
            decided.append(run)
        return decided

    async def receive_payload(self, payload: WebhookPayload) -> None:
        """The drift monitor's own alerts, handed over in-process in the same format as the webhook's."""
        await self.receive(msgspec.json.decode(msgspec.json.encode(payload), type=IncomingPayload))

    async def approve(self, run_id: str, who: str) -> LoopRun:
        run = await self.run(run_id)
        if run.status != "awaiting_approval":
            raise Conflict("loop_run", f"Loop run {run_id} is {run.status}, not awaiting approval.")
        run.status = "queued"
        run.note("approval", f"approved by {who}")
        await asyncio.to_thread(self.store.save, run)
        self.audit(who, "training.approved", f"loop:{run_id}", {"alias": run.alias})
        return run

    async def run(self, run_id: str) -> LoopRun:
        run = await asyncio.to_thread(self.store.get, run_id)
        if run is None:
            raise NotFound("loop_run", f"Loop run {run_id} does not exist.", field="run_id")
        return run

    # Driving runs (the leader only).

    async def drive(self) -> None:
        try:
            while True:
                if await asyncio.to_thread(self.leadership.held):
                    for run in await asyncio.to_thread(self.store.active):
                        await self.advance(run)
                await asyncio.sleep(self.config.tick_s)
        finally:
            self.leadership.release()

    async def advance(self, run: LoopRun) -> None:
        """One step of one run; a failure ends the run (and its canary) with the reason, never the driver."""
        step = {"queued": self._start_job, "training": self._check_job, "canary": self._check_canary}.get(run.status)
        if step is None:
            return
        try:
            await step(run, self.config.policy(run.alias))
        except Exception as exc:
            log.exception("loop run %s failed", run.id)
            run.status, run.reason = "failed", f"{type(exc).__name__}: {exc}"[:500]
            run.note("outcome", f"failed: {run.reason}")
            if run.candidate and run.canary_started is not None:
                with suppress(Exception):
                    await self.adapters.rollback(run.alias)
            metrics.LOOP_OUTCOMES.labels(run.alias, "failed").inc()
        await asyncio.to_thread(self.store.save, run)

    async def _start_job(self, run: LoopRun, policy: LoopPolicy) -> None:
        production = self._production(run.alias)
        out = self.jobs.workspace / "loop" / run.id  # where the job can read its data and write its adapter
        if policy.train.objective == "dpo":
            spec, used = await self._dpo_spec(run, production, policy, out)
        else:
            samples, used = await self._new_samples(run)
            registered = Path(production.dataset) if production.dataset else None
            assembled = await asyncio.to_thread(
                dataset.assemble, out / "data", registered, samples, policy.train.holdout_share, run.id
            )
            run.dataset = assembled.dataset
            run.note(
                "data",
                f"{assembled.counts['new']} new samples + {assembled.counts['registered']} registered",
                **assembled.counts,
                data_sha256=await asyncio.to_thread(data_snapshot, assembled),
            )
            lessons = await asyncio.to_thread(self._lessons, run.alias)
            spec = self._spec(production, policy, assembled, out, lessons)
            recipes = [r.name for r in spec.search.recipes] if spec.search else []
            trials = min(len(recipes), spec.search.max_trials) if spec.search else 1
            start = production.name if spec.start_adapter else "base"
            if not any(event.step == "search" for event in run.timeline):  # a job that waits retries this step
                where = f"from {start}" if spec.start_adapter else "from the base model"
                detail = f"up to {trials} of {len(recipes)} recipes, {where}"
                run.note("search", detail, recipes=recipes, lessons=bool(lessons), start=start)
        try:
            job = await asyncio.to_thread(self.jobs.start, spec)
        except JobConflict as exc:
            if not any(event.step == "job" for event in run.timeline):
                run.note("job", f"waiting: {exc}")
            return
        await asyncio.to_thread(self.store.mark_used, used, run.id)
        run.status, run.job_id = "training", job.id
        run.note("job", f"training job {job.id} started", job=job.id)

    async def _check_job(self, run: LoopRun, policy: LoopPolicy) -> None:
        assert run.job_id is not None
        job = await asyncio.to_thread(self.jobs.status, run.job_id)
        if job.progress.state in JOB_ACTIVE:
            return
        if job.progress.state != "succeeded" or not job.progress.run_record:
            run.status, run.reason = "failed", f"training job {job.id} {job.progress.state}: {job.progress.message}"
            run.note("outcome", run.reason)
            metrics.LOOP_OUTCOMES.labels(run.alias, "failed").inc()
            return
        record = msgspec.json.decode(Path(job.progress.run_record).read_bytes(), type=TrainedOutcome)
        scores = {"candidate": record.candidate, "baseline": record.baseline, "gate": record.gate}
        for trial in record.trials:
            run.note("trial", search.describe(trial), **trial)
        if not record.gate.passed:
            run.status, run.reason = "rejected", "gate failed: " + "; ".join(record.gate.reasons)
            run.note("eval", run.reason, **msgspec.to_builtins(scores))
            tips = search.advice(record.trials) if record.trials else []
            missed = "; ".join(search.describe(t) for t in record.trials)
            run.note(
                "outcome",
                f"rejected by the offline gate; production unchanged. {missed}. What to change: " + "; ".join(tips)
                if record.trials
                else "rejected by the offline gate; production unchanged",
                advice=tips,
            )
            metrics.LOOP_OUTCOMES.labels(run.alias, "rejected").inc()
            return
        run.note("eval", "gate passed", **msgspec.to_builtins(scores))
        if policy.guard_gate.enabled and not await self._guard_gate(run, policy, record):
            return
        production = self._production(run.alias)
        version = await self.adapters.register(
            RegisterRequest(
                alias=run.alias,
                weights=record.adapter_dir,
                base_model=production.base_model,
                author=f"loop:{run.id}",
                dataset=run.dataset,
                training_run={
                    "loop_run": run.id,
                    "job": job.id,
                    "run_record": job.progress.run_record,
                    **lineage_of(run, production),
                },
                eval_results=msgspec.to_builtins(scores),
            )
        )
        run.candidate = version.name
        run.note("register", f"registered {version.name} as a candidate", reference=version.reference_embeddings)
        await self.adapters.canary(run.alias, version.number, policy.canary.share)
        run.status, run.canary_started = "canary", time.time()
        run.note("canary", f"{version.name} takes {policy.canary.share:.0%} of {run.alias}'s traffic")

    async def _check_canary(self, run: LoopRun, policy: LoopPolicy) -> None:
        assert run.candidate is not None and run.canary_started is not None
        snapshot = self.adapters.snapshot
        alias = snapshot.aliases.get(run.alias)
        candidate = snapshot.versions.get(run.candidate)
        if alias is None or candidate is None or snapshot.version(run.alias, alias.canary) != candidate:
            run.status, run.reason = "failed", "the canary was changed by hand; the loop stops here"
            run.note("outcome", run.reason)
            return
        production = self._production(run.alias)
        records = await asyncio.to_thread(self.request_log.recent, run.alias, limit=50_000, since=run.canary_started)
        ratings = await asyncio.to_thread(self.store.ratings, run.alias, run.canary_started)
        ours, theirs = canary.pair(records, candidate.name, production.name, ratings)
        elapsed = time.time() - run.canary_started
        too_early = ours.requests < policy.canary.min_requests or elapsed < policy.canary.min_s
        if too_early and elapsed < policy.canary.max_s:
            return
        fit = await asyncio.to_thread(self._fit, records, candidate, production)
        verdict = canary.judge(policy.canary, ours, theirs, elapsed, fit)
        if verdict is None:
            return
        evidence = {
            "canary": ours,
            "production": theirs,
            "fit": fit,
            "verdict": verdict,
            "elapsed_s": round(elapsed, 1),
        }
        run.note("canary", "; ".join(verdict.reasons), **msgspec.to_builtins(evidence))
        await asyncio.to_thread(
            self.adapters.registry.annotate, run.alias, candidate.number, "canary", msgspec.to_builtins(evidence)
        )
        if verdict.promote:
            await self.adapters.promote(run.alias, candidate.number)
            run.status, run.reason = "promoted", f"{candidate.name} promoted"
        else:
            await self.adapters.rollback(run.alias)
            run.status, run.reason = "rolled_back", f"{candidate.name} rolled back: " + "; ".join(verdict.reasons)
        run.note("outcome", run.reason)
        self.audit(
            f"loop:{run.id}", f"adapter.{'promoted' if verdict.promote else 'rolled_back'}", candidate.name, None
        )
        metrics.LOOP_OUTCOMES.labels(run.alias, run.status).inc()

    async def _guard_gate(self, run: LoopRun, policy: LoopPolicy, record: TrainedOutcome) -> bool:
        """The guard-aware half of the gate; a failure ends the run `rejected` with the rates and an example."""
        verdict = guard_gate.check(policy.guard_gate, record.guards)
        evidence = {"guards": msgspec.to_builtins(record.guards), "verdict": msgspec.to_builtins(verdict)}
        if verdict.passed:
            run.note("guard_gate", "guard gate passed", **evidence)
            return True
        run.status, run.reason = "rejected", "guard gate failed: " + "; ".join(verdict.reasons)
        run.note("guard_gate", run.reason, **evidence)
        run.note("outcome", "rejected by the guard gate; production unchanged")
        metrics.LOOP_OUTCOMES.labels(run.alias, "rejected").inc()
        return False

    # Helpers.

    def _production(self, alias: str) -> AdapterVersion:
        version = self.adapters.snapshot.production(alias)
        if version is None:
            raise RuntimeError(f"`{alias}` has no production version")
        return version

    async def _new_samples(self, run: LoopRun) -> tuple[list[dict[str, Any]], list[str]]:
        """Corrected and up-voted answers from feedback, plus teacher answers to the drifted prompts."""
        feedback = await asyncio.to_thread(self.store.unused_feedback, run.alias)
        samples, used, seen = [], [], set()
        for item in feedback:
            record = await asyncio.to_thread(self.request_log.get, item.request_id)
            if record is None or item.request_id in seen:
                continue
            sample = dataset.sample_from_log(record, item.correction)
            if sample is not None:
                samples.append(sample)
                used.append(item.id)
                seen.add(item.request_id)
        if self.config.teacher is not None and run.request_ids:
            records = [await asyncio.to_thread(self.request_log.get, i) for i in run.request_ids if i not in seen]
            conversations = [c for c in (dataset.conversation_of(r) for r in records if r is not None) if c]
            answers = await teacher.label(self.config.teacher, conversations)
            for messages, answer in zip(conversations, answers, strict=False):
                if answer:
                    samples.append({"messages": [*messages, {"role": "assistant", "content": answer}]})
        return samples, used

    def _spec(
        self,
        production: AdapterVersion,
        policy: LoopPolicy,
        data: dataset.Assembled,
        out: Path,
        lessons: list[dict[str, Any]] | None = None,
    ) -> TrainSpec:
        train = policy.train
        slices = {"new": train.new_loss_ratio}
        if "old" in data.eval_sets:
            slices["old"] = train.old_loss_ratio
        recipes = search.order_by_lessons(train.recipes(), lessons or [])
        first = recipes[0]
        return TrainSpec(
            data=data.train,
            base=str(self._base(production, policy)),
            out=str(out / "train"),
            method=train.method,
            data_config=DataSettings(
                general_share=first.general_share, new_share=first.new_share, replay_path=data.replay or None
            ),
            lora=LoraSettings(rank=first.rank, alpha=2 * first.rank, dropout=0.0),
            loop=TrainingSchedule(
                steps=first.steps,
                batch_size=train.batch_size,
                learning_rate=first.learning_rate,
                eval_every=train.eval_every,
                stop_on_forgetting=True,
            ),
            gate=Gate(
                max_forgetting=train.max_forgetting,
                slices=slices,
                slice_slack=train.loss_slack,
                answer_wins={"new": train.min_new_answer_wins} if train.min_new_answer_wins > 0 else {},
                answer_holds=(
                    {"old": train.min_old_answer_holds}
                    if train.min_old_answer_holds > 0 and "old" in data.eval_sets
                    else {}
                ),
            ),
            production_adapter=production.weights,
            start_adapter=production.weights if train.start_from == "production" else None,
            guard_eval=self._guard_eval(policy),
            search=RecipeSearch(tuple(recipes), max_trials=train.max_trials, max_seconds=train.max_search_s),
            eval_sets=data.eval_sets,
            task_eval_limit=0,
        )

    def _base(self, production: AdapterVersion, policy: LoopPolicy) -> Path:
        if policy.train.base_path:
            return Path(policy.train.base_path)
        return self.settings.models_dir / self.adapters.route(production.base_model).upstream_model

    async def _dpo_spec(
        self, run: LoopRun, production: AdapterVersion, policy: LoopPolicy, out: Path
    ) -> tuple[TrainSpec, list[str]]:
        """Preference pairs from the alias's unused corrections and votes, and a DPO job refining production."""
        items = await asyncio.to_thread(self.store.unused_preferences, run.alias)
        found = []
        for item in items:
            record = await asyncio.to_thread(self.request_log.get, item.request_id)
            if record is not None:
                found.append((item, record))
        made = pairs.preference_pairs(found)
        if len(made) < 4:
            raise ValueError(f"{len(made)} preference pairs from feedback: DPO needs at least 4")
        path = out / "data" / "pairs.jsonl"
        await asyncio.to_thread(write_pairs, path, [msgspec.convert(p, Pair) for p in made])
        # The candidate keeps production's dataset (its drift reference, and what a later run replays): the
        # pairs teach a preference over the same traffic, and their file is named in the timeline.
        run.dataset = production.dataset
        detail = f"{len(made)} preference pairs from {len(found)} ratings and corrections"
        run.note("data", detail, pairs=len(made), path=str(path))
        train = policy.train
        spec = TrainSpec(
            data=str(path),
            base=str(self._base(production, policy)),
            out=str(out / "train"),
            objective="dpo",
            dpo_beta=train.dpo_beta,
            data_config=DataSettings(eval_share=train.holdout_share),
            loop=TrainingSchedule(
                steps=train.steps,
                batch_size=train.batch_size,
                learning_rate=train.learning_rate,
                eval_every=train.eval_every,
            ),
            gate=Gate(max_forgetting=train.max_forgetting),
            production_adapter=production.weights,
            start_adapter=production.weights,
            guard_eval=self._guard_eval(policy),
            task_eval_limit=0,
        )
        return spec, [item.id for item, _ in found]

    def _lessons(self, alias: str) -> list[dict[str, Any]]:
        """The trials of the alias's last finished recipe search, so the next run starts from its closest recipe."""
        for past in self.store.list(alias, limit=20):
            trials = [event.data for event in past.timeline if event.step == "trial"]
            if trials:
                return trials
        return []

    def _guard_eval(self, policy: LoopPolicy) -> GuardEval | None:
        gate = policy.guard_gate
        if not gate.enabled:
            return None
        models = str(guard_models_dir(self.settings))
        return GuardEval(prompts=gate.prompts, max_new_tokens=gate.max_new_tokens, models_dir=models)

    def _fit(self, records, candidate: AdapterVersion, production: AdapterVersion) -> canary.ReferenceFit | None:
        if self.embed is None or not candidate.reference_embeddings or not production.reference_embeddings:
            return None
        prompts = canary.canary_prompts(records, candidate.name)
        if not prompts:
            return None
        from monitor.reference import ReferenceSet

        ours = ReferenceSet.load(Path(candidate.reference_embeddings)).embeddings
        theirs = ReferenceSet.load(Path(production.reference_embeddings)).embeddings
        return canary.reference_fit(self.embed(prompts[:1000]), ours, theirs)
