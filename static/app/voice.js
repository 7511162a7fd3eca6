// Voice: dictation into the composer, and replies read aloud.
//
// Dictate records with MediaRecorder and posts the recording to Parley, which reads its type
// and length from the bytes, transcribes it with the admin's model and answers the text; the
// text goes into the composer for the member to review (nothing is sent). "Translate to
// English" in the same menu does the same through the provider's translation endpoint.
// Read aloud points one <audio> element at Parley's own URL for the reply's speech, which
// streams as the provider answers (so it starts before the file is whole) or from the cache.
// The page only offers what a granted model serves (config.voice): with only the local model
// there are no voice buttons at all.
import { config, h, t } from "./util.js";

const $ = (id) => document.getElementById(id);
const ZERO_ID = "00000000-0000-0000-0000-000000000000";
// What MediaRecorder should make, in order: what the server reads best first.
const RECORDING_TYPES = [
  ["audio/webm;codecs=opus", ".webm"],
  ["audio/ogg;codecs=opus", ".ogg"],
  ["audio/webm", ".webm"],
  ["audio/mp4", ".m4a"],
];

function svgIcon(d) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  for (const [key, value] of Object.entries({ class: "icon", viewBox: "0 0 24 24", width: "16", height: "16", fill: "none", stroke: "currentColor", "stroke-width": "2", "stroke-linecap": "round", "stroke-linejoin": "round", "aria-hidden": "true", focusable: "false" })) {
    svg.setAttribute(key, value);
  }
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", d);
  svg.append(path);
  return svg;
}
const SPEAKER = "M11 5L6 9H3v6h3l5 4V5zM15.5 8.5a5 5 0 0 1 0 7M18.5 5.5a9 9 0 0 1 0 13";
const SPEAKER_STOP = "M11 5L6 9H3v6h3l5 4V5zM16 9l6 6M22 9l-6 6";

async function errorOf(response) {
  const data = await response.json().catch(() => null);
  return (data && data.error && data.error.message) || t("Something went wrong. Please try again.");
}

export class Voice {
  // callbacks: {notify(text)}
  constructor(callbacks) {
    this.callbacks = callbacks;
    this.settings = config.voice || {};
    this.recorder = null;
    this.mode = "transcribe";
    this.timer = null;
    this.started = 0;
    this.playing = null; // id of the reply being read aloud
    this.buttons = new Map(); // reply id → its Read aloud button
    this.controls = $("voice-controls");
    this.dictateButton = $("dictate-button");
    this.dictateLabel = $("dictate-label");
    this.status = $("voice-status");
    this.input = $("message-input");
    this.canRecord = Boolean(this.settings.transcription && this.controls && window.MediaRecorder && navigator.mediaDevices);
    if (this.canRecord) {
      this.controls.hidden = false;
      this.dictateButton.addEventListener("click", () => this.toggle("transcribe"));
      $("translate-button").addEventListener("click", () => {
        $("voice-menu-button").click(); // close the menu
        this.toggle("translate");
      });
    }
    if (this.settings.speech) this.setUpSpeech();
  }

  // --- dictation ------------------------------------------------------------------------------
  toggle(mode) {
    if (this.recorder) this.stop();
    else this.start(mode);
  }

  async start(mode) {
    this.mode = mode;
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch {
      this.callbacks.notify(t("Parley cannot use the microphone. Allow it in the browser's site settings."));
      return;
    }
    const [mimeType, extension] = RECORDING_TYPES.find(([type]) => MediaRecorder.isTypeSupported(type)) || ["", ".webm"];
    const recorder = new MediaRecorder(stream, mimeType ? { mimeType } : undefined);
    const chunks = [];
    recorder.addEventListener("dataavailable", (event) => {
      if (event.data && event.data.size) chunks.push(event.data);
    });
    recorder.addEventListener("stop", () => {
      for (const track of stream.getTracks()) track.stop();
      this.upload(new Blob(chunks, { type: recorder.mimeType || mimeType }), extension, mode);
    });
    this.recorder = recorder;
    recorder.start();
    this.started = Date.now();
    this.dictateButton.setAttribute("aria-pressed", "true");
    this.dictateButton.classList.add("recording");
    this.dictateLabel.textContent = t("Stop recording");
    this.tick();
    this.timer = setInterval(() => this.tick(), 500);
  }

  tick() {
    const seconds = Math.floor((Date.now() - this.started) / 1000);
    const limit = this.settings.max_recording_seconds || 300;
    if (seconds >= limit) {
      this.stop();
      return;
    }
    const text = this.mode === "translate" ? t("Recording for translation… %(seconds)s s", { seconds }) : t("Recording… %(seconds)s s", { seconds });
    this.showStatus(text);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    const recorder = this.recorder;
    this.recorder = null;
    this.dictateButton.setAttribute("aria-pressed", "false");
    this.dictateButton.classList.remove("recording");
    this.dictateLabel.textContent = t("Dictate");
    if (recorder && recorder.state !== "inactive") recorder.stop();
  }

  async upload(blob, extension, mode) {
    this.showStatus(t("Transcribing…"));
    const body = new FormData();
    body.append("audio", blob, `recording${extension}`);
    body.append("mode", mode);
    try {
      const response = await fetch(config.urls.voice_transcriptions, {
        method: "POST",
        body,
        credentials: "same-origin",
        headers: { "X-CSRFToken": config.csrf_token, Accept: "application/json" },
      });
      if (!response.ok) {
        this.callbacks.notify(await errorOf(response));
        this.showStatus("");
        return;
      }
      const data = await response.json();
      this.insert(data.text || "");
      this.showStatus(data.text ? "" : t("No speech was heard."));
    } catch {
      this.callbacks.notify(t("Parley could not be reached. Check your connection."));
      this.showStatus("");
    }
  }

  // The transcript joins what is already typed, for the member to review and send.
  insert(text) {
    if (!text) return;
    const before = this.input.value;
    const gap = before && !/\s$/.test(before) ? " " : "";
    this.input.value = `${before}${gap}${text}`;
    this.input.dispatchEvent(new Event("input", { bubbles: true })); // grow, keep the draft
    this.input.focus();
    this.input.setSelectionRange(this.input.value.length, this.input.value.length);
  }

  showStatus(text) {
    if (!this.status) return;
    this.status.textContent = text;
    this.status.hidden = !text;
  }

  // --- read aloud -------------------------------------------------------------------------------
  setUpSpeech() {
    this.audio = h("audio", { id: "reply-audio", preload: "none", "aria-label": t("Reply read aloud") });
    this.audio.hidden = true;
    document.body.append(this.audio);
    // A pause queued by switching to another reply arrives after play() began: ignored then.
    const finished = () => {
      if (!this.audio.paused && !this.audio.ended) return;
      this.playing = null;
      this.paintButtons();
    };
    this.audio.addEventListener("ended", finished);
    this.audio.addEventListener("pause", finished);
    this.audio.addEventListener("error", () => this.failed());
    const voiceSelect = $("voice-select");
    const speedSelect = $("voice-speed");
    const panel = $("voice-speech-settings");
    if (!voiceSelect || !speedSelect || !panel) return;
    if (this.controls) this.controls.hidden = false;
    if (!this.canRecord) {
      this.dictateButton.hidden = true;
      $("translate-button").hidden = true;
    }
    panel.hidden = false;
    const preferences = this.settings.preferences || {};
    voiceSelect.replaceChildren(...(this.settings.voices || []).map((voice) => h("option", { value: voice, text: voice })));
    voiceSelect.value = preferences.voice || "alloy";
    const speed = Number(preferences.speed || 1);
    if (![...speedSelect.options].some((o) => Number(o.value) === speed)) speedSelect.append(h("option", { value: String(speed), text: `${speed}×` }));
    speedSelect.value = [...speedSelect.options].find((o) => Number(o.value) === speed).value;
    const save = async () => {
      try {
        const response = await fetch(config.urls.voice_settings, {
          method: "PUT",
          credentials: "same-origin",
          headers: { "X-CSRFToken": config.csrf_token, "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify({ voice: voiceSelect.value, speed: speedSelect.value }),
        });
        if (!response.ok) this.callbacks.notify(await errorOf(response));
      } catch {
        this.callbacks.notify(t("Parley could not be reached. Check your connection."));
      }
    };
    voiceSelect.addEventListener("change", save);
    speedSelect.addEventListener("change", save);
  }

  // The "Read aloud" button of a finished reply (none while it streams, none without speech).
  replyButtons(message) {
    if (!this.settings.speech || message.role !== "assistant" || message.status === "streaming" || !message.content) return [];
    const reading = this.playing === message.id;
    const label = reading ? t("Stop reading") : t("Read aloud");
    const button = h(
      "button",
      { type: "button", class: "icon-button small read-aloud", title: label, "aria-pressed": reading ? "true" : "false", onclick: () => this.read(message.id) },
      svgIcon(reading ? SPEAKER_STOP : SPEAKER),
      h("span", { class: "visually-hidden", text: label }),
    );
    this.buttons.set(message.id, button);
    return [button];
  }

  read(messageId) {
    if (this.playing === messageId) {
      this.audio.pause();
      return;
    }
    this.audio.pause();
    this.playing = messageId;
    this.paintButtons();
    this.audio.src = config.urls.speech.replace(ZERO_ID, messageId);
    this.audio.play().catch(() => {
      // The "error" event explains a failed load; a refused autoplay needs nothing more.
    });
  }

  // The element says only that it could not play: ask the same URL for the reason (a refusal
  // is answered before any provider call, so asking again costs nothing).
  async failed() {
    const url = this.audio.currentSrc || this.audio.src;
    this.playing = null;
    this.paintButtons();
    if (!url) return;
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      const type = response.headers.get("Content-Type") || "";
      if (!response.ok && type.includes("json")) this.callbacks.notify(await errorOf(response));
      else this.callbacks.notify(t("This reply could not be played."));
      if (response.body) response.body.cancel().catch(() => {});
    } catch {
      this.callbacks.notify(t("Parley could not be reached. Check your connection."));
    }
  }

  paintButtons() {
    for (const [id, button] of this.buttons) {
      if (!button.isConnected) {
        this.buttons.delete(id);
        continue;
      }
      const reading = this.playing === id;
      const label = reading ? t("Stop reading") : t("Read aloud");
      button.setAttribute("aria-pressed", reading ? "true" : "false");
      button.title = label;
      button.replaceChildren(svgIcon(reading ? SPEAKER_STOP : SPEAKER), h("span", { class: "visually-hidden", text: label }));
    }
  }
}
