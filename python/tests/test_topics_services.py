"""Topics (publish, callback and pull subscriptions, history) and services
(call, errors raised by handlers as exception classes with codes)."""

import pytest

import shmesh
from conftest import wait_until


def test_topics_callback_and_pull(make_node):
    a = make_node("a")
    b = make_node("b", seed=a)
    a.wait_for_peers(1, timeout=5)
    b.wait_for_peers(1, timeout=5)
    got = []
    matched = []
    with a.advertise("robot/arm/status", history=2, on_matched=matched.append) as pub:
        pub.publish(b"h0")  # nobody subscribes yet: kept in history (the last 2)
        pub.publish(b"h1")
        pub.publish(b"h2")
        sub = b.subscribe("robot/**", lambda m: got.append((m.topic, m.from_, bytes(m.payload))))
        pub.wait_for_subscribers(1, timeout=5)
        assert pub.matched == 1 and pub.subscribers() == ["b"]
        # The history first.
        assert wait_until(lambda: len(got) == 2), got
        assert got == [("robot/arm/status", "a", b"h1"), ("robot/arm/status", "a", b"h2")]
        # A second subscription on a node that already matches: the live stream.
        pull = b.subscribe("robot/*/status", queue_depth=16)
        r = pub.publish(b"live", timeout=5)
        assert r.delivered == 1 and r.not_reached == []
        assert wait_until(lambda: len(got) == 3), got
        assert got[2] == ("robot/arm/status", "a", b"live")
        m = pull.receive(timeout=5)
        assert (m.topic, m.from_, m.payload) == ("robot/arm/status", "a", b"live")
        assert pub.published_messages == 4
        assert wait_until(lambda: matched and matched[-1] == 1), matched
        sub.unsubscribe()
        assert sub.received == 3
    with pytest.raises(shmesh.InvalidArgumentError):
        a.advertise("bad//topic")
    with pytest.raises(shmesh.FailedPreconditionError):
        with_callback = b.subscribe("x/*", lambda m: None)
        with_callback.receive(timeout=0)


def test_shared_ring_publisher(make_node):
    a = make_node("a")
    b = make_node("b", seed=a)
    c = make_node("c", seed=a)
    for n in (a, b, c):
        n.wait_for_peers(2, timeout=5)
    got_b, got_c = [], []
    sb = b.subscribe("ticks", lambda m: got_b.append(bytes(m.payload)))
    sc = c.subscribe("ticks", lambda m: got_c.append(bytes(m.payload)))
    with a.advertise("ticks", history=1, shared_ring=True) as pub:
        pub.wait_for_subscribers(2, timeout=5)
        for i in range(200):
            r = pub.publish(b"%d" % i, timeout=5)
            assert r.delivered == 2 and r.not_reached == []
        want = [b"%d" % i for i in range(200)]
        assert wait_until(lambda: len(got_b) == 200 and len(got_c) == 200), (len(got_b), len(got_c))
        assert got_b == want and got_c == want
        with pytest.raises(shmesh.InvalidArgumentError):
            pub.publish(b"x" * (1 << 20))  # over half the ring
    sb.unsubscribe()
    sc.unsubscribe()


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
