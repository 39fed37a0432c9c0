"""The status page of `kantor serve`, in real headless Chromium driven over CDP: it shows
the running service's live data, speaks, shows the live harmoniser's latency and last
phrase, and says when the status is refused for want of the token."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from harness.jack_client import JackMidiClient
from harness.serve_process import ServeProcess
from tests.cdp import Browser, find_browser

pytestmark = pytest.mark.jack

TOKEN = "a-long-test-token-123"
NOTE = re.compile(r"\b[A-G][b#]?-?\d\b")


@pytest.fixture(scope="module")
def browser():
    executable = find_browser()
    if executable is None:
        pytest.fail("chromium is not installed: the status page tests need it "
                    "(as root: `apt-get install chromium`)")
    with Browser(executable) as page:
        yield page
    # Browser.close raised if any process of chromium's group were left; and the browser
    # itself has exited:
    assert page.process.returncode is not None


@pytest.fixture(scope="module")
def serve(jack_server):
    """One service with its audio output on the test JACK server."""
    process = ServeProcess(jack_server=jack_server)
    yield process
    assert process.stop() == 0, process.text()


def status(serve) -> dict:
    response = httpx.get(f"{serve.url}/v1/status", timeout=10)
    response.raise_for_status()
    return response.json()


def wait_text(page: Browser, element_id: str, pattern: str, timeout: float = 10.0,
              check=lambda text: True) -> str:
    """Wait until the element's text matches the regular expression and passes ``check``
    (the page shows a status up to 500 ms old: wait for the state wanted, not just for its
    form); that text."""
    deadline = time.monotonic() + timeout
    while True:
        text = page.text(element_id)
        if re.search(pattern, text) and check(text):
            return text
        assert time.monotonic() < deadline, \
            f"#{element_id} says {text!r}, not /{pattern}/ or not {check}, after {timeout} s " \
            f"(#service: {page.text('service')!r}, " \
            f"#status-error: {page.text('status-error')!r})"
        time.sleep(0.1)


def test_page_shows_the_running_service(browser, serve):
    now = status(serve)
    browser.navigate(serve.url + "/")
    service = wait_text(browser, "service", r"^up \d+ s · pid \d+")
    assert f"pid {now['service']['pid']}" in service
    ports = wait_text(browser, "live-ports", "melody into")
    assert serve.midi_in in ports and serve.midi_out in ports and "(jack)" in ports
    output = now["speech"]["output"]
    assert output is not None, "the service has no audio output"
    speech = browser.text("speech-output")
    assert speech.startswith(f"{output['device']} ({output['hostapi']}, "
                             f"{output['sample_rate']} Hz)"), speech
    models = browser.evaluate(
        "[...document.getElementById('models').rows].map(r => [...r.cells].map(c =>"
        " c.textContent))")
    assert len(now["models"]) > 0
    assert models == [[m["name"], m.get("version") or "", (m.get("sha256") or "")[:12]]
                      for m in now["models"]]
    assert browser.text("status-error") == ""
    assert re.fullmatch(r"\d+/\d+ busy · \d+ streamed · refused \d+ · first audio .*",
                        browser.text("speech-streaming"))
    # and it keeps polling: the uptime shown moves on
    first = int(re.match(r"up (\d+) s", service).group(1))
    wait_text(browser, "service", rf"^up (?!{first} s)\d+ s", timeout=5)
    assert browser.text("status-error") == ""


def test_speaking_from_the_page(browser, serve):
    before = status(serve)["speech"]
    browser.navigate(serve.url + "/")
    wait_text(browser, "speech-counts", r"^done \d+")
    browser.type_into("speak-text", "Good morning.")
    assert browser.evaluate("document.getElementById('speak-text').value") == "Good morning."
    browser.click("speak-button")
    assert wait_text(browser, "speak-result", r"queued|not spoken") == \
        "queued 1 of 1 sentence(s)"
    after = status(serve)["speech"]
    assert after["speak_requests"] == before["speak_requests"] + 1
    deadline = time.monotonic() + 30
    while after["output"]["utterances_done"] <= before["output"]["utterances_done"]:
        assert time.monotonic() < deadline, f"not spoken within 30 s: {after}"
        time.sleep(0.2)
        after = status(serve)["speech"]
    assert after["output"]["failed"] == before["output"]["failed"]
    done = after["output"]["utterances_done"]
    wait_text(browser, "speech-counts", rf"^done {done} ")
    wait_text(browser, "speech-latency", r"^p50 \d+\.\d\d ms")
    assert browser.text("status-error") == ""


def test_live_latency_last_phrase_and_panic(browser, serve):
    browser.navigate(serve.url + "/")
    wait_text(browser, "live-ports", "melody into")
    notes_before = status(serve)["live"]["notes_in"]
    daw = JackMidiClient()
    try:
        daw.connect_to(serve.midi_in, serve.midi_out)
        melody = (67, 66, 64, 62, 67)
        for pitch in melody:
            daw.send([0x90, pitch, 90])
            assert daw.wait_for(lambda c: len(c.sounding) == 4, timeout=5), \
                f"no chord for {pitch}: {daw.sounding}"
            time.sleep(0.05)
            daw.send([0x80, pitch, 0])
            assert daw.wait_for(lambda c: not c.sounding, timeout=5), f"stuck: {daw.sounding}"
            time.sleep(0.05)
        latency = wait_text(browser, "live-latency", r"^p50 \d+\.\d\d ms · p99 \d+\.\d\d ms")
        assert float(re.match(r"p50 ([\d.]+)", latency).group(1)) > 0
        played = notes_before + len(melody)
        wait_text(browser, "live-notes", r"^in \d+ · out \d+ · sounding 0$",
                  check=lambda t: int(re.match(r"in (\d+)", t).group(1)) >= played)
        # the last chords' sopranos are the melody played
        sopranos = ["G4", "F#4", "E4", "D4", "G4"]
        phrase = wait_text(browser, "last-phrase", NOTE.pattern, check=lambda t: [
            c.split(" ")[0] for c in t.split("  |  ")[-len(melody):]] == sopranos)
        chords = phrase.split("  |  ")
        assert len(chords) >= len(melody), phrase
        for chord in chords:
            assert len(chord.split(" ")) == 4, phrase
            assert all(NOTE.fullmatch(n) for n in chord.split(" ")), phrase
        # and /v1/status says the same
        last = status(serve)["live"]["last_phrase"]
        assert chords[-1] == " ".join(n or "–" for n in last[-1]["notes"])
        # the page's panic button releases a held chord
        daw.send([0x90, 69, 90])
        assert daw.wait_for(lambda c: len(c.sounding) == 4, timeout=5), daw.sounding
        wait_text(browser, "live-notes", r"sounding [1-9]")
        browser.click("panic-button")
        assert daw.wait_for(lambda c: not c.sounding, timeout=5), f"stuck: {daw.sounding}"
        daw.send([0x80, 69, 0])
    finally:
        daw.close()
    assert browser.text("status-error") == ""


def test_token_is_needed_for_the_status(browser, jack_server):
    with ServeProcess("--token", TOKEN, "--no-audio", jack_server=jack_server) as serve:
        assert httpx.get(serve.url + "/v1/status").status_code == 401
        browser.navigate(serve.url + "/")
        error = wait_text(browser, "status-error", "status unavailable")
        assert error == ("status unavailable: 401: this service needs 'Authorization: Bearer "
                         "TOKEN'")
        assert browser.text("live-ports") == "–"
        assert browser.text("service") == "connecting…"
        browser.navigate(f"{serve.url}/#token={TOKEN}")
        ports = wait_text(browser, "live-ports", "melody into")
        assert serve.midi_in in ports
        assert browser.text("status-error") == ""
        assert browser.text("speech-output").startswith("no audio output")
        # speaking gets past the token check to the service, which has no audio output
        browser.click("speak-button")
        # (409, not 401: the page sends its token with the POST too)
        assert wait_text(browser, "speak-result", r"queued|not spoken").startswith(
            "not spoken: 409: this service has no audio output")
        assert serve.stop() == 0, serve.text()
