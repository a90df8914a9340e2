"""``python -m imgproc_worker [worker|relay]``: the worker (default) or the relay, configured
by ``IMGPROC_*`` environment variables."""

from __future__ import annotations

import sys

from imgproc_core.settings import Settings, SettingsError
from imgproc_worker.runtime import Role, serve

USAGE = "usage: python -m imgproc_worker [worker|relay]"


def main(argv: list[str]) -> int:
    if len(argv) > 1 or (argv and argv[0] not in ("worker", "relay")):
        print(USAGE, file=sys.stderr)
        return 2
    role: Role = "relay" if argv and argv[0] == "relay" else "worker"
    try:
        serve(Settings.from_env(), role)
    except SettingsError as exc:
        print(f"imgproc {role}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
