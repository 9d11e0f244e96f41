"""The ``dmd`` typer application.

Each sub-command lives in its own module and imports heavy libraries inside its function body, so that
``dmd --help`` stays fast. Register a command with one line in the block below.
"""

from __future__ import annotations

import typer

from dmd_pipeline.cli.common import install_cli_style

install_cli_style()  # one-line "Error: ..." usage errors, clean help placeholders

app = typer.Typer(
    name="dmd",
    help="Multimodal sentiment/emotion recognition from raw video with DMD (Decoupled Multimodal Distilling).",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from dmd_pipeline import __version__

        typer.echo(f"dmd-pipeline {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Multimodal sentiment/emotion recognition from raw video with DMD."""


# --- command registration (one line per command) ---
from dmd_pipeline.cli import analyze, evaluate, extract, info, live, selftest, serve, train  # noqa: E402

app.command("analyze")(analyze.analyze)
app.command("extract")(extract.extract)
app.command("train")(train.train)
app.command("evaluate")(evaluate.evaluate)
app.command("selftest")(selftest.selftest)
app.command("info")(info.info)
app.command("doctor")(info.doctor)
app.command("serve")(serve.serve)
app.command("live")(live.live)
# --- end of command registration ---


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
