"""Which :class:`~training.jobs.JobRunner` a gateway worker trains with: Kubernetes Jobs in a cluster, child
processes on one machine, or a queue a trainer worker drains (``jobs.runner: queue``, the compose stack).

The Helm chart sets the ``K8S_JOBS_*`` variables (``training/k8s_jobs.py`` reads them) when training is
enabled; their presence is the switch, so the same image and settings file serve both modes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from gateway.config import Settings
from training.jobs import JobRunner, LocalJobRunner
from training.queue_jobs import QueuedJobRunner


def job_runner(settings: Settings, environ: Mapping[str, str] | None = None) -> JobRunner:
    env = os.environ if environ is None else environ
    if "K8S_JOBS_NAMESPACE" not in env:
        workspace = Path(settings.jobs.workspace or settings.home)
        if settings.jobs.runner == "queue":
            # Each job queued in <workspace>/jobs/<id>/ for `driftgate train worker --workspace <workspace>`.
            return QueuedJobRunner(workspace)
        # Each job a child process of this machine, in <workspace>/jobs/<id>/.
        return LocalJobRunner(workspace)
    # Imported here: the kubernetes client is only needed (and only installed) for cluster mode.
    from kubernetes import client, config

    from training.k8s_jobs import K8sJobSettings, KubernetesJobRunner

    if "KUBERNETES_SERVICE_HOST" in env:
        config.load_incluster_config()  # in a pod: the gateway's service account
    else:
        config.load_kube_config(config_file=env.get("KUBECONFIG"))  # outside: $KUBECONFIG or ~/.kube/config
    return KubernetesJobRunner(K8sJobSettings.from_env(env), client.ApiClient())
