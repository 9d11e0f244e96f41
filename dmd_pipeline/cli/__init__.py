"""The ``dmd`` command-line interface (typer).

Every command module is imported by ``dmd --help`` and by each command's start, so they import the package's
own modules inside the command functions, not at the top: those pull numpy, torch, transformers or rich
progress machinery, which a help text or a usage error does not need. Commands only parse flags into a
request and call a library runner (analysis.batch, data.extract, training.run, evaluation).
"""
