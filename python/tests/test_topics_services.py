"""Topics (publish, callback and pull subscriptions, history) and services
(call, errors raised by handlers as exception classes with codes)."""

import pytest

import shmesh
from conftest import wait_until


def test_topics_callback_and_pull(make_node):
    a = make_node("a")
    b = make_node("b", seed=a)
    got = []
    matched = []
    with a.advertise("robot/arm/status", history=2, on_matched=matched.append) as pub:
        pub.publish(b"h1")  # nobody subscribes yet: kept in history
        pub.publish(b"h2")
        sub = b.subscribe("robot/**", lambda m: got.append((m.topic, m.from_, bytes(m.payload))))
        pull = b.subscribe("robot/*/status", queue_depth=16)
        pub.wait_for_subscribers(1, timeout=5)
        assert pub.matched == 1 and pub.subscribers() == ["b"]
        r = pub.publish(b"live", timeout=5)
        assert r.delivered == 1 and r.not_reached == []
        assert wait_until(lambda: len(got) == 3)
        assert got == [("robot/arm/status", "a", b"h1"), ("robot/arm/status", "a", b"h2"),
                       ("robot/arm/status", "a", b"live")]
        assert pull.receive(timeout=5).payload in (b"h1", b"h2", b"live")
        assert pub.published_messages == 3
        assert wait_until(lambda: matched and matched[-1] == 1)
        sub.unsubscribe()
        assert sub.received == 3
    with pytest.raises(shmesh.InvalidArgumentError):
        a.advertise("bad//topic")
    with pytest.raises(shmesh.FailedPreconditionError):
        pull2 = b.subscribe("x/*", lambda m: None)
        pull2.receive(timeout=0)


def test_services_and_error_codes(make_node):
    a = make_node("a")
    b = make_node("b", seed=a)

    def handler(request):
        if request == b"missing":
            raise shmesh.NotFoundError("no such plan")
        if request == b"custom":
            raise shmesh.Error("custom code", code=shmesh.StatusCode.OUT_OF_RANGE)
        if request == b"empty":
            return None
        return request.upper()

    svc = a.serve("plan", handler)
    assert wait_until(lambda: b.servers("plan") == ["a"])
    assert b.call("plan", b"hello", timeout=5) == b"HELLO"
    assert b.call("plan", "text", timeout=5, server="a") == b"TEXT"
    assert b.call("plan", b"empty", timeout=5) == b""
    with pytest.raises(shmesh.NotFoundError) as e:
        b.call("plan", b"missing", timeout=5)
    assert e.value.code == shmesh.StatusCode.NOT_FOUND and "no such plan" in e.value.message
    with pytest.raises(shmesh.OutOfRangeError) as e:
        b.call("plan", b"custom", timeout=5)
    assert e.value.code == 11
    with pytest.raises(shmesh.NotFoundError):
        b.call("nobody-serves-this", b"x", timeout=1)
    with pytest.raises(shmesh.AlreadyExistsError):
        a.serve("plan", handler)
    assert svc.handled == 5
    svc.close()
    assert wait_until(lambda: b.servers("plan") == [])
    with pytest.raises(shmesh.NotFoundError):
        b.call("plan", b"x", timeout=1)


def test_service_handler_that_raises_is_internal_and_reported(make_node, monkeypatch):
    reports = []
    monkeypatch.setattr("sys.unraisablehook", lambda u: reports.append(u.exc_value))
    a = make_node("a")
    b = make_node("b", seed=a)
    a.serve("div", lambda req: b"%d" % (100 // int(req)))
    assert wait_until(lambda: b.servers("div") == ["a"])
    with pytest.raises(shmesh.InternalError):
        b.call("div", b"0", timeout=5)
    assert any(isinstance(r, ZeroDivisionError) for r in reports)
    assert b.call("div", b"5", timeout=5) == b"20"  # still serving
