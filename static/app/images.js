// Images in the conversation: the composer's Image mode, the images of a message, and the
// "Edit image" dialog with its mask brush (issue 15).
//
// Every image is loaded from Parley's own origin (/media/<id>/?inline=1, owner-only); the mask
// is drawn on a canvas and sent as a PNG blob in a form, so the page needs no blob: or other
// origins in its Content-Security-Policy. An upload to edit is previewed as a data: URL, which
// img-src already allows.
import { config, h, t } from "./util.js";

const models = config.image_models || [];
const handlers = { started: () => {}, notify: () => {} };

function modelById(id) {
  return models.find((m) => String(m.id) === String(id)) || null;
}

function fillSelect(select, values, chosen) {
  select.replaceChildren(...values.map((value) => h("option", { value, text: value })));
  if (chosen && values.includes(chosen)) select.value = chosen;
}

function modelOptions(select, filter) {
  const usable = models.filter(filter);
  select.replaceChildren(...usable.map((m) => h("option", { value: String(m.id), text: m.name })));
  return usable;
}

async function post(fields, files = {}) {
  const body = new FormData();
  for (const [key, value] of Object.entries(fields)) {
    if (value !== null && value !== undefined && value !== "") body.append(key, String(value));
  }
  for (const [key, [blob, name]] of Object.entries(files)) body.append(key, blob, name);
  let response;
  try {
    response = await fetch(config.urls.api_images, {
      method: "POST",
      body,
      credentials: "same-origin",
      headers: { "X-CSRFToken": config.csrf_token, Accept: "application/json" },
    });
  } catch {
    throw new Error(t("Parley could not be reached. Check your connection."));
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new Error(error.message || t("Something went wrong. Please try again."));
  }
  return data;
}

// --- the composer's Image mode ---------------------------------------------------------------------
export class ImageMode {
  // callbacks: {conversationId(), started(data), notify(text), restore(text)}
  constructor(callbacks) {
    this.callbacks = callbacks;
    handlers.started = callbacks.started;
    handlers.notify = callbacks.notify;
    handlers.conversationId = callbacks.conversationId;
    this.active = false;
    this.toggle = document.getElementById("image-mode");
    this.panel = document.getElementById("image-options");
    this.input = document.getElementById("message-input");
    if (!this.toggle || !this.panel) return;
    if (!models.length) {
      // No image model granted (or only the local model): the mode is not offered at all.
      this.toggle.remove();
      this.panel.remove();
      return;
    }
    this.toggle.hidden = false;
    this.model = document.getElementById("image-model");
    this.size = document.getElementById("image-size");
    this.quality = document.getElementById("image-quality");
    this.qualityField = document.getElementById("image-quality-field");
    this.count = document.getElementById("image-count");
    this.placeholder = this.input.placeholder;
    modelOptions(this.model, () => true);
    this.model.addEventListener("change", () => this.showOptions());
    this.showOptions();
    this.toggle.addEventListener("click", () => this.setActive(!this.active));
    document.getElementById("image-upload").addEventListener("change", (event) => {
      const file = event.target.files && event.target.files[0];
      event.target.value = "";
      if (file) openEditor({ file });
    });
  }

  showOptions() {
    const model = modelById(this.model.value);
    if (!model) return;
    fillSelect(this.size, model.sizes, this.size.value);
    this.qualityField.hidden = !model.qualities.length;
    fillSelect(this.quality, model.qualities, this.quality.value);
    this.count.max = String(model.max_n);
    if (Number(this.count.value) > model.max_n) this.count.value = String(model.max_n);
  }

  setActive(active) {
    this.active = active && models.length > 0;
    this.toggle.setAttribute("aria-pressed", String(this.active));
    this.panel.hidden = !this.active;
    this.input.placeholder = this.active ? t("Describe the image") : this.placeholder;
    this.input.focus();
  }

  // The composer's text, sent as an image prompt. False: nothing was sent (the text stays).
  create(prompt) {
    const model = modelById(this.model.value);
    if (!model) return false;
    const fields = {
      operation: "generate",
      conversation_id: this.callbacks.conversationId(),
      model_id: model.id,
      prompt,
      size: this.size.value,
      quality: model.qualities.length ? this.quality.value : "",
      n: this.count.value || 1,
    };
    post(fields).then(handlers.started, (error) => {
      handlers.notify(error.message);
      if (this.callbacks.restore) this.callbacks.restore(prompt); // the prompt is not lost
    });
    return true;
  }
}

// --- the images of a message ------------------------------------------------------------------------
export function paintAttachments(container, message) {
  const images = (message.attachments || []).filter((a) => a.kind === "image");
  container.hidden = images.length === 0;
  if (!images.length) {
    container.replaceChildren();
    return;
  }
  // Unchanged images are left alone (a reply's final paint must not reload them).
  const key = images.map((a) => a.id).join(",");
  if (container.dataset.images === key) return;
  container.dataset.images = key;
  container.replaceChildren(...images.map((image, index) => figure(image, index, images.length)));
}

function figure(image, index, count) {
  const shown = `${image.url}?inline=1`;
  const label = count > 1 ? t("Image %(number)s", { number: index + 1 }) : t("Image");
  const alt = image.revised_prompt || image.name || label;
  const tools = [
    h("a", { class: "image-tool", href: shown, target: "_blank", rel: "noopener", text: t("Open full size") }),
    h("a", { class: "image-tool", href: image.url, download: image.name || "image.png", text: t("Download") }),
  ];
  if (models.some((m) => m.edits)) {
    tools.push(h("button", { type: "button", class: "image-tool", onclick: () => openEditor({ image }), text: t("Edit image") }));
  }
  if (models.some((m) => m.variations)) {
    tools.push(h("button", { type: "button", class: "image-tool", onclick: () => vary(image), text: t("More like this") }));
  }
  return h(
    "figure",
    { class: "message-image" },
    h("a", { href: shown, target: "_blank", rel: "noopener" }, h("img", { src: shown, alt, width: image.width, height: image.height, loading: "lazy" })),
    image.revised_prompt ? h("figcaption", { text: `${t("Revised prompt:")} ${image.revised_prompt}` }) : null,
    h("div", { class: "image-tools", role: "group", "aria-label": label }, tools),
  );
}

function squareSize(model) {
  return model.sizes.includes("1024x1024") ? "1024x1024" : model.sizes[0];
}

function vary(image) {
  const model = models.find((m) => m.variations);
  if (!model) return;
  const fields = {
    operation: "variation",
    conversation_id: handlers.conversationId ? handlers.conversationId() : null,
    model_id: model.id,
    source_id: image.id,
    size: squareSize(model),
  };
  post(fields).then(handlers.started, (error) => handlers.notify(error.message));
}

// --- "Edit image": a prompt and a mask painted with a brush ----------------------------------------
let editor = null;

function buildEditor() {
  const picture = h("img", { class: "image-edit-picture", alt: "" });
  const canvas = h("canvas", { class: "image-edit-mask", "aria-label": t("Paint the area to change") });
  const prompt = h("textarea", { id: "image-edit-prompt", rows: 2, required: true });
  const model = h("select", { id: "image-edit-model" });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const dialog = h(
    "dialog",
    { class: "dialog image-edit-dialog", "aria-labelledby": "image-edit-title" },
    h(
      "form",
      { method: "dialog", novalidate: true },
      h("h2", { id: "image-edit-title", text: t("Edit image") }),
      h("p", { class: "dialog-lead", text: t("Paint over the part to change (optional), then say what to change.") }),
      h("div", { class: "image-edit-stage" }, picture, canvas),
      h("div", { class: "field" }, h("label", { for: "image-edit-prompt", text: t("Describe the change") }), prompt),
      h("div", { class: "field" }, h("label", { for: "image-edit-model", text: t("Image model") }), model),
      error,
      h(
        "div",
        { class: "dialog-actions" },
        h("button", { type: "button", class: "secondary", onclick: () => clearMask(), text: t("Clear mask") }),
        h("span", { class: "spacer" }),
        h("button", { type: "button", class: "secondary", onclick: () => dialog.close(), text: t("Cancel") }),
        h("button", { type: "submit", class: "primary", text: t("Edit image") }),
      ),
    ),
  );
  dialog.querySelector("form").addEventListener("submit", (event) => {
    event.preventDefault();
    submitEdit();
  });
  document.body.append(dialog);
  const state = { dialog, picture, canvas, prompt, model, error, mask: null, painted: false, source: null };
  let drawing = false;
  const paint = (event) => {
    if (!drawing || !state.mask) return;
    const box = canvas.getBoundingClientRect();
    const x = ((event.clientX - box.left) / box.width) * canvas.width;
    const y = ((event.clientY - box.top) / box.height) * canvas.height;
    const radius = Math.max(canvas.width, canvas.height) / 20;
    // What the member sees: a translucent stroke over the picture.
    const view = canvas.getContext("2d");
    view.fillStyle = "rgba(220, 40, 80, 0.45)";
    view.beginPath();
    view.arc(x, y, radius, 0, Math.PI * 2);
    view.fill();
    // What is sent: the same stroke cut out of an opaque mask (transparent = may change).
    const mask = state.mask.getContext("2d");
    mask.globalCompositeOperation = "destination-out";
    mask.beginPath();
    mask.arc(x, y, radius, 0, Math.PI * 2);
    mask.fill();
    state.painted = true;
  };
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    canvas.setPointerCapture(event.pointerId);
    paint(event);
  });
  canvas.addEventListener("pointermove", paint);
  canvas.addEventListener("pointerup", () => {
    drawing = false;
  });
  return state;
}

function clearMask() {
  if (!editor || !editor.mask) return;
  const { canvas, mask } = editor;
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  const context = mask.getContext("2d");
  context.globalCompositeOperation = "source-over";
  context.fillStyle = "#000";
  context.fillRect(0, 0, mask.width, mask.height);
  editor.painted = false;
}

function openEditor({ image = null, file = null }) {
  if (!editor) editor = buildEditor();
  const usable = modelOptions(editor.model, (m) => m.edits);
  if (!usable.length) return;
  editor.source = { image, file };
  editor.error.hidden = true;
  editor.prompt.value = "";
  editor.painted = false;
  editor.picture.onload = () => {
    const width = editor.picture.naturalWidth;
    const height = editor.picture.naturalHeight;
    editor.canvas.width = width;
    editor.canvas.height = height;
    editor.mask = document.createElement("canvas");
    editor.mask.width = width;
    editor.mask.height = height;
    clearMask();
  };
  if (image) {
    const url = new URL(`${image.url}?inline=1`, window.location.href).href;
    // The same picture again: it is loaded already, and no second load event may come.
    if (editor.picture.src === url && editor.picture.complete && editor.picture.naturalWidth) editor.picture.onload();
    else editor.picture.src = url;
  } else {
    const reader = new FileReader();
    reader.onload = () => {
      editor.picture.src = reader.result; // a data: URL
    };
    reader.readAsDataURL(file);
  }
  editor.dialog.showModal();
  editor.prompt.focus();
}

async function submitEdit() {
  const { image, file } = editor.source;
  const prompt = editor.prompt.value.trim();
  if (!prompt) {
    editor.error.textContent = t("Describe the change.");
    editor.error.hidden = false;
    return;
  }
  const model = modelById(editor.model.value);
  const fields = {
    operation: "edit",
    conversation_id: handlers.conversationId ? handlers.conversationId() : null,
    model_id: model ? model.id : "",
    prompt,
    size: model ? squareSize(model) : "",
    source_id: image ? image.id : "",
  };
  const files = {};
  if (file) files.image = [file, file.name];
  if (editor.painted && editor.mask) {
    const blob = await new Promise((resolve) => editor.mask.toBlob(resolve, "image/png"));
    if (blob) files.mask = [blob, "mask.png"];
  }
  try {
    const data = await post(fields, files);
    editor.dialog.close();
    handlers.started(data);
  } catch (error) {
    editor.error.textContent = error.message;
    editor.error.hidden = false;
  }
}
