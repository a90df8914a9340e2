"""The baseline of the API scenario: Litestar with nothing but two uploads, a JSON endpoint
and a file.

``POST /upload`` reads the file and forgets it; ``POST /upload-stored`` also writes it to a
file of its own in ``STORE_DIR`` (the second argument) and flushes it to disk, the least a
service that keeps uploads must do. ``GET /file`` answers the bytes of the file named by the
third argument (a delivery link's comparison). Served by uvicorn with the settings
``imgproc serve`` uses, in one process: ``python -m bench.servers.bare_app PORT STORE_DIR FILE``.
"""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from litestar import Litestar, get, post
from litestar.datastructures import UploadFile
from litestar.params import MultipartBody
from litestar.response import File


@dataclass
class UploadForm:
    file: UploadFile


@post("/upload", status_code=201)
async def upload(data: MultipartBody[UploadForm]) -> dict[str, int]:
    content = await data.file.read()
    return {"size": len(content)}


STORE_DIR = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(".")


@post("/upload-stored", status_code=201, sync_to_thread=True)
def upload_stored(data: MultipartBody[UploadForm]) -> dict[str, int]:
    content = data.file.file.read()
    descriptor = os.open(STORE_DIR / uuid.uuid4().hex, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        os.write(descriptor, content)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return {"size": len(content)}


FILE = Path(sys.argv[3]) if len(sys.argv) > 3 else Path(__file__)


@get("/file", sync_to_thread=True)
def file_endpoint() -> File:
    return File(path=FILE, media_type="image/jpeg", content_disposition_type="inline")


@get("/json")
async def json_endpoint() -> dict[str, str]:
    return {"status": "ok"}


app = Litestar(
    route_handlers=[upload, upload_stored, file_endpoint, json_endpoint],
    request_max_body_size=32 * 2**20,
)


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="info",
        proxy_headers=False,
        server_header=False,
    )
