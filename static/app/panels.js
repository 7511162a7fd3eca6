// The composer, the settings dialog, the theme toggle and the budget line.
import { api } from "./net.js";
import { config, formatCost, formatNumber, h, t } from "./util.js";

// --- composer ----------------------------------------------------------------------------------
const DRAFT_PREFIX = "parley.draft.";

// Drafts are kept per member and conversation in localStorage, so they survive a reload and
// a fresh sign-in on this browser.
function draftKey(conversationId) {
  return `${DRAFT_PREFIX}${config.user.name}.${conversationId || "new"}`;
}

function storage() {
  try {
    return window.localStorage;
  } catch {
    return null; // storage disabled: drafts simply do not persist
  }
}

export class Composer {
  // callbacks: {send(text), stop()}
  constructor(callbacks) {
    this.callbacks = callbacks;
    this.form = document.getElementById("composer");
    this.input = document.getElementById("message-input");
    this.sendButton = document.getElementById("send-button");
    this.stopButton = document.getElementById("stop-button");
    this.conversationId = null;
    this.busy = false;
    this.started = false;
    this.saveTimer = null;

    this.input.maxLength = config.max_message_chars || 100000;
    this.input.addEventListener("input", () => {
      this.grow();
      clearTimeout(this.saveTimer);
      this.saveTimer = setTimeout(() => this.saveDraft(), 300);
    });
    this.input.addEventListener("keydown", (event) => {
      // Enter sends, Shift+Enter adds a line; an IME composition's Enter is not a send.
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
        event.preventDefault();
        this.submit();
      }
    });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.stopButton.addEventListener("click", () => this.callbacks.stop());
    window.addEventListener("pagehide", () => this.saveDraft());
  }

  submit() {
    if (this.busy) return;
    const text = this.input.value;
    if (!text.trim()) return;
    if (this.callbacks.send(text) === false) return;
    this.input.value = "";
    this.grow();
    this.clearDraft(this.conversationId);
  }

  // Switch drafts when another conversation opens.
  setConversation(id) {
    // The first call comes before anything was typed: saving then would erase the stored draft.
    if (this.started) this.saveDraft();
    this.started = true;
    this.conversationId = id;
    const store = storage();
    this.input.value = (store && store.getItem(draftKey(id))) || "";
    this.grow();
  }

  // A new chat got its id: its draft (already sent) belongs to it now.
  adopt(id) {
    this.conversationId = id;
  }

  restore(text) {
    if (!this.input.value) this.input.value = text;
    this.grow();
    this.saveDraft();
    this.input.focus();
  }

  fill(text) {
    this.input.value = text;
    this.grow();
  }

  // Put `text` in place of the characters start..end (a "/prompt" being typed).
  insertAt(text, start, end) {
    this.input.setRangeText(text, start, end, "end");
    this.grow();
    this.saveDraft();
    this.input.focus();
  }

  saveDraft() {
    const store = storage();
    if (!store) return;
    const key = draftKey(this.conversationId);
    if (this.input.value.trim()) store.setItem(key, this.input.value);
    else store.removeItem(key);
  }

  clearDraft(id) {
    const store = storage();
    if (store) store.removeItem(draftKey(id));
  }

  grow() {
    // Inline style through CSSOM, which the CSP allows (style attributes in markup are not).
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight, Math.round(window.innerHeight * 0.4))}px`;
  }

  // While a reply streams, Stop takes Send's place (and keeps the keyboard focus there).
  setBusy(busy) {
    if (busy === this.busy) return;
    const hadFocus = document.activeElement === this.sendButton || document.activeElement === this.stopButton;
    this.busy = busy;
    this.sendButton.hidden = busy;
    this.stopButton.hidden = !busy;
    if (hadFocus) (busy ? this.stopButton : this.sendButton).focus();
  }

  focus() {
    this.input.focus();
  }
}

// --- settings dialog -----------------------------------------------------------------------------
const NUMBER_FIELDS = [
  ["temperature", "set-temperature", parseFloat],
  ["top_p", "set-top-p", parseFloat],
  ["max_tokens", "set-max-tokens", (v) => parseInt(v, 10)],
  ["presence_penalty", "set-presence", parseFloat],
  ["frequency_penalty", "set-frequency", parseFloat],
  ["n", "set-n", (v) => Number(v)],
  ["seed", "set-seed", (v) => Number(v)],
];
const DEFAULT_PREFERENCE = 5;
const words = (id) => document.getElementById(id).value.split("\n").map((w) => w.trim()).filter(Boolean);

export class SettingsPanel {
  // callbacks: {current() → {conversation, pending}, save(values) → Promise, saveDefaults(values) → Promise}
  constructor(callbacks) {
    this.callbacks = callbacks;
    this.dialog = document.getElementById("settings-dialog");
    this.form = document.getElementById("settings-form");
    this.model = document.getElementById("set-model");
    this.error = document.getElementById("settings-error");
    this.scope = document.getElementById("settings-scope");
    this.collectionBox = document.getElementById("set-preset-collections");
    this.collectionList = document.getElementById("set-preset-collection-list");
    this.fillModels();
    this.model.addEventListener("change", () => this.showBias());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.commit(this.callbacks.save);
    });
    document.getElementById("settings-defaults").addEventListener("click", () => this.commit(this.callbacks.saveDefaults));
    document.getElementById("settings-cancel").addEventListener("click", () => this.dialog.close());
    document.getElementById("settings-preset").addEventListener("click", () => this.savePreset());
  }

  // "Save as preset": these settings and model under a name, offered by "New chat" from now on.
  async savePreset() {
    const nameInput = document.getElementById("set-preset-name");
    const saved = document.getElementById("settings-saved");
    saved.textContent = "";
    let values;
    try {
      values = this.read();
      if (!nameInput.value.trim()) throw new Error(t("A name is required."));
    } catch (error) {
      this.showError(error.message);
      nameInput.focus();
      return;
    }
    try {
      const collectionIds = [...this.collectionList.querySelectorAll("input:checked")].map((box) => box.value);
      const preset = await this.callbacks.savePreset(nameInput.value.trim(), values, collectionIds);
      this.error.hidden = true;
      nameInput.value = "";
      saved.textContent = t("Preset “%(name)s” saved.", { name: preset.name });
    } catch (error) {
      this.showError(error.message);
    }
  }

  // The collections "Save as preset" offers: every one the member may read, those the open
  // conversation searches ticked. Fetched when the dialog opens (the page carries none).
  async loadCollections(conversation) {
    const ticket = (this.collectionTicket = (this.collectionTicket || 0) + 1);
    this.collectionBox.hidden = true;
    try {
      const [all, used] = await Promise.all([
        api(config.urls.api_collections),
        conversation ? api(`${config.urls.api_conversations}${conversation.id}/collections/`) : { collections: [] },
      ]);
      if (ticket !== this.collectionTicket) return;
      const ticked = new Set(used.collections.map((c) => c.id));
      this.collectionList.replaceChildren(
        ...all.collections.map((collection) => {
          const box = h("input", { type: "checkbox", value: collection.id, id: `preset-collection-${collection.id}` });
          box.checked = ticked.has(collection.id);
          return h("div", { class: "check" }, box, h("label", { for: box.id, text: collection.name }));
        }),
      );
      this.collectionBox.hidden = all.collections.length === 0;
    } catch {
      this.collectionBox.hidden = true; // the preset is saved without collections
    }
  }

  fillModels() {
    const options = [new Option(t("Default model"), "")];
    for (const model of config.models || []) options.push(new Option(`${model.name} · ${model.provider}`, String(model.id)));
    this.model.replaceChildren(...options);
  }

  // Words to avoid or prefer become token ids in the model's encoding: offered only for models
  // whose encoding Parley knows.
  showBias() {
    const id = this.model.value ? parseInt(this.model.value, 10) : null;
    const models = config.models || [];
    const model = id === null ? models.find((m) => m.is_default) || models[0] : models.find((m) => m.id === id);
    document.getElementById("bias-fields").hidden = !(model && model.token_bias);
  }

  open() {
    const { conversation, pending } = this.callbacks.current();
    const values = conversation || pending || config.defaults || {};
    this.scope.textContent = conversation
      ? t("These settings apply to this conversation.")
      : t("These settings apply to the chat you are about to start.");
    const modelId = values.model_id === undefined || values.model_id === null ? "" : String(values.model_id);
    this.model.value = [...this.model.options].some((o) => o.value === modelId) ? modelId : "";
    document.getElementById("set-system").value = values.system_prompt || "";
    for (const [name, id] of NUMBER_FIELDS) {
      const value = values[name];
      document.getElementById(id).value = value === null || value === undefined ? "" : String(value);
    }
    document.getElementById("set-stop").value = (values.stop || []).join("\n");
    document.getElementById("set-response-format").value = values.response_format || "";
    const bias = values.logit_bias || [];
    document.getElementById("set-avoid").value = bias.filter((b) => b.bias < 0).map((b) => b.text).join("\n");
    const preferred = bias.filter((b) => b.bias > 0);
    document.getElementById("set-prefer").value = preferred.map((b) => b.text).join("\n");
    document.getElementById("set-prefer-strength").value = preferred.length ? String(preferred[0].bias) : "";
    this.showBias();
    this.error.hidden = true;
    document.getElementById("settings-saved").textContent = "";
    this.loadCollections(conversation);
    this.dialog.showModal();
  }

  read() {
    const values = {
      model_id: this.model.value ? parseInt(this.model.value, 10) : null,
      system_prompt: document.getElementById("set-system").value,
    };
    for (const [name, id, parse] of NUMBER_FIELDS) {
      const input = document.getElementById(id);
      const raw = input.value.trim();
      if (!raw) {
        values[name] = null;
        continue;
      }
      const number = parse(raw);
      if (!Number.isFinite(number) || !input.checkValidity() || (input.step === "1" && !Number.isInteger(number))) {
        throw new Error(t("%(field)s must be a number between %(min)s and %(max)s.", {
          field: input.labels[0].textContent,
          min: input.min || "1",
          max: input.max || "∞",
        }));
      }
      values[name] = number;
    }
    const stops = document.getElementById("set-stop").value.split("\n").filter((line) => line.length);
    if (stops.length > 4) throw new Error(t("At most four stop sequences."));
    values.stop = stops;
    values.response_format = document.getElementById("set-response-format").value;
    values.logit_bias = [];
    if (!document.getElementById("bias-fields").hidden) {
      const strengthInput = document.getElementById("set-prefer-strength");
      const strength = strengthInput.value.trim() ? Number(strengthInput.value) : DEFAULT_PREFERENCE;
      if (!Number.isInteger(strength) || strength < 1 || strength > 100) {
        throw new Error(t("%(field)s must be a number between %(min)s and %(max)s.", { field: strengthInput.labels[0].textContent, min: "1", max: "100" }));
      }
      values.logit_bias = [
        ...words("set-avoid").map((text) => ({ text, bias: -100 })),
        ...words("set-prefer").map((text) => ({ text, bias: strength })),
      ];
    }
    return values;
  }

  async commit(action) {
    let values;
    try {
      values = this.read();
    } catch (error) {
      this.showError(error.message);
      return;
    }
    try {
      await action(values);
      this.dialog.close();
    } catch (error) {
      this.showError(error.message);
    }
  }

  showError(text) {
    this.error.textContent = text;
    this.error.hidden = false;
  }
}

// --- theme -------------------------------------------------------------------------------------------
// Follows the system unless the member chose; the choice is a cookie so the server renders
// it into <html data-theme> and pages never flash the wrong theme.
const THEMES = ["system", "light", "dark"];

export function setUpTheme() {
  const button = document.getElementById("theme-toggle");
  const label = document.getElementById("theme-label");
  const names = { system: t("Theme: system"), light: t("Theme: light"), dark: t("Theme: dark") };
  const current = () => document.documentElement.dataset.theme || "system";
  const show = () => {
    label.textContent = names[current()];
  };
  button.addEventListener("click", () => {
    const next = THEMES[(THEMES.indexOf(current()) + 1) % THEMES.length];
    if (next === "system") {
      delete document.documentElement.dataset.theme;
      document.cookie = "parley_theme=; path=/; max-age=0; samesite=lax";
    } else {
      document.documentElement.dataset.theme = next;
      document.cookie = `parley_theme=${next}; path=/; max-age=31536000; samesite=lax`;
    }
    show();
  });
  show();
}

// --- budget --------------------------------------------------------------------------------------------
export function describeBudget(budget) {
  if (!budget) return "";
  const parts = [];
  if (budget.token_budget !== null && budget.token_budget !== undefined) {
    parts.push(t("%(remaining)s of %(budget)s tokens left this month", {
      remaining: formatNumber(budget.tokens_remaining),
      budget: formatNumber(budget.token_budget),
    }));
  }
  if (budget.cost_budget !== null && budget.cost_budget !== undefined) {
    parts.push(t("%(remaining)s of %(budget)s left this month", {
      remaining: formatCost(budget.cost_remaining),
      budget: formatCost(budget.cost_budget),
    }));
  }
  if (!parts.length) {
    parts.push(t("%(tokens)s tokens used this month", { tokens: formatNumber(budget.tokens_used || 0) }));
  }
  return parts.join(" · ");
}

export function showBudget(budget) {
  const text = describeBudget(budget);
  document.getElementById("budget-line").textContent = text;
  document.getElementById("budget-text").textContent = text || t("Usage");
  const exhausted =
    budget && ((budget.tokens_remaining !== null && budget.tokens_remaining <= 0) || (budget.cost_remaining !== null && Number(budget.cost_remaining) <= 0));
  document.getElementById("budget-line").classList.toggle("exhausted", Boolean(exhausted));
}
