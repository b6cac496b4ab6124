"""`alexnet serve --checkpoint RUN [--checkpoint RUN ...]` (or `alexnet serve RUN [RUN ...]`): a local page that
shows what a trained run learned and why it answers what it does."""

from __future__ import annotations

import argparse
import secrets

from alexnet.cli.vocabulary import add_progress_flag, checkpoints_given, progress_wanted
from alexnet.errors import AlexNetError, ConfigError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="a local web page for trained runs: top-5, Grad-CAM, activations, units, errors, fc7 map, curves",
        description="Serves a page (FastAPI + uvicorn, every script and style served by the app itself, no network "
        "needed) for one or more run folders or checkpoint files: predict (upload or pick an image: top-5, Grad-CAM, "
        "every layer's activations, the nearest training images in fc7), filters and units, errors (the confusion "
        "matrix and its images), a 2-D map of fc7 (PCA, t-SNE) and the training curves. Each run's index (fc7 of "
        "its images, predictions, top activations) is computed once and cached beside its checkpoint. Listens on "
        "127.0.0.1 only, unless --host says otherwise; then a token is required (generated and printed in the URL).",
    )
    p.add_argument("--checkpoint", action="append", metavar="RUN", help="a run folder or checkpoint file (repeat "
                   "for several), as every command names the run it reads")
    p.add_argument("runs", nargs="*", metavar="RUN", help="more runs, named without --checkpoint")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--token", default=None, help="the access token (default: none on the loopback, generated otherwise)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, metavar="MB", help="largest upload accepted (default 20)")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="inference requests run at once (default 2)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="longest an inference request may take")
    add_progress_flag(p, "while indexing")
    p.set_defaults(run=run)


def server_token(host: str, token: str | None) -> str | None:
    """None on the loopback unless one is given; on any other host the given token or a new one: never none."""
    if token is not None and len(token) < 8:
        raise ConfigError("--token must be at least 8 characters")
    if token is None and host not in LOOPBACK:
        return secrets.token_urlsafe(24)
    return token


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, got {args.port}")
    if args.workers < 1 or args.timeout <= 0 or args.max_upload_mb <= 0:
        raise ConfigError("--workers must be >= 1, and --timeout and --max-upload-mb > 0")
    runs = checkpoints_given(args.checkpoint, args.runs)
    try:  # fastapi, uvicorn and torch: imported only when the command runs (`alexnet --help` stays instant)
        import uvicorn

        from alexnet.serve.app import Limits, create_app, listen
    except ModuleNotFoundError as e:
        raise AlexNetError(f"alexnet serve needs {e.name}: pip install 'alexnet[serve]'") from None
    token = server_token(args.host, args.token)
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), workers=args.workers,
                    timeout_s=args.timeout)
    sock = listen(args.host, args.port)  # bound before the index is built: a busy port is said at once
    try:
        app = create_app(runs, token=token, limits=limits, progress=progress_wanted(args.progress))
    except BaseException:
        sock.close()
        raise
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    print(f"alexnet serve: {len(app.state.runs)} run(s) at {url}", flush=True)
    if token and args.host not in LOOPBACK:
        print("  listening beyond this machine: anyone with this URL can use the page", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)).run(sockets=[sock])
    return 0
