#!/bin/sh
echo "lcov_merger: bazel coverage is not supported offline in shmesh" >&2
exit 1
