"""imgproc's HTTP shell: a Litestar application over the core's use cases.

Build a container, then the app: ``create_app(build_container(settings))``;
:func:`imgproc_http.server.serve` runs it with uvicorn.
"""

from imgproc_http.app import create_app

__all__ = ["create_app"]
