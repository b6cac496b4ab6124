"""The routes of the five views (predict, filters and units, errors, map, training) and the images they show.

Images are named by id (`val:17`, `train:3`, `upload:<hex>`), never by path. Inference routes go through the
app's bounded worker (`app.state.bounded`); the cheap ones answer from the index directly.
"""

# No `from __future__ import annotations` here: FastAPI reads the route functions' annotations at run time, and
# Request is imported inside build_router (fastapi is imported only when a server is built).
from typing import Any

from alexnet.errors import DataError
from alexnet.inspect.loaded import ID_PATTERN, UPLOAD_PATTERN, UnknownImage

ID_RE = f"{ID_PATTERN.pattern}|{UPLOAD_PATTERN.pattern}"  # what a query's image id may be, checked by FastAPI
PNG_HEADERS = {"Cache-Control": "private, max-age=3600"}


def build_router():
    from fastapi import APIRouter, Query, Request
    from fastapi.responses import Response

    from alexnet.inspect.pictures import data_uri
    from alexnet.serve import views
    from alexnet.serve.app import Refused

    router = APIRouter(prefix="/api")

    def served(request: Request, rid: str):
        runs = request.app.state.runs
        if rid not in runs:
            raise UnknownImage(f"no run {rid!r}; runs: {', '.join(runs)}")
        return runs[rid]

    def png(data: bytes) -> Response:
        return Response(data, media_type="image/png", headers=PNG_HEADERS)

    async def bounded(request: Request, fn, *args, admit: bool = True) -> Any:
        return await request.app.state.bounded(fn, *args, admit=admit)

    @router.get("/health")
    async def health():
        return {"ok": True}

    @router.get("/runs")
    async def runs(request: Request):
        return {"runs": [sr.describe() for sr in request.app.state.runs.values()]}

    @router.get("/runs/{rid}/image/{image_id}")
    async def image(request: Request, rid: str, image_id: str):
        sr = served(request, rid)
        return png(await bounded(request, views.image_png, sr, image_id, admit=False))

    @router.post("/runs/{rid}/upload")
    async def upload(request: Request, rid: str):
        sr = served(request, rid)
        cap = request.app.state.limits.max_upload_bytes
        chunks, size = [], 0
        async for chunk in request.stream():  # counted as it arrives: a missing or false Content-Length is no way around
            size += len(chunk)
            if size > cap:
                raise Refused(413, f"upload too large: more than the limit of {cap:,} bytes")
            chunks.append(chunk)
        name = _file_name(request.headers.get("x-filename", "upload"))
        if not size:
            raise DataError(f"{name}: empty upload (0 bytes)")
        return await bounded(request, views.upload, sr, b"".join(chunks), name)

    @router.get("/runs/{rid}/predict")
    async def predict(request: Request, rid: str, image: str = Query(pattern=ID_RE, max_length=64),
                      k: int = Query(5, ge=1, le=20)):
        sr = served(request, rid)
        return await bounded(request, views.predict, sr, image, request.app.state.limits.wait_s, k)

    @router.get("/runs/{rid}/gradcam")
    async def gradcam(request: Request, rid: str, image: str = Query(pattern=ID_RE, max_length=64),
                      target: str = Query(alias="class", max_length=200), layer: str | None = Query(None, max_length=32)):
        sr = served(request, rid)
        return png(await bounded(request, views.gradcam_png, sr, image, target, layer, request.app.state.limits.wait_s))

    @router.get("/runs/{rid}/filters")
    async def filters(request: Request, rid: str):
        sr = served(request, rid)
        data, layout = await bounded(request, views.filters_png, sr)
        return {"png": data_uri(data), "grid": layout}

    @router.get("/runs/{rid}/units")
    async def units(request: Request, rid: str, layer: str = Query(max_length=32), channel: int = Query(ge=0)):
        return views.units(served(request, rid), layer, channel)

    @router.get("/runs/{rid}/confusion")
    async def confusion(request: Request, rid: str):
        return views.confusion(served(request, rid))

    @router.get("/runs/{rid}/confusion/{true}/{pred}")
    async def cell(request: Request, rid: str, true: int, pred: int):
        return views.cell(served(request, rid), true, pred)

    @router.get("/runs/{rid}/map")
    async def embedding_map(request: Request, rid: str, method: str = Query("pca", pattern="^(pca|tsne)$")):
        return views.embedding_map(served(request, rid), method)

    @router.get("/runs/{rid}/training")
    async def training(request: Request, rid: str):
        return await bounded(request, views.training, served(request, rid), admit=False)

    return router


def _file_name(raw: str) -> str:
    """The uploaded file's name, for messages only: printable, at most 80 characters."""
    from urllib.parse import unquote

    name = "".join(c for c in unquote(raw) if c.isprintable() and c not in "/\\")[:80]
    return name or "upload"
