#!/usr/bin/env bash
# Stops every service that up.sh starts; stopping one that is not running is not an error.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
status=0
for service in kafka gcs redis postgres; do
    "$here/$service.sh" stop >&2 || status=1
done
exit $status
