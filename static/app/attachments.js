// What goes with the next message: files, images and collections.
//
// Files (the attach button, drag and drop, paste) are uploaded (POST /api/documents/), then
// indexed by a background job; their state (uploading, waiting, reading, indexing, ready, failed
// with the reason) arrives live as `document.updated` frames after the page asks the socket to
// `watch_documents` (docs/websocket-protocol.md). A message can be sent once every attached file
// is ready. Images (PNG, JPEG, WEBP, GIF) go the same three ways to POST /api/vision/images/ and
// are sent as `image_ids`: a model that reads images gets them as image parts, and one that does
// not is refused here, before anything is sent (and by the server, before any call).
//
// Collections (CollectionPicker): the "Collections" button lists the member's collections and
// those shared with their groups; a pick is saved on the conversation at once (PUT
// /api/conversations/<id>/collections/<id>/), or sent with a new chat's first message, and every
// later turn retrieves from it.
import { api } from "./net.js";
import { config, formatNumber, h, iconButton, t } from "./util.js";

const FINAL = new Set(["ready", "failed"]);
const IMAGE_TYPES = new Set(["image/png", "image/jpeg", "image/webp", "image/gif"]);
const isImage = (file) => IMAGE_TYPES.has(file.type) || /\.(png|jpe?g|webp|gif)$/i.test(file.name || "");
const mediaUrl = (id) => config.urls.media.replace("00000000-0000-0000-0000-000000000000", id);

// The words for a file's state, here and on the Collections page (collections.js).
export function statusText(item) {
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

// The refusal a model without vision gets, in the server's words (chat/services/vision.py).
export function visionRefusal(model) {
  return t("%(model)s cannot read images. Pick a model that accepts images, or send the message without them.", {
    model: model.name,
  });
}

export class Attachments {
  // callbacks: {watch(ids), notify(text), model() → the model the next message goes to, or null}
  constructor(callbacks) {
    this.callbacks = callbacks;
    // key → {key, image (an image for a vision model, not a document), id, name, size, pages, status, error}
    this.items = new Map();
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
    for (const file of files) {
      if (isImage(file)) this.uploadImage(file);
      else this.upload(file);
    }
  }

  // An image for the next message: stored privately, sent as `image_ids`.
  async uploadImage(file) {
    const key = `f${++this.counter}`;
    const item = { key, image: true, id: null, name: file.name || "image.png", size: file.size, pages: 0, status: "uploading", error: null };
    this.items.set(key, item);
    this.paint();
    const model = this.callbacks.model();
    if (model && !model.vision) this.callbacks.notify(visionRefusal(model));
    const body = new FormData();
    body.append("file", file, item.name);
    try {
      const answer = await api(config.urls.api_vision_images, { method: "POST", body });
      Object.assign(item, { id: answer.image.id, name: answer.image.name, size: answer.image.size, status: "ready" });
    } catch (error) {
      Object.assign(item, { status: "failed", error: { code: error.code, message: error.message } });
    }
    this.paint();
  }

  async upload(file) {
    const key = `f${++this.counter}`;
    const item = { key, image: false, id: null, name: file.name, size: file.size, pages: 0, status: "uploading", error: null };
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
    const ids = [...this.items.values()].filter((i) => !i.image && i.id && !FINAL.has(i.status)).map((i) => i.id);
    if (ids.length) this.callbacks.watch(ids);
  }

  update(document) {
    for (const item of this.items.values()) {
      if (!item.image && item.id === document.id) Object.assign(item, document);
    }
    this.paint();
  }

  remove(key) {
    const item = this.items.get(key);
    this.items.delete(key);
    if (item && !item.image && item.id && item.status === "failed") {
      fetch(`${config.urls.api_documents}${item.id}/`, {
        method: "DELETE",
        credentials: "same-origin",
        headers: { "X-CSRFToken": config.csrf_token },
      }).catch(() => {});
    }
    this.paint();
  }

  // {documentIds, imageIds} to send with the message, or null (and a notice) while a file is
  // not ready, or when the images would go to a model that cannot read them.
  forSending() {
    const items = [...this.items.values()].filter((i) => i.status !== "failed");
    if (items.some((i) => i.status !== "ready")) {
      this.callbacks.notify(t("Wait until your files are ready, or remove them."));
      return null;
    }
    const imageIds = items.filter((i) => i.image).map((i) => i.id);
    const model = this.callbacks.model();
    if (imageIds.length && model && !model.vision) {
      this.callbacks.notify(visionRefusal(model));
      return null;
    }
    return { documentIds: items.filter((i) => !i.image).map((i) => i.id), imageIds };
  }

  clear() {
    this.items.clear();
    this.paint();
  }

  paint() {
    const rows = [...this.items.values()].map((item) => {
      const details = [`${formatNumber(Math.ceil(item.size / 1024))} KB`];
      if (item.pages) details.push(t("%(pages)s pages", { pages: item.pages }));
      if (item.image) details.unshift(t("Image"));
      return h(
        "li",
        { class: `attachment attachment-${item.status}`, "data-status": item.status },
        item.image && item.id ? h("img", { class: "attachment-thumb", src: `${mediaUrl(item.id)}?inline=1`, alt: "" }) : null,
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

// The "Collections" control: which collections the conversation searches.
export class CollectionPicker {
  // callbacks: {notify(text)}
  constructor(callbacks) {
    this.callbacks = callbacks;
    this.button = document.getElementById("collections-button");
    this.panel = document.getElementById("collections-panel");
    this.options = document.getElementById("collections-options");
    this.status = document.getElementById("collections-status");
    this.chips = document.getElementById("picked-collections");
    this.conversationId = null;
    this.picked = new Map(); // id → {id, name, mine, owner}
    this.fresh = new Set(); // picked since the last message: sent with it, so it retrieves from them
    this.available = null;
    // The page's menus open and close the panel (main.js, data-disclosure); once open, it lists
    // the collections as they are now (after that handler, whichever runs first).
    this.button.addEventListener("click", () =>
      setTimeout(() => {
        if (this.button.getAttribute("aria-expanded") === "true") this.load();
      }),
    );
  }

  // Another conversation is on screen (null: a new chat). Its collections come with its state.
  setConversation(id) {
    if (id === this.conversationId) return;
    this.conversationId = id;
    this.picked.clear();
    this.fresh.clear();
    this.paint();
  }

  // A new chat got its id: what was picked for it was saved with its first message.
  adopt(id) {
    this.conversationId = id;
  }

  // The collections the conversation searches, from its `conversation.state`.
  setSaved(collections) {
    this.picked = new Map(collections.map((c) => [c.id, c]));
    this.fresh.clear();
    this.paint();
  }

  // The ids to send with the next message: every pick of a new chat, the new picks of a saved one.
  forSending() {
    const ids = this.conversationId ? [...this.fresh].filter((id) => this.picked.has(id)) : [...this.picked.keys()];
    this.fresh.clear();
    return ids;
  }

  async load() {
    this.status.textContent = this.available ? "" : t("Loading…");
    try {
      this.available = (await api(config.urls.api_collections)).collections;
      this.status.textContent = this.available.length ? "" : t("You have no collections yet.");
    } catch (error) {
      this.status.textContent = error.message;
      return;
    }
    this.paintOptions();
  }

  paintOptions() {
    const options = (this.available || []).map((collection) => {
      const id = `collection-${collection.id}`;
      const box = h("input", { type: "checkbox", id, value: collection.id });
      box.checked = this.picked.has(collection.id);
      box.addEventListener("change", () => this.toggle(collection, box));
      const details = [t("Files: %(count)s", { count: formatNumber(collection.documents || 0) })];
      if (!collection.mine) details.push(t("shared by %(owner)s", { owner: collection.owner }));
      return h(
        "div",
        { class: "collection-option" },
        box,
        h("label", { for: id, text: collection.name }),
        h("span", { class: "collection-details", text: details.join(" · ") }),
      );
    });
    this.options.replaceChildren(...options);
  }

  async toggle(collection, box) {
    const url = this.conversationId
      ? `${config.urls.api_conversations}${this.conversationId}/collections/${collection.id}/`
      : null;
    box.disabled = true;
    try {
      if (box.checked) {
        if (url) await api(url, { method: "PUT" });
        this.picked.set(collection.id, collection);
        if (url) this.fresh.add(collection.id);
      } else {
        if (url) await api(url, { method: "DELETE" }).catch((error) => {
          if (error.code !== "not_found") throw error; // already not searched: nothing to undo
        });
        this.picked.delete(collection.id);
        this.fresh.delete(collection.id);
      }
      this.callbacks.notify(null);
    } catch (error) {
      box.checked = !box.checked;
      this.callbacks.notify(error.message);
    } finally {
      box.disabled = false;
    }
    this.paint();
  }

  paint() {
    const chips = [...this.picked.values()].map((collection) =>
      h(
        "li",
        { class: "attachment picked-collection" },
        h("span", { class: "attachment-name", text: collection.name }),
        iconButton("close", t("Stop searching %(name)s", { name: collection.name }), () => {
          const box = document.getElementById(`collection-${collection.id}`);
          if (box) {
            box.checked = false;
            this.toggle(collection, box);
          } else {
            this.toggle(collection, { checked: false, disabled: false });
          }
        }),
      ),
    );
    this.chips.replaceChildren(...chips);
    this.chips.hidden = chips.length === 0;
    this.button.classList.toggle("active", chips.length > 0);
    if (this.available) this.paintOptions();
  }
}
