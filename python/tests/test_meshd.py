"""A Python node and a C++ meshd in another process: messages both ways, a
service call and a topic."""

import os
import queue
import signal
import subprocess
import threading

import shmesh
from conftest import meshd_path, wait_until


def test_python_node_with_meshd(make_node, run_dir):
    config = os.path.join(run_dir, "m.textproto")
    with open(config, "w") as f:
        f.write('name: "m"\nrun_dir: "{}"\n'.format(run_dir))
    errlog = open(os.path.join(run_dir, "meshd.err"), "w+")
    proc = subprocess.Popen(
        [meshd_path(), "--config", config, "--print", "--stdin", "--wait_peers=1",
         "--serve=upper", "--subscribe=chat/*", "--log_level=warning"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l.rstrip("\n")) for l in proc.stdout], daemon=True).start()
    try:
        py = make_node("py", seeds=["unix:" + os.path.join(run_dir, "m.grpc")])
        py.wait_for_peers(1, timeout=20)
        assert py.peers() == ["m"]

        py.send("m", b"hello meshd", timeout=5)
        assert lines.get(timeout=10) == "py: hello meshd"

        assert wait_until(lambda: py.servers("upper") == ["m"], timeout=10)
        assert py.call("upper", b"abc-1", timeout=5) == b"ABC-1"

        pub = py.advertise("chat/general")
        pub.wait_for_subscribers(1, timeout=10)
        assert pub.publish(b"hi all", timeout=5).delivered == 1
        assert lines.get(timeout=10) == "chat/general py hi all"

        proc.stdin.write("@py from meshd\n")
        proc.stdin.flush()
        m = py.receive(timeout=10)
        assert (m.from_, m.payload) == ("m", b"from meshd")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        errlog.seek(0)
        err = errlog.read()
        errlog.close()
    assert rc == 0, err
    assert wait_until(lambda: py.peers() == [], timeout=10)
