"""Render helm/driftgate with Helm's own Go engine (v4, through the helm-python-sdk wheel's libhelm_c):
the same templates, Sprig functions, values merging and values.schema.json check as `helm template`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "driftgate"


def helm():  # noqa: ANN201 - the module, imported late so a missing wheel fails with a useful message
    try:
        import helm_python
    except ImportError:
        pytest.fail("helm-python-sdk is missing: .venv/bin/pip install helm-python-sdk (Helm's Go SDK, no binary)")
    return helm_python


def render_files(values: dict[str, Any], release: str = "dg", namespace: str = "ml") -> dict[str, str]:
    """Every file the chart renders for ``values`` (templates and NOTES.txt), by path."""
    with helm().Chart.load(str(CHART)) as chart:
        return chart.render(values, name=release, namespace=namespace)


def render(values: dict[str, Any], release: str = "dg", namespace: str = "ml") -> list[dict[str, Any]]:
    """Every object the chart produces for ``values``, parsed."""
    files = render_files(values, release, namespace)
    objects = []
    for path, text in sorted(files.items()):
        if path.endswith(".yaml"):
            objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects
