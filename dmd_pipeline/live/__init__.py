"""``dmd live``: emotion as it happens, from a file played at real time, a network stream, a camera, a
microphone or stdin. :mod:`~dmd_pipeline.live.source` decodes (one ffmpeg process),
:mod:`~dmd_pipeline.live.cutter` cuts utterances as they finish, :mod:`~dmd_pipeline.live.runner` scores
them with the same code as ``dmd analyze`` and assembles the result."""

from dmd_pipeline.live.cutter import Utterance, UtteranceCutter
from dmd_pipeline.live.runner import LiveOptions, LiveRunner, LiveStats
from dmd_pipeline.live.source import LiveSource, LiveSourceError, parse_source

__all__ = [
    "LiveOptions",
    "LiveRunner",
    "LiveSource",
    "LiveSourceError",
    "LiveStats",
    "Utterance",
    "UtteranceCutter",
    "parse_source",
]
