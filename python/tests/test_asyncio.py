"""asyncio: await node.receive_async() and subscription.receive_async()."""

import asyncio

import pytest

import shmesh


def test_receive_async(make_node):
    a = make_node("a")
    b = make_node("b", seed=a)
    a.wait_for_peers(1, timeout=5)
    b.wait_for_peers(1, timeout=5)  # each side sees the link when it is installed there

    async def main():
        waiters = [asyncio.ensure_future(a.receive_async(timeout=5)) for _ in range(2)]
        await asyncio.sleep(0.05)
        b.send("a", b"first")
        b.send("a", b"second")
        got = await asyncio.gather(*waiters)
        assert sorted(m.payload for m in got) == [b"first", b"second"]
        with pytest.raises(shmesh.DeadlineExceededError):
            await a.receive_async(timeout=0.05)

    asyncio.run(main())


def test_subscription_receive_async(make_node):
    a = make_node("a")
    b = make_node("b", seed=a)
    sub = a.subscribe("news/*")
    pub = b.advertise("news/today")
    pub.wait_for_subscribers(1, timeout=5)

    async def main():
        waiter = asyncio.ensure_future(sub.receive_async(timeout=5))
        await asyncio.sleep(0.02)
        pub.publish(b"headline")
        m = await waiter
        assert (m.topic, m.from_, m.payload) == ("news/today", "b", b"headline")

    asyncio.run(main())
