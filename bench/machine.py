"""The machine a run happened on, and the outside tools a scenario needs (from Debian)."""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
import sys
from typing import Any

from bench.processes import child_environment


class Unavailable(Exception):
    """A tool a scenario needs cannot be had here; the scenario's rows say so and why."""


def _run(command: list[str], timeout: float = 30) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip()


def _lscpu() -> dict[str, str]:
    fields = {}
    for line in _run(["lscpu"]).splitlines():
        name, _, value = line.partition(":")
        fields[name.strip()] = value.strip()
    return fields


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        return None
    return None


def describe() -> dict[str, Any]:
    import PIL
    from PIL import features

    lscpu = _lscpu()
    return {
        "cpus": os.cpu_count(),
        "nproc": _run(["nproc"]),
        "cpu_model": lscpu.get("Model name", platform.processor()),
        "threads_per_core": lscpu.get("Thread(s) per core"),
        "hypervisor": lscpu.get("Hypervisor vendor"),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "libc": " ".join(platform.libc_ver()),
        "python": sys.version.split()[0],
        "pillow": PIL.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "libwebp": features.version("webp"),
        "libavif": features.version("avif"),
        "load_average": os.getloadavg(),
    }


def debian_version(package: str) -> str | None:
    version = _run(["dpkg-query", "-W", "-f=${Status} ${Version}", package])
    if version.startswith("install ok installed "):
        return version.rsplit(" ", 1)[1]
    return None


@functools.cache
def debian_package(package: str) -> str:
    """Install ``package`` with apt-get when it is missing; its version, or Unavailable."""
    version = debian_version(package)
    if version is not None:
        return version
    if shutil.which("apt-get") is None:
        raise Unavailable(f"{package} is not installed and there is no apt-get to install it")
    if os.geteuid() != 0:
        raise Unavailable(f"{package} is not installed; run `sudo apt-get install {package}`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]
    print(f"bench: apt-get install {package}", file=sys.stderr)
    result = subprocess.run(install, capture_output=True, text=True, env=env, timeout=600)
    if result.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, timeout=600)
        result = subprocess.run(install, capture_output=True, text=True, env=env, timeout=600)
    version = debian_version(package)
    if version is None:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise Unavailable(f"apt-get could not install {package}: {detail[0]}")
    return version


@functools.cache
def pyvips_version() -> str:
    """libvips through pyvips, checked in a child process (Pillow imported first)."""
    try:
        debian_package("libvips42")
    except Unavailable as exc:
        raise Unavailable(f"libvips: {exc}") from None
    probe = (
        "import PIL.Image, pyvips; print('%d.%d.%d' % tuple(pyvips.version(i) for i in range(3)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=child_environment()
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise Unavailable(
            f"pyvips does not import ({last}); `make bench` installs it from bench/requirements.txt"
        )
    return result.stdout.strip()
