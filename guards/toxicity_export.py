"""One-time conversion of the alt-profanity-check model to ONNX (needs the ``guards-export`` extras).

scikit-learn, skl2onnx and alt-profanity-check are imported inside :func:`export_profanity_check` only,
so :func:`ensure_toxicity_model` costs a file check on a machine that already has the ONNX file.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

LINEAR_MODEL_FILE = "profanity-check-linear.onnx"
# Python's \w (what the vectorizer's (?u)\b\w\w+\b token pattern means) in RE2 syntax: onnxruntime's
# Tokenizer uses RE2, where \w is ASCII only, so "café" would lose its "é" and miss its vocabulary entry.
_TOKEN_PATTERN = r"[\p{L}\p{N}_]{2,}"


def ensure_toxicity_model(directory: str | Path) -> Path:
    """The default toxicity model's ONNX file in ``directory``, exported first if it is missing."""
    path = Path(directory) / LINEAR_MODEL_FILE
    if not path.exists():
        log.info("exporting the alt-profanity-check model to %s (once per machine)", path)
        export_profanity_check(path)
    return path


def export_profanity_check(path: str | Path) -> Path:
    """Convert alt-profanity-check's TfidfVectorizer + CalibratedClassifierCV(LinearSVC) to one ONNX graph.

    skl2onnx converts the pipeline as it is (lower-casing StringNormalizer, RE2 Tokenizer, TfIdfVectorizer,
    five calibrated linear models averaged). Two edits keep it faithful and portable: the StringNormalizer
    is dropped (the runtime lower-cases with ``str.lower``, as scikit-learn did; the node also needs an
    ``en_US.UTF-8`` locale that slim images lack) and the token pattern is rewritten in Unicode-aware RE2.
    Stop words need no node: with unigrams only, they are simply absent from the vocabulary.
    """
    from profanity_check import profanity_check

    vectorizer, model = profanity_check.vectorizer, profanity_check.model
    if vectorizer.ngram_range != (1, 1) or vectorizer.analyzer != "word":
        raise ValueError("export assumes a unigram word vectorizer; alt-profanity-check has changed")
    return export_text_linear(vectorizer, model, path, _source())


def export_text_linear(  # noqa: ANN001 - scikit-learn objects
    vectorizer, model, path: str | Path, source: str, properties: dict[str, str] | None = None
) -> Path:
    """A fitted TfidfVectorizer (or a FeatureUnion of them) + binary classifier as one ONNX graph taking
    lower-cased text with whitespace runs collapsed (word vectorizers get the Unicode token pattern)."""
    import onnx
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.pipeline import Pipeline

    options = {id(part): {"tokenexp": _TOKEN_PATTERN} for part in _word_vectorizers(vectorizer)}
    graph = convert_sklearn(
        Pipeline([("vectorizer", vectorizer), ("model", model)]),
        initial_types=[("text", StringTensorType([None, 1]))],
        options=options | {id(model): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    _drop_lowercasing(graph)
    properties = {"driftgate.input": "lower-cased text, whitespace runs as one space", "driftgate.source": source} | (
        properties or {}
    )
    onnx.helper.set_model_props(graph, properties)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a gateway worker starting meanwhile never reads half a file.
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
        handle.write(graph.SerializeToString())
    os.replace(handle.name, path)
    os.chmod(path, 0o644)  # NamedTemporaryFile creates 0600: an image exports as root and serves as another user
    return path


def _word_vectorizers(features) -> list:  # noqa: ANN001 - a vectorizer or a FeatureUnion of them
    parts = [part for _, part in features.transformer_list] if hasattr(features, "transformer_list") else [features]
    return [part for part in parts if part.analyzer == "word"]


def _drop_lowercasing(graph) -> None:  # noqa: ANN001 - an onnx.ModelProto; onnx is imported lazily
    nodes = graph.graph.node
    for normalizer in [node for node in nodes if node.op_type == "StringNormalizer"]:
        for node in nodes:
            for i, name in enumerate(node.input):
                if name == normalizer.output[0]:
                    node.input[i] = normalizer.input[0]
        nodes.remove(normalizer)


def _source() -> str:
    from importlib.metadata import version

    return f"alt-profanity-check {version('alt-profanity-check')}, scikit-learn {version('scikit-learn')}"
