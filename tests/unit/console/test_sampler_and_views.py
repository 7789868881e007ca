"""The console's numbers: quantiles from histogram buckets, rates between readings, the hour kept, the drift
windows followed, and the redaction applied to any prompt a page shows."""

from __future__ import annotations

import pytest

from gateway.console.sampler import HOUR_S, Reading, Sampler, point_between, quantile, read_metrics
from gateway.console.views import PROMPT_CHARS, shown_prompt
from monitor import metrics
from monitor.drift_types import AliasState, WindowResult

INF = float("inf")


def test_quantiles_interpolate_within_the_bucket_of_the_interval() -> None:
    before = {0.1: 10.0, 0.5: 10.0, 1.0: 10.0, INF: 10.0}
    after = {0.1: 10.0, 0.5: 60.0, 1.0: 110.0, INF: 110.0}  # 50 in (0.1, 0.5], 50 in (0.5, 1]
    assert quantile(0.5, before, after) == pytest.approx(0.5)
    assert quantile(0.25, before, after) == pytest.approx(0.3)
    assert quantile(0.99, before, after) == pytest.approx(0.99)
    assert quantile(0.5, after, after) is None  # nothing observed in between
    assert quantile(0.99, {}, {1.0: 0.0, INF: 5.0}) == 1.0  # beyond the last finite bound: that bound


def test_points_are_rates_over_the_interval() -> None:
    before = Reading(100.0, requests=10, errors=1, refused=2, blocks={"toxicity": 1})
    after = Reading(110.0, requests=60, errors=6, refused=2, blocks={"toxicity": 4, "pii": 1})
    point = point_between(before, after)
    assert (point.requests_per_s, point.errors_per_s, point.refused_per_s) == (5.0, 0.5, 0.0)
    assert point.blocks == {"toxicity": 3, "pii": 1} and point.p50_ms is None


def test_read_metrics_sums_the_gateways_own_counters() -> None:
    first = read_metrics()
    metrics.REQUESTS.labels("/v1/chat/completions", "console-test", "200").inc(3)
    metrics.REQUESTS.labels("/v1/chat/completions", "console-test", "503").inc()
    metrics.REQUEST_DURATION.labels("/v1/chat/completions", "console-test", "false").observe(0.2)
    metrics.GUARD_DECISIONS.labels("toxicity", "input", "block").inc()
    second = read_metrics()
    assert second.requests - first.requests == 4 and second.errors - first.errors == 1
    assert second.blocks["toxicity"] - first.blocks.get("toxicity", 0) == 1
    assert 0.1 < quantile(0.5, first.duration, second.duration) <= 0.25


def _state(closed_at: float, score: float) -> AliasState:
    window = WindowResult("m", "m", 1, 60, "mmd", score, 0.1, 0.05, score > 0.1, closed_at - 5, closed_at, [])
    return AliasState("m", "m", "ok", 0, 50, 60, last=window)


def test_the_sampler_keeps_an_hour_and_each_drift_window_once() -> None:
    clock = iter(range(0, 100_000, 10))
    states = [_state(1.0, 0.02)]
    sampler = Sampler(10.0, lambda: states, read=lambda: Reading(float(next(clock))))
    for _ in range(3):
        sampler.sample()
    states[:] = [_state(2.0, 0.3)]
    sampler.sample()
    assert [point.score for point in sampler.drift["m"]] == [0.02, 0.3] and sampler.drift["m"][-1].over
    for _ in range(400):
        sampler.sample()
    assert len(sampler.points) == HOUR_S / 10 and sampler.totals().at == sampler.points[-1].at


def test_the_console_redacts_again_whatever_the_log_holds() -> None:
    shown = shown_prompt("mail jane.doe@example.com or call +1 415 555 0100 about card 4111 1111 1111 1111")
    assert shown == "mail <EMAIL> or call <PHONE> about card <CREDIT_CARD>"
    assert shown_prompt(None) == "" and len(shown_prompt("a b " * 2000)) == PROMPT_CHARS + 1
