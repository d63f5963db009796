#!/usr/bin/env python3
"""Python-to-Python benchmark of the shmesh binding, two processes.

Prints the 64 B round trip (a node sends, the peer's on_message callback
sends the payload memoryview straight back, the first node's pull receive()
gets it: p50 and p99 in microseconds) and the one-way rate (msgs/s) of 64 B
messages with send() in a loop and with send_batch().

    PYTHONPATH=<dir holding shmesh/ with _shmesh.so> python3 python/bench_roundtrip.py
    [--round_trips N] [--messages N]

The second process is this script again (--peer). Both nodes use a fresh
run directory under /tmp.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
# Run as `python3 python/bench_roundtrip.py`, sys.path[0] is python/, whose
# shmesh/ has no built extension: use the one on PYTHONPATH instead.
if not any(f.startswith("_shmesh") for f in os.listdir(os.path.join(_HERE, "shmesh"))):
    sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import shmesh  # noqa: E402

PAYLOAD = b"x" * 64


def node_fields(wait_mode):
    return {"wait": {"mode": wait_mode}} if wait_mode else {}


def run_peer(run_dir, seed, wait_mode):
    """The second process: echoes plain messages; counts 'sink' messages and
    answers b'END' with the count."""
    node = shmesh.Node(name="peer", run_dir=run_dir, seeds=[seed], log_level="warning",
                       **node_fields(wait_mode))
    count = [0]

    @node.on_message
    def on_message(m):
        if m.topic == "" and len(m.payload) == 64 and m.payload[0] == ord("x"):
            node.send(m.from_, m.payload, timeout=5)  # the memoryview, straight back
        elif bytes(m.payload) == b"END":
            node.send(m.from_, b"%d" % count[0], timeout=5)
            count[0] = 0
        else:
            count[0] += 1

    node.serve("echo", lambda request: request)
    with node:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        sys.stdin.read()  # until the parent closes stdin


def percentiles(samples_ns):
    """(p50, p99) in microseconds."""
    samples_ns.sort()
    return samples_ns[len(samples_ns) // 2] / 1000.0, samples_ns[len(samples_ns) * 99 // 100] / 1000.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round_trips", type=int, default=20000)
    parser.add_argument("--messages", type=int, default=200000)
    parser.add_argument("--wait_mode", default="", help="ADAPTIVE (default), SPIN or SLEEP")
    parser.add_argument("--rows", action="store_true",
                        help="print the results as shmesh_bench ROW lines (./meshw bench folds them in)")
    parser.add_argument("--peer", nargs=2, metavar=("RUN_DIR", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        run_peer(*args.peer, args.wait_mode)
        return

    run_dir = tempfile.mkdtemp(prefix="smbench", dir="/tmp")
    node = shmesh.Node(name="client", run_dir=run_dir, log_level="warning", **node_fields(args.wait_mode))
    node.start()
    peer = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--peer", run_dir, node.grpc_address,
                             "--wait_mode=" + args.wait_mode],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=dict(os.environ,
                            PYTHONPATH=os.pathsep.join(p for p in sys.path if p)))
    try:
        assert peer.stdout.readline().strip() == b"ready"
        node.wait_for_peers(1, timeout=20)

        # Round trip.
        for _ in range(1000):  # warm-up
            node.send("peer", PAYLOAD, timeout=5)
            node.receive(timeout=5)
        samples = []
        for _ in range(args.round_trips):
            t0 = time.perf_counter_ns()
            node.send("peer", PAYLOAD, timeout=5)
            node.receive(timeout=5)
            samples.append(time.perf_counter_ns() - t0)
        p50, p99 = percentiles(samples)

        # Round trip as a service call (the caller waits in Call, not Receive).
        node.wait_for_peers(1, timeout=5)
        while not node.servers("echo"):
            time.sleep(0.01)
        for _ in range(1000):
            node.call("echo", PAYLOAD, timeout=5)
        samples = []
        for _ in range(args.round_trips):
            t0 = time.perf_counter_ns()
            node.call("echo", PAYLOAD, timeout=5)
            samples.append(time.perf_counter_ns() - t0)
        call_p50, call_p99 = percentiles(samples)

        # One way: the peer counts, b"END" returns the count.
        sink = b"s" * 64

        def one_way(send_all):
            t0 = time.perf_counter()
            send_all()
            node.send("peer", b"END", timeout=5)
            got = int(node.receive(timeout=60).payload)
            elapsed = time.perf_counter() - t0
            assert got == args.messages, (got, args.messages)
            return args.messages / elapsed

        def with_send():
            send = node.send
            for _ in range(args.messages):
                send("peer", sink, 5)

        def with_batch():
            batch = [sink] * 64
            left = args.messages
            while left:
                n = min(left, 64)
                left -= node.send_batch("peer", batch[:n], timeout=5)

        rate_send = one_way(with_send)
        rate_batch = one_way(with_batch)
        if args.rows:
            print("ROW py_rtt 64 p50_ns={:.0f} p99_ns={:.0f}".format(p50 * 1000, p99 * 1000))
            print("ROW py_call_rtt 64 p50_ns={:.0f} p99_ns={:.0f}".format(call_p50 * 1000, call_p99 * 1000))
            print("ROW py_send 64 msgs_per_s={:.0f}".format(rate_send))
            print("ROW py_send_batch 64 msgs_per_s={:.0f}".format(rate_batch))
            return
        print("python round trip 64 B: p50 {:.1f} us, p99 {:.1f} us ({} round trips)".format(
            p50, p99, args.round_trips))
        print("python call round trip 64 B: p50 {:.1f} us, p99 {:.1f} us ({} calls)".format(
            call_p50, call_p99, args.round_trips))
        print("python one-way 64 B: {:,.0f} msgs/s with send(), {:,.0f} msgs/s with send_batch(64)".format(
            rate_send, rate_batch))
    finally:
        peer.stdin.close()
        peer.wait(timeout=30)
        node.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
