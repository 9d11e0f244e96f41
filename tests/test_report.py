"""HTML report: files exist, only local relative references, transcript text escaped, key frames drawn."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from media_factory import MediaFactory, session_factory
from test_result_schema import sample_result

from dmd_pipeline.analysis.report import IndexEntry, write_index, write_report


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> MediaFactory:
    return session_factory(tmp_path_factory)


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href") and v is not None:
                self.refs.append(v)


def _refs(page: Path) -> _Refs:
    p = _Refs()
    p.feed(page.read_text(encoding="utf-8"))
    return p


def _assert_local(page: Path, refs: list[str]) -> None:
    for ref in refs:
        assert "://" not in ref and not ref.startswith("//"), f"remote reference {ref}"
        assert not Path(ref).is_absolute(), f"absolute path {ref}"
        assert (page.parent / ref).is_file(), f"{ref} referenced by {page.name} does not exist"


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_report_files_local_and_escaped(tmp_path: Path, media: MediaFactory, task: str) -> None:
    clip = media.face_video(duration=3.5, size=(320, 240), speech=False)
    r = sample_result(task, text="<script>alert(1)</script> & more")
    r.file = str(clip)
    r.modalities.used = ["text", "audio", "vision"]  # the edge chart is drawn only for modalities fed
    page = write_report(r, tmp_path / "out", "clip one")
    html = page.read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;" in html
    p = _refs(page)
    assert "script" not in p.tags and "link" not in p.tags
    pngs = [ref for ref in p.refs if ref.endswith(".png")]
    names = {Path(ref).name for ref in pngs}
    assert {"timeline.png", "edges.png", "cues.png"} <= names
    # an emotion (classification) model gets its emotion-over-time plot; a sentiment model does not
    assert ("emotion.png" in names) == (task == "classification")
    assert r.headline and r.headline in html
    assert sum(n.startswith("frame_") for n in names) == 2  # both key frames of the sample
    _assert_local(page, p.refs)
    for ref in pngs:
        assert (page.parent / ref).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_without_media_or_cues(tmp_path: Path) -> None:
    r = sample_result()
    r.file = str(tmp_path / "gone.mp4")  # the media is not there: no key frames, still a page
    for s in r.cues.series.values():
        s.values = [None] * len(s.values)
    for s in r.segments:
        s.edges = None
    page = write_report(r, tmp_path, "gone")
    p = _refs(page)
    assert [Path(x).name for x in p.refs] == ["timeline.png"]
    _assert_local(page, p.refs)


def test_index_links_pages(tmp_path: Path) -> None:
    pages = []
    for name in ("a", "b c"):
        r = sample_result()
        pages.append(write_report(r, tmp_path, name))
    entries = [IndexEntry(f"/x/{p.stem}.mp4", p, 1.0, "positive", "ok") for p in pages]
    entries.append(IndexEntry("/x/<bad>.mp4", None, None, None, "failed"))
    index = write_index(tmp_path, entries)
    p = _refs(index)
    assert sorted(Path(h).name for h in p.refs) == ["a.html", "b c.html"]
    _assert_local(index, p.refs)
    assert "&lt;bad&gt;.mp4" in index.read_text(encoding="utf-8")
