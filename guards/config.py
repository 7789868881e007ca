"""Guard settings, one :class:`GuardsSettings` per alias (the gateway maps aliases to configs).

Every field has a default that is safe for a public endpoint: pattern PII is redacted on the way in and on
the way out, toxic categories (insults, threats, identity hate...) are blocked at per-category thresholds,
prompt injections in user turns are blocked, and name detection (which needs a spaCy model and costs
milliseconds) is off until asked for.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from guards.types import Action

PATTERN_ENTITIES = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "IP_ADDRESS", "SECRET")
NER_ENTITIES = ("PERSON", "LOCATION")


def _default_actions() -> dict[str, Action]:
    return {entity: "redact" for entity in PATTERN_ENTITIES + NER_ENTITIES}


class PiiSettings(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool = True
    # Entity -> action; an entity missing here is allowed (found, counted, left as it is).
    actions: dict[str, Action] = msgspec.field(default_factory=_default_actions)
    # Region for phone numbers written without a leading "+" (ISO 3166 code, as phonenumbers wants it).
    phone_region: str = "US"
    # PERSON/LOCATION through Presidio + spaCy; skipped with a warning when no spaCy model is installed.
    names: bool = False
    # A spaCy package name; None picks the first English model installed.
    ner_model: str | None = None
    # Minimum Shannon entropy (bits per character) of a 24+ character token to call it a secret.
    entropy_bits: float = 3.8
    # ``mask`` keeps this many trailing characters visible ("************1111").
    mask_keep: int = 4


class ToxicityModel(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Which classifier scores toxicity. Models are loaded once per distinct value and shared."""

    # "jigsaw": the six-category Jigsaw BiLSTM of toxic-comment-classifier exported to ONNX (the default;
    #   ``path`` None = the default location, its vocabulary file beside it).
    # "linear": the alt-profanity-check model exported to ONNX: a profanity detector, one score "toxicity".
    # "hf": a Hugging Face sequence classifier exported to ONNX, with its tokenizer.json; one score "toxicity".
    kind: Literal["jigsaw", "linear", "hf"] = "jigsaw"
    path: str | None = None
    tokenizer: str | None = None
    # hf only: which logits mean "toxic", and how logits become probabilities.
    toxic_labels: tuple[int, ...] = (1,)
    activation: Literal["softmax", "sigmoid"] = "softmax"
    max_tokens: int = 512


class CategoryPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    threshold: float = 0.8
    action: Literal["allow", "flag", "block"] = "block"


# The phrase rules' own categories (guards/threats.py), also the policy when a configured ``categories`` leaves
# them out. Someone saying they want to die is flagged for the operator, not refused: a refusal is the worst
# answer to them.
RULE_CATEGORIES = {"self_harm": CategoryPolicy(0.5), "self_harm_intent": CategoryPolicy(0.5, "flag")}


def _default_categories() -> dict[str, CategoryPolicy]:
    # Chosen without the held-out set. "toxic": 0.8, where bench/guards.py's older profanity set loses 87% of its
    # toxic sentences and none of its clean ones; 0.6 would catch 93% there, but blocks plain prose the model
    # misreads ("The quick brown fox jumps over the lazy dog" scores 0.69). The others from the Jigsaw label
    # rates: threat, identity hate and severe toxicity are rare (0.3-1% of the training comments) and the
    # model's probabilities for them run low, so half is already a strong signal.
    return {
        "toxic": CategoryPolicy(0.8),
        "severe_toxic": CategoryPolicy(0.5),
        "obscene": CategoryPolicy(0.8),
        "threat": CategoryPolicy(0.5),
        "insult": CategoryPolicy(0.7),
        "identity_hate": CategoryPolicy(0.5),
        **RULE_CATEGORIES,
    }


class ToxicitySettings(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool = True
    # For categories missing from ``categories`` (the one "toxicity" score of the linear and hf models).
    threshold: float = 0.8
    action: Literal["allow", "flag", "block"] = "block"
    # Category -> threshold and action; a category the model does not produce is ignored.
    categories: dict[str, CategoryPolicy] = msgspec.field(default_factory=_default_categories)
    # Phrase rules (guards/threats.py) scored as "threat", "self_harm" (incitement) and "self_harm_intent": they
    # catch threats without a swear word, which the Jigsaw model, trained on rare examples, scores low.
    threat_rules: bool = True
    model: ToxicityModel = msgspec.field(default_factory=ToxicityModel)


class InjectionSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Prompt injection and jailbreak detection (input stage only): a classifier plus phrase rules."""

    enabled: bool = True
    threshold: float = 0.5
    action: Literal["allow", "flag", "block"] = "block"
    # Chat roles whose text is checked. Tool results are read by default, since indirect injection rides in
    # them (planted in a fetched page, an e-mail, a document); add "system" for untrusted templates. A
    # completions prompt is always checked.
    roles: tuple[str, ...] = ("user", "tool", "function")
    # The phrase rules alone (no classifier) when false.
    classifier: bool = True
    # An injection model exported elsewhere (``injection-linear.onnx`` layout); None = the default location.
    path: str | None = None


class SemanticSettings(msgspec.Struct, forbid_unknown_fields=True):
    """The model tier (guards/semantic): per-category heads on the shared MiniLM sentence encoder, read after
    the fast tier (``toxicity``), which decides alone when it blocks. Its categories: hate, harassment,
    threat, self_harm (urging it), sexual."""

    enabled: bool = False
    action: Literal["allow", "flag", "block"] = "block"
    # Category -> score replacing the trained threshold (chosen at export for 5% false blocks per benign domain).
    thresholds: dict[str, float] = msgspec.field(default_factory=dict)
    # A long prompt is read in pieces of this many words (the encoder reads 256 tokens), at most max_chunks.
    chunk_words: int = 150
    max_chunks: int = 16


class StageSettings(msgspec.Struct, forbid_unknown_fields=True):
    pii: PiiSettings = msgspec.field(default_factory=PiiSettings)
    toxicity: ToxicitySettings = msgspec.field(default_factory=ToxicitySettings)
    # Read on the input stage only, for now (measured on prompts, not on answers).
    semantic: SemanticSettings = msgspec.field(default_factory=SemanticSettings)
    # Read on the input stage only (an answer is not an attack on the gateway's model).
    injection: InjectionSettings = msgspec.field(default_factory=InjectionSettings)


class StreamSettings(msgspec.Struct, forbid_unknown_fields=True):
    # Characters always held back at the end of a stream (longer than any spaced entity: IBAN, card, phone).
    hold_chars: int = 48
    # A trailing token without spaces (a secret, an e-mail address) is held up to this many characters.
    max_token_chars: int = 512
    # The first piece of an answer goes out once this many characters are safe (time to first token)...
    min_emit_chars: int = 16
    # ...later pieces once this many are: every piece costs a scan of itself plus ``context_chars``, whose
    # fixed part (a toxicity model call) dominates, so 16-character pieces made a stream's checks cost 26x
    # the same answer checked whole (bench.profile_gateway, docs/guards.md "Where the time goes").
    emit_chars: int = 64
    # Characters of already emitted text scanned again with the held text (toxicity context, look-behinds).
    context_chars: int = 200


class GuardsSettings(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool = True
    # Seconds one request's guards may take per stage (prompt, then answer), waiting for a guard thread
    # included; past it `on_timeout` decides: refuse (503 guard_timeout) or pass the text unguarded.
    budget_s: float = 10.0
    on_timeout: Literal["refuse", "pass"] = "refuse"
    input: StageSettings = msgspec.field(default_factory=StageSettings)
    output: StageSettings = msgspec.field(default_factory=StageSettings)
    stream: StreamSettings = msgspec.field(default_factory=StreamSettings)
