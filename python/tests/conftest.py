"""Fixtures of the shmesh Python tests: short run directories (a Unix socket
path must fit in 107 bytes) and nodes that are stopped after each test."""

import os
import shutil
import tempfile

import pytest

import shmesh


@pytest.fixture
def run_dir():
    """A fresh, short run directory under /tmp, removed afterwards."""
    d = tempfile.mkdtemp(prefix="smpy", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def make_node(run_dir):
    """make_node(name, seed=None, start=True, **fields) -> a Node in run_dir,
    stopped at the end of the test."""
    nodes = []

    def make(name, seed=None, start=True, **fields):
        fields.setdefault("log_level", "warning")
        if seed is not None:
            fields["seeds"] = [seed.grpc_address]
        node = shmesh.Node(name=name, run_dir=run_dir, **fields)
        nodes.append(node)
        if start:
            node.start()
        return node

    yield make
    for node in nodes:
        node.stop()


def wait_until(predicate, timeout=5.0):
    """Polls `predicate` until true or `timeout` seconds passed."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def memfd_ranges():
    """[(start, end)] of this process's memfd mappings (the rings)."""
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5].startswith("/memfd:"):
                start, end = (int(x, 16) for x in parts[0].split("-"))
                out.append((start, end))
    return out


def meshd_path():
    """The meshd binary (set by run_pytest.sh)."""
    path = os.environ.get("SHMESH_MESHD")
    if not path:
        pytest.skip("SHMESH_MESHD not set")
    return path
