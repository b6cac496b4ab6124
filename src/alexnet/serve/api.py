"""The routes of the five views (predict, filters and units, errors, map, training) and the images they show.

Images are named by id (`val:17`, `train:3`, `upload:<hex>`), never by path. Inference routes go through the
app's bounded worker (the `Worker` dependency); the cheap ones answer from the index directly. The run a route
works on comes from the `Run` dependency, which answers 404 for an id the server does not hold.
"""

# No `from __future__ import annotations` here: FastAPI reads the route functions' annotations at run time.
from typing import Annotated
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from alexnet.errors import DataError
from alexnet.inspect.loaded import ID_PATTERN, UPLOAD_PATTERN, UnknownImage
from alexnet.inspect.pictures import data_uri
from alexnet.serve import views
from alexnet.serve.forms import form_file, is_multipart
from alexnet.serve.limits import Bounded, Refused
from alexnet.serve.state import ServedRun

ID_RE = f"{ID_PATTERN.pattern}|{UPLOAD_PATTERN.pattern}"  # what a query's image id may be, checked by FastAPI
PNG_HEADERS = {"Cache-Control": "private, max-age=3600"}


async def served_run(request: Request, rid: str) -> ServedRun:
    runs = request.app.state.runs
    if rid not in runs:
        raise UnknownImage(f"no run {rid!r}; runs: {', '.join(runs)}")
    return runs[rid]


async def bounded_worker(request: Request) -> Bounded:
    return request.app.state.bounded


Run = Annotated[ServedRun, Depends(served_run)]
Worker = Annotated[Bounded, Depends(bounded_worker)]
ImageId = Annotated[str, Query(pattern=ID_RE, max_length=64)]

router = APIRouter(prefix="/api")


def png(data: bytes) -> Response:
    return Response(data, media_type="image/png", headers=PNG_HEADERS)


@router.get("/health")
async def health():
    return {"ok": True}


@router.get("/runs")
async def runs(request: Request):
    return {"runs": [sr.describe() for sr in request.app.state.runs.values()]}


@router.get("/runs/{rid}/image/{image_id}")
async def image(sr: Run, work: Worker, image_id: str):
    return png(await work(views.image_png, sr, image_id, admit=False))


@router.post("/runs/{rid}/upload")
async def upload(request: Request, sr: Run, work: Worker):
    """An image as the raw body (named by X-Filename) or as a multipart form's file (`curl -F file=@x.jpg`)."""
    cap = work.limits.max_upload_bytes
    chunks, size = [], 0
    async for chunk in request.stream():  # counted as it arrives: a missing or false Content-Length is no way around
        size += len(chunk)
        if size > cap:
            raise Refused(413, f"upload too large: more than the limit of {cap:,} bytes")
        chunks.append(chunk)
    name, body = _file_name(request.headers.get("x-filename", "upload")), b"".join(chunks)
    if is_multipart(request.headers.get("content-type", "")):  # `curl -F file=@x.jpg`, an HTML form
        filename, body = form_file(body, request.headers["content-type"])
        name = _file_name(filename) if filename else name
    if not body:
        raise DataError(f"{name}: empty upload (0 bytes)")
    return await work(views.upload, sr, body, name)


@router.get("/runs/{rid}/predict")
async def predict(sr: Run, work: Worker, image: ImageId, k: int = Query(5, ge=1, le=20)):
    return await work(views.predict, sr, image, work.limits.wait_s, k)


@router.get("/runs/{rid}/gradcam")
async def gradcam(sr: Run, work: Worker, image: ImageId, target: str = Query(alias="class", max_length=200),
                  layer: str | None = Query(None, max_length=32)):
    return png(await work(views.gradcam_png, sr, image, target, layer, work.limits.wait_s))


@router.get("/runs/{rid}/filters")
async def filters(sr: Run, work: Worker):
    data, layout = await work(views.filters_png, sr)
    return {"png": data_uri(data), "grid": layout}


@router.get("/runs/{rid}/units")
async def units(sr: Run, layer: str = Query(max_length=32), channel: int = Query(ge=0)):
    return views.units(sr, layer, channel)


@router.get("/runs/{rid}/confusion")
async def confusion(sr: Run):
    return views.confusion(sr)


@router.get("/runs/{rid}/confusion/{true}/{pred}")
async def cell(sr: Run, true: int, pred: int):
    return views.cell(sr, true, pred)


@router.get("/runs/{rid}/map")
async def embedding_map(sr: Run, method: str = Query("pca", pattern="^(pca|tsne)$")):
    return views.embedding_map(sr, method)


@router.get("/runs/{rid}/training")
async def training(sr: Run, work: Worker):
    return await work(views.training, sr, admit=False)


def _file_name(raw: str) -> str:
    """The uploaded file's name, for messages only: printable, at most 80 characters."""
    name = "".join(c for c in unquote(raw) if c.isprintable() and c not in "/\\")[:80]
    return name or "upload"
