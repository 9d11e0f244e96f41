"""``dmd serve``: an HTTP API and a web page for analysing clips (needs the ``serve`` extra).

:mod:`.jobs` (the job store and the worker pool) imports no web framework; :mod:`.app` (FastAPI) does,
and is imported only by ``dmd serve`` and the tests, never on the core import path.
"""
