import aiohttp

from gateway.config import HealthCheckSettings, ModelRoute
from gateway.upstream.backends import BackendPool
from tests.conftest import free_port


def pool() -> BackendPool:
    return BackendPool(
        [
            ModelRoute(name="a", backends=["http://one:1", "http://two:2/"]),
            ModelRoute(name="b", backends=["http://two:2"]),
        ]
    )


def test_a_url_shared_by_two_models_is_one_backend() -> None:
    backends = pool().backends
    assert [backend.url for backend in backends] == ["http://one:1", "http://two:2"]


def test_least_outstanding_backend_comes_first() -> None:
    p = pool()
    one, two = p.backends
    with one.lease(), one.lease():
        assert p.candidates("a") == [two, one]
        with two.lease(), two.lease(), two.lease():
            assert p.candidates("a") == [one, two]
    assert one.outstanding == 0 and two.outstanding == 0


def test_load_from_another_model_counts() -> None:
    p = pool()
    one, two = p.backends
    with two.lease():  # a request for model b on the shared backend
        assert p.candidates("a")[0] is one


def test_unhealthy_backends_are_skipped_and_reported() -> None:
    p = pool()
    one, two = p.backends
    two.mark_down("test")
    assert p.candidates("a") == [one]
    assert p.unready_models() == ["b"]
    two.mark_up()
    assert p.unready_models() == []


def test_unknown_model_has_no_route_or_candidates() -> None:
    assert pool().route("zzz") is None
    assert pool().candidates("zzz") == []


async def test_a_slow_health_check_takes_a_backend_down_only_when_it_repeats(upstreams) -> None:
    upstream = await upstreams()
    pool = BackendPool([ModelRoute(name="m", backends=[upstream.url])])
    (backend,) = pool.backends
    config = HealthCheckSettings(timeout_s=0.3, timeouts_before_down=3)
    upstream.behaviour.health_delay_s = 1.0
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            await pool.check_all(session, config)
        assert backend.healthy and pool.candidates("m") == [backend]
        upstream.behaviour.health_delay_s = 0.0
        await pool.check_all(session, config)  # an answer in time starts the count again
        upstream.behaviour.health_delay_s = 1.0
        for _ in range(2):
            await pool.check_all(session, config)
        assert backend.healthy
        await pool.check_all(session, config)
        assert not backend.healthy and pool.unready_models() == ["m"]
        upstream.behaviour.health_delay_s = 0.0
        await pool.check_all(session, config)
        assert backend.healthy


async def test_a_refused_or_failing_health_check_takes_a_backend_down_at_once(upstreams) -> None:
    upstream = await upstreams()
    refusing = f"http://127.0.0.1:{free_port()}"
    pool = BackendPool([ModelRoute(name="m", backends=[upstream.url]), ModelRoute(name="gone", backends=[refusing])])
    failing, gone = pool.backends
    upstream.behaviour.healthy = False
    async with aiohttp.ClientSession() as session:
        await pool.check_all(session, HealthCheckSettings(timeout_s=1.0))
    assert not failing.healthy and not gone.healthy
    assert sorted(pool.unready_models()) == ["gone", "m"]
