"""Two Python nodes exchange messages: callbacks (zero-copy memoryview,
invalid after the callback), pull receive, batches, broadcast, errors."""

import threading

import pytest

import shmesh
from conftest import memfd_ranges, wait_until


def test_callback_payload_is_zero_copy_and_invalid_afterwards(make_node):
    a = make_node("a", start=False)
    got = []
    kept = []
    in_ring = []

    @a.on_message
    def on_message(m):
        assert isinstance(m.payload, memoryview)
        assert m.payload.readonly
        addr = m._payload_address
        in_ring.append(any(s <= addr < e for s, e in memfd_ranges()))
        got.append((m.from_, m.sender, m.topic, bytes(m.payload), bytes(m), m.copy()))
        kept.append(m)

    a.start()
    b = make_node("b", seed=a)
    b.wait_for_peers(1, timeout=5)
    b.send("a", b"hello")
    b.send("a", bytearray(b"x" * 1000))
    b.send("a", "text")
    assert wait_until(lambda: len(got) == 3)
    assert [g[3] for g in got] == [b"hello", b"x" * 1000, b"text"]
    frm, sender, topic, payload, as_bytes, copy = got[0]
    assert (frm, sender, topic, as_bytes) == ("b", "b", "", b"hello")
    assert copy.payload == b"hello" and copy.from_ == "b"
    # Zero copy: the memoryview pointed into a shared-memory ring (a memfd).
    assert all(in_ring)
    # Released when the callback returned.
    with pytest.raises(ValueError):
        kept[0].payload.tobytes()
    with pytest.raises(ValueError):
        bytes(kept[0])


def test_slice_kept_past_the_callback_is_reported(make_node, monkeypatch):
    reports = []
    monkeypatch.setattr("sys.unraisablehook", lambda u: reports.append(u.exc_value))
    a = make_node("a", start=False)
    slices = []
    a.on_message(lambda m: slices.append(m.payload[1:3]))
    a.start()
    b = make_node("b", seed=a)
    b.wait_for_peers(1, timeout=5)
    b.send("a", b"abcdef")
    assert wait_until(lambda: reports)
    assert isinstance(reports[0], BufferError)


def test_pull_receive_and_receive_fd(make_node):
    import select

    a = make_node("a")
    b = make_node("b", seed=a)
    a.wait_for_peers(1, timeout=5)
    b.wait_for_peers(1, timeout=5)  # each side sees the link when it is installed there
    with pytest.raises(shmesh.DeadlineExceededError) as e:
        a.receive(timeout=0)
    assert e.value.code == shmesh.StatusCode.DEADLINE_EXCEEDED == 4
    assert e.value.code.name == "DEADLINE_EXCEEDED"
    b.send("a", b"one")
    r, _, _ = select.select([a.receive_fd()], [], [], 5)
    assert r
    m = a.receive(timeout=5)
    assert (m.from_, m.payload, m.topic) == ("b", b"one", "")
    assert isinstance(m.payload, bytes)
    assert a.send_batch("b", [b"1", b"2", b"3"], timeout=5) == 3
    assert [b.receive(timeout=5).payload for _ in range(3)] == [b"1", b"2", b"3"]


def test_receive_releases_the_gil(make_node):
    a = make_node("a")
    b = make_node("b", seed=a)
    a.wait_for_peers(1, timeout=5)
    b.wait_for_peers(1, timeout=5)  # each side sees the link when it is installed there
    result = []
    t = threading.Thread(target=lambda: result.append(a.receive(timeout=5)))
    t.start()
    # This thread runs while the other blocks in receive().
    counter = 0
    for _ in range(100000):
        counter += 1
    b.send("a", b"late")
    t.join(10)
    assert result and result[0].payload == b"late"


def test_broadcast_and_peers(make_node):
    a = make_node("a")
    b = make_node("b", seed=a)
    c = make_node("c", seed=a)
    a.wait_for_peers(2, timeout=10)
    assert a.peers() == ["b", "c"]
    r = a.broadcast(b"all", timeout=5)
    assert sorted(r.delivered) == ["b", "c"] and r.not_reached == []
    assert b.receive(timeout=5).payload == b"all"
    assert c.receive(timeout=5).payload == b"all"


def test_errors_map_to_exception_classes(make_node, run_dir):
    a = make_node("a")
    with pytest.raises(shmesh.NotFoundError) as e:
        a.send("nobody", b"x")
    assert e.value.code == shmesh.StatusCode.NOT_FOUND
    assert isinstance(e.value, shmesh.Error)
    with pytest.raises(shmesh.FailedPreconditionError):
        a.start()
    with pytest.raises(shmesh.FailedPreconditionError):
        a.on_message(lambda m: None)  # after start()
    with pytest.raises(shmesh.InvalidArgumentError):
        shmesh.Node(name="bad name!", run_dir=run_dir)
    with pytest.raises(shmesh.InvalidArgumentError):
        shmesh.Node(config_text="nmae: 'x'")
    with pytest.raises(shmesh.NotFoundError):
        shmesh.Node.from_file(run_dir + "/missing.textproto")
    with pytest.raises(TypeError):
        a.send("b", 12)
    with pytest.raises(shmesh.AlreadyExistsError):
        make_node("a")  # the name is held by a live node in this run dir


def test_config_file_and_properties(make_node, run_dir):
    path = run_dir + "/n.textproto"
    with open(path, "w") as f:
        f.write('name: "f"\nrun_dir: "{}"\nlog_level: WARNING\n'.format(run_dir))
    with shmesh.Node.from_file(path) as n:
        assert n.name == "f"
        assert isinstance(n.id, int) and n.id != 0
        assert n.grpc_address == "unix:" + run_dir + "/f.grpc"
        assert 'name: "f"' in n.config_text
        topo = n.topology(local_only=True)
        assert topo["reporter"] == "f"
        assert n.topology(local_only=True, as_json=True).startswith("{")
    # Stopped by the with block: the name is free again.
    with shmesh.Node(path) as again:
        assert again.name == "f"
