"""``/admin/alerts`` (Alertmanager's webhook receiver), ``/admin/loop`` (runs as timelines, approval) and
``/admin/training/jobs`` (the jobs this machine runs). All admin-scoped."""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Request, Router, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery

from gateway.edge.admin_access import require_admin_scope
from gateway.edge.schemas import decode_request
from gateway.errors import FeatureNotConfigured, TrainingJobConflict, TrainingJobNotFound
from gateway.loop.controller import IncomingPayload, LoopController
from gateway.loop.store import LoopRun
from gateway.runtime import Gateway
from training.config import TrainSpec
from training.jobs import JobConflict, JobStatus


class Received(msgspec.Struct):
    runs: list[LoopRun]


class RunList(msgspec.Struct):
    runs: list[LoopRun]


class JobList(msgspec.Struct):
    jobs: list[JobStatus]


class JobLogs(msgspec.Struct):
    id: str
    logs: str


def _loop(state: State) -> LoopController:
    loop: LoopController | None = state.gateway.loop
    if loop is None:
        raise FeatureNotConfigured("The closed loop is off in this gateway (set `loop:` and `adapters:`).")
    return loop


@post("/admin/alerts", status_code=200)
async def receive_alerts(request: Request, state: State) -> Received:
    payload = decode_request(await request.body(), IncomingPayload)
    return Received(await _loop(state).receive(payload))


@get("/admin/loop")
async def list_runs(state: State, alias: FromQuery[str | None] = None) -> RunList:
    loop = _loop(state)
    return RunList(await asyncio.to_thread(loop.store.list, alias))


@get("/admin/loop/{run_id:str}")
async def show_run(run_id: FromPath[str], state: State) -> LoopRun:
    return await _loop(state).run(run_id)


@post("/admin/loop/{run_id:str}/approve", status_code=200)
async def approve_run(run_id: FromPath[str], request: Request, state: State) -> LoopRun:
    return await _loop(state).approve(run_id, f"key:{request.state.admin}")


loop_router = Router(
    "/", route_handlers=[receive_alerts, list_runs, show_run, approve_run], guards=[require_admin_scope]
)


# Training jobs.


def _gateway(state: State) -> Gateway:
    return state.gateway


def _job(gateway: Gateway, job_id: str) -> JobStatus:
    try:
        return gateway.jobs.status(job_id)
    except KeyError as exc:
        raise TrainingJobNotFound(f"Training job {job_id} does not exist.", param="job_id") from exc


@get("/")
async def list_jobs(state: State) -> JobList:
    return JobList(await asyncio.to_thread(_gateway(state).jobs.list))


@post("/", status_code=201)
async def start_job(request: Request, state: State) -> JobStatus:
    spec = decode_request(await request.body(), TrainSpec)
    gateway = _gateway(state)
    try:
        job = await asyncio.to_thread(gateway.jobs.start, spec)
    except JobConflict as exc:
        raise TrainingJobConflict(str(exc)) from exc
    gateway.record(f"key:{request.state.admin}", "training.started", f"job:{job.id}", {"base": job.base_model})
    return job


@get("/{job_id:str}")
async def show_job(job_id: FromPath[str], state: State) -> JobStatus:
    return await asyncio.to_thread(_job, _gateway(state), job_id)


@get("/{job_id:str}/logs")
async def job_logs(job_id: FromPath[str], state: State) -> JobLogs:
    gateway = _gateway(state)
    await asyncio.to_thread(_job, gateway, job_id)
    return JobLogs(job_id, await asyncio.to_thread(gateway.jobs.logs, job_id))


@post("/{job_id:str}/cancel", status_code=200)
async def cancel_job(job_id: FromPath[str], request: Request, state: State) -> JobStatus:
    gateway = _gateway(state)
    await asyncio.to_thread(_job, gateway, job_id)
    job = await asyncio.to_thread(gateway.jobs.cancel, job_id)
    gateway.record(f"key:{request.state.admin}", "training.cancelled", f"job:{job_id}", None)
    return job


training_router = Router(
    "/admin/training/jobs",
    route_handlers=[list_jobs, start_job, show_job, job_logs, cancel_job],
    guards=[require_admin_scope],
)
