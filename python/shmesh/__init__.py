"""shmesh for Python: a process's membership in a shmesh shared-memory mesh.

    import shmesh

    with shmesh.Node(name="a", run_dir="/tmp/sm") as a:
        a.wait_for_peers(1, timeout=5)
        a.send("b", b"hello")

The classes wrap the C++ mesh::Node (mesh/node.h) through the pybind11
extension shmesh._shmesh; this module adds the exceptions (one per status
code, under shmesh.Error), the asyncio helpers (receive_async) and the
context managers. See python/README.md for the GIL and memoryview rules.
"""

import asyncio
import atexit
import json
import weakref

from . import _shmesh
from ._errors import (  # noqa: F401  (re-exported)
    AbortedError,
    AlreadyExistsError,
    CancelledError,
    DataLossError,
    DeadlineExceededError,
    Error,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    ResourceExhaustedError,
    StatusCode,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    UnknownError,
    error_from_status,
)

Message = _shmesh.Message
PeerInfo = _shmesh.PeerInfo
Publisher = _shmesh.Publisher
Subscription = _shmesh.Subscription
Service = _shmesh.Service
BroadcastResult = _shmesh.BroadcastResult
PublishResult = _shmesh.PublishResult

_shmesh._set_error_types(Error, error_from_status)

__all__ = [
    "Node", "Message", "PeerInfo", "Publisher", "Subscription", "Service", "BroadcastResult",
    "PublishResult", "Error", "StatusCode", "CancelledError", "UnknownError", "InvalidArgumentError",
    "DeadlineExceededError", "NotFoundError", "AlreadyExistsError", "PermissionDeniedError",
    "ResourceExhaustedError", "FailedPreconditionError", "AbortedError", "OutOfRangeError",
    "UnimplementedError", "InternalError", "UnavailableError", "DataLossError",
    "UnauthenticatedError",
]

# Every node not yet garbage-collected, so that interpreter exit stops them
# (atexit runs before finalization, while the node's threads can still take
# the GIL to finish a callback).
_live_nodes = weakref.WeakSet()


@atexit.register
def _stop_all_nodes():
    # From here on, a daemon thread coming back from a shmesh call (that
    # released the GIL: a receive() the stop below wakes, say) waits
    # forever instead of waiting for the GIL into finalization, where
    # Python 3.11 would end it in a way that aborts the process (see
    # ReleasedGil in python/py_support.h). Only daemon threads are left now.
    _shmesh._mark_exiting()
    for node in list(_live_nodes):
        try:
            node.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


_ENUM_FIELDS = ("log_level", "mode")


def _config_text(fields):
    """NodeConfig text format from keyword arguments: name="a",
    seeds=["unix:/tmp/sm/b.grpc"], log_level="warning",
    wait={"mode": "SLEEP"} (a dict is a nested message)."""
    lines = []
    for key, value in fields.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, dict):
                lines.append("{} {{ {} }}".format(key, _config_text(v).replace("\n", " ")))
                continue
            if isinstance(v, bool):
                text = "true" if v else "false"
            elif isinstance(v, int):
                text = str(v)
            elif isinstance(v, str) and key in _ENUM_FIELDS:
                text = v.upper()
            else:
                text = json.dumps(str(v))  # a double-quoted string text format accepts
            lines.append("{}: {}".format(key, text))
    return "\n".join(lines) + "\n"


async def _wait_readable(owner, fd):
    """Waits until `fd` is readable on the running loop. Concurrent waiters
    on one owner share one reader (add_reader allows one per descriptor)."""
    loop = asyncio.get_running_loop()
    waiters = owner.__dict__.setdefault("_async_waiters", {})
    key = (id(loop), fd)
    futures = waiters.get(key)
    if futures is None:
        futures = waiters[key] = []

        def ready():
            loop.remove_reader(fd)
            pending = waiters.pop(key, [])
            for f in pending:
                if not f.done():
                    f.set_result(None)

        loop.add_reader(fd, ready)
    fut = loop.create_future()
    futures.append(fut)
    try:
        await fut
    finally:
        if not fut.done() or fut.cancelled():
            if fut in futures:
                futures.remove(fut)
            if not futures and waiters.get(key) is futures:
                waiters.pop(key, None)
                loop.remove_reader(fd)


async def _receive_async(owner, fd, timeout):
    async def loop_until_message():
        while True:
            message = owner._try_receive()
            if message is not None:
                return message
            await _wait_readable(owner, fd)

    if timeout is None:
        return await loop_until_message()
    try:
        return await asyncio.wait_for(loop_until_message(), timeout)
    except asyncio.TimeoutError:
        raise DeadlineExceededError("no message before the timeout") from None


class Node(_shmesh._Node):
    """One process's membership in a shmesh mesh (the C++ mesh::Node).

    Build it from a config file, config text, or the config's fields as
    keywords (NodeConfig in mesh/v1/config.proto, installed in include/shmesh/):

        shmesh.Node("node.textproto")
        shmesh.Node(config_text='name: "a" run_dir: "/tmp/sm"')
        shmesh.Node(name="b", run_dir="/tmp/sm", seeds=["unix:/tmp/sm/a.grpc"])

    `with Node(...) as n:` starts it and stops it at the end. Set the
    callbacks (on_message, on_peer_up, ...) before start(). Thread-safe:
    any Python thread may call any method; blocking calls release the GIL.
    Callbacks run on the node's threads (with the GIL): keep them short, and
    do not call stop() or call() from them.
    """

    def __init__(self, config_path=None, *, config_text=None, **fields):
        """Builds a stopped node. Raises InvalidArgumentError (bad config,
        naming the field) or NotFoundError (no such file)."""
        if fields:
            if config_path is not None or config_text is not None:
                raise ValueError("shmesh.Node: give config_path, config_text or fields, not several")
            config_text = _config_text(fields)
        if config_path is not None:
            config_path = str(config_path)
        super().__init__(config_path, config_text)
        self._handles = set()  # subscriptions and services with a callback: kept alive
        _live_nodes.add(self)

    @classmethod
    def from_file(cls, path):
        """A stopped node from a config file (text format, or JSON for *.json)."""
        return cls(str(path))

    def __enter__(self):
        """Starts the node."""
        self.start()
        return self

    def __exit__(self, *exc):
        """Stops the node."""
        self.stop()
        return False

    def __repr__(self):
        return "shmesh.Node(name={!r}, id={:#x})".format(self.name, self.id)

    # ---- receiving
    def on_message(self, callback):
        """Sets the message callback (before start(); usable as a decorator).

        callback(message) runs on the node's receive thread for every message
        sent to this node. message.payload is a read-only memoryview of the
        shared-memory ring (zero copy) that is released when the callback
        returns: copy it there (bytes(message), message.copy()) to keep it.
        With a callback set, receive() raises FailedPreconditionError.
        """
        self._set_message_handler(self, callback)
        return callback

    async def receive_async(self, timeout=None):
        """Awaits the next message (asyncio; payload bytes), waiting on
        receive_fd() with loop.add_reader. Raises DeadlineExceededError after
        `timeout` seconds (None: no limit)."""
        return await _receive_async(self, self.receive_fd(), timeout)

    # ---- peers
    def on_peer_up(self, callback):
        """Sets callback(peer_info) for a link coming up (before start(); a decorator)."""
        self._set_peer_handlers(self, "up", callback)
        return callback

    def on_peer_down(self, callback):
        """Sets callback(peer_info) for a link going down, the peer's death included (before start())."""
        self._set_peer_handlers(self, "down", callback)
        return callback

    def on_peer_unresponsive(self, callback):
        """Sets callback(peer_info, unresponsive) for a peer whose process stopped
        running (True) or runs again (False) (before start())."""
        self._set_peer_handlers(self, "unresponsive", callback)
        return callback

    def topology(self, local_only=False, as_json=False):
        """The mesh's topology (mesh.v1.TopologySnapshot) as a dict, or as its
        JSON text with as_json=True. With local_only False it asks every member
        over gRPC (blocking, GIL released)."""
        text = self._topology_json(local_only)
        return text if as_json else json.loads(text)

    # ---- topics and services
    def advertise(self, topic, history=0, *, reliability="reliable", on_matched=None, shared_ring=False):
        """A Publisher of `topic`. history: keep the last N messages for
        subscribers that come later (at most 4096). reliability: "reliable"
        (wait for full subscribers until the publish timeout) or "best_effort"
        (skip them). on_matched(n) is called on the node's events thread when
        the number of subscribers changes. shared_ring: one ring for all
        subscribers, each message written once (mesh/topic.h,
        PublisherOptions::shared_ring: messages of at most half the ring; a
        subscriber that holds the ring past the timeout is evicted until the
        next publish). InvalidArgumentError for a bad topic."""
        if reliability not in ("reliable", "best_effort"):
            raise ValueError("reliability must be 'reliable' or 'best_effort'")
        return self._advertise(topic, history, reliability == "best_effort", on_matched, shared_ring)

    def subscribe(self, pattern, callback=None, *, queue_depth=1024):
        """A Subscription to `pattern` ('*' one segment, '**' any number).

        With `callback`, callback(message) runs on the receive thread (payload
        a memoryview valid during the call only, message.topic the topic); the
        node keeps the subscription alive until unsubscribe(). Without one,
        messages queue (at most queue_depth; then publishers are held back)
        for Subscription.receive() / receive_async().
        """
        sub = self._subscribe(pattern, callback, queue_depth)
        if callback is not None:
            self._handles.add(sub)
            sub._node = weakref.ref(self)
        return sub

    def serve(self, service, handler):
        """Serves `service`: handler(request: bytes) -> bytes (or None: empty)
        runs on the receive thread. Raising a shmesh.Error subclass returns that
        status to the caller; any other exception is reported here and the caller
        gets InternalError. The node keeps the Service alive until its close().
        AlreadyExistsError if this node already serves it."""
        svc = self._serve(service, handler)
        self._handles.add(svc)
        svc._node = weakref.ref(self)
        return svc


# ---- methods added to the extension's classes


def _subscription_receive_async(self, timeout=None):
    """Awaits the next message of this pull subscription (asyncio), waiting
    on ready_fd() with loop.add_reader; DeadlineExceededError after `timeout`."""
    fd = self.ready_fd()
    if fd < 0:
        raise FailedPreconditionError("receive_async on a subscription with a callback")
    return _receive_async(self, fd, timeout)


def _forget(handle):
    ref = handle.__dict__.get("_node")
    node = ref() if ref is not None else None
    if node is not None:
        node._handles.discard(handle)


def _subscription_unsubscribe(self):
    """Unsubscribes now: no message is delivered once this returns (waits, GIL
    released, for a callback in progress unless called from inside it)."""
    _shmesh_unsubscribe(self)
    _forget(self)


def _service_close(self):
    """Stops serving: once this returns the handler is not running and is never called again."""
    _shmesh_service_close(self)
    _forget(self)


def _enter(self):
    return self


def _exit_unsubscribe(self, *exc):
    self.unsubscribe()
    return False


def _exit_close(self, *exc):
    self.close()
    return False


_shmesh_unsubscribe = Subscription.unsubscribe
_shmesh_service_close = Service.close
Subscription.receive_async = _subscription_receive_async
Subscription.unsubscribe = _subscription_unsubscribe
Subscription.__enter__ = _enter
Subscription.__exit__ = _exit_unsubscribe
Service.close = _service_close
Service.__enter__ = _enter
Service.__exit__ = _exit_close
Publisher.__enter__ = _enter
Publisher.__exit__ = _exit_close
