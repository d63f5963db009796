#!/bin/sh
echo "coverage_report_generator: bazel coverage is not supported offline in shmesh" >&2
exit 1
