"""The closed-loop demo and the topic corpora it (and the drift tests and benchmarks) send as traffic."""
