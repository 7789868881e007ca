"""Monitoring: request log, metrics, traces, embeddings and drift detection. Never imports the gateway."""
