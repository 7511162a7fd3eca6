"""A member dictates into Chromium's fake microphone, and hears a reply read aloud.

Chromium runs with its fake media devices: the microphone plays a WAV that espeak-ng spoke in
this test (``--use-file-for-fake-audio-capture``), and the permission prompt is answered yes
(``--use-fake-ui-for-media-stream``). MediaRecorder really records it, Parley really reads the
WebM it makes (its length, for the limit and the bill) and the fake upstream answers the
transcript. Read aloud plays the fake upstream's MP3 through Parley's own URL, streamed in
chunks; the second play comes from Parley's store without a provider call. No CSP violation,
console error or foreign request is allowed on the way (watch.assert_clean).
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from playwright.sync_api import expect

from tests.audio_support import espeak_wav
from tests.browser.conftest import WATCH_SCRIPT, shot, sign_in, wait_for
from tests.browser.test_chat import last_reply, open_new_chat, send, wait_reply_done
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser

SPOKEN = "Please book a table for two at seven tonight."
TRANSCRIPT = "Please book a table for two at seven tonight."
VOICE_MODELS = (
    "from chat.models import ChatModel, Provider\n"
    "provider = Provider.objects.get(name='Fake upstream')\n"
    "ChatModel.objects.get_or_create(provider=provider, model_id='whisper-1',"
    " defaults={'kind': 'transcription', 'audio_price_per_minute': '0.006'})\n"
    "ChatModel.objects.get_or_create(provider=provider, model_id='tts-1',"
    " defaults={'kind': 'speech', 'speech_price_per_million_characters': '15'})\n"
)

NO_VOICE_MODELS = (
    "from chat.models import ChatModel\nChatModel.objects.filter(kind__in=['transcription', 'speech']).delete()"
)


def control(live, path: str, body: dict):
    request = urllib.request.Request(live.upstream.url + path, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        return json.loads(response.read() or b"null")


@pytest.fixture(scope="module")
def voice(live, browser, tmp_path_factory):
    """Voice models in the catalog, and a Chromium whose microphone speaks SPOKEN."""
    live.shell(VOICE_MODELS)
    wav = espeak_wav(SPOKEN, tmp_path_factory.mktemp("voice") / "spoken.wav")
    chromium = browser.browser_type.launch(
        executable_path=CHROMIUM,
        args=[
            *CHROMIUM_ARGS,
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}",
            "--autoplay-policy=no-user-gesture-required",
        ],
    )
    yield chromium
    chromium.close()
    live.shell(NO_VOICE_MODELS)  # the other browser tests see the catalog they expect


@pytest.fixture
def voice_page(voice, live, watch):
    context = voice.new_context(base_url=live.base_url, viewport={"width": 1280, "height": 860})
    context.add_init_script(WATCH_SCRIPT)
    context.on("page", watch.attach)
    page = sign_in(context.new_page(), "alice")
    yield page
    context.close()


def shell_value(live, code: str) -> str:
    return live.shell(code).strip().splitlines()[-1]  # after Django's own start-up lines


def audio_requests(live, kind: str) -> list[dict]:
    return [r for r in live.upstream.requests() if r["path"].endswith(f"/audio/{kind}")]


def test_alice_dictates_a_message_reviews_it_and_hears_the_reply_read_aloud(voice_page, live, watch):
    page = voice_page
    live.upstream.reset()
    control(live, "/_fake/audio", {"transcript": TRANSCRIPT, "speech_seconds": 3, "speech_chunk": 2048})
    open_new_chat(page)
    box = page.get_by_label("Message", exact=True)
    box.fill("Note:")

    page.get_by_role("button", name="Dictate").click()
    stop = page.get_by_role("button", name="Stop recording")
    expect(stop).to_be_visible()
    # Let the fake microphone speak for two seconds, by the recorder's own clock on screen.
    expect(page.get_by_role("status").filter(has_text="Recording… 2 s")).to_be_visible(timeout=10_000)
    stop.click()

    # The transcript joins what was typed, for review: nothing is sent.
    expect(box).to_have_value(f"Note: {TRANSCRIPT}", timeout=20_000)
    assert page.get_by_role("article", name="You said").count() == 0
    (request,) = audio_requests(live, "transcriptions")
    sent = request["form"]["file"]
    assert sent["content_type"] == "audio/webm" and sent["size"] > 1000
    assert request["form"]["model"] == "whisper-1"
    # The length Parley read from MediaRecorder's WebM is what it billed.
    seconds = float(
        shell_value(
            live,
            "from chat.models import UsageRecord\n"
            "print(UsageRecord.objects.get(kind='transcription', purpose='dictation').audio_seconds)",
        )
    )
    assert 1.5 <= seconds <= 6, seconds
    shot(page, "voice-dictated")

    box.press("Enter")
    wait_reply_done(page)
    reply = last_reply(page)
    reply.get_by_role("button", name="Read aloud").click()
    expect(reply.get_by_role("button", name="Stop reading")).to_be_visible()
    # Playing: the element's clock moves while the file is still arriving in chunks.
    wait_for(
        lambda: page.evaluate("document.getElementById('reply-audio').currentTime") > 0,
        20,
        what="the reply to play",
    )
    assert page.evaluate("new URL(document.getElementById('reply-audio').currentSrc).origin") == live.base_url
    wait_for(lambda: page.evaluate("document.getElementById('reply-audio').ended"), 20, what="the end of the reply")
    expect(reply.get_by_role("button", name="Read aloud")).to_be_visible()
    (speech,) = audio_requests(live, "speech")
    assert speech["body"]["voice"] == "alloy" and speech["body"]["input"]

    # Again: from Parley's store, no second provider call.
    wait_for(
        lambda: shell_value(live, "from chat.models import SpeechClip\nprint(SpeechClip.objects.count())") == "1",
        10,
        what="the clip to be kept",
    )
    reply.get_by_role("button", name="Read aloud").click()
    wait_for(
        lambda: page.evaluate("document.getElementById('reply-audio').currentTime") > 0,
        20,
        what="the reply to play again",
    )
    assert len(audio_requests(live, "speech")) == 1
    shot(page, "voice-read-aloud")
    watch.assert_clean()


def test_without_voice_models_no_voice_button_is_offered(alice_page, live, watch):
    """The session's ordinary catalog (a chat model only, like a deployment with only the local
    model): no Dictate, no Read aloud, and nothing fails."""
    live.shell(NO_VOICE_MODELS)
    page = alice_page
    page.goto("/new/")  # drawn again from the catalog as it is now
    send(page, "Hello")
    wait_reply_done(page)
    assert page.get_by_role("button", name="Dictate").count() == 0
    assert last_reply(page).get_by_role("button", name="Read aloud").count() == 0
    watch.assert_clean()
