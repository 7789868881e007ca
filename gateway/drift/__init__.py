"""The drift watch: prompts embedded per alias, windows scored against references, alerts."""
