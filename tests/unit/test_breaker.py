"""The circuit breaker's state machine, on a clock the test moves."""

from __future__ import annotations

from gateway.config import BreakerSettings, ModelRoute
from gateway.upstream.backends import Backend, BackendPool
from monitor import metrics


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pool(clock: Clock, failures: int = 3, cooldown_s: float = 10.0) -> tuple[BackendPool, Backend, Backend]:
    p = BackendPool(
        [ModelRoute("bm", ["http://b-one:1", "http://b-two:2"])],
        BreakerSettings(failures=failures, cooldown_s=cooldown_s),
    )
    one, two = p.backends
    for backend in (one, two):
        backend.breaker._clock = clock
    return p, one, two


def gauge(backend: Backend) -> float:
    return metrics.BACKEND_CIRCUIT_OPEN.labels("bm", backend.url)._value.get()


def test_opens_after_consecutive_failures_only() -> None:
    clock = Clock()
    p, one, two = pool(clock)
    one.breaker.failed("timeout")
    one.breaker.failed("timeout")
    one.breaker.succeeded()  # an answer in between resets the count
    one.breaker.failed("timeout")
    one.breaker.failed("timeout")
    assert one.breaker.state == "closed" and one in p.candidates("bm")
    one.breaker.failed("connect")
    assert one.breaker.state == "open" and gauge(one) == 1
    assert p.candidates("bm") == [two]
    assert p.retry_after_s("bm") == 10.0
    assert p.unready_models() == []


def test_half_open_admits_one_probe_and_its_answer_closes_the_breaker() -> None:
    clock = Clock()
    p, one, _ = pool(clock, failures=1)
    one.breaker.failed("timeout")
    clock.now += 9.9
    assert one.breaker.acquire() is False
    clock.now += 0.2
    assert one.breaker.state == "half_open"
    assert p.candidates("bm")[0] is one  # the probe is how it gets back: it goes first
    assert one.breaker.acquire() is True
    assert one.breaker.acquire() is False and one not in p.candidates("bm")  # one probe at a time
    one.breaker.succeeded()
    assert one.breaker.state == "closed" and gauge(one) == 0
    assert one.breaker.acquire() is None


def test_a_failed_probe_opens_it_for_another_cooldown() -> None:
    clock = Clock()
    _, one, _ = pool(clock, failures=2)
    one.breaker.failed("timeout")
    one.breaker.failed("timeout")
    clock.now += 11
    assert one.breaker.acquire() is True
    one.breaker.failed("timeout")
    assert one.breaker.state == "open" and one.breaker.retry_after_s() == 10.0


def test_a_probe_whose_client_left_hands_the_probe_on() -> None:
    clock = Clock()
    _, one, _ = pool(clock, failures=1)
    one.breaker.failed("timeout")
    clock.now += 11
    assert one.breaker.acquire() is True
    one.breaker.end_probe()
    assert one.breaker.acquire() is True


def test_health_check_closes_a_breaker_opened_by_connect_failures_not_by_timeouts() -> None:
    clock = Clock()
    _, one, two = pool(clock, failures=1)
    one.breaker.failed("connect")
    two.breaker.failed("timeout")
    one.breaker.health_passed()
    two.breaker.health_passed()  # /health answers while generation hangs: not proof enough
    assert one.breaker.state == "closed"
    assert two.breaker.state == "open"


def test_every_model_on_a_shared_backend_shows_its_breaker() -> None:
    p = BackendPool([ModelRoute("bx", ["http://b-shared:1"]), ModelRoute("by", ["http://b-shared:1"])],
                    BreakerSettings(failures=1))  # fmt: skip
    (shared,) = p.backends
    shared.breaker.failed("timeout")
    for model in ("bx", "by"):
        assert metrics.BACKEND_CIRCUIT_OPEN.labels(model, shared.url)._value.get() == 1
    assert p.unready_models() == ["bx", "by"]
