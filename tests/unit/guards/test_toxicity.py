"""Toxicity on onnxruntime: the exported linear model agrees with scikit-learn, and the HF path runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from faker import Faker
from msgspec.structs import replace

from guards import GuardModels, ToxicityModel
from guards.toxicity import HFOnnxClassifier, LinearOnnxClassifier
from guards.toxicity_export import LINEAR_MODEL_FILE, ensure_toxicity_model

INSULTS = ["idiot", "fucking", "shit", "stupid bitch", "asshole", "moron", "dumbass", "crap", "bastard"]


def agreement_texts(n: int = 300) -> list[str]:
    """Clean Faker prose, half of it with an insult spliced in, plus edge cases."""
    fake = Faker()
    fake.seed_instance(4)
    texts = []
    for i in range(n):
        words = fake.sentence(nb_words=12).split()
        if i % 2:
            words.insert(i % len(words), INSULTS[i % len(INSULTS)])
        texts.append(" ".join(words))
    return texts + ["", "!!!", "Café NAÏVE résumé", "ПРИВЕТ мир", "Pokémon josé BEYONCÉ", "a"]


def test_onnx_scores_match_scikit_learn(model_dir: Path) -> None:
    from profanity_check import predict_prob

    texts = agreement_texts()
    classifier = LinearOnnxClassifier(model_dir / LINEAR_MODEL_FILE)
    onnx_scores = np.array([classifier.scores([text])[0, 0] for text in texts])
    np.testing.assert_allclose(onnx_scores, predict_prob(texts), atol=1e-4)


def test_clearly_toxic_and_clean_texts(model_dir: Path) -> None:
    classifier = LinearOnnxClassifier(model_dir / LINEAR_MODEL_FILE)
    for text in ["You are a fucking idiot.", "Shut up, you stupid bitch", "this is bullshit, asshole"]:
        assert classifier.scores([text])[0, 0] > 0.9, text
    for text in ["Thanks, that fixed the build.", "Please summarise this contract.", "The weather is nice today."]:
        assert classifier.scores([text])[0, 0] < 0.2, text


def test_ensure_exports_once(model_dir: Path) -> None:
    path = ensure_toxicity_model(model_dir)
    before = path.stat().st_mtime_ns
    assert ensure_toxicity_model(model_dir) == path and path.stat().st_mtime_ns == before


def test_serving_does_not_import_scikit_learn(model_dir: Path) -> None:
    code = (
        "import sys; from guards import GuardModels, Guards, GuardsSettings, RedactionContext; "
        f"g = Guards(GuardsSettings(), GuardModels({str(model_dir)!r})); "
        "assert g.input.run('you idiot', RedactionContext()).decisions; "
        "print(sorted(m for m in ('sklearn', 'skl2onnx', 'profanity_check', 'presidio_analyzer', 'spacy', 'torch') "
        "if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def tiny_hf_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    """A tokenizer trained here and a tiny torch classifier exported to ONNX: the shape of an HF export."""
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    directory = tmp_path_factory.mktemp("tiny-hf")
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = ["you are an idiot", "have a nice day", "what a stupid idea", "thanks for the help"]
    tokenizer.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    tokenizer_path = directory / "tokenizer.json"
    tokenizer.save(str(tokenizer_path))

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(tokenizer.get_vocab_size(), 8)
            self.head = torch.nn.Linear(8, 2)

        def forward(self, input_ids, attention_mask):  # noqa: ANN001, ANN202 - traced by the exporter
            mask = attention_mask.unsqueeze(-1).float()
            pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return self.head(pooled)

    torch.manual_seed(0)
    model = Tiny().eval()
    onnx_path = directory / "model.onnx"
    example = (torch.ones(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.long))
    torch.onnx.export(
        model, example, str(onnx_path), input_names=["input_ids", "attention_mask"], output_names=["logits"],
        dynamic_axes={"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"}}, dynamo=False,
    )  # fmt: skip

    def reference(text: str) -> float:
        ids = torch.tensor([tokenizer.encode(text).ids])
        with torch.no_grad():
            return float(torch.softmax(model(ids, torch.ones_like(ids)), -1)[0, 1])

    return onnx_path, tokenizer_path, reference


def test_hf_onnx_classifier_matches_torch(tiny_hf_model: tuple[Path, Path, object]) -> None:
    onnx_path, tokenizer_path, reference = tiny_hf_model
    classifier = HFOnnxClassifier(ToxicityModel(kind="hf", path=str(onnx_path), tokenizer=str(tokenizer_path)))
    for text in ["you are an idiot", "have a nice day", "unknown words only", "idiot idiot stupid"]:
        assert classifier.scores([text])[0, 0] == pytest.approx(reference(text), abs=1e-5)


def test_hf_sigmoid_takes_the_worst_toxic_label(tiny_hf_model: tuple[Path, Path, object]) -> None:
    onnx_path, tokenizer_path, _ = tiny_hf_model
    both = ToxicityModel(kind="hf", path=str(onnx_path), tokenizer=str(tokenizer_path), activation="sigmoid")
    scores = [HFOnnxClassifier(replace(both, toxic_labels=(i,))).scores(["you are an idiot"])[0, 0] for i in (0, 1)]
    combined = HFOnnxClassifier(replace(both, toxic_labels=(0, 1)))
    assert combined.scores(["you are an idiot"])[0, 0] == pytest.approx(max(scores))


def test_hf_model_needs_both_files() -> None:
    with pytest.raises(ValueError, match="tokenizer"):
        HFOnnxClassifier(ToxicityModel(kind="hf", path="model.onnx"))


def test_jigsaw_export_reproduces_the_keras_model(models: GuardModels) -> None:
    """The scores toxic-comment-classifier's README prints for its own example, computed by Keras: the ONNX
    graph (gate order, padding, tokenizer) reproduces them."""
    classifier = models.classifier(ToxicityModel())
    scores = classifier.scores(["You are so dumb and stupid!"])[0]
    keras = [0.9889402985572815, 0.07256772369146347, 0.620429277420044, 0.01934845559298992, 0.8664075136184692,
             0.04072948172688484]  # fmt: skip
    assert classifier.labels == ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
    assert scores == pytest.approx(keras, abs=1e-4)


def test_jigsaw_tokenizer_keeps_the_last_hundred_known_words(models: GuardModels) -> None:
    classifier = models.classifier(ToxicityModel())
    ids = classifier.encode(["zzqqxx " + "the " * 150, "Hello, WORLD!", ""])
    assert ids.shape == (3, 100)
    assert (ids[0] == ids[0, -1]).all() and ids[0, -1] > 0
    assert (ids[1, :-2] == 0).all() and (ids[1, -2:] > 0).all()
    assert (ids[2] == 0).all()


def test_exported_models_are_readable_by_other_users(model_dir: Path) -> None:
    """An image exports as root and serves as an unprivileged user."""
    for name in ("jigsaw-bilstm.onnx", "jigsaw-bilstm.vocab.json", "injection-linear.onnx", LINEAR_MODEL_FILE):
        assert (model_dir / name).stat().st_mode & 0o044 == 0o044, name
