"""The ``dmd`` typer application.

Each sub-command lives in its own module and imports heavy libraries inside its function body, so that
``dmd --help`` stays fast. Register a command with one line in the block below.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="dmd",
    help="Multimodal sentiment/emotion recognition from raw video with DMD (Decoupled Multimodal Distilling).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Multimodal sentiment/emotion recognition from raw video with DMD."""


# --- command registration (one line per command) ---
from dmd_pipeline.cli import analyze, evaluate, extract, info, selftest, train  # noqa: E402

app.command("analyze")(analyze.analyze)
app.command("extract")(extract.extract)
app.command("train")(train.train)
app.command("evaluate")(evaluate.evaluate)
app.command("selftest")(selftest.selftest)
app.command("info")(info.info)
# --- end of command registration ---


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
