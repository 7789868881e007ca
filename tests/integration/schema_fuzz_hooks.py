"""Schemathesis hooks for tests/integration/test_schema_fuzz.py (loaded with ``SCHEMATHESIS_HOOKS``).

- ``openai_error_shape``: every 4xx/5xx body is ``{"error": {"message", "type", "param", "code"}}``
  with the right types, whatever the status (documented or not).
- ``flatmap_case``: half the valid bodies name the gateway's configured model (``FUZZ_MODEL``), so
  generation reaches the backend and the output guards instead of stopping at "model not found".
"""

from __future__ import annotations

import os

import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode

MODEL = os.environ.get("FUZZ_MODEL", "m")
ERROR_FIELDS = {"message": str, "type": str, "param": (str, type(None)), "code": (str, type(None))}


@schemathesis.check
def openai_error_shape(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case):
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError as exc:
        raise AssertionError(f"{response.status_code} body is not JSON: {response.content[:200]!r}") from exc
    assert isinstance(body, dict) and set(body) == {"error"}, f"not OpenAI's error shape: {body!r}"
    detail = body["error"]
    assert isinstance(detail, dict) and set(detail) == set(ERROR_FIELDS), f"error fields: {detail!r}"
    for name, kind in ERROR_FIELDS.items():
        assert isinstance(detail[name], kind), f"error.{name} is {detail[name]!r}"
    return None


@schemathesis.hook
def flatmap_case(context: schemathesis.HookContext, case: schemathesis.Case) -> st.SearchStrategy:
    positive = case.meta is None or case.meta.generation.mode is GenerationMode.POSITIVE
    if not positive or not isinstance(case.body, dict) or "model" not in case.body:
        return st.just(case)  # a swapped-in model could make an invalid body valid

    def aim(configured: bool) -> schemathesis.Case:
        if configured:
            case.body["model"] = MODEL
        return case

    return st.booleans().map(aim)
