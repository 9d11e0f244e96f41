"""The ``dmd`` command-line interface (typer)."""
