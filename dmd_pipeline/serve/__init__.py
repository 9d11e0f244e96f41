"""``dmd serve``: an HTTP API and a web page for analysing clips (needs the ``serve`` extra).

:mod:`.jobs` (the job store and the worker pool) imports no web framework. The HTTP layer does, and is
imported only by ``dmd serve`` and the tests, never on the core import path: :mod:`.app` (the application,
error handlers, guards, page), :mod:`.routes` (the ``/v1`` router), :mod:`.deps` (settings, store and
access dependencies), :mod:`.upload` (bounded multipart streaming, wire clock, per-client uploads) and
:mod:`.wire` (uvicorn's protocol with a header timeout).
"""
