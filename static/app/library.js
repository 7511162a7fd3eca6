// What a member keeps beside their conversations, loaded when first used (the "/" menu, Share,
// "Presets and prompts", a folder's dialogs), so the chat page's first load stays as light as
// before them (tests/browser/test_page_weight.py): the prompt library with its "/" menu and
// variables form, the library dialog, share links, and the small dialogs folders use.
// Its dialogs are built here with DOM APIs (h), never HTML strings; names and texts are data.
import { ApiError, api } from "./net.js";
import { addCatalog, config, confirmCopied, copyText, h, t } from "./util.js";

// This module's strings come with it, not with the page.
addCatalog((await api(config.urls.api_library_text)).strings);

const message = (error) => (error instanceof ApiError || error instanceof Error ? error.message : String(error));

function showError(node, text) {
  node.textContent = text || "";
  node.hidden = !text;
}

let dialogs = 0;
// A modal dialog named by its heading, added to the page once.
function dialog(title, ...children) {
  const id = `library-dialog-${++dialogs}`;
  const heading = h("h2", { id: `${id}-title`, text: title });
  const node = h("dialog", { class: "dialog", id, "aria-labelledby": heading.id }, heading, ...children);
  document.body.append(node);
  return { node, heading };
}

function field(label, control) {
  control.id = control.id || `field-${Math.random().toString(36).slice(2)}`;
  return h("div", { class: "field" }, h("label", { for: control.id, text: label }), control);
}

function actions(...buttons) {
  return h("div", { class: "dialog-actions" }, h("span", { class: "spacer" }), ...buttons);
}

const button = (text, attrs = {}) => h("button", { type: "button", class: "secondary", text, ...attrs });

// Show ``node`` (a dialog) until ``settle`` is called; Escape settles with ``cancelled``.
function modal(node, cancelled) {
  return new Promise((resolve) => {
    const onCancel = () => finish(cancelled);
    const finish = (result) => {
      node.removeEventListener("cancel", onCancel);
      if (node.open) node.close();
      resolve(result);
    };
    node.addEventListener("cancel", onCancel);
    node.showModal();
    node.settle = finish;
  });
}

// --- small dialogs ---------------------------------------------------------------------------------
let nameParts = null;
// askName({title, label, value, save}) → the name, or null when cancelled. `save(name)` may
// throw (a refused name): its message shows in the dialog, which stays open.
export function askName({ title, label, value = "", save }) {
  if (!nameParts) {
    const input = h("input", { type: "text", maxlength: 100, autocomplete: "off" });
    const labelNode = h("label", {});
    const error = h("p", { class: "error", role: "alert", hidden: true });
    const cancel = button(t("Cancel"));
    const form = h(
      "form",
      { novalidate: true },
      h("div", { class: "field" }, labelNode, input),
      error,
      actions(cancel, h("button", { type: "submit", class: "primary", text: t("Save") })),
    );
    input.id = "name-input";
    labelNode.setAttribute("for", input.id);
    const { node, heading } = dialog("", form);
    nameParts = { node, heading, input, labelNode, error, form, cancel };
    cancel.addEventListener("click", () => node.settle(null));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const name = input.value.trim();
      if (!name) {
        showError(error, t("A name is required."));
        return;
      }
      try {
        if (nameParts.save) await nameParts.save(name);
        node.settle(name);
      } catch (failure) {
        showError(error, message(failure));
      }
    });
  }
  const parts = nameParts;
  parts.heading.textContent = title;
  parts.labelNode.textContent = label || t("Name");
  parts.input.value = value;
  parts.save = save;
  showError(parts.error, "");
  const done = modal(parts.node, null);
  parts.input.focus();
  parts.input.select();
  return done;
}

let moveParts = null;
// askFolder(folders, currentId, title) → a folder id, null for "No folder", or undefined when cancelled.
export function askFolder(folders, currentId, title) {
  if (!moveParts) {
    const select = h("select", { id: "move-folder" });
    const lead = h("p", { class: "dialog-lead" });
    const cancel = button(t("Cancel"));
    const form = h(
      "form",
      { novalidate: true },
      lead,
      field(t("Folder"), select),
      actions(cancel, h("button", { type: "submit", class: "primary", text: t("Move") })),
    );
    const { node } = dialog(t("Move to folder"), form);
    moveParts = { node, select, lead };
    cancel.addEventListener("click", () => node.settle(undefined));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      node.settle(select.value ? parseInt(select.value, 10) : null);
    });
  }
  const { node, select, lead } = moveParts;
  lead.textContent = title;
  select.replaceChildren(new Option(t("No folder"), ""), ...folders.map((f) => new Option(f.name, String(f.id))));
  select.value = currentId ? String(currentId) : "";
  const done = modal(node, undefined);
  select.focus();
  return done;
}

// --- prompts: the "/" menu and the variables form ------------------------------------------------
export class PromptMenu {
  // callbacks: {insert(text, start, end), notify(text)}
  constructor(input, callbacks) {
    this.input = input;
    this.callbacks = callbacks;
    this.menu = document.getElementById("prompt-menu");
    this.prompts = null; // loaded at the first "/"
    this.loading = null;
    this.matches = [];
    this.active = 0;
    this.slash = -1; // where the "/" that opened the menu is in the text
    input.setAttribute("aria-controls", "prompt-menu");
    input.setAttribute("aria-autocomplete", "list");
    input.addEventListener("input", () => this.update());
    input.addEventListener("keydown", (event) => this.key(event), { capture: true });
    input.addEventListener("blur", () => setTimeout(() => this.close(), 150));
  }

  async load() {
    if (this.prompts) return this.prompts;
    if (!this.loading) {
      this.loading = api(config.urls.api_prompts)
        .then((data) => {
          this.prompts = data.prompts;
          return this.prompts;
        })
        .finally(() => {
          this.loading = null;
        });
    }
    return this.loading;
  }

  invalidate() {
    this.prompts = null;
  }

  // The "/word" being typed before the caret, at the start of the text or after a space.
  query() {
    const caret = this.input.selectionStart;
    const before = this.input.value.slice(0, caret);
    const match = /(^|\s)\/([^\s/]*)$/.exec(before);
    if (!match) return null;
    return { start: caret - match[2].length - 1, end: caret, text: match[2].toLowerCase() };
  }

  async update() {
    if (!this.query()) {
      this.close();
      return;
    }
    let prompts;
    try {
      prompts = await this.load();
    } catch (error) {
      this.callbacks.notify(message(error));
      return;
    }
    const found = this.query(); // the member may have typed on while the list loaded
    if (!found) return;
    this.slash = found.start;
    this.matches = prompts.filter((p) => p.title.toLowerCase().includes(found.text)).slice(0, 8);
    this.active = 0;
    this.draw(found.text);
  }

  draw(text) {
    const items = this.matches.map((prompt, index) =>
      h(
        "li",
        {
          id: `prompt-option-${prompt.id}`,
          role: "option",
          class: "prompt-option",
          "aria-selected": index === this.active ? "true" : "false",
          onmousedown: (event) => {
            event.preventDefault(); // keep the focus in the composer
            this.choose(prompt);
          },
        },
        h("span", { class: "prompt-option-title", text: prompt.title }),
        prompt.mine ? null : h("span", { class: "prompt-option-shared", text: t("shared") }),
      ),
    );
    if (!items.length) {
      const empty = this.prompts.length
        ? t("No prompt matches “%(query)s”.", { query: text })
        : t("Your prompt library is empty. Add prompts under Presets and prompts.");
      items.push(h("li", { class: "prompt-empty", role: "presentation", text: empty }));
    }
    this.menu.replaceChildren(...items);
    this.menu.hidden = false;
    this.input.setAttribute("aria-expanded", "true");
    const active = this.matches[this.active];
    if (active) this.input.setAttribute("aria-activedescendant", `prompt-option-${active.id}`);
    else this.input.removeAttribute("aria-activedescendant");
  }

  close() {
    this.menu.hidden = true;
    this.matches = [];
    this.input.setAttribute("aria-expanded", "false");
    this.input.removeAttribute("aria-activedescendant");
  }

  key(event) {
    if (this.menu.hidden) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      if (!this.matches.length) return;
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      this.active = (this.active + step + this.matches.length) % this.matches.length;
      this.draw(this.query()?.text || "");
    } else if (event.key === "Enter" || event.key === "Tab") {
      if (!this.matches.length) return;
      event.preventDefault();
      event.stopImmediatePropagation(); // Enter picks the prompt; it does not send
      this.choose(this.matches[this.active]);
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopImmediatePropagation();
      this.close();
    }
  }

  async choose(prompt) {
    const found = this.query();
    const start = found ? found.start : this.slash;
    const end = found ? found.end : this.slash + 1;
    this.close();
    let text = prompt.body;
    if (prompt.variables.length) {
      text = await fillVariables(prompt);
      if (text === null) {
        this.input.focus();
        return;
      }
    }
    this.callbacks.insert(text, start, end);
  }
}

let fillParts = null;
// The small form of a prompt's variables; the server fills them in (one definition of a
// variable, chat/services/library.py). Resolves to the text, or null when cancelled.
function fillVariables(prompt) {
  if (!fillParts) {
    const fields = h("div", {});
    const error = h("p", { class: "error", role: "alert", hidden: true });
    const cancel = button(t("Cancel"));
    const form = h(
      "form",
      { novalidate: true },
      fields,
      error,
      actions(cancel, h("button", { type: "submit", class: "primary", text: t("Insert") })),
    );
    const { node, heading } = dialog("", form);
    fillParts = { node, heading, fields, error };
    cancel.addEventListener("click", () => node.settle(null));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const values = Object.fromEntries(fillParts.inputs.map((entry) => [entry.name, entry.input.value]));
      try {
        const data = await api(`${config.urls.api_prompts}${fillParts.prompt.id}/fill/`, { method: "POST", body: { values } });
        node.settle(data.text);
      } catch (failure) {
        showError(error, message(failure));
      }
    });
  }
  const parts = fillParts;
  parts.prompt = prompt;
  parts.heading.textContent = t("Fill in “%(title)s”", { title: prompt.title });
  parts.inputs = prompt.variables.map((name, index) => ({
    name,
    input: h("input", { id: `fill-${index}`, type: "text", name, autocomplete: "off" }),
  }));
  parts.fields.replaceChildren(...parts.inputs.map((entry) => field(entry.name, entry.input)));
  showError(parts.error, "");
  const done = modal(parts.node, null);
  if (parts.inputs.length) parts.inputs[0].input.focus();
  return done;
}

// --- editing a preset or a prompt ------------------------------------------------------------------
let presetParts = null;
// editPreset(preset) → the preset as saved, or null when cancelled. Every field is sent; the
// collections only when their choice changed (one not shared with the editor is kept otherwise).
export function editPreset(preset) {
  if (!presetParts) {
    const parts = {
      name: h("input", { type: "text", maxlength: 100, autocomplete: "off" }),
      system: h("textarea", { rows: 4, maxlength: 20000 }),
      model: h("select", {}),
      settings: h("textarea", { rows: 4, spellcheck: "false", "aria-describedby": "preset-settings-help" }),
      collections: h("div", {}),
      hiddenNote: h("p", { class: "help", hidden: true }),
      error: h("p", { class: "error", role: "alert", hidden: true }),
    };
    const legend = h("legend", { text: t("Collections the preset searches") });
    parts.collectionBox = h("fieldset", { class: "preset-collections" }, legend, parts.collections, parts.hiddenNote);
    const cancel = button(t("Cancel"));
    const form = h(
      "form",
      { novalidate: true },
      field(t("Name"), parts.name),
      field(t("System prompt"), parts.system),
      field(t("Model"), parts.model),
      field(t("Parameters (JSON)"), parts.settings),
      h("p", { class: "help", id: "preset-settings-help", text: t('The chat settings, for example {"temperature": 0.2, "max_tokens": 800}.') }),
      parts.collectionBox,
      parts.error,
      actions(cancel, h("button", { type: "submit", class: "primary", text: t("Save") })),
    );
    const { node, heading } = dialog("", form);
    Object.assign(parts, { node, heading });
    presetParts = parts;
    cancel.addEventListener("click", () => node.settle(null));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      let chosen;
      try {
        chosen = parts.settings.value.trim() ? JSON.parse(parts.settings.value) : {};
        if (!chosen || typeof chosen !== "object" || Array.isArray(chosen)) throw new Error();
      } catch {
        showError(parts.error, t("The parameters must be a JSON object."));
        parts.settings.focus();
        return;
      }
      const body = {
        name: parts.name.value,
        system_prompt: parts.system.value,
        model_id: parts.model.value ? parseInt(parts.model.value, 10) : null,
        settings: chosen,
      };
      const ticked = [...parts.collections.querySelectorAll("input:checked")].map((box) => box.value);
      // Unchanged (or not loaded yet): left out, so collections the editor cannot see are kept.
      if (parts.initial !== null && ticked.join() !== parts.initial.join()) body.collection_ids = ticked;
      try {
        const data = await api(`${config.urls.api_presets}${parts.preset.id}/`, { method: "PATCH", body });
        node.settle(data.preset);
      } catch (failure) {
        showError(parts.error, message(failure));
      }
    });
  }
  const parts = presetParts;
  parts.preset = preset;
  parts.heading.textContent = t("Edit preset “%(name)s”", { name: preset.name });
  parts.name.value = preset.name;
  parts.system.value = preset.system_prompt || "";
  parts.model.replaceChildren(
    new Option(t("Default model"), ""),
    ...(config.models || []).map((m) => new Option(`${m.name} · ${m.provider}`, String(m.id))),
  );
  parts.model.value = preset.model_id && config.models.some((m) => m.id === preset.model_id) ? String(preset.model_id) : "";
  parts.settings.value = JSON.stringify(preset.settings || {}, null, 2);
  const current = (preset.collections || []).map((c) => c.id);
  parts.initial = null;
  parts.collections.replaceChildren(h("p", { class: "list-status", text: t("Loading…") }));
  const hidden = preset.collections_hidden || 0;
  parts.hiddenNote.textContent = hidden
    ? t("Collections of this preset not shared with you: %(count)s. Changing the collections removes them.", { count: hidden })
    : "";
  parts.hiddenNote.hidden = !hidden;
  showError(parts.error, "");
  api(config.urls.api_collections).then(
    (data) => {
      if (parts.preset !== preset) return;
      const rows = data.collections.map((collection) => {
        const box = h("input", { type: "checkbox", value: collection.id, id: `edit-preset-collection-${collection.id}` });
        box.checked = current.includes(collection.id);
        return h("div", { class: "check" }, box, h("label", { for: box.id, text: collection.name }));
      });
      // In the list's order, as the ticked boxes are read.
      parts.initial = data.collections.map((c) => c.id).filter((id) => current.includes(id));
      parts.collections.replaceChildren(...(rows.length ? rows : [h("p", { class: "list-status", text: t("You have no collections.") })]));
    },
    (failure) => showError(parts.error, message(failure)),
  );
  const done = modal(parts.node, null);
  parts.name.focus();
  return done;
}

let promptParts = null;
// editPrompt(prompt) → the prompt as saved, or null when cancelled.
export function editPrompt(prompt) {
  if (!promptParts) {
    const parts = {
      title: h("input", { type: "text", maxlength: 100, autocomplete: "off" }),
      body: h("textarea", { rows: 6, maxlength: 20000 }),
      error: h("p", { class: "error", role: "alert", hidden: true }),
    };
    const cancel = button(t("Cancel"));
    const form = h(
      "form",
      { novalidate: true },
      field(t("Prompt title"), parts.title),
      field(t("Prompt text"), parts.body),
      parts.error,
      actions(cancel, h("button", { type: "submit", class: "primary", text: t("Save") })),
    );
    const { node, heading } = dialog("", form);
    Object.assign(parts, { node, heading });
    promptParts = parts;
    cancel.addEventListener("click", () => node.settle(null));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const body = { title: parts.title.value, body: parts.body.value };
        const data = await api(`${config.urls.api_prompts}${parts.prompt.id}/`, { method: "PATCH", body });
        node.settle(data.prompt);
      } catch (failure) {
        showError(parts.error, message(failure));
      }
    });
  }
  const parts = promptParts;
  parts.prompt = prompt;
  parts.heading.textContent = t("Edit prompt “%(name)s”", { name: prompt.title });
  parts.title.value = prompt.title;
  parts.body.value = prompt.body;
  showError(parts.error, "");
  const done = modal(parts.node, null);
  parts.title.focus();
  return done;
}

// --- the library dialog: the member's presets and prompts -----------------------------------------
export class LibraryDialog {
  // presets: {list, set(list)} (the "New chat" picker's list); prompts: the PromptMenu
  constructor({ presets, prompts, notify }) {
    this.presets = presets;
    this.prompts = prompts;
    this.notify = notify;
    const list = (labelId) => h("ul", { class: "library-list", "aria-labelledby": labelId });
    this.presetList = list("library-presets-title");
    this.promptList = list("library-prompts-title");
    this.title = h("input", { type: "text", maxlength: 100, autocomplete: "off" });
    this.body = h("textarea", { rows: 4, maxlength: 20000 });
    this.error = h("p", { class: "error", role: "alert", hidden: true });
    const form = h(
      "form",
      { class: "prompt-form", novalidate: true, "aria-labelledby": "prompt-form-title" },
      h("h3", { id: "prompt-form-title", text: t("New prompt") }),
      field(t("Prompt title"), this.title),
      field(t("Prompt text"), this.body),
      this.error,
      actions(h("button", { type: "submit", class: "primary", text: t("Save prompt") })),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.addPrompt();
    });
    const close = button(t("Close"));
    this.node = dialog(
      t("Presets and prompts"),
      h("h3", { id: "library-presets-title", text: t("Presets") }),
      h("p", { class: "help", text: t("Save a preset from the chat settings. Presets your admin published to your groups are listed too.") }),
      this.presetList,
      h("h3", { id: "library-prompts-title", text: t("Prompts") }),
      h("p", { class: "help", text: t("Type / in the message box to insert one. Write variables as {{name}}: you fill them in when you insert the prompt.") }),
      this.promptList,
      form,
      actions(close),
    ).node;
    close.addEventListener("click", () => this.node.settle());
  }

  async open() {
    this.drawPresets();
    this.promptList.replaceChildren(h("li", { class: "list-status", text: t("Loading…") }));
    showError(this.error, "");
    modal(this.node);
    try {
      this.presets.set((await api(config.urls.api_presets)).presets);
      this.drawPresets();
      this.prompts.invalidate();
      this.drawPrompts(await this.prompts.load());
    } catch (error) {
      this.notify(message(error));
    }
  }

  // One preset or prompt: its name, what it carries, and Edit and Delete for one the member
  // may change (their own; an admin's: also the published ones).
  row({ name, detail, editable, mine, editLabel, edit, deleteLabel, remove, sharedText }) {
    const act = (run) => async () => {
      try {
        await run();
      } catch (error) {
        this.notify(message(error));
      }
    };
    return h(
      "li",
      { class: "library-item" },
      h("span", { class: "library-name", text: name }),
      detail ? h("span", { class: "library-detail", text: detail }) : null,
      mine ? null : h("span", { class: "library-shared", text: sharedText }),
      editable
        ? [
            h("button", { type: "button", class: "secondary small", "aria-label": editLabel, text: t("Edit"), onclick: act(edit) }),
            h("button", { type: "button", class: "secondary small", "aria-label": deleteLabel, text: t("Delete"), onclick: act(remove) }),
          ]
        : null,
    );
  }

  drawPresets() {
    const rows = this.presets.list.map((preset) => {
      const names = (preset.collections || []).map((c) => c.name);
      let detail = names.length ? t("Searches %(names)s", { names: names.join(", ") }) : "";
      if (preset.collections_hidden) {
        // A published preset's collections the member may not read: skipped when used, and said so.
        detail = [detail, t("%(count)s not shared with you", { count: preset.collections_hidden })].filter(Boolean).join(" · ");
      }
      return this.row({
        name: preset.name,
        detail,
        editable: preset.editable,
        mine: preset.mine,
        editLabel: t("Edit preset “%(name)s”", { name: preset.name }),
        edit: async () => {
          const saved = await editPreset(preset);
          if (!saved) return;
          this.presets.set(this.presets.list.map((p) => (p.id === saved.id ? saved : p)).sort((a, b) => a.name.localeCompare(b.name)));
          this.drawPresets();
        },
        deleteLabel: t("Delete preset “%(name)s”", { name: preset.name }),
        remove: async () => {
          await api(`${config.urls.api_presets}${preset.id}/`, { method: "DELETE" });
          this.presets.set(this.presets.list.filter((p) => p.id !== preset.id));
          this.drawPresets();
        },
        sharedText: t("published to your group"),
      });
    });
    if (!rows.length) rows.push(h("li", { class: "list-status", text: t("No presets yet.") }));
    this.presetList.replaceChildren(...rows);
  }

  drawPrompts(prompts) {
    const rows = prompts.map((prompt) =>
      this.row({
        name: prompt.title,
        editable: prompt.editable,
        mine: prompt.mine,
        editLabel: t("Edit prompt “%(name)s”", { name: prompt.title }),
        edit: async () => {
          if (!(await editPrompt(prompt))) return;
          this.prompts.invalidate();
          this.drawPrompts(await this.prompts.load());
        },
        deleteLabel: t("Delete prompt “%(name)s”", { name: prompt.title }),
        remove: async () => {
          await api(`${config.urls.api_prompts}${prompt.id}/`, { method: "DELETE" });
          this.prompts.invalidate();
          this.drawPrompts(await this.prompts.load());
        },
        sharedText: t("shared with your group"),
      }),
    );
    if (!rows.length) rows.push(h("li", { class: "list-status", text: t("No prompts yet.") }));
    this.promptList.replaceChildren(...rows);
  }

  async addPrompt() {
    try {
      await api(config.urls.api_prompts, { method: "POST", body: { title: this.title.value, body: this.body.value } });
      this.title.value = "";
      this.body.value = "";
      showError(this.error, "");
      this.prompts.invalidate();
      this.drawPrompts(await this.prompts.load());
    } catch (error) {
      showError(this.error, message(error));
    }
  }
}

// --- share links -------------------------------------------------------------------------------------
export class Sharing {
  constructor({ current }) {
    this.current = current; // () → the open conversation's id, or null
    this.url = h("input", { type: "text", readonly: true });
    this.result = field(t("Share link"), this.url);
    this.result.hidden = true;
    const copy = button(t("Copy link"));
    this.result.append(copy);
    this.error = h("p", { class: "error", role: "alert", hidden: true });
    this.create = h("button", { type: "button", class: "primary", text: t("Create link") });
    const listOpen = button(t("Your share links"));
    const close = button(t("Close"));
    const lead = config.public_share_links
      ? t("Anyone with the link can read a copy of this conversation as it is now. Later messages are not shared.")
      : t("Members of this Parley signed in with their account can read a copy of this conversation as it is now. Later messages are not shared.");
    this.node = dialog(
      t("Share conversation"),
      h("p", { class: "dialog-lead", text: lead }),
      this.result,
      this.error,
      h("div", { class: "dialog-actions" }, listOpen, h("span", { class: "spacer" }), close, this.create),
    ).node;
    this.create.addEventListener("click", () => this.createLink());
    copy.addEventListener("click", async () => {
      if (await copyText(this.url.value)) confirmCopied(copy);
    });
    close.addEventListener("click", () => this.node.settle());
    listOpen.addEventListener("click", () => {
      this.node.settle();
      this.openList();
    });
    this.list = h("ul", { class: "library-list" });
    this.status = h("p", { class: "list-status", role: "status" });
    const listClose = button(t("Close"));
    const listDialog = dialog(t("Your share links"), this.list, this.status, actions(listClose));
    this.list.setAttribute("aria-labelledby", listDialog.heading.id);
    this.listNode = listDialog.node;
    listClose.addEventListener("click", () => this.listNode.settle());
  }

  open() {
    this.result.hidden = true;
    this.url.value = "";
    showError(this.error, "");
    modal(this.node);
    this.create.focus();
  }

  async createLink() {
    const id = this.current();
    if (!id) return;
    try {
      const data = await api(`${config.urls.api_conversations}${id}/share/`, { method: "POST" });
      this.url.value = new URL(data.share.url, window.location.origin).href;
      this.result.hidden = false;
      showError(this.error, "");
      this.url.select();
    } catch (error) {
      showError(this.error, message(error));
    }
  }

  async openList() {
    this.list.replaceChildren();
    this.status.textContent = t("Loading…");
    modal(this.listNode);
    try {
      this.drawList((await api(config.urls.api_shares)).shares);
    } catch (error) {
      this.status.textContent = message(error);
    }
  }

  drawList(shares) {
    const date = new Intl.DateTimeFormat(document.documentElement.lang || undefined, { dateStyle: "medium", timeStyle: "short" });
    this.list.replaceChildren(
      ...shares.map((share) => {
        const title = share.title || t("Untitled conversation");
        return h(
          "li",
          { class: "library-item" },
          h("a", { class: "library-name", href: share.url, target: "_blank", rel: "noopener", text: title }),
          h("span", { class: "library-date", text: date.format(new Date(share.created_at)) }),
          h("button", {
            type: "button",
            class: "danger small",
            "aria-label": t("Revoke link to “%(title)s”", { title }),
            text: t("Revoke"),
            onclick: async () => {
              try {
                await api(`${config.urls.api_shares}${share.id}/`, { method: "DELETE" });
                this.drawList(shares.filter((s) => s.id !== share.id));
                this.status.textContent = t("The link is revoked: it no longer opens.");
              } catch (error) {
                this.status.textContent = message(error);
              }
            },
          }),
        );
      }),
    );
    if (!shares.length) this.status.textContent = t("You have no share links.");
    else if (this.status.textContent === t("Loading…")) this.status.textContent = "";
  }
}
