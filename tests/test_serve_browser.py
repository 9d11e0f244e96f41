"""The ``dmd serve`` page in a real browser: headless Chromium driven by Selenium (Debian ``chromium`` and
``chromium-driver``). With a token configured, the page asks for it; the test types it, chooses a clip,
waits for the report and checks that the headline, the score table, the timeline image and the report
frame are shown, and that no script can read a cookie. A screenshot is saved under the test's tmp dir.
A page of another origin (another local port) that POSTs a clip to the server, as any web page could, is
refused. Only loopback addresses are contacted.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from media_factory import MediaFactory, session_factory
from test_serve import HAVE_SERVE, TEXT, TOKEN, Server, free_port

CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

try:
    import selenium  # noqa: F401

    HAVE_SELENIUM = True
except ImportError:
    HAVE_SELENIUM = False

pytestmark = [
    pytest.mark.serve,
    pytest.mark.skipif(not HAVE_SERVE, reason="fastapi/uvicorn/httpx not installed (pip install '.[serve]')"),
    pytest.mark.skipif(not HAVE_SELENIUM, reason="selenium is not installed (it is in the dev extra)"),
    pytest.mark.skipif(
        not (CHROMEDRIVER.is_file() and CHROMIUM),
        reason="chromium / chromium-driver (/usr/bin/chromedriver) are not installed (apt-get install chromium "
        "chromium-driver)",
    ),
]


def _driver(tmp_path: Path, extra: tuple[str, ...] = ()):  # noqa: ANN202 - a selenium WebDriver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")  # Selenium Manager: no telemetry, no downloads
    os.environ.setdefault("SE_OFFLINE", "true")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1200,1800",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-domain-reliability",
        "--metrics-recording-only",
        "--no-proxy-server",
        f"--user-data-dir={tmp_path / 'chrome-profile'}",
        *extra,
    ):
        opts.add_argument(arg)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    return webdriver.Chrome(options=opts, service=service)


def test_page_uploads_a_clip_and_shows_the_report(tmp_path: Path, tmp_path_factory) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    media: MediaFactory = session_factory(tmp_path_factory)
    clip = media.face_video(duration=2.0, text=TEXT)
    srv = Server(tmp_path / "data", "--max-upload-mb", "5", token=TOKEN)
    driver = None
    try:
        srv.start()
        driver = _driver(tmp_path)
        driver.set_page_load_timeout(30)
        driver.get(srv.url + "/")
        wait = WebDriverWait(driver, 150, poll_frequency=0.3)
        token_box = wait.until(ec.visibility_of_element_located((By.ID, "token")))  # the page asks for it
        token_box.send_keys(TOKEN)
        driver.find_element(By.ID, "save-token").click()
        Select(driver.find_element(By.ID, "asr")).select_by_value("none")
        language = Select(driver.find_element(By.ID, "language"))
        assert language.first_selected_option.get_attribute("value") == "auto"  # the API's default
        language.select_by_value("en")
        driver.find_element(By.CSS_SELECTOR, "details summary").click()
        driver.find_element(By.ID, "transcript").send_keys(TEXT)
        driver.find_element(By.ID, "file").send_keys(str(clip))
        wait.until(lambda d: d.find_element(By.ID, "headline").text.strip() != "")
        headline = driver.find_element(By.ID, "headline").text
        # the face channel names an emotion: the fused answer leads, then the face, then the words
        assert " | face: " in headline and " · words:" in headline, headline
        assert driver.find_element(By.ID, "answer").is_displayed()
        assert driver.find_element(By.ID, "fused-label").text not in ("", "no emotion named")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#strip .row")) == 4
        assert "Done" in driver.find_element(By.ID, "status").text
        rows = driver.find_elements(By.CSS_SELECTOR, "#scores tr")
        assert len(rows) == 3 and "mosi-text-minilm" in rows[1].text
        assert "fer-face-expression" in rows[2].text and "face visible" in rows[2].text  # the face channel
        # the timeline image really loaded (through the cookie the page set from the token)
        wait.until(lambda d: d.execute_script(
            "const i = document.getElementById('timeline'); return i.complete && i.naturalWidth > 0;"))  # fmt: skip
        assert driver.find_element(By.ID, "json-link").get_attribute("href").startswith("blob:")
        wait.until(lambda d: clip.name in d.find_element(By.ID, "jobs").text)
        jobs = _get_json(srv.url + "/v1/analyses")["jobs"]
        assert [j["language"] for j in jobs] == ["en"]  # the page's choice reached the job
        driver.switch_to.frame(driver.find_element(By.ID, "report"))
        wait.until(lambda d: d.find_elements(By.TAG_NAME, "h1"))
        imgs = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth]);"
        )
        assert imgs and all(w > 0 for _, w in imgs), imgs
        assert any("timeline.png" in src for src, _ in imgs), imgs
        driver.switch_to.default_content()
        shot = tmp_path / "serve_page.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        # the token never sits in a cookie a script can read; the report cookie is HttpOnly
        assert driver.execute_script("return document.cookie;") == ""
        assert TOKEN not in driver.execute_script("return document.documentElement.outerHTML;")
        logs = driver.get_log("browser") if hasattr(driver, "get_log") else []
        assert not [e for e in logs if e.get("level") == "SEVERE"], [e["message"] for e in logs]
    finally:
        if driver is not None:
            driver.quit()
        srv.stop()


def _get_json(url: str) -> dict:
    """GET ``url`` with the test token (loopback only)."""
    import json
    import urllib.request

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - the test's own server
        return json.loads(resp.read())


_ATTACK = """<!DOCTYPE html><html><head><title>attack</title></head><body><script>
const fd = new FormData();
// one second of 16 kHz mono silence as a WAV file: real media, which the server would analyse
const n = 16000, buf = new ArrayBuffer(44 + 2 * n), v = new DataView(buf);
const str = (o, t) => { for (let i = 0; i < t.length; i++) v.setUint8(o + i, t.charCodeAt(i)); };
str(0, "RIFF"); v.setUint32(4, 36 + 2 * n, true); str(8, "WAVEfmt "); v.setUint32(16, 16, true);
v.setUint16(20, 1, true); v.setUint16(22, 1, true); v.setUint32(24, 16000, true); v.setUint32(28, 32000, true);
v.setUint16(32, 2, true); v.setUint16(34, 16, true); str(36, "data"); v.setUint32(40, 2 * n, true);
fd.append("file", new Blob([buf], {type: "audio/wav"}), "clip.wav");
fd.append("asr", "none");
const done = () => { document.title = "sent"; };
fetch("TARGET/v1/analyses", {method: "POST", mode: "no-cors", body: fd}).then(done, done);
</script></body></html>"""


def test_a_page_of_another_origin_cannot_post_a_job(tmp_path: Path) -> None:
    import httpx

    srv = Server(tmp_path / "data")  # no token (the loopback default): the request is refused anyway
    site = tmp_path / "site"
    site.mkdir()
    (site / "attack.html").write_text(_ATTACK.replace("TARGET", "URL"), encoding="utf-8")
    port = free_port()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    driver = None
    try:
        srv.start()
        (site / "attack.html").write_text(_ATTACK.replace("TARGET", srv.url), encoding="utf-8")
        driver = _driver(tmp_path)
        driver.set_page_load_timeout(30)
        driver.get(f"http://localhost:{port}/attack.html")  # another origin (and another site)
        deadline = time.monotonic() + 30
        while driver.title != "sent" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert driver.title == "sent"
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            health = c.get("/healthz").json()
            assert health["refused_cross_site"] == 1, health  # the request arrived and was refused
            assert c.get("/v1/analyses").json()["jobs"] == []
    finally:
        if driver is not None:
            driver.quit()
        httpd.shutdown()
        srv.stop()
    assert list((tmp_path / "data" / "jobs").iterdir()) == []


def test_page_shows_the_fused_answer_the_strip_and_the_valence_timeline(tmp_path: Path) -> None:
    """The page's rendering of a schema 1.3 result with face, voice and words (built by hand, fused by the
    library) in headless Chromium: the fused answer with its conflict, four strip rows (fused on top) coloured
    per segment, the derived valence/arousal lines. The page is loaded from a file (no server needed)."""

    from selenium.webdriver.common.by import By
    from test_fused_result import FACE, build, peaked

    from dmd_pipeline.analysis.fused import fuse_result

    r = build(["sad", "sad"], [0.0, 0.0])
    face = {"probabilities": peaked(FACE, "happy", 0.8), "visible_fraction": 1.0}
    for obj in (r, *r.segments):
        object.__setattr__(obj, "face", face)
    fuse_result(r)
    doc = r.to_dict()
    doc["face"] = face  # the file's face channel, as a 1.3 result carries it
    for s in doc["segments"]:
        s["face"] = face
    page = Path(__file__).resolve().parents[1] / "dmd_pipeline" / "serve" / "page.html"
    local = tmp_path / "page.html"
    local.write_text(
        page.read_text(encoding="utf-8").replace("__TOKEN_REQUIRED__", "false"), encoding="utf-8"
    )
    driver = None
    try:
        driver = _driver(tmp_path)
        driver.set_page_load_timeout(30)
        driver.get(local.as_uri())
        driver.execute_script(
            "showAnswer(arguments[0]); document.getElementById('result').hidden = false;", doc
        )
        assert driver.find_element(By.ID, "fused-label").text == doc["fused"]["label"]
        unsure = driver.find_element(By.ID, "fused-unsure").text
        assert unsure == "uncertain: conflict — face happy, voice sad", unsure
        assert "agreement" in driver.find_element(By.ID, "fused-why").text
        rows = driver.find_elements(By.CSS_SELECTOR, "#strip .row")
        assert [x.get_attribute("data-channel") for x in rows] == ["fused", "face", "voice", "words"]
        cells = driver.execute_script(
            "return Array.from(document.querySelectorAll('#strip .row')).map(r => "
            "Array.from(r.querySelectorAll('.cell')).map(c => [c.title, getComputedStyle(c).backgroundColor]));"
        )
        assert all(len(row) == len(doc["segments"]) for row in cells)
        assert cells[1][0][0].endswith("happy 0.80") and cells[2][0][0].split(": ")[1].startswith("sad ")
        assert cells[1][0][1] != cells[2][0][1]  # face and voice coloured by their own classes
        assert "uncertain (conflict)" in cells[0][0][0]
        n_lines = driver.execute_script("return document.querySelectorAll('#va line.va-valence').length;")
        assert n_lines == len(doc["segments"])
        assert "derived" in driver.find_element(By.ID, "va-note").text
        shot = tmp_path / "serve_page_fused.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")
    finally:
        if driver is not None:
            driver.quit()


def test_page_live_mode_with_a_fake_camera_and_microphone(tmp_path: Path) -> None:
    """ "Use my camera and microphone": Chromium's fake capture devices play a real clip (three RAVDESS
    sentences: y4m video, wav sound) into the page, which sends MediaRecorder chunks to /v1/live (the token
    as its first message) and shows each utterance as it comes, with the running answer and the strip."""
    import subprocess

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from dmd_pipeline.utils import shared_dir

    d = shared_dir()
    video = d / "data" / "ravdess" / "video" if d is not None else None
    clips = ["01-01-01-01-01-01-01.mp4", "01-01-08-01-01-02-01.mp4", "01-01-08-02-02-02-01.mp4"]
    if video is None or not all((video / c).is_file() for c in clips):
        pytest.skip("../shared/data/ravdess/video is absent; skipping the live page test on real clips")
    inputs = [a for c in clips for a in ("-i", str(video / c))]
    graph = (
        "".join(f"[{k}:v][{k}:a]" for k in range(3)) + "concat=n=3:v=1:a=1[c][a];[c]scale=320:240,fps=10[v]"
    )
    y4m, wav = tmp_path / "clip.y4m", tmp_path / "clip.wav"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", *inputs, "-filter_complex", graph,
         "-map", "[v]", "-pix_fmt", "yuv420p", str(y4m),
         "-map", "[a]", "-ac", "1", "-ar", "48000", "-c:a", "pcm_s16le", str(wav)],
        check=True, timeout=120,
    )  # fmt: skip
    srv = Server(tmp_path / "data", token=TOKEN)
    driver = None
    try:
        srv.start()
        driver = _driver(tmp_path, (
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={y4m}", f"--use-file-for-fake-audio-capture={wav}",
            "--autoplay-policy=no-user-gesture-required",
        ))  # fmt: skip
        driver.set_page_load_timeout(30)
        driver.get(srv.url + "/")
        wait = WebDriverWait(driver, 300, poll_frequency=0.5)
        token_box = wait.until(ec.visibility_of_element_located((By.ID, "token")))
        token_box.send_keys(TOKEN)
        driver.find_element(By.ID, "save-token").click()
        driver.find_element(By.ID, "live-start").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#live-list tbody tr")) >= 2)
        rows = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#live-list tbody tr")]
        assert all("mosi-text-minilm" in r for r in rows), rows
        assert "door" in " ".join(rows).lower(), (
            rows
        )  # what the actor says, recognised from the fake microphone
        assert driver.find_element(By.ID, "live-answer").text.strip()
        assert driver.find_elements(By.CSS_SELECTOR, "#live-strip span")
        driver.save_screenshot(str(tmp_path / "live_page.png"))
        driver.find_element(By.ID, "live-stop").click()
        wait.until(lambda d: "ended" in d.find_element(By.ID, "live-status").text)
    finally:
        if driver is not None:
            driver.quit()
        srv.stop()
