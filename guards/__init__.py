"""Guardrails: text in, verdict out (PII, toxicity). Never imports the gateway."""
