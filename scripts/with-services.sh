#!/usr/bin/env bash
# Starts the services the tests need, runs the command given, and stops the services again,
# whatever the command's outcome. The command sees each service's address in the environment.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
trap '"$here/services/down.sh"' EXIT
# shellcheck disable=SC1090
source <("$here/services/up.sh")
"$@"
