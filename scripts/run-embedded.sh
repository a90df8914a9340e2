#!/usr/bin/env bash
# Serves the embedded profile: SQLite in var/imgproc.db, blobs in var/blobs, worker threads in
# the HTTP process. Usage: scripts/run-embedded.sh [HOST] [PORT]
#
# The first run generates a random signing secret into var/secret.env (mode 600); later runs
# reuse it, so tokens and signed URLs survive a restart. IMGPROC_* variables already set in the
# environment (or in .env) win over these defaults.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
host="${1:-127.0.0.1}"
port="${2:-8000}"
cd "$root"
uv="$(scripts/bootstrap-uv.sh)"

mkdir -p var/blobs
secret_file=var/secret.env
if [ -n "${IMGPROC_JWT_SECRET:-}" ] || { [ -f .env ] && grep -q '^[[:space:]]*\(export[[:space:]]\+\)\?IMGPROC_JWT_SECRET=' .env; }; then
    echo "run-embedded: using the IMGPROC_JWT_SECRET already configured" >&2
else
    if [ ! -s "$secret_file" ]; then
        (
            umask 077
            secret="$("$uv" run --frozen python -c 'import secrets; print(secrets.token_hex(32))')"
            printf 'IMGPROC_JWT_SECRET=%s\n' "$secret" > "$secret_file.tmp"
            mv "$secret_file.tmp" "$secret_file"
        )
        echo "run-embedded: generated a signing secret in $secret_file" >&2
    fi
    chmod 600 "$secret_file"
    set -a
    # shellcheck disable=SC1090
    . "$secret_file"
    set +a
fi

# The settings' defaults are the embedded profile (sqlite:///var/imgproc.db, var/blobs, the
# queue table, worker threads), so nothing more is set here.
"$uv" run --frozen imgproc db upgrade
echo "run-embedded: serving on http://$host:$port (API docs at http://$host:$port/schema)" >&2
exec "$uv" run --frozen imgproc serve --host "$host" --port "$port"
