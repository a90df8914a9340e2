"""The baseline of the API scenario: Litestar with nothing but an upload and a JSON endpoint.

Served by uvicorn with the settings ``imgproc serve`` uses, in one process:
``python -m bench.servers.bare_app PORT``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import uvicorn
from litestar import Litestar, get, post
from litestar.datastructures import UploadFile
from litestar.params import MultipartBody


@dataclass
class UploadForm:
    file: UploadFile


@post("/upload", status_code=201)
async def upload(data: MultipartBody[UploadForm]) -> dict[str, int]:
    content = await data.file.read()
    return {"size": len(content)}


@get("/json")
async def json_endpoint() -> dict[str, str]:
    return {"status": "ok"}


app = Litestar(route_handlers=[upload, json_endpoint], request_max_body_size=32 * 2**20)


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="info",
        proxy_headers=False,
        server_header=False,
    )
