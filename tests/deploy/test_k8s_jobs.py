"""training/k8s_jobs.py against a fake Kubernetes API (tests/deploy/fake_k8s.py): the official client
builds and sends the real requests; the fake plays the cluster. Status is polled (the runner never watches).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes_validate import validate

from gateway.config import ModelRoute
from gateway.host.job_runners import job_runner
from tests.conftest import settings_for
from tests.deploy.fake_k8s import FakeKubernetes
from training.config import TrainSpec
from training.jobs import JobConflict, LocalJobRunner
from training.k8s_jobs import REQUIRED_RULES, K8sJobSettings, KubernetesJobRunner, job_name
from training.status import Progress, write_json_atomic

RUNNING = {"phase": "Running", "containerStatuses": [{"name": "trainer", "state": {"running": {}}}]}


@pytest.fixture
def cluster() -> Iterator[FakeKubernetes]:
    with FakeKubernetes() as fake:
        yield fake


@pytest.fixture
def runner(cluster: FakeKubernetes, tmp_path: Path) -> KubernetesJobRunner:
    settings = K8sJobSettings(
        namespace="ml",
        image="ghcr.io/driftgate/trainer:0.1.0",
        service_account="dg-trainer",
        shared_claim="dg-adapters",
        shared_path=str(tmp_path),
        gpus=1,
        resources={"requests": {"cpu": "4", "memory": "32Gi"}},
        poll_s=0.01,
    )
    return KubernetesJobRunner(settings, cluster.api_client())


def spec(base: str = "/shared/models/smollm2") -> TrainSpec:
    return TrainSpec(data="/shared/data/train.jsonl", base=base, out="/shared/adapters/support-3")


def set_conditions(cluster: FakeKubernetes, job_id: str, *types: str, **fields: str) -> None:
    conditions = [{"type": t, "status": "True", **fields} for t in types]
    cluster.jobs[job_name(job_id)]["status"] = {"conditions": conditions, "active": 0}


def test_start_creates_a_valid_job_with_the_spec_on_shared_storage(cluster, runner) -> None:
    status = runner.start(spec())
    job = cluster.jobs[job_name(status.id)]
    validate(job, "1.30.0", strict=True)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    spec_path = runner.root / status.id / "spec.json"
    assert container["command"] == ["python", "-m", "training.cli", "run", "--spec", str(spec_path)]
    assert TrainSpec.__name__ and spec_path.exists()
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["serviceAccountName"] == "dg-trainer" and pod["restartPolicy"] == "Never"
    assert job["spec"]["ttlSecondsAfterFinished"] == 86400 and job["spec"]["backoffLimit"] == 0
    assert status.progress.state == "queued"
    with pytest.raises(JobConflict):
        runner.start(spec())


def test_queued_then_running_then_succeeded(cluster, runner) -> None:
    job_id = runner.start(spec()).id
    unschedulable = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/3 nodes have nvidia.com/gpu",
    }
    cluster.add_pod(job_id, "p1", {"phase": "Pending", "conditions": [unschedulable]})
    queued = runner.status(job_id).progress
    assert queued.state == "queued" and "nvidia.com/gpu" in queued.message

    cluster.pods["p1"]["status"] = RUNNING
    cluster.jobs[job_name(job_id)]["status"] = {"active": 1}
    write_json_atomic(runner.root / job_id / "status.json", Progress("running", "training", step=5, total_steps=10))
    running = runner.status(job_id).progress
    assert (running.state, running.step) == ("running", 5)

    # The trainer writes its final state, then the Job completes.
    write_json_atomic(runner.root / job_id / "status.json", Progress("succeeded", "done", step=10, total_steps=10))
    set_conditions(cluster, job_id, "Complete")
    assert runner.wait(job_id, timeout_s=5).progress.state == "succeeded"
    assert [s.id for s in runner.list()] == [job_id]

    cluster.logs["p1"] = "step 10/10 loss 0.5\n"
    assert runner.logs(job_id) == "step 10/10 loss 0.5\n"
    runner.cleanup(job_id)
    assert job_name(job_id) not in cluster.jobs
    assert cluster.deletes == [(job_name(job_id), "Background")]
    assert runner.status(job_id).progress.state == "succeeded"  # the files are the result: they stay


@pytest.mark.parametrize(
    ("pod_status", "conditions", "expected"),
    [
        (
            {
                "phase": "Failed",
                "containerStatuses": [
                    {"name": "trainer", "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}
                ],
            },
            ("Failed",),
            "ran out of memory (OOMKilled)",
        ),
        (
            {
                "phase": "Pending",
                "containerStatuses": [
                    {
                        "name": "trainer",
                        "state": {
                            "waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "ghcr.io/x"'}
                        },
                    }
                ],
            },
            (),
            "cannot be pulled (ImagePullBackOff",
        ),
        (
            {
                "phase": "Failed",
                "containerStatuses": [{"name": "trainer", "state": {"terminated": {"reason": "Error", "exitCode": 2}}}],
            },
            ("Failed",),
            "exited with an error; exit code 2",
        ),
    ],
    ids=["oom", "image-pull", "exit-code"],
)
def test_failures_map_to_failed_with_a_reason(cluster, runner, pod_status, conditions, expected) -> None:
    job_id = runner.start(spec()).id
    cluster.add_pod(job_id, "p1", pod_status)
    if conditions:
        set_conditions(cluster, job_id, *conditions, reason="BackoffLimitExceeded")
    progress = runner.wait(job_id, timeout_s=5).progress
    assert progress.state == "failed" and progress.phase == "done"
    assert expected in progress.message


def test_a_job_failed_without_pod_detail_keeps_the_condition_message(cluster, runner) -> None:
    job_id = runner.start(spec()).id
    set_conditions(cluster, job_id, "Failed", reason="DeadlineExceeded", message="Job was active longer than allowed")
    assert runner.status(job_id).progress.message == "Job was active longer than allowed"


def test_cancel_deletes_in_the_foreground_and_reports_cancelled(cluster, runner) -> None:
    job_id = runner.start(spec()).id
    cluster.add_pod(job_id, "p1", RUNNING)
    cluster.jobs[job_name(job_id)]["status"] = {"active": 1}
    assert runner.cancel(job_id).progress.state == "cancelled"
    assert cluster.deletes == [(job_name(job_id), "Foreground")]
    assert runner.status(job_id).progress.state == "cancelled"
    runner.cleanup(job_id)  # already gone: a 404 is fine
    # Cancelled, the base model is free again.
    assert runner.start(spec()).progress.state == "queued"


def test_a_job_deleted_behind_our_back_reads_failed(cluster, runner) -> None:
    job_id = runner.start(spec()).id
    del cluster.jobs[job_name(job_id)]
    assert "gone" in runner.status(job_id).progress.message
    with pytest.raises(KeyError):
        runner.status("nope")


def test_every_call_is_in_required_rules(cluster, runner) -> None:
    job_id = runner.start(spec()).id
    cluster.add_pod(job_id, "p1", RUNNING)
    runner.logs(job_id)
    runner.cancel(job_id)
    runner.cleanup(job_id)
    allowed = {(group, resource, verb) for group, resource, verbs in REQUIRED_RULES for verb in verbs}
    # Least privilege both ways: nothing called outside the rules, nothing in the rules left unused.
    assert set(cluster.calls) == allowed


def test_settings_from_the_charts_environment() -> None:
    env = {
        "K8S_JOBS_NAMESPACE": "ml",
        "K8S_JOBS_IMAGE": "t:1",
        "K8S_JOBS_SERVICE_ACCOUNT": "sa",
        "K8S_JOBS_SHARED_CLAIM": "c",
        "K8S_JOBS_SHARED_PATH": "/s",
        "K8S_JOBS_GPUS": "2",
        "K8S_JOBS_RESOURCES": '{"limits": {"memory": "8Gi"}}',
        "K8S_JOBS_TTL_SECONDS": "60",
    }
    settings = K8sJobSettings.from_env(env)
    assert (settings.gpus, settings.ttl_seconds, settings.resources["limits"]["memory"]) == (2, 60, "8Gi")


def test_the_gateway_trains_with_kubernetes_jobs_where_the_chart_says_so(cluster, tmp_path: Path) -> None:
    """The chart's K8S_JOBS_* variables switch the gateway's runner; outside a pod it reads $KUBECONFIG."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": cluster.api_client().configuration.host}}],
                "users": [{"name": "fake", "user": {"token": "unused"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "fake",
            }
        )
    )
    chart_env = {
        "K8S_JOBS_NAMESPACE": "ml",
        "K8S_JOBS_IMAGE": "ghcr.io/driftgate/trainer:0.1.0",
        "K8S_JOBS_SERVICE_ACCOUNT": "dg-trainer",
        "K8S_JOBS_SHARED_CLAIM": "dg-adapters",
        "K8S_JOBS_SHARED_PATH": str(tmp_path / "shared"),
        "KUBECONFIG": str(kubeconfig),
    }
    settings = settings_for(ModelRoute("smol", ["http://127.0.0.1:9"]), home=str(tmp_path / "home"))
    in_cluster = job_runner(settings, chart_env)
    assert isinstance(in_cluster, KubernetesJobRunner) and in_cluster.workspace == tmp_path / "shared"
    started = in_cluster.start(spec())
    assert job_name(started.id) in cluster.jobs
    assert (tmp_path / "shared" / "jobs" / started.id / "spec.json").exists()
    on_one_machine = job_runner(settings, {})
    assert isinstance(on_one_machine, LocalJobRunner) and on_one_machine.workspace == tmp_path / "home"
