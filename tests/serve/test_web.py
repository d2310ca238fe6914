"""The web page in a real headless Chromium against the real app and a small HetRec model.

Selenium drives Debian's ``chromium`` through its matching ``chromium-driver`` (both from apt, so
their versions always agree); the driver path is given explicitly so Selenium never looks for a
driver online. Skips when either is missing (``.ci/run`` installs them).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time

import pytest

API_KEY = "web-test-key"
WAIT_S = 20  # upper bound of every explicit wait; each normally ends in well under a second


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = "/usr/bin/chromedriver" if os.path.isfile("/usr/bin/chromedriver") else shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    return browser, driver


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium session (Selenium WebDriver)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _chromium()
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--no-first-run", "--no-proxy-server", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(driver_path), options=opts)
    drv.set_page_load_timeout(WAIT_S)
    yield drv
    drv.quit()


@pytest.fixture(scope="module")
def server(ease_dir):
    """The real app serving EASE on HetRec (conftest.py) under uvicorn on a free loopback port,
    with an API key; yields its base URL."""
    import uvicorn

    from musicrec.serve.app import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # the port is held from here on, so no other process can take it
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(ease_dir, api_key=API_KEY), log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the app did not start within the time limit")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=WAIT_S)
    sock.close()


def _wait(drv, condition, what: str, fail_on_error: bool = True):
    """Wait for ``condition``; stop early, quoting the page's message, when the page shows an error."""
    from selenium.webdriver.support.ui import WebDriverWait

    def done(d):
        if fail_on_error and _visible(d, "error"):
            return "error"
        return condition(d)

    got = WebDriverWait(drv, WAIT_S, poll_frequency=0.05).until(done, message=f"timed out waiting for {what}")
    if got == "error":
        pytest.fail(f"the page shows an error while waiting for {what}: {_one(drv, 'error').text}")
    return got


def _all(drv, testid: str):
    from selenium.webdriver.common.by import By

    return drv.find_elements(By.CSS_SELECTOR, f'[data-testid="{testid}"]')


def _one(drv, testid: str):
    from selenium.webdriver.common.by import By

    return drv.find_element(By.CSS_SELECTOR, f'[data-testid="{testid}"]')


def _visible(drv, testid: str) -> list:
    return [e for e in _all(drv, testid) if e.is_displayed()]


def _rec_ids(drv) -> list[str]:
    return [e.get_attribute("data-item-id") for e in _all(drv, "rec-item")]


def test_pick_play_and_similar_in_chromium(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    drv = browser
    drv.get(server + "/")
    assert "musicrec" in drv.title

    # without the key the API answers 401, and the page says so in its message area
    _one(drv, "search-input").send_keys("radiohead")
    _wait(drv, lambda d: _visible(d, "error"), "the 401 error message", fail_on_error=False)
    assert "401" in _one(drv, "error").text

    # the key typed into the settings field is stored and used; the pending search is retried
    drv.find_element(By.CSS_SELECTOR, "details.settings summary").click()
    _one(drv, "api-key").send_keys(API_KEY, Keys.TAB)
    _wait(drv, lambda d: _all(d, "search-result"), "search results")
    assert not _one(drv, "error").is_displayed()
    result = next((r for r in _all(drv, "search-result") if "radiohead" in r.text.lower()), None)
    assert result is not None, [r.text for r in _all(drv, "search-result")]

    # picking the artist makes a chip and asks for recommendations
    result.click()
    _wait(drv, lambda d: _all(d, "liked-artist"), "the liked-artist chip")
    assert "radiohead" in _one(drv, "liked-artist").text.lower()
    _wait(drv, lambda d: _all(d, "rec-item"), "recommendations")
    names = [e.text.lstrip("▶ ").strip() for e in _all(drv, "rec-play")]
    assert len(names) == 10 and all(names), names
    assert "Radiohead" not in names  # a seed is not recommended back
    reasons = [e.text for e in _all(drv, "rec-reason")]
    assert reasons and all(r.strip() for r in reasons), reasons
    assert _all(drv, "rec-tags"), "no recommended item shows tags"

    # playing a recommendation adds it to the session, and the next-up list is asked for again
    version = int(_one(drv, "rec-list").get_attribute("data-version"))
    before = _rec_ids(drv)
    played_id, played_name = before[0], names[0]
    _all(drv, "rec-play")[0].click()
    _wait(drv, lambda d: len(_all(d, "session-item")) == 1, "the session item")
    assert played_name in _one(drv, "session-item").text
    _wait(drv, lambda d: int(_one(d, "rec-list").get_attribute("data-version")) > version, "refreshed recommendations")
    after = _rec_ids(drv)
    assert after and played_id not in after and after != before

    # a second play grows the session again (and the list is re-rendered before it is used below)
    version = int(_one(drv, "rec-list").get_attribute("data-version"))
    _all(drv, "rec-play")[0].click()
    _wait(drv, lambda d: len(_all(d, "session-item")) == 2, "the second session item")
    _wait(drv, lambda d: int(_one(d, "rec-list").get_attribute("data-version")) > version, "refreshed recommendations")

    # similar items of a recommendation open in their own panel
    first = _all(drv, "rec-item")[0]
    first_id, first_name = first.get_attribute("data-item-id"), first.find_element(By.CSS_SELECTOR, ".play").text
    first.find_element(By.CSS_SELECTOR, '[data-testid="rec-similar"]').click()
    _wait(drv, lambda d: _all(d, "similar-item"), "similar items")
    assert _one(drv, "similar-panel").is_displayed()
    assert first_name.lstrip("▶ ").strip() in drv.find_element(By.ID, "similar-heading").text
    similar_ids = [e.get_attribute("data-item-id") for e in _all(drv, "similar-item")]
    assert len(similar_ids) == 10 and first_id not in similar_ids

    # removing the chip removes the seed; the key survives a reload
    _one(drv, "liked-remove").click()
    _wait(drv, lambda d: not _all(d, "liked-artist"), "the chip to go")
    drv.refresh()
    _wait(drv, lambda d: _one(d, "api-key").get_attribute("value") == API_KEY, "the stored API key")


def test_onboarding_by_genre_in_chromium(browser, server):
    """A listener who names genres gets recommendations for them; an unknown genre is taken off
    again with the server's message."""
    drv = browser
    drv.get(server + "/")
    api_key = _one(drv, "api-key")
    if api_key.get_attribute("value") != API_KEY:   # stored by the first test in this browser
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        drv.find_element(By.CSS_SELECTOR, "details.settings summary").click()
        api_key.send_keys(API_KEY, Keys.TAB)
    assert not _all(drv, "rec-item") and not _all(drv, "liked-tag")

    _one(drv, "tag-input").send_keys("Rock")
    _one(drv, "tag-add").click()
    _wait(drv, lambda d: _all(d, "liked-tag"), "the genre chip")
    _wait(drv, lambda d: len(_all(d, "rec-item")) == 10, "recommendations for the genre")
    reasons = [e.text.lower() for e in _all(drv, "rec-reason")]
    assert any("(rock)" in r for r in reasons) and not any("you like" in r for r in reasons), reasons
    assert _one(drv, "tag-input").get_attribute("value") == ""

    _one(drv, "tag-input").send_keys("zzqx not a genre")
    _one(drv, "tag-add").click()
    _wait(drv, lambda d: _visible(d, "error"), "the unknown-genre message", fail_on_error=False)
    assert "zzqx" in _one(drv, "error").text.lower()
    _wait(drv, lambda d: len(_all(d, "liked-tag")) == 1, "the unknown genre to be taken off", fail_on_error=False)
    assert _one(drv, "liked-tag").get_attribute("data-tag") == "Rock"

    _one(drv, "tag-remove").click()
    _wait(drv, lambda d: not _all(d, "liked-tag") and not _all(d, "rec-item"), "the genre and its list to go",
          fail_on_error=False)


def test_upload_a_streaming_history_in_chromium(browser, server, tmp_path):
    """A listener uploads their Spotify export: the page lists recommendations for it and says how
    much of it the model knows; nothing of theirs comes back recommended."""
    import json

    drv = browser
    drv.get(server + "/")
    api_key = _one(drv, "api-key")
    if api_key.get_attribute("value") != API_KEY:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        drv.find_element(By.CSS_SELECTOR, "details.settings summary").click()
        api_key.send_keys(API_KEY, Keys.TAB)
    played = ["Radiohead", "Portishead", "Massive Attack", "Björk", "Nobody Knows This Band"]
    streams = [{"ts": f"2023-03-0{d + 1}T18:00:00Z", "ms_played": 200000, "master_metadata_track_name": "x",
                "master_metadata_album_artist_name": a, "spotify_track_uri": f"spotify:track:{d}"}
               for d, a in enumerate(played)]
    path = tmp_path / "Streaming_History_Audio_2023_0.json"
    path.write_text(json.dumps(streams))
    _one(drv, "history-file").send_keys(str(path))
    _wait(drv, lambda d: len(_all(d, "rec-item")) == 10, "recommendations for the upload")
    summary = _one(drv, "history-summary").text
    assert "4 of 5 plays" in summary and "Nobody Knows This Band" in summary, summary
    names = [e.text for e in _all(drv, "rec-play")]
    assert not any(a.lower() in n.lower() for a in played[:3] for n in names), names
