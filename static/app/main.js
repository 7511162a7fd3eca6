// The chat page: wires the sidebar, the thread, the composer and the settings to the websocket.
//
// Only frames of the conversation on screen are applied. After opening a conversation the
// page waits for its `conversation.state` (or, for a new chat, its `conversation.created`)
// and ignores message frames until then, so a late frame of the previous conversation can
// never land in the new one.
import { Attachments, CollectionPicker } from "./attachments.js";
import { ImageMode } from "./images.js";
import { ChatSocket, api } from "./net.js";
import { Composer, SettingsPanel, setUpTheme, showBudget } from "./panels.js";
import { Sidebar } from "./sidebar.js";
import { Thread } from "./thread.js";
import { config, conversationUrl, h, t } from "./util.js";
import { Voice } from "./voice.js";

const $ = (id) => document.getElementById(id);

const state = {
  conversation: config.conversation, // the open conversation (null: a new chat)
  ready: false, // frames of `conversation` are being applied
  pending: new Map(), // client_id → {text, conversationId, sent, saved}
  newChatSettings: null, // settings chosen for a chat that does not exist yet
  budget: config.budget,
  socketEverOpen: false,
};

const socket = new ChatSocket(config.urls.socket);

// --- notices -------------------------------------------------------------------------------------
const notice = $("notice");
function notify(text) {
  if (!text) {
    notice.hidden = true;
    notice.replaceChildren();
    return;
  }
  notice.replaceChildren(
    h("span", { text }),
    h("button", { type: "button", class: "notice-close", onclick: () => notify(null), text: t("Dismiss") }),
  );
  notice.hidden = false;
}

const banner = $("connection-banner");
let bannerTimer = null;
function showConnection(connected) {
  if (connected) {
    clearTimeout(bannerTimer);
    bannerTimer = null;
    banner.hidden = true;
    banner.textContent = "";
    return;
  }
  if (bannerTimer || !banner.hidden) return; // already counting down, or already shown
  // A blip shorter than a second is not worth a banner.
  bannerTimer = setTimeout(() => {
    bannerTimer = null;
    banner.textContent = t("Connection lost. Reconnecting…");
    banner.hidden = false;
  }, state.socketEverOpen ? 800 : 1500);
}

// --- the open conversation ---------------------------------------------------------------------------
// Dictation and Read aloud, only where a granted model serves them (voice.js).
const voice = new Voice({ notify });

const thread = new Thread($("thread"), $("scroller"), {
  regenerate: (messageId) => sendFrame({ type: "regenerate", conversation_id: state.conversation.id, message_id: messageId }),
  edit: (messageId, content) => sendFrame({ type: "edit", conversation_id: state.conversation.id, message_id: messageId, content }),
  switchTo: (messageId) => sendFrame({ type: "switch", conversation_id: state.conversation.id, message_id: messageId }),
  fork: (messageId) => fork(messageId),
  sync: requestSync,
  openSettings: () => settings.open(),
  busyChanged: (busy) => composer.setBusy(busy),
  replyDone: () => refreshBudget(),
  messageTools: (message) => voice.replyButtons(message),
});

let syncRequested = false;
function requestSync() {
  if (syncRequested || !state.conversation) return;
  syncRequested = true;
  socket.send({ type: "sync", conversation_id: state.conversation.id });
}

function sendFrame(frame) {
  if (!socket.send(frame)) {
    notify(t("You are offline. Parley will reconnect; try again in a moment."));
    return false;
  }
  notify(null);
  return true;
}

// "Fork": a new conversation with the branch up to a message; it opens at once.
async function fork(messageId) {
  try {
    const data = await api(`${config.urls.api_conversations}${state.conversation.id}/fork/`, {
      method: "POST",
      body: { message_id: messageId },
    });
    sidebar.upsert(data.conversation);
    openConversation(data.conversation.id);
  } catch (error) {
    notify(error.message || t("Something went wrong. Please try again."));
  }
}

function showHeader() {
  const conversation = state.conversation;
  const title = conversation ? conversation.title || t("Untitled conversation") : t("New chat");
  $("chat-title").textContent = title;
  document.title = conversation ? `${title} · Parley` : "Parley";
  $("empty-state").hidden = Boolean(conversation);
  $("share-open").hidden = !conversation;
  presets.show(conversation);
  const exportMenu = $("export-menu");
  exportMenu.hidden = !conversation;
  if (conversation) {
    $("export-md").href = `${config.urls.api_conversations}${conversation.id}/export.md`;
    $("export-json").href = `${config.urls.api_conversations}${conversation.id}/export.json`;
  }
  sidebar.setActive(conversation ? conversation.id : null);
}

function openConversation(id, { push = true } = {}) {
  sidebar.closeDrawer();
  notify(null);
  if (state.conversation && state.conversation.id === id && state.ready) return;
  state.conversation = { id, title: sidebar.title(id) };
  state.ready = false;
  thread.loading();
  composer.setConversation(id);
  attachments.setConversation(id);
  picker.setConversation(id);
  showHeader();
  if (push) history.pushState({ id }, "", conversationUrl(id));
  socket.send({ type: "subscribe", conversation_id: id });
  composer.focus();
}

function newChat({ push = true } = {}) {
  sidebar.closeDrawer();
  notify(null);
  state.conversation = null;
  state.ready = false;
  state.newChatSettings = null;
  presets.reset();
  thread.clear();
  composer.setConversation(null);
  attachments.setConversation(null);
  picker.setConversation(null);
  showHeader();
  if (push) history.pushState({ id: null }, "", config.urls.new);
  composer.focus();
}

function conversationGone() {
  newChat({ push: false });
  history.replaceState({ id: null }, "", config.urls.new);
  notify(t("That conversation no longer exists."));
}

// --- sending -----------------------------------------------------------------------------------------
function randomId() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

function send(text) {
  if (imageMode.active) return imageMode.create(text);
  if (text.length > config.max_message_chars) {
    notify(t("This message is too long."));
    return false;
  }
  const clientId = randomId();
  const conversationId = state.conversation ? state.conversation.id : null;
  const frame = { type: "send", conversation_id: conversationId, client_id: clientId, content: text };
  const attached = attachments.forSending(); // null while a file is still being read
  if (attached === null) return false;
  if (attached.documentIds.length) frame.document_ids = attached.documentIds;
  if (attached.imageIds.length) frame.image_ids = attached.imageIds;
  const collectionIds = picker.forSending();
  if (collectionIds.length) frame.collection_ids = collectionIds;
  if (!conversationId) {
    const presetId = presets.chosen();
    if (presetId !== null) {
      // The preset's model and settings, with only what the member chose for this chat on top.
      frame.preset_id = presetId;
      if (state.newChatSettings) {
        const { model_id: modelId, ...rest } = state.newChatSettings;
        if (modelId && config.models.some((m) => m.id === modelId)) frame.model_id = modelId;
        frame.settings = rest;
      }
    } else {
      const chosen = state.newChatSettings || {};
      const modelId = chosen.model_id ?? config.defaults.model_id;
      if (modelId && config.models.some((m) => m.id === modelId)) frame.model_id = modelId;
      // The chosen settings, else the member's defaults as this page knows them (they may have
      // been changed in this page since the socket opened).
      const { model_id: _ignored, ...rest } = state.newChatSettings || config.defaults || {};
      if (Object.keys(rest).length) frame.settings = rest;
    }
  }
  const sent = socket.send(frame);
  attachments.clear();
  state.pending.set(clientId, { frame, text, conversationId, sent, saved: false });
  if (!sent) notify(t("You are offline. Your message will be sent when Parley reconnects."));
  else notify(null);
  return true;
}

// After a reconnect: messages that never left are sent now; a message to an existing
// conversation is sent again (the server recognises its client_id and does not duplicate it).
// A new chat's message that may or may not have arrived goes back into the composer.
function resendPending() {
  for (const [clientId, item] of state.pending) {
    if (item.saved) continue;
    if (!item.sent || item.conversationId) {
      item.sent = socket.send(item.frame);
    } else {
      state.pending.delete(clientId);
      composer.restore(item.text);
      notify(t("The connection dropped while sending. Check the conversation list, then send again if needed."));
    }
  }
}

// --- frames ---------------------------------------------------------------------------------------------
function onFrame(frame) {
  switch (frame.type) {
    case "conversation.created": {
      const mine = frame.client_id && state.pending.has(frame.client_id);
      sidebar.upsert(frame.conversation);
      if (mine && !state.conversation) {
        state.conversation = frame.conversation;
        state.ready = true;
        state.newChatSettings = null;
        composer.adopt(frame.conversation.id);
        attachments.setConversation(frame.conversation.id);
        picker.adopt(frame.conversation.id);
        history.replaceState({ id: frame.conversation.id }, "", conversationUrl(frame.conversation.id));
        thread.clear();
        showHeader();
        if (frame.collections_skipped) {
          // A preset's collections not shared with the member are not searched: say so.
          notify(t("Collections of this preset not shared with you are not searched (%(count)s).", { count: frame.collections_skipped }));
        }
      }
      break;
    }
    case "conversation.state":
      if (!state.conversation || frame.conversation.id !== state.conversation.id) break;
      syncRequested = false;
      state.conversation = frame.conversation;
      state.ready = true;
      thread.setState(frame.messages || [], frame.has_more, frame.choices || []);
      picker.setSaved(frame.collections || []);
      sidebar.upsert(frame.conversation);
      showHeader();
      break;
    case "conversation.updated":
      sidebar.upsert(frame.conversation);
      if (state.conversation && frame.conversation.id === state.conversation.id) {
        state.conversation = { ...state.conversation, ...frame.conversation };
        showHeader();
      }
      break;
    case "conversation.deleted":
      sidebar.remove(frame.conversation_id);
      if (state.conversation && state.conversation.id === frame.conversation_id) conversationGone();
      break;
    case "message.created": {
      if (frame.client_id && state.pending.has(frame.client_id)) {
        state.pending.get(frame.client_id).saved = true;
        state.pending.delete(frame.client_id);
      }
      if (state.ready) thread.add(frame.message);
      break;
    }
    case "reply.snapshot":
      if (state.ready) thread.snapshot(frame.message_id, frame.text);
      break;
    case "reply.delta":
      if (state.ready) thread.delta(frame.message_id, frame.offset, frame.text);
      break;
    case "document.updated":
      attachments.update(frame.document);
      break;
    case "reply.done":
      if (state.ready) thread.done(frame.message);
      break;
    case "error":
      onError(frame);
      break;
    default:
      break;
  }
}

function onError(frame) {
  const pending = frame.client_id ? state.pending.get(frame.client_id) : null;
  if (pending) {
    state.pending.delete(frame.client_id);
    // Nothing was saved unless the error names the saved message: give the text back.
    if (!pending.saved && !(frame.detail && frame.detail.message_id)) composer.restore(pending.text);
  }
  if (frame.code === "not_found" && (frame.request === "subscribe" || frame.request === "sync")) {
    conversationGone();
    return;
  }
  if (frame.code === "not_found" && state.conversation) requestSync();
  let text = frame.message || t("Something went wrong. Please try again.");
  if (frame.code === "rate_limited" && frame.retry_after) {
    text = `${text} ${t("You can try again in %(seconds)s seconds.", { seconds: Math.ceil(frame.retry_after) })}`;
  }
  notify(text);
  if (frame.request === "edit" && state.conversation) requestSync();
}

socket.addEventListener("frame", (event) => onFrame(event.detail));
socket.addEventListener("status", (event) => {
  showConnection(event.detail.connected);
  $("send-button").classList.toggle("offline", !event.detail.connected);
});
socket.addEventListener("open", () => {
  state.socketEverOpen = true;
  if (state.conversation) {
    state.ready = false;
    socket.send({ type: "subscribe", conversation_id: state.conversation.id });
  }
  resendPending();
  attachments.watch(); // files still being indexed: their progress again
});
socket.addEventListener("ended", () => {
  window.location.assign(`${config.urls.login}?next=${encodeURIComponent(window.location.pathname)}`);
});

// --- budget -----------------------------------------------------------------------------------------
let budgetTimer = null;
function refreshBudget() {
  clearTimeout(budgetTimer);
  // Usage is settled just after the reply ends; ask a moment later, once per burst.
  budgetTimer = setTimeout(async () => {
    try {
      const data = await api(config.urls.api_budget);
      state.budget = data.budget;
      showBudget(state.budget);
    } catch {
      // The line keeps its last value; the usage page has the exact figures.
    }
  }, 400);
}

// --- wiring -----------------------------------------------------------------------------------------
const sidebar = new Sidebar({
  open: (id) => openConversation(id),
  deleted: (id) => {
    if (state.conversation && state.conversation.id === id) newChat();
  },
  changed: (conversation) => {
    if (state.conversation && state.conversation.id === conversation.id) {
      state.conversation = { ...state.conversation, ...conversation };
      showHeader();
    }
  },
  notify,
});

// The model the next message goes to: the conversation's, or for a new chat the one chosen for
// it, else its preset's, else the member's default (the server checks again).
function currentModel() {
  let id = null;
  if (state.conversation) {
    id = state.conversation.model_id ?? null;
  } else {
    const preset = presets.list.find((p) => p.id === presets.chosen());
    id = (state.newChatSettings && state.newChatSettings.model_id) ?? (preset && preset.model_id) ?? config.defaults.model_id ?? null;
  }
  return config.models.find((m) => m.id === id) || config.models.find((m) => m.is_default) || null;
}

const attachments = new Attachments({
  watch: (ids) => socket.send({ type: "watch_documents", document_ids: ids }),
  notify,
  model: currentModel,
});

// The "Collections" control beside the message box.
const picker = new CollectionPicker({ notify });

const composer = new Composer({
  send,
  stop: () => {
    if (state.conversation) sendFrame({ type: "stop", conversation_id: state.conversation.id });
  },
});

// Image calls go over HTTP (their files are multipart); their messages come back on the socket.
const imageMode = new ImageMode({
  conversationId: () => (state.conversation ? state.conversation.id : null),
  started: (data) => {
    notify(null);
    sidebar.upsert(data.conversation);
    if (!state.conversation || state.conversation.id !== data.conversation.id) {
      openConversation(data.conversation.id);
      return;
    }
    if (state.ready) {
      thread.add(data.question);
      thread.add(data.reply);
    }
  },
  notify,
  restore: (text) => composer.restore(text),
});

// Presets: the "New chat" picker and the name under a conversation's title. The rest of the
// library (the "/" prompt menu, share links, the library dialog) is static/app/library.js,
// loaded when first used so the page's first load carries none of it.
const presets = {
  list: config.presets || [],
  pick: $("preset-pick"),
  select: $("preset-select"),
  set(list) {
    this.list = list;
    const chosen = this.select.value;
    this.select.replaceChildren(new Option(t("No preset"), ""), ...list.map((p) => new Option(p.name, String(p.id))));
    this.select.value = list.some((p) => String(p.id) === chosen) ? chosen : "";
    this.pick.hidden = list.length === 0;
  },
  chosen() {
    return this.select.value ? parseInt(this.select.value, 10) : null;
  },
  reset() {
    this.select.value = "";
  },
  show(conversation) {
    const name = conversation && conversation.preset_name;
    const chip = $("chat-preset");
    chip.hidden = !name;
    chip.textContent = name ? t("Preset: %(name)s", { name }) : "";
  },
};
presets.set(presets.list);

let library = null;
function loadLibrary() {
  library ||= import("./library.js").then((module) => {
    const prompts = new module.PromptMenu($("message-input"), {
      insert: (text, start, end) => composer.insertAt(text, start, end),
      notify,
    });
    return {
      prompts,
      dialog: new module.LibraryDialog({ presets, prompts, notify }),
      sharing: new module.Sharing({ current: () => (state.conversation ? state.conversation.id : null) }),
    };
  });
  library.catch((error) => {
    library = null;
    notify(error.message || t("Something went wrong. Please try again."));
  });
  return library;
}
// The first "/" typed where a prompt may start loads the menu, which then follows the typing.
$("message-input").addEventListener("input", (event) => {
  if (library) return;
  const input = event.target;
  if (/(^|\s)\/[^\s/]*$/.test(input.value.slice(0, input.selectionStart))) {
    loadLibrary().then((loaded) => loaded.prompts.update());
  }
});

const settings = new SettingsPanel({
  current: () => ({ conversation: state.conversation && state.ready ? state.conversation : null, pending: state.newChatSettings }),
  save: async (values) => {
    if (state.conversation) {
      const data = await api(`${config.urls.api_conversations}${state.conversation.id}/`, { method: "PATCH", body: values });
      state.conversation = { ...state.conversation, ...data.conversation };
      sidebar.upsert(data.conversation);
    } else {
      state.newChatSettings = values;
    }
  },
  saveDefaults: async (values) => {
    const data = await api(config.urls.api_defaults, { method: "PUT", body: values });
    config.defaults = data.defaults;
  },
  savePreset: async (name, values, collectionIds) => {
    const { model_id: modelId, system_prompt: systemPrompt, ...rest } = values;
    const data = await api(config.urls.api_presets, {
      method: "POST",
      body: { name, model_id: modelId, system_prompt: systemPrompt, settings: rest, collection_ids: collectionIds },
    });
    presets.set([...presets.list, data.preset].sort((a, b) => a.name.localeCompare(b.name)));
    return data.preset;
  },
});

$("settings-open").addEventListener("click", () => settings.open());
$("share-open").addEventListener("click", () => loadLibrary().then((loaded) => loaded.sharing.open()));
$("shares-open").addEventListener("click", () => {
  closeMenus(null);
  loadLibrary().then((loaded) => loaded.sharing.openList());
});
$("library-open").addEventListener("click", () => {
  closeMenus(null);
  loadLibrary().then((loaded) => loaded.dialog.open());
});
$("new-chat").addEventListener("click", (event) => {
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  newChat();
});
$("sidebar-open").addEventListener("click", () => sidebar.openDrawer());
$("sidebar-close").addEventListener("click", () => sidebar.closeDrawer());
$("scrim").addEventListener("click", () => sidebar.closeDrawer());
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") sidebar.closeDrawer();
});
for (const button of document.querySelectorAll(".suggestion")) {
  button.addEventListener("click", () => {
    composer.fill(button.textContent);
    composer.submit();
  });
}
// Menus (account, export): a button that shows its panel; a click elsewhere or Escape closes it.
const disclosures = [...document.querySelectorAll("[data-disclosure]")];
function closeMenus(except) {
  for (const button of disclosures) {
    if (button === except) continue;
    button.setAttribute("aria-expanded", "false");
    $(button.getAttribute("aria-controls")).hidden = true;
  }
}
for (const button of disclosures) {
  button.addEventListener("click", () => {
    const open = button.getAttribute("aria-expanded") !== "true";
    closeMenus(button);
    button.setAttribute("aria-expanded", String(open));
    $(button.getAttribute("aria-controls")).hidden = !open;
  });
}
document.addEventListener("click", (event) => {
  if (!disclosures.some((button) => button.parentElement.contains(event.target))) closeMenus(null);
});
document.addEventListener("keydown", (event) => {
  const open = disclosures.find((button) => button.getAttribute("aria-expanded") === "true");
  if (event.key === "Escape" && open) {
    closeMenus(null);
    open.focus();
  }
});
// The language switcher submits as soon as a language is picked.
const language = document.getElementById("language-select");
if (language) language.addEventListener("change", () => language.form.requestSubmit());

window.addEventListener("popstate", () => {
  const match = /\/c\/([0-9a-f-]{36})\/$/.exec(window.location.pathname);
  if (match) openConversation(match[1], { push: false });
  else newChat({ push: false });
});

setUpTheme();
showBudget(state.budget);
if (state.conversation) {
  // "/" shows the newest conversation: give it its own address.
  history.replaceState({ id: state.conversation.id }, "", conversationUrl(state.conversation.id));
  thread.loading();
  composer.setConversation(state.conversation.id);
  picker.setConversation(state.conversation.id);
} else {
  composer.setConversation(null);
}
showHeader();
showConnection(false);
socket.connect();
composer.focus();
