"""An Evidently HTML report of one window against its reference, for a person (``driftgate drift report``).

This goes through Evidently's ``Report`` API, whose t-SNE picture costs seconds: fine for a command a
person runs, never for the check path (that is :mod:`monitor.drift_methods`). Both sides are sampled
down so the picture stays quick to draw and to load in a browser.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from monitor.drift_methods import METHODS, MethodSettings, sample_rows

REPORT_SAMPLE = 500


def write_html_report(
    current: np.ndarray,
    reference: np.ndarray,
    path: Path,
    method: MethodSettings | None = None,
    title: str = "prompt embeddings",
) -> Path:
    """Write the report to ``path`` and return it. Slow (t-SNE): call it from a CLI or a worker thread."""
    from evidently import DataDefinition, Dataset, Report  # heavy: only for reports
    from evidently.metrics import EmbeddingsDrift

    method = method or MethodSettings()
    columns = [f"e{i}" for i in range(reference.shape[1])]
    definition = DataDefinition(numerical_columns=columns, embeddings={title: columns})

    def dataset(rows: np.ndarray) -> Dataset:
        frame = pd.DataFrame(sample_rows(rows, REPORT_SAMPLE), columns=columns)
        return Dataset.from_pandas(frame, data_definition=definition)

    drift_method = METHODS[method.name](threshold=method.thresholds.fire, pca_components=method.pca_components)
    report = Report([EmbeddingsDrift(embeddings_name=title, drift_method=drift_method)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = report.run(dataset(current), dataset(reference))
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    return path
