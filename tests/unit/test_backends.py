from gateway.config import ModelRoute
from gateway.upstream.backends import BackendPool


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
