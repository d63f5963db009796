"""publisher.py: publisher.cc in Python, over the installed package.

    PYTHONPATH=$PREFIX/lib/python3.11/dist-packages \
        python3 publisher.py /tmp/shmesh-demo unix:/tmp/shmesh-demo/a.grpc hello/python 3
"""
import sys

import shmesh


def main(argv):
    if len(argv) != 5:
        print("usage: publisher.py RUN_DIR SEED TOPIC COUNT", file=sys.stderr)
        return 2
    run_dir, seed, topic, count = argv[1], argv[2], argv[3], int(argv[4])
    node = shmesh.Node(name="py-publisher", run_dir=run_dir, seeds=[seed])
    try:
        pub = node.advertise(topic)
        with node:  # starts it, stops it at the end
            pub.wait_for_subscribers(1, timeout=20)
            for i in range(1, count + 1):
                pub.publish(b"hello %d from Python" % i, timeout=5)
        print("publisher: published %d messages on %s" % (count, topic))
    except shmesh.Error as e:
        print("publisher: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
