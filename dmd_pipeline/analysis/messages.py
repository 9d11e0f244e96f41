"""A result's warnings: deduplicated and ranked, so the few lines a console shows are the ones that matter.

The analysis collects notes from every stage and every streaming window; a 20-minute file gave 22, 19 of
them the same alignment note with other numbers. :func:`rank_warnings` keeps one line per kind (the first,
with how many such notes came), then orders them: what makes the result unreliable first (input damaged or
silent, no speech, speech that is probably not English, implausible timings), then timing fallbacks, then
notes about how the file was processed. The result's ``warnings`` hold these lines in this order; ``dmd
analyze`` prints the first three.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: (rank, pattern) in order: the first matching pattern ranks a warning; unmatched ones rank 2.
_RANKS: tuple[tuple[int, re.Pattern[str]], ...] = tuple(
    (rank, re.compile(pattern, re.IGNORECASE))
    for rank, pattern in (
        (0, r"decod\w* (stopped early|produced no samples|failed)|truncated|corrupt"),
        (0, r"is silent|digital silence|no speech detected|too little speech"),
        (0, r"no modality the model uses|nothing to score|no score is given"),
        (1, r"not English|low speech-recognition confidence|implausible"),
        (1, r"heard no speech|no words|holds no words"),
        (3, r"forced alignment did not place|proportional|fell back"),
        (4, r"streaming windows|analysed whole|cut in pauses"),
    )
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _kind(message: str) -> str:
    """A warning with its numbers blanked: the same kind of note from another window or segment."""
    return _NUMBER.sub("#", message)


def _rank(message: str) -> int:
    return next((rank for rank, pat in _RANKS if pat.search(message)), 2)


#: A warning made redundant by another one (pattern of the redundant one, pattern of what says it better).
_COVERED: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = (
    (
        re.compile(r"^no words \(no transcript, or none recognised\): text missing$"),
        re.compile(r"heard no speech|^no transcript: |^\S+: no words .*nothing to score"),
    ),
)


def rank_warnings(warnings: Iterable[str]) -> list[str]:
    """One line per kind of warning (the first one, ``(the first of N such notes)`` added when it came more
    than once: the numbers in it are the first one's), most important first; the order within a rank is the
    order they came in. A note that another one already says better is left out ("no words: text missing"
    beside "whisper heard no speech" or a words model's "no words: nothing to score")."""
    warnings = [str(w).strip() for w in warnings]
    first: dict[str, str] = {}
    counts: dict[str, int] = {}
    for w in warnings:
        if not w or any(red.search(w) and any(by.search(x) for x in warnings) for red, by in _COVERED):
            continue
        k = _kind(w)
        first.setdefault(k, w)
        counts[k] = counts.get(k, 0) + 1
    lines = [first[k] + (f" (the first of {counts[k]} such notes)" if counts[k] > 1 else "") for k in first]
    return sorted(lines, key=_rank)  # stable: arrival order within a rank
