#!/usr/bin/env bash
# Starts every service the integration and end-to-end tests use, on 127.0.0.1 and ports of the
# project's own, and prints `export NAME=VALUE` lines that point the tests at them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
for service in postgres redis gcs kafka; do
    "$here/$service.sh" start >&2
done
echo "export IMGPROC_TEST_POSTGRES_URL=$("$here/postgres.sh" url)"
echo "export IMGPROC_TEST_REDIS_URL=$("$here/redis.sh" url)"
echo "export IMGPROC_TEST_GCS_ENDPOINT=$("$here/gcs.sh" endpoint)"
echo "export IMGPROC_TEST_KAFKA_BOOTSTRAP=$("$here/kafka.sh" bootstrap)"
