"""A fake Kubernetes API server: just the endpoints training/k8s_jobs.py calls, in a thread.

Jobs and pods are plain dicts the test edits to play the cluster's part (a pod starts, a container is
OOM-killed...). Every request is recorded as (API group, resource, verb) so a test can compare what the
runner really called with the Role the Helm chart grants.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from kubernetes import client

JOBS = re.compile(r"^/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs(?:/(?P<name>[^/]+))?$")
PODS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods(?:/(?P<name>[^/]+)(?P<log>/log)?)?$")


class FakeKubernetes:
    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.logs: dict[str, str] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.deletes: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def do_DELETE(self) -> None:
                fake._handle(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> FakeKubernetes:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def api_client(self) -> client.ApiClient:
        config = client.Configuration()
        config.host = f"http://127.0.0.1:{self.server.server_port}"
        return client.ApiClient(config)

    def add_pod(self, job_id: str, name: str, status: dict[str, Any]) -> None:
        labels = {"driftgate.dev/training-job": job_id}
        self.pods[name] = {"metadata": {"name": name, "labels": labels, "creationTimestamp": name}, "status": status}

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(handler.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(handler.headers.get("content-length") or 0)
        body = json.loads(handler.rfile.read(length)) if length else {}
        if match := JOBS.match(url.path):
            self._jobs(handler, method, match["name"], query, body)
        elif match := PODS.match(url.path):
            self._pods(handler, method, match["name"], bool(match["log"]), query)
        else:
            self._reply(handler, 404, _status(404, f"no fake for {method} {url.path}"))

    def _jobs(self, handler: Any, method: str, name: str | None, query: dict, body: dict) -> None:
        verb = {"POST": "create", "DELETE": "delete"}.get(method) or ("get" if name else "list")
        self.calls.append(("batch", "jobs", verb))
        if verb == "create":
            job = {**body, "status": {}}
            job["metadata"]["uid"] = f"uid-{len(self.jobs)}"
            self.jobs[job["metadata"]["name"]] = job
            return self._reply(handler, 201, job)
        if verb == "list":
            items = [j for j in self.jobs.values() if _selected(j, query.get("labelSelector"))]
            return self._reply(handler, 200, {"kind": "JobList", "apiVersion": "batch/v1", "items": items})
        if name not in self.jobs:
            return self._reply(handler, 404, _status(404, f'jobs.batch "{name}" not found'))
        if verb == "delete":
            self.deletes.append((name, body.get("propagationPolicy") or query.get("propagationPolicy", "")))
            del self.jobs[name]
            return self._reply(handler, 200, _status(200, "deleted"))
        self._reply(handler, 200, self.jobs[name])

    def _pods(self, handler: Any, method: str, name: str | None, log: bool, query: dict) -> None:
        if log:
            self.calls.append(("", "pods/log", "get"))
            return self._reply(handler, 200, self.logs.get(name or "", "").encode())
        self.calls.append(("", "pods", "get" if name else "list"))
        items = [p for p in self.pods.values() if _selected(p, query.get("labelSelector"))]
        self._reply(handler, 200, {"kind": "PodList", "apiVersion": "v1", "items": items})

    @staticmethod
    def _reply(handler: Any, code: int, payload: dict | bytes) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        handler.send_response(code)
        handler.send_header("content-type", "text/plain" if isinstance(payload, bytes) else "application/json")
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


def _selected(obj: dict, selector: str | None) -> bool:
    labels = obj["metadata"].get("labels") or {}
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _status(code: int, message: str) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure" if code >= 400 else "Success",
        "message": message,
        "code": code,
    }
