"""``dmd serve``: the HTTP API and web page (FastAPI + uvicorn, the ``serve`` extra).

Binds to 127.0.0.1 by default. With ``--token-file`` every API call needs ``Authorization: Bearer <token>``;
binding a non-loopback address without a token is refused unless ``--insecure`` (then with a loud warning).
Exit code 2 for a usage error (a missing extra, an unknown model, an unreadable, empty or world-readable token
file, an unsafe bind). Files the server writes are private (umask 077: folders 0700, files 0600).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import stat
from pathlib import Path

import typer

DEFAULT_DATA_DIR = Path("~/.local/share/dmd-pipeline/serve")


def _usage_error(msg: str) -> typer.Exit:
    typer.echo(f"Error: {msg}", err=True)
    return typer.Exit(2)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_host(host: str) -> str:
    """``host`` as it goes in a URL: an IPv6 address in brackets."""
    h = host.strip("[]")
    try:
        return f"[{h}]" if ipaddress.ip_address(h).version == 6 else host
    except ValueError:
        return host


def read_token(token_file: Path) -> str:
    """The token in ``token_file``: refused when other users may read the file or it is too short; a
    group-readable file is accepted with a warning."""
    try:
        mode = token_file.stat().st_mode
        token = token_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise _usage_error(f"cannot read the token file {token_file}: {exc}") from None
    if mode & stat.S_IROTH:
        raise _usage_error(
            f"the token file {token_file} is readable by every user of this machine; chmod 600 {token_file}"
        )
    if mode & stat.S_IRGRP:
        typer.echo(f"Warning: the token file {token_file} is readable by its group; chmod 600 it", err=True)
    if len(token) < 16:
        raise _usage_error(f"the token in {token_file} is empty or shorter than 16 characters")
    return token


def _log_to_stderr() -> None:
    """Server-side messages (500 tracebacks, corrupt job files, a full disk) to stderr."""
    logger = logging.getLogger("dmd_pipeline.serve")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s dmd serve %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="TCP port."),
    workers: int = typer.Option(
        1, "--workers", "-w", min=1, help="Worker processes (each loads the models once)."
    ),
    model: list[str] | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Model name(s) or folder(s), as for dmd analyze (default: the bundled defaults).",
    ),
    face_model: str | None = typer.Option(
        None,
        "--face-model",
        metavar="NAME|DIR",
        help="Facial-expression model of the face channel, as for dmd analyze (default: the bundled one).",
    ),
    face: bool = typer.Option(
        True, "--face/--no-face", help="Read the facial expression from videos (the face channel)."
    ),
    token_file: Path | None = typer.Option(
        None, "--token-file", exists=True, dir_okay=False, help="File holding the API token (Bearer auth)."
    ),
    max_upload_mb: float = typer.Option(500.0, "--max-upload-mb", min=0.001, help="Largest upload, in MB."),
    data_dir: Path = typer.Option(
        DEFAULT_DATA_DIR, "--data-dir", help="Where jobs, uploads and results live (survives restarts)."
    ),
    job_ttl_hours: float = typer.Option(
        24.0, "--job-ttl-hours", min=0, help="Finished jobs are deleted after this many hours (0: kept)."
    ),
    max_queue: int = typer.Option(
        16, "--max-queue", min=0, help="Jobs waiting beyond the running ones; more get 429 + Retry-After."
    ),
    insecure: bool = typer.Option(
        False, "--insecure", help="Allow a non-loopback address without a token (anyone can use it)."
    ),
    read_timeout: float = typer.Option(
        30.0,
        "--read-timeout",
        min=1.0,
        help="Seconds to wait for request headers and for each piece of a body.",
    ),
    min_upload_rate: float = typer.Option(
        16.0, "--min-upload-rate", min=0.0, help="Slowest average upload in KB/s after 10 s (0: no minimum)."
    ),
    max_uploads_per_client: int = typer.Option(
        8, "--max-uploads-per-client", min=1, help="Uploads one client address may have arriving at once."
    ),
    job_time_factor: float = typer.Option(
        10.0,
        "--job-time-factor",
        min=0.0,
        help="A job may run 120 s + this x its media duration before it is stopped.",
    ),
) -> None:
    """Serve an HTTP API and a web page for analysing clips (sentiment and emotion over time)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise _usage_error(
            f"dmd serve needs the 'serve' extra ({exc.name} is missing): pip install 'dmd-pipeline[serve]'"
        ) from None
    from dmd_pipeline.analysis.registry import resolve_model_refs, with_face_model
    from dmd_pipeline.errors import ConfigError, ModelFileError

    token = read_token(token_file) if token_file is not None else None
    if not is_loopback(host) and token is None and not insecure:
        raise _usage_error(
            f"refusing to serve on the non-loopback address {host} without --token-file "
            "(anyone on the network could use it); add --insecure to do it anyway"
        )
    if not is_loopback(host) and token is None:
        typer.echo(
            f"WARNING: --insecure: serving on {host} WITHOUT A TOKEN. Anyone who can reach this address can "
            "upload files, read every result and delete jobs. Use --token-file unless this network is yours "
            "alone.",
            err=True,
        )
    if face_model is not None and not face:
        raise _usage_error("--face-model and --no-face contradict each other: give one of them")
    try:  # resolved and checked once, here (config.json of each); the workers load them
        refs = with_face_model(resolve_model_refs(model or None), face_model or face)
    except (ModelFileError, ConfigError) as exc:
        raise _usage_error(str(exc)) from None

    from dmd_pipeline.serve.app import create_app
    from dmd_pipeline.serve.deps import ServeSettings
    from dmd_pipeline.serve.jobs import JobStore
    from dmd_pipeline.serve.wire import protocol

    os.umask(0o077)  # every folder and file the server and its workers write: owner only
    try:
        Path(data_dir).expanduser().mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise _usage_error(f"cannot create the data folder {data_dir}: {exc.strerror or exc}") from None
    _log_to_stderr()
    store = JobStore(data_dir, model=refs, workers=workers, max_queue=max_queue, ttl_hours=job_ttl_hours,
                     time_factor=job_time_factor)  # fmt: skip
    # loopback without a token: only loopback Host headers (a page elsewhere cannot DNS-rebind to us)
    hosts = (
        frozenset({"127.0.0.1", "localhost", "::1", "[::1]", host.lower().strip("[]")})
        if is_loopback(host) and not token
        else None
    )
    settings = ServeSettings(
        token=token,
        max_upload_bytes=int(max_upload_mb * (1 << 20)),
        model_names=tuple(str(r) for r in refs),
        allowed_hosts=hosts,
        read_timeout_s=read_timeout,
        min_upload_bytes_s=min_upload_rate * 1024,
        max_uploads_per_client=max_uploads_per_client,
    )
    app = create_app(store, settings)
    auth = "token required" if token else "no token"
    typer.echo(
        f"dmd serve on http://{url_host(host)}:{port}/ ({auth}; {workers} worker(s); data in {store.data_dir})",
        err=True,
    )
    uvicorn.run(
        app,
        host=host.strip("[]"),
        port=port,
        log_level="warning",
        server_header=False,
        timeout_graceful_shutdown=5,
        http=protocol(read_timeout),
    )
