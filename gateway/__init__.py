"""driftgate's gateway: the OpenAI-compatible HTTP edge, backend routing and the CLI that composes it all."""
