// What a member keeps beside their conversations: presets ("New chat" offers them), the prompt
// library ("/" in the composer), share links, and the small dialogs the sidebar's folders use.
// Every list is drawn with DOM APIs (h), never HTML strings; names and texts are data.
import { ApiError, api } from "./net.js";
import { config, copyText, confirmCopied, h, t } from "./util.js";

const $ = (id) => document.getElementById(id);
const message = (error) => (error instanceof ApiError || error instanceof Error ? error.message : String(error));

function showError(node, text) {
  node.textContent = text || "";
  node.hidden = !text;
}

// --- small dialogs ---------------------------------------------------------------------------------
// askName({title, label, value}) → the trimmed name, or null when cancelled. `save(name)` may
// throw (a refused name): its message shows in the dialog, which stays open.
export function askName({ title, label, value = "", save }) {
  const dialog = $("name-dialog");
  const form = $("name-form");
  const input = $("name-input");
  const error = $("name-error");
  $("name-title").textContent = title;
  $("name-label").textContent = label || t("Name");
  input.value = value;
  showError(error, "");
  return new Promise((resolve) => {
    const done = (result) => {
      form.removeEventListener("submit", submit);
      $("name-cancel").removeEventListener("click", cancel);
      dialog.removeEventListener("cancel", cancel);
      if (dialog.open) dialog.close();
      resolve(result);
    };
    const submit = async (event) => {
      event.preventDefault();
      const name = input.value.trim();
      if (!name) {
        showError(error, t("A name is required."));
        return;
      }
      try {
        if (save) await save(name);
        done(name);
      } catch (failure) {
        showError(error, message(failure));
      }
    };
    const cancel = () => done(null);
    form.addEventListener("submit", submit);
    $("name-cancel").addEventListener("click", cancel);
    dialog.addEventListener("cancel", cancel);
    dialog.showModal();
    input.focus();
    input.select();
  });
}

// askFolder(folders, currentId, title) → a folder id, null for "No folder", or undefined when cancelled.
export function askFolder(folders, currentId, title) {
  const dialog = $("move-dialog");
  const form = $("move-form");
  const select = $("move-folder");
  $("move-lead").textContent = title;
  select.replaceChildren(
    new Option(t("No folder"), ""),
    ...folders.map((folder) => new Option(folder.name, String(folder.id))),
  );
  select.value = currentId ? String(currentId) : "";
  return new Promise((resolve) => {
    const done = (result) => {
      form.removeEventListener("submit", submit);
      $("move-cancel").removeEventListener("click", cancel);
      dialog.removeEventListener("cancel", cancel);
      if (dialog.open) dialog.close();
      resolve(result);
    };
    const submit = (event) => {
      event.preventDefault();
      done(select.value ? parseInt(select.value, 10) : null);
    };
    const cancel = () => done(undefined);
    form.addEventListener("submit", submit);
    $("move-cancel").addEventListener("click", cancel);
    dialog.addEventListener("cancel", cancel);
    dialog.showModal();
    select.focus();
  });
}

// --- presets ---------------------------------------------------------------------------------------
export class Presets {
  constructor({ notify }) {
    this.notify = notify;
    this.list = config.presets || [];
    this.pick = $("preset-pick");
    this.select = $("preset-select");
    this.chip = $("chat-preset");
    this.drawPicker();
  }

  drawPicker() {
    const chosen = this.select.value;
    this.select.replaceChildren(
      new Option(t("No preset"), ""),
      ...this.list.map((preset) => new Option(preset.name, String(preset.id))),
    );
    this.select.value = this.list.some((p) => String(p.id) === chosen) ? chosen : "";
    this.pick.hidden = this.list.length === 0;
  }

  // The preset chosen for the chat about to start (null: none).
  chosen() {
    return this.select.value ? parseInt(this.select.value, 10) : null;
  }

  reset() {
    this.select.value = "";
  }

  // "Preset: …" under the title of a conversation started from one.
  show(conversation) {
    const name = conversation && conversation.preset_name;
    this.chip.hidden = !name;
    this.chip.textContent = name ? t("Preset: %(name)s", { name }) : "";
  }

  async refresh() {
    try {
      const data = await api(config.urls.api_presets);
      this.list = data.presets;
      this.drawPicker();
    } catch (error) {
      this.notify(message(error));
    }
  }

  async create(name, values) {
    const { model_id: modelId, system_prompt: systemPrompt, ...settings } = values;
    const data = await api(config.urls.api_presets, {
      method: "POST",
      body: { name, model_id: modelId, system_prompt: systemPrompt, settings },
    });
    this.list = [...this.list, data.preset].sort((a, b) => a.name.localeCompare(b.name));
    this.drawPicker();
    return data.preset;
  }

  async remove(preset) {
    await api(`${config.urls.api_presets}${preset.id}/`, { method: "DELETE" });
    this.list = this.list.filter((p) => p.id !== preset.id);
    this.drawPicker();
  }
}

// --- prompts: the "/" menu and the variables form ------------------------------------------------
export class PromptMenu {
  // callbacks: {insert(text, start, end), notify(text)}
  constructor(input, callbacks) {
    this.input = input;
    this.callbacks = callbacks;
    this.menu = $("prompt-menu");
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
    const found = this.query();
    if (!found) {
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
    const again = this.query(); // the member may have typed on while the list loaded
    if (!again) return;
    this.slash = again.start;
    this.matches = prompts.filter((p) => p.title.toLowerCase().includes(again.text)).slice(0, 8);
    this.active = 0;
    this.draw(again.text);
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
      items.push(
        h("li", { class: "prompt-empty", role: "presentation", text: this.prompts.length ? t("No prompt matches “%(query)s”.", { query: text }) : t("Your prompt library is empty. Add prompts under Presets and prompts.") }),
      );
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

// The small form of a prompt's variables; the server fills them in (one definition of a
// variable, chat/services/library.py). Resolves to the text, or null when cancelled.
function fillVariables(prompt) {
  const dialog = $("fill-dialog");
  const form = $("fill-form");
  const error = $("fill-error");
  $("fill-title").textContent = t("Fill in “%(title)s”", { title: prompt.title });
  const inputs = prompt.variables.map((name, index) => {
    const id = `fill-${index}`;
    const input = h("input", { id, type: "text", name, autocomplete: "off" });
    return { name, input, field: h("div", { class: "field" }, h("label", { for: id, text: name }), input) };
  });
  $("fill-fields").replaceChildren(...inputs.map((entry) => entry.field));
  showError(error, "");
  return new Promise((resolve) => {
    const done = (result) => {
      form.removeEventListener("submit", submit);
      $("fill-cancel").removeEventListener("click", cancel);
      dialog.removeEventListener("cancel", cancel);
      if (dialog.open) dialog.close();
      resolve(result);
    };
    const submit = async (event) => {
      event.preventDefault();
      const values = Object.fromEntries(inputs.map((entry) => [entry.name, entry.input.value]));
      try {
        const data = await api(`${config.urls.api_prompts}${prompt.id}/fill/`, { method: "POST", body: { values } });
        done(data.text);
      } catch (failure) {
        showError(error, message(failure));
      }
    };
    const cancel = () => done(null);
    form.addEventListener("submit", submit);
    $("fill-cancel").addEventListener("click", cancel);
    dialog.addEventListener("cancel", cancel);
    dialog.showModal();
    if (inputs.length) inputs[0].input.focus();
  });
}

// --- the library dialog: the member's presets and prompts -----------------------------------------
export class LibraryDialog {
  constructor({ presets, prompts, notify }) {
    this.presets = presets;
    this.prompts = prompts;
    this.notify = notify;
    this.dialog = $("library-dialog");
    this.presetList = $("library-presets");
    this.promptList = $("library-prompts");
    $("prompt-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.addPrompt();
    });
  }

  async open() {
    this.presets.refresh().then(() => this.drawPresets());
    this.drawPresets();
    this.promptList.replaceChildren(h("li", { class: "list-status", text: t("Loading…") }));
    showError($("prompt-error"), "");
    this.dialog.showModal();
    this.prompts.invalidate();
    try {
      this.drawPrompts(await this.prompts.load());
    } catch (error) {
      this.promptList.replaceChildren(h("li", { class: "error", text: message(error) }));
    }
  }

  drawPresets() {
    const rows = this.presets.list.map((preset) =>
      h(
        "li",
        { class: "library-item" },
        h("span", { class: "library-name", text: preset.name }),
        preset.mine
          ? h("button", {
              type: "button",
              class: "secondary small",
              "aria-label": t("Delete preset “%(name)s”", { name: preset.name }),
              text: t("Delete"),
              onclick: async () => {
                try {
                  await this.presets.remove(preset);
                  this.drawPresets();
                } catch (error) {
                  this.notify(message(error));
                }
              },
            })
          : h("span", { class: "library-shared", text: t("published to your group") }),
      ),
    );
    if (!rows.length) rows.push(h("li", { class: "list-status", text: t("No presets yet.") }));
    this.presetList.replaceChildren(...rows);
  }

  drawPrompts(prompts) {
    const rows = prompts.map((prompt) =>
      h(
        "li",
        { class: "library-item" },
        h("span", { class: "library-name", text: prompt.title }),
        prompt.mine
          ? h("button", {
              type: "button",
              class: "secondary small",
              "aria-label": t("Delete prompt “%(name)s”", { name: prompt.title }),
              text: t("Delete"),
              onclick: async () => {
                try {
                  await api(`${config.urls.api_prompts}${prompt.id}/`, { method: "DELETE" });
                  this.prompts.invalidate();
                  this.drawPrompts(await this.prompts.load());
                } catch (error) {
                  this.notify(message(error));
                }
              },
            })
          : h("span", { class: "library-shared", text: t("shared with your group") }),
      ),
    );
    if (!rows.length) rows.push(h("li", { class: "list-status", text: t("No prompts yet.") }));
    this.promptList.replaceChildren(...rows);
  }

  async addPrompt() {
    const title = $("prompt-title");
    const body = $("prompt-body");
    try {
      await api(config.urls.api_prompts, { method: "POST", body: { title: title.value, body: body.value } });
      title.value = "";
      body.value = "";
      showError($("prompt-error"), "");
      this.prompts.invalidate();
      this.drawPrompts(await this.prompts.load());
    } catch (error) {
      showError($("prompt-error"), message(error));
    }
  }
}

// --- share links -------------------------------------------------------------------------------------
export class Sharing {
  constructor({ current, notify }) {
    this.current = current; // () → the open conversation's id, or null
    this.notify = notify;
    this.dialog = $("share-dialog");
    this.listDialog = $("shares-dialog");
    $("share-create").addEventListener("click", () => this.create());
    $("share-copy").addEventListener("click", async (event) => {
      const button = event.currentTarget;
      if (await copyText($("share-url").value)) confirmCopied(button);
    });
    $("share-list-open").addEventListener("click", () => {
      this.dialog.close();
      this.openList();
    });
  }

  open() {
    $("share-result").hidden = true;
    $("share-url").value = "";
    showError($("share-error"), "");
    this.dialog.showModal();
    $("share-create").focus();
  }

  async create() {
    const id = this.current();
    if (!id) return;
    try {
      const data = await api(`${config.urls.api_conversations}${id}/share/`, { method: "POST" });
      $("share-url").value = new URL(data.share.url, window.location.origin).href;
      $("share-result").hidden = false;
      showError($("share-error"), "");
      $("share-url").select();
    } catch (error) {
      showError($("share-error"), message(error));
    }
  }

  async openList() {
    const list = $("shares-list");
    const status = $("shares-status");
    list.replaceChildren();
    status.textContent = t("Loading…");
    this.listDialog.showModal();
    try {
      const data = await api(config.urls.api_shares);
      this.drawList(data.shares);
    } catch (error) {
      status.textContent = message(error);
    }
  }

  drawList(shares) {
    const list = $("shares-list");
    const status = $("shares-status");
    const date = new Intl.DateTimeFormat(document.documentElement.lang || undefined, { dateStyle: "medium", timeStyle: "short" });
    list.replaceChildren(
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
                status.textContent = t("The link is revoked: it no longer opens.");
              } catch (error) {
                status.textContent = message(error);
              }
            },
          }),
        );
      }),
    );
    if (!shares.length) status.textContent = t("You have no share links.");
    else if (status.textContent === t("Loading…")) status.textContent = "";
  }
}
