"""Lifetime and failure rules: a callback that raises is reported and the
node keeps delivering; a running node that is garbage-collected stops
cleanly; interpreter exit with running nodes neither hangs nor crashes."""

import gc
import os
import subprocess
import sys
import textwrap
import weakref

import shmesh
from conftest import wait_until


def test_raising_callback_is_reported_and_the_node_keeps_going(make_node, monkeypatch):
    reports = []
    monkeypatch.setattr("sys.unraisablehook", lambda u: reports.append(u))
    a = make_node("a", start=False)
    got = []

    @a.on_message
    def on_message(m):
        if bytes(m.payload) == b"boom":
            raise RuntimeError("handler failed")
        got.append(bytes(m.payload))

    peer_events = []
    a.on_peer_up(lambda p: peer_events.append(("up", p.name)))
    a.on_peer_down(lambda p: 1 / 0)  # raises too: reported
    a.start()
    b = make_node("b", seed=a)
    b.wait_for_peers(1, timeout=5)
    for payload in (b"one", b"boom", b"two", b"boom", b"three"):
        b.send("a", payload, timeout=5)
    assert wait_until(lambda: len(got) == 3)
    assert got == [b"one", b"two", b"three"]
    assert [type(r.exc_value) for r in reports[:2]] == [RuntimeError, RuntimeError]
    assert reports[0].object is on_message
    # The events thread runs peer callbacks, on its own schedule: messages
    # from b can be handled before a's peer-up callback has run.
    assert wait_until(lambda: peer_events == [("up", "b")]), peer_events
    b.stop()
    assert wait_until(lambda: any(isinstance(r.exc_value, ZeroDivisionError) for r in reports))


def test_default_report_prints_a_traceback(tmp_path):
    # Without a custom hook, the traceback goes to stderr (sys.unraisablehook).
    script = textwrap.dedent("""
        import tempfile, time, shmesh
        d = tempfile.mkdtemp(prefix="smpy", dir="/tmp")
        a = shmesh.Node(name="a", run_dir=d, log_level="warning")
        got = []
        def cb(m):
            if bytes(m.payload) == b"bad": raise KeyError("bad message")
            got.append(bytes(m.payload))
        a.on_message(cb)
        a.start()
        b = shmesh.Node(name="b", run_dir=d, seeds=[a.grpc_address], log_level="warning")
        b.start(); b.wait_for_peers(1, timeout=5)
        b.send("a", b"bad"); b.send("a", b"good")
        end = time.time() + 5
        while not got and time.time() < end: time.sleep(0.01)
        print("GOT", got)
    """)
    r = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True,
                       timeout=60, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "GOT [b'good']" in r.stdout
    assert "Traceback" in r.stderr and "KeyError: 'bad message'" in r.stderr


def test_running_node_garbage_collected_stops_cleanly(make_node, run_dir):
    b = make_node("b")
    a = shmesh.Node(name="a", run_dir=run_dir, seeds=[b.grpc_address], log_level="warning")
    got = []
    # A cycle through the callback (it refers to the node): only the
    # garbage collector can free it.
    a.on_message(lambda m: got.append((a.name, bytes(m.payload))))
    sub = a.subscribe("t/*", lambda m: got.append((a.name, m.topic)))
    assert sub is not None
    a.serve("svc", lambda req: a.name.encode())
    a.start()
    b.wait_for_peers(1, timeout=5)
    b.send("a", b"x")
    assert wait_until(lambda: got)
    ref = weakref.ref(a)
    del a, sub
    gc.collect()
    assert ref() is None
    # The node left the mesh and removed its sockets.
    assert wait_until(lambda: b.peers() == [])
    assert not os.path.exists(os.path.join(run_dir, "a.link"))


def test_unreferenced_node_without_cycle_stops_at_once(make_node, run_dir):
    b = make_node("b")
    a = shmesh.Node(name="a", run_dir=run_dir, seeds=[b.grpc_address], log_level="warning")
    a.start()
    b.wait_for_peers(1, timeout=5)
    del a  # refcount: stopped right here, GIL released while it stops
    assert wait_until(lambda: b.peers() == [])


def test_interpreter_exit_with_running_nodes_does_not_hang(run_dir):
    script = textwrap.dedent("""
        import threading, shmesh
        d = {d!r}
        a = shmesh.Node(name="a", run_dir=d, log_level="warning")
        a.on_message(lambda m: a.name)
        a.on_peer_down(lambda p: print("down", p.name))
        a.start()
        b = shmesh.Node(name="b", run_dir=d, seeds=[a.grpc_address], log_level="warning")
        b.start()
        b.wait_for_peers(1, timeout=5)
        sub = b.subscribe("x/**")
        # A daemon thread blocked in receive() while the interpreter exits.
        threading.Thread(target=lambda: b.receive(), daemon=True).start()
        threading.Thread(target=lambda: sub.receive(), daemon=True).start()
        for i in range(100):
            b.send("a", b"m%d" % i, timeout=5)
        print("exiting")
    """).format(d=run_dir)
    r = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True,
                       timeout=30, cwd=run_dir)
    assert r.returncode == 0, r.stderr
    assert "exiting" in r.stdout


def test_stop_from_a_callback_is_refused(make_node):
    a = make_node("a", start=False)
    errors = []

    @a.on_message
    def on_message(m):
        try:
            a.stop()
        except shmesh.FailedPreconditionError as e:
            errors.append(e)

    a.start()
    b = make_node("b", seed=a)
    b.wait_for_peers(1, timeout=5)
    b.send("a", b"stop please")
    assert wait_until(lambda: errors)
    b.send("a", b"still running")
    assert wait_until(lambda: len(errors) == 2)
