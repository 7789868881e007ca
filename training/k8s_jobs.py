"""Training jobs as Kubernetes Jobs: the cluster-mode :class:`~training.jobs.JobRunner`.

Same interface and the same :class:`~training.jobs.JobStatus` as :class:`~training.jobs.LocalJobRunner`:
each job lives in ``<shared>/jobs/<id>/`` on the storage the gateway, the trainer pods and vLLM share
(``spec.json``, ``status.json`` written by the trainer, ``job.json``), and a ``batch/v1`` Job runs
``python -m training.cli run --spec <that spec.json>``. The trainer's own progress file says how far it got;
the Job and its pods say what Kubernetes did with it (no GPU node yet, image not pullable, OOM-killed...).

The runner polls rather than watches: a status every few seconds is plenty for jobs that take minutes, and
polling needs no resourceVersion bookkeeping across API-server restarts. Its API rights are exactly
:data:`REQUIRED_RULES`, which the Helm chart's Role grants and tests/deploy checks against each other:
no watch (it polls), no list on jobs (its own job files on shared storage are the index), pods by label only.
Responses are read as plain JSON (``_preload_content=False``): no model classes to keep in step with the
server, and the same dicts the tests' fake API serves.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
from kubernetes import client
from kubernetes.client.rest import ApiException

from training.config import TrainSpec
from training.jobs import ACTIVE, JobRecord, JobStatus, job_ids, new_job_folder, read_job_record
from training.status import Progress, State, read_progress, write_json_atomic

# (API group, resource, verbs): every call this module makes, and nothing else.
REQUIRED_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("batch", "jobs", ("create", "get", "delete")),
    ("", "pods", ("list",)),
    ("", "pods/log", ("get",)),
)
JOB_LABEL = "driftgate.dev/training-job"
# Waiting reasons that never resolve on their own: the Job would hang in them until someone looks.
STUCK_REASONS = {
    "ImagePullBackOff": "the trainer image cannot be pulled",
    "ErrImagePull": "the trainer image cannot be pulled",
    "InvalidImageName": "the trainer image name is invalid",
    "CreateContainerConfigError": "the trainer container is misconfigured (a missing Secret or ConfigMap?)",
}
TERMINATED_REASONS = {
    "OOMKilled": "the trainer ran out of memory (OOMKilled): lower the batch size or raise the memory limit",
    "Error": "the trainer exited with an error",
}


class K8sJobSettings(msgspec.Struct, frozen=True):
    """Where and how Jobs run; the Helm chart sets these through ``K8S_JOBS_*`` variables."""

    namespace: str
    image: str
    service_account: str
    # The ReadWriteMany claim shared with vLLM and the trainer, mounted at ``shared_path`` everywhere.
    shared_claim: str
    shared_path: str
    gpus: int = 1
    resources: dict[str, dict[str, str]] = msgspec.field(default_factory=dict)
    ttl_seconds: int = 86400
    backoff_limit: int = 0
    poll_s: float = 2.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> K8sJobSettings:
        env = os.environ if environ is None else environ
        return cls(
            namespace=env["K8S_JOBS_NAMESPACE"],
            image=env["K8S_JOBS_IMAGE"],
            service_account=env["K8S_JOBS_SERVICE_ACCOUNT"],
            shared_claim=env["K8S_JOBS_SHARED_CLAIM"],
            shared_path=env["K8S_JOBS_SHARED_PATH"],
            gpus=int(env.get("K8S_JOBS_GPUS", "1")),
            resources=json.loads(env.get("K8S_JOBS_RESOURCES", "{}")),
            ttl_seconds=int(env.get("K8S_JOBS_TTL_SECONDS", "86400")),
            backoff_limit=int(env.get("K8S_JOBS_BACKOFF_LIMIT", "0")),
        )


def job_name(job_id: str) -> str:
    return f"driftgate-train-{job_id}"


class KubernetesJobRunner:
    """One ``batch/v1`` Job per training run, in the gateway's namespace."""

    def __init__(self, settings: K8sJobSettings, api: client.ApiClient | None = None) -> None:
        self.settings = settings
        self.workspace = Path(settings.shared_path)
        self.root = self.workspace / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        api = api or client.ApiClient()
        self._batch = client.BatchV1Api(api)
        self._core = client.CoreV1Api(api)

    # -- the JobRunner interface -------------------------------------------------------------------------

    def start(self, spec: TrainSpec) -> JobStatus:
        base = spec.base
        # Same rule as the local runner: one active job per base model, checked under a lock on shared storage.
        with new_job_folder(self.root, base, spec, self.list) as (job_id, folder, spec):
            write_json_atomic(folder / "job.json", JobRecord(job_id, base, spec.out, time.time()))
            self._batch.create_namespaced_job(self.settings.namespace, self.manifest(job_id, base))
        return self.status(job_id)

    def status(self, job_id: str) -> JobStatus:
        job_file = read_job_record(self.root, job_id)
        progress = read_progress(self.root / job_id / "status.json") or Progress()
        if job_file.cancelled:
            progress = _finish(progress, "cancelled", "cancelled")
        elif progress.state in ACTIVE:
            k8s_job = self._read_job(job_id)
            if k8s_job is None:
                progress = _finish(progress, "failed", "the Kubernetes Job is gone (deleted outside driftgate?)")
            else:
                progress = self._merge(progress, k8s_job, self._pods(job_id))
        return JobStatus(job_file.id, job_file.base_model, job_file.out, progress, job_file.created_at)

    def list(self) -> list[JobStatus]:
        return [self.status(job_id) for job_id in job_ids(self.root)]

    def cancel(self, job_id: str) -> JobStatus:
        job_file = read_job_record(self.root, job_id)
        if self.status(job_id).progress.state not in ACTIVE:
            return self.status(job_id)
        write_json_atomic(self.root / job_id / "job.json", msgspec.structs.replace(job_file, cancelled=True))
        # Foreground: the Job object stays until its pods are gone, so nothing keeps the GPU after this.
        self._delete(job_id, "Foreground")
        progress = read_progress(self.root / job_id / "status.json") or Progress()
        write_json_atomic(self.root / job_id / "status.json", _finish(progress, "cancelled", "cancelled"))
        return self.status(job_id)

    def logs(self, job_id: str, tail_bytes: int = 65536) -> str:
        read_job_record(self.root, job_id)
        pods = self._pods(job_id)
        if not pods:
            return ""
        # The newest pod: with retries, the last attempt is the one worth reading.
        pod = max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")
        response = self._core.read_namespaced_pod_log(
            pod["metadata"]["name"], self.settings.namespace, limit_bytes=tail_bytes, _preload_content=False
        )
        return response.data.decode("utf-8", errors="replace")

    # -- cluster mode extras -----------------------------------------------------------------------------

    def wait(self, job_id: str, timeout_s: float = 86400.0) -> JobStatus:
        """Poll until the job is no longer queued or running (or ``timeout_s`` passes)."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.status(job_id)
            if status.progress.state not in ACTIVE or time.monotonic() >= deadline:
                return status
            time.sleep(self.settings.poll_s)

    def cleanup(self, job_id: str) -> None:
        """Delete a finished job's Job object and pods now (ttlSecondsAfterFinished would, later).

        The files under ``<shared>/jobs/<id>/`` stay: the run record and the adapter are the result.
        """
        if self.status(job_id).progress.state in ACTIVE:
            raise ValueError(f"job {job_id} is still active: cancel it first")
        self._delete(job_id, "Background")

    def manifest(self, job_id: str, base_model: str) -> dict[str, Any]:
        s = self.settings
        labels = {
            "app.kubernetes.io/name": "driftgate",
            "app.kubernetes.io/component": "training",
            JOB_LABEL: job_id,
        }
        resources = {kind: dict(values) for kind, values in s.resources.items()}
        if s.gpus:
            for kind in ("requests", "limits"):
                resources.setdefault(kind, {})["nvidia.com/gpu"] = str(s.gpus)
        spec_path = str(self.root / job_id / "spec.json")
        container = {
            "name": "trainer",
            "image": s.image,
            "command": ["python", "-m", "training.cli", "run", "--spec", spec_path],
            "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}, {"name": "COLUMNS", "value": "120"}],
            "resources": resources,
            "volumeMounts": [
                {"name": "shared", "mountPath": s.shared_path},
                {"name": "shm", "mountPath": "/dev/shm"},
            ],
        }
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": job_name(job_id), "labels": labels, "annotations": {"driftgate.dev/base": base_model}},
            "spec": {
                "backoffLimit": s.backoff_limit,
                "ttlSecondsAfterFinished": s.ttl_seconds,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "restartPolicy": "Never",
                        "serviceAccountName": s.service_account,
                        "automountServiceAccountToken": False,
                        "containers": [container],
                        "volumes": [
                            {"name": "shared", "persistentVolumeClaim": {"claimName": s.shared_claim}},
                            # DataLoader workers share tensors through /dev/shm (64 MiB by default).
                            {"name": "shm", "emptyDir": {"medium": "Memory"}},
                        ],
                    },
                },
            },
        }

    # -- internals ---------------------------------------------------------------------------------------

    def _read_job(self, job_id: str) -> dict[str, Any] | None:
        try:
            response = self._batch.read_namespaced_job(
                job_name(job_id), self.settings.namespace, _preload_content=False
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return json.loads(response.data)

    def _pods(self, job_id: str) -> list[dict[str, Any]]:
        response = self._core.list_namespaced_pod(
            self.settings.namespace, label_selector=f"{JOB_LABEL}={job_id}", _preload_content=False
        )
        return json.loads(response.data).get("items", [])

    def _delete(self, job_id: str, propagation: str) -> None:
        try:
            self._batch.delete_namespaced_job(job_name(job_id), self.settings.namespace, propagation_policy=propagation)
        except ApiException as exc:
            if exc.status != 404:
                raise

    @staticmethod
    def _merge(progress: Progress, job: dict[str, Any], pods: list[dict[str, Any]]) -> Progress:
        """The trainer's progress, corrected by what Kubernetes knows and the trainer cannot say."""
        status = job.get("status") or {}
        conditions = {c["type"]: c for c in status.get("conditions") or [] if c.get("status") == "True"}
        if "Complete" in conditions:
            # The trainer writes its own final state (a run can end "failed" on the quality gate).
            if progress.state in ACTIVE:
                return _finish(progress, "succeeded", progress.message or "completed")
            return progress
        pod_reason = _pod_failure(pods)
        if "Failed" in conditions:
            condition = conditions["Failed"]
            reason = pod_reason or condition.get("message") or condition.get("reason") or "the Job failed"
            return _finish(progress, "failed", reason)
        if pod_reason and any(_waiting_reason(p) in STUCK_REASONS for p in pods):
            return _finish(progress, "failed", pod_reason)
        if status.get("active") and any(_phase(p) == "Running" for p in pods):
            return msgspec.structs.replace(progress, state="running")
        pending = [p for p in pods if _phase(p) == "Pending"]
        message = _unschedulable(pending) or progress.message
        return msgspec.structs.replace(progress, state="queued", message=message)


def _finish(progress: Progress, state: State, message: str) -> Progress:
    return msgspec.structs.replace(progress, state=state, phase="done", message=message, updated_at=time.time())


def _phase(pod: dict[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase", "")


def _container_states(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [c.get("state") or {} for c in (pod.get("status") or {}).get("containerStatuses") or []]


def _waiting_reason(pod: dict[str, Any]) -> str:
    return next((s["waiting"].get("reason", "") for s in _container_states(pod) if "waiting" in s), "")


def _pod_failure(pods: list[dict[str, Any]]) -> str:
    """A sentence for the first pod that cannot run or died: image pull, OOM, exit code."""
    for pod in pods:
        for state in _container_states(pod):
            waiting = state.get("waiting") or {}
            if waiting.get("reason") in STUCK_REASONS:
                detail = waiting.get("message", "")
                return f"{STUCK_REASONS[waiting['reason']]} ({waiting['reason']}{': ' + detail if detail else ''})"
            terminated = state.get("terminated") or {}
            if terminated and terminated.get("exitCode", 0) != 0:
                reason = terminated.get("reason", "Error")
                text = TERMINATED_REASONS.get(reason, f"the trainer was terminated ({reason})")
                return f"{text}; exit code {terminated.get('exitCode')}"
        if (pod.get("status") or {}).get("reason") == "Evicted":
            return f"the trainer pod was evicted: {pod['status'].get('message', '')}".rstrip(": ")
    return ""


def _unschedulable(pods: list[dict[str, Any]]) -> str:
    for pod in pods:
        for condition in (pod.get("status") or {}).get("conditions") or []:
            if condition.get("reason") == "Unschedulable":
                return f"waiting for a node: {condition.get('message', '')}".rstrip(": ")
    return ""
