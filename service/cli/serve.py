"""``slicelab serve``: the REST service."""

from __future__ import annotations

from typing import Annotated

import typer

from slicelab.service.cli.common import console, fail
from slicelab.service.errors import SlicelabError


def serve(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8080,
) -> None:
    """Run the REST service (API keys from SLICELAB_API_KEYS; jobs run on `slicelab worker`s)."""
    import uvicorn

    from slicelab.service.api import Settings, create_app

    try:
        settings = Settings.from_env()
    except SlicelabError as e:
        fail(e)
    if not settings.api_keys:
        console.print("[yellow]no API keys configured (SLICELAB_API_KEYS): every endpoint but health answers 401[/yellow]")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``slicelab`` app."""
    app.command("serve")(serve)
