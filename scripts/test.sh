#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh, scripts/test-services.sh) and runs the whole test suite: unit
# tests against fake upstreams, integration tests against real Prometheus and PostgreSQL servers, and
# end-to-end tests against one real vLLM server started by `driftgate up`.
# Extra arguments go to pytest (e.g. `scripts/test.sh -m "not e2e"`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/test-services.sh
exec .venv/bin/python -m pytest "$@"
