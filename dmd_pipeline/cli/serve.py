"""``dmd serve``: the HTTP API and web page (FastAPI + uvicorn, the ``serve`` extra).

Binds to 127.0.0.1 by default. With ``--token-file`` every API call needs ``Authorization: Bearer <token>``;
binding a non-loopback address without a token is refused unless ``--insecure``. Exit code 2 for a usage
error (a missing extra, an unknown model, an unreadable or empty token file, an unsafe bind).
"""

from __future__ import annotations

import ipaddress
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
) -> None:
    """Serve an HTTP API and a web page for analysing clips (sentiment and emotion over time)."""
    import os

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
    from dmd_pipeline.analysis.registry import (
        default_model_names,
        read_model_meta,
        resolve_model_dir,
        split_model_refs,
    )
    from dmd_pipeline.errors import ConfigError, ModelFileError

    token: str | None = None
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise _usage_error(f"cannot read the token file {token_file}: {exc}") from None
        if len(token) < 16:
            raise _usage_error(f"the token in {token_file} is empty or shorter than 16 characters")
    if not is_loopback(host) and token is None and not insecure:
        raise _usage_error(
            f"refusing to serve on the non-loopback address {host} without --token-file "
            "(anyone on the network could use it); add --insecure to do it anyway"
        )
    try:
        refs = split_model_refs(model) or default_model_names()
        for ref in refs:
            read_model_meta(resolve_model_dir(ref)[1])
    except (ModelFileError, ConfigError) as exc:
        raise _usage_error(str(exc)) from None

    from dmd_pipeline.serve.app import create_app
    from dmd_pipeline.serve.jobs import JobStore

    try:
        Path(data_dir).expanduser().mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _usage_error(f"cannot create the data folder {data_dir}: {exc.strerror or exc}") from None
    store = JobStore(data_dir, model=refs, workers=workers, max_queue=max_queue, ttl_hours=job_ttl_hours)
    # loopback without a token: only loopback Host headers (a page elsewhere cannot DNS-rebind to us)
    hosts = (
        {"127.0.0.1", "localhost", "::1", "[::1]", host.lower()} if is_loopback(host) and not token else None
    )
    app = create_app(store, token=token, max_upload_mb=max_upload_mb, model_names=refs, allowed_hosts=hosts)
    auth = "token required" if token else "no token"
    typer.echo(
        f"dmd serve on http://{host}:{port}/ ({auth}; {workers} worker(s); data in {store.data_dir})",
        err=True,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        server_header=False,
        timeout_graceful_shutdown=5,
    )
