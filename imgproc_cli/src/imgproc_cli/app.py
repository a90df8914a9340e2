"""The ``imgproc`` command line."""

from __future__ import annotations

import typer

app = typer.Typer(help="imgproc: a self-hosted image service.", no_args_is_help=True)


@app.callback()
def root() -> None:
    """Operate an imgproc service and run its transformation engine on local files."""


def main() -> None:
    app()
