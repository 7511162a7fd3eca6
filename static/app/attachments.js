// Files attached to the next message: the attach button, drag and drop, paste.
//
// Each file is uploaded (POST /api/documents/), then indexed by a background job; its state
// (uploading, waiting, reading, indexing, ready, failed with the reason) arrives live as
// `document.updated` frames after the page asks the socket to `watch_documents`
// (docs/websocket-protocol.md). A message can be sent once every attached file is ready.
import { config, formatNumber, h, iconButton, t } from "./util.js";

const FINAL = new Set(["ready", "failed"]);

function statusText(item) {
  switch (item.status) {
    case "uploading":
      return t("Uploading…");
    case "queued":
      return t("Waiting to be read…");
    case "reading":
      return t("Reading…");
    case "indexing":
      return t("Indexing…");
    case "ready":
      return t("Ready");
    case "failed":
      return t("Failed: %(reason)s", { reason: (item.error && item.error.message) || t("unknown error") });
    default:
      return item.status;
  }
}

export class Attachments {
  // callbacks: {watch(ids), notify(text)}
  constructor(callbacks) {
    this.callbacks = callbacks;
    this.items = new Map(); // key → {key, id, name, size, pages, status, error}
    this.list = document.getElementById("attachments");
    this.input = document.getElementById("attach-input");
    this.button = document.getElementById("attach-button");
    this.form = document.getElementById("composer");
    this.conversationId = null;
    this.counter = 0;
    this.button.addEventListener("click", () => this.input.click());
    this.input.addEventListener("change", () => {
      this.add([...this.input.files]);
      this.input.value = "";
    });
    this.form.addEventListener("dragover", (event) => {
      if (![...(event.dataTransfer?.types || [])].includes("Files")) return;
      event.preventDefault();
      this.form.classList.add("dropping");
    });
    this.form.addEventListener("dragleave", () => this.form.classList.remove("dropping"));
    this.form.addEventListener("drop", (event) => {
      this.form.classList.remove("dropping");
      const files = [...(event.dataTransfer?.files || [])];
      if (!files.length) return;
      event.preventDefault();
      this.add(files);
    });
    document.getElementById("message-input").addEventListener("paste", (event) => {
      const files = [...(event.clipboardData?.files || [])];
      if (!files.length) return;
      event.preventDefault();
      this.add(files);
    });
  }

  setConversation(id) {
    this.conversationId = id;
  }

  add(files) {
    for (const file of files) this.upload(file);
  }

  async upload(file) {
    const key = `f${++this.counter}`;
    const item = { key, id: null, name: file.name, size: file.size, pages: 0, status: "uploading", error: null };
    this.items.set(key, item);
    this.paint();
    const body = new FormData();
    body.append("file", file, file.name);
    if (this.conversationId) body.append("conversation_id", this.conversationId);
    let answer = null;
    try {
      const response = await fetch(config.urls.api_documents, {
        method: "POST",
        body,
        credentials: "same-origin",
        headers: { "X-CSRFToken": config.csrf_token },
      });
      answer = await response.json().catch(() => null);
      if (!response.ok) {
        const error = (answer && answer.error) || { message: t("Something went wrong. Please try again.") };
        Object.assign(item, { status: "failed", error });
      } else {
        Object.assign(item, answer.document);
      }
    } catch {
      Object.assign(item, { status: "failed", error: { message: t("Parley could not be reached. Check your connection.") } });
    }
    this.paint();
    this.watch();
  }

  // Ask the socket for the progress of every file not yet ready (again after a reconnect).
  watch() {
    const ids = [...this.items.values()].filter((i) => i.id && !FINAL.has(i.status)).map((i) => i.id);
    if (ids.length) this.callbacks.watch(ids);
  }

  update(document) {
    for (const item of this.items.values()) {
      if (item.id === document.id) Object.assign(item, document);
    }
    this.paint();
  }

  remove(key) {
    const item = this.items.get(key);
    this.items.delete(key);
    if (item && item.id && item.status === "failed") {
      fetch(`${config.urls.api_documents}${item.id}/`, {
        method: "DELETE",
        credentials: "same-origin",
        headers: { "X-CSRFToken": config.csrf_token },
      }).catch(() => {});
    }
    this.paint();
  }

  // The ids to send with the message, or null (and a notice) while a file is not ready.
  forSending() {
    const items = [...this.items.values()].filter((i) => i.status !== "failed");
    if (items.some((i) => i.status !== "ready")) {
      this.callbacks.notify(t("Wait until your files are ready, or remove them."));
      return null;
    }
    return items.map((i) => i.id);
  }

  clear() {
    this.items.clear();
    this.paint();
  }

  paint() {
    const rows = [...this.items.values()].map((item) => {
      const details = [`${formatNumber(Math.ceil(item.size / 1024))} KB`];
      if (item.pages) details.push(t("%(pages)s pages", { pages: item.pages }));
      return h(
        "li",
        { class: `attachment attachment-${item.status}`, "data-status": item.status },
        h("span", { class: "attachment-name", text: item.name }),
        h("span", { class: "attachment-details", text: details.join(" · ") }),
        h("span", { class: "attachment-status", role: "status", text: statusText(item) }),
        iconButton("trash", t("Remove %(name)s", { name: item.name }), () => this.remove(item.key)),
      );
    });
    this.list.replaceChildren(...rows);
    this.list.hidden = rows.length === 0;
  }
}
