"""``/admin/alerts`` (Alertmanager's webhook receiver), ``/admin/loop`` (runs as timelines, approval) and
``/admin/training/jobs`` (the jobs this machine runs). All admin-scoped."""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Request, Router, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery

from gateway.edge.admin_access import require_admin_scope
from gateway.edge.schemas import decode_request
from gateway.errors import TrainingJobConflict, TrainingJobNotFound
from gateway.loop.controller import IncomingPayload, LoopController
from gateway.loop.store import LoopRun
from gateway.providers import AdminAudit
from training.config import TrainSpec
from training.jobs import JobConflict, JobRunner, JobStatus


class Received(msgspec.Struct):
    runs: list[LoopRun]


class RunList(msgspec.Struct):
    runs: list[LoopRun]


class JobList(msgspec.Struct):
    jobs: list[JobStatus]


class JobLogs(msgspec.Struct):
    id: str
    logs: str


@post("/admin/alerts", status_code=200)
async def receive_alerts(request: Request, loop: NamedDependency[LoopController]) -> Received:
    payload = decode_request(await request.body(), IncomingPayload)
    return Received(await loop.receive(payload))


@get("/admin/loop")
async def list_runs(loop: NamedDependency[LoopController], alias: FromQuery[str | None] = None) -> RunList:
    return RunList(await asyncio.to_thread(loop.store.list, alias))


@get("/admin/loop/{run_id:str}")
async def show_run(run_id: FromPath[str], loop: NamedDependency[LoopController]) -> LoopRun:
    return await loop.run(run_id)


@post("/admin/loop/{run_id:str}/approve", status_code=200)
async def approve_run(run_id: FromPath[str], request: Request, loop: NamedDependency[LoopController]) -> LoopRun:
    return await loop.approve(run_id, f"key:{request.state.admin}")


loop_router = Router(
    "/", route_handlers=[receive_alerts, list_runs, show_run, approve_run], guards=[require_admin_scope]
)


# Training jobs.


def _job(jobs: JobRunner, job_id: str) -> JobStatus:
    try:
        return jobs.status(job_id)
    except KeyError as exc:
        raise TrainingJobNotFound(f"Training job {job_id} does not exist.", param="job_id") from exc


@get("/")
async def list_jobs(jobs: NamedDependency[JobRunner]) -> JobList:
    return JobList(await asyncio.to_thread(jobs.list))


@post("/", status_code=201)
async def start_job(
    request: Request, jobs: NamedDependency[JobRunner], audit: NamedDependency[AdminAudit]
) -> JobStatus:
    spec = decode_request(await request.body(), TrainSpec)
    try:
        job = await asyncio.to_thread(jobs.start, spec)
    except JobConflict as exc:
        raise TrainingJobConflict(str(exc)) from exc
    audit("training.started", f"job:{job.id}", {"base": job.base_model})
    return job


@get("/{job_id:str}")
async def show_job(job_id: FromPath[str], jobs: NamedDependency[JobRunner]) -> JobStatus:
    return await asyncio.to_thread(_job, jobs, job_id)


@get("/{job_id:str}/logs")
async def job_logs(job_id: FromPath[str], jobs: NamedDependency[JobRunner]) -> JobLogs:
    await asyncio.to_thread(_job, jobs, job_id)
    return JobLogs(job_id, await asyncio.to_thread(jobs.logs, job_id))


@post("/{job_id:str}/cancel", status_code=200)
async def cancel_job(
    job_id: FromPath[str], jobs: NamedDependency[JobRunner], audit: NamedDependency[AdminAudit]
) -> JobStatus:
    await asyncio.to_thread(_job, jobs, job_id)
    job = await asyncio.to_thread(jobs.cancel, job_id)
    audit("training.cancelled", f"job:{job_id}", None)
    return job


training_router = Router(
    "/admin/training/jobs",
    route_handlers=[list_jobs, start_job, show_job, job_logs, cancel_job],
    guards=[require_admin_scope],
)
