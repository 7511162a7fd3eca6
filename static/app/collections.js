// The "Collections" page (/collections/): make, rename and delete a collection; upload files into
// it, see each one's state, pages and size, replace a changed file, remove one.
//
// Uploads go to POST /api/collections/<id>/documents/ and are indexed by the same background job
// as files attached to a message; their progress (waiting, reading, indexing, ready, failed with
// the reason) arrives live over the chat websocket as `document.updated` frames after a
// `watch_documents` (docs/websocket-protocol.md), shown with the composer's words
// (attachments.js). A collection shared with the member by an admin is listed read-only.
// Everything is built with DOM APIs (h): names and reasons are text, never markup.
import { statusText } from "./attachments.js";
import { ChatSocket, api } from "./net.js";
import { config, formatNumber, h, t } from "./util.js";

const $ = (id) => document.getElementById(id);
const FINAL = new Set(["ready", "failed"]);
const pageUrl = (id) => (id ? `${config.urls.page}${id}/` : config.urls.page);
const collectionUrl = (id) => `${config.urls.api_collections}${id}/`;

const state = {
  collections: [],
  current: null, // {collection, documents}
  uploads: new Map(), // key → a file being sent, or refused before it got an id
  counter: 0,
};

function showError(node, text) {
  node.textContent = text || "";
  node.hidden = !text;
}

// --- the list ---------------------------------------------------------------------------------------
async function loadList() {
  try {
    state.collections = (await api(config.urls.api_collections)).collections;
    showError($("collection-new-error"), "");
  } catch (error) {
    showError($("collection-new-error"), error.message);
  }
  paintList();
}

function paintList() {
  const list = $("collection-list");
  const currentId = state.current ? state.current.collection.id : null;
  list.replaceChildren(
    ...state.collections.map((collection) => {
      const details = [t("Files: %(count)s", { count: formatNumber(collection.documents || 0) })];
      if (!collection.mine) details.push(t("shared by %(owner)s", { owner: collection.owner }));
      return h(
        "li",
        { class: "collection-item" },
        h(
          "a",
          {
            href: pageUrl(collection.id),
            "aria-current": collection.id === currentId ? "page" : null,
            onclick: (event) => {
              if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
              event.preventDefault();
              open(collection.id);
            },
          },
          h("span", { class: "collection-name", text: collection.name }),
        ),
        h("span", { class: "collection-details", text: details.join(" · ") }),
      );
    }),
  );
  $("collection-list-status").textContent = state.collections.length ? "" : t("You have no collections yet.");
}

$("collection-new").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("collection-new-name");
  const name = input.value.trim();
  if (!name) {
    showError($("collection-new-error"), t("A name is required."));
    return;
  }
  try {
    const data = await api(config.urls.api_collections, { method: "POST", body: { name } });
    input.value = "";
    showError($("collection-new-error"), "");
    await loadList();
    open(data.collection.id);
  } catch (error) {
    showError($("collection-new-error"), error.message);
  }
});

// --- one collection ---------------------------------------------------------------------------------
async function open(id, { push = true } = {}) {
  if (push) history.pushState({ id }, "", pageUrl(id));
  state.uploads.clear();
  try {
    state.current = await api(collectionUrl(id));
  } catch (error) {
    state.current = null;
    paintDetail();
    showError($("collection-new-error"), error.message);
    return;
  }
  showError($("collection-error"), "");
  paintList();
  paintDetail();
  watch();
  $("collection-title").focus();
}

function close({ push = true } = {}) {
  state.current = null;
  state.uploads.clear();
  if (push) history.pushState({ id: null }, "", pageUrl(null));
  paintList();
  paintDetail();
}

async function refresh() {
  if (!state.current) return;
  try {
    const data = await api(collectionUrl(state.current.collection.id));
    if (state.current && state.current.collection.id === data.collection.id) state.current = data;
  } catch (error) {
    showError($("collection-error"), error.message);
  }
  paintDetail();
  watch();
  loadList();
}

function paintDetail() {
  const section = $("collection-detail");
  const current = state.current;
  section.hidden = !current;
  if (!current) return;
  const { collection } = current;
  $("collection-title").textContent = collection.name;
  $("collection-title").tabIndex = -1;
  const owner = $("collection-owner");
  owner.hidden = collection.mine;
  owner.textContent = collection.mine ? "" : t("Shared with you by %(owner)s. Only its owner can change it.", { owner: collection.owner });
  $("collection-actions").hidden = !collection.mine;
  $("collection-upload").hidden = !collection.mine;
  const rows = [
    ...[...state.uploads.values()].map((item) => row(item, collection.mine)),
    ...current.documents.map((document) => row(document, collection.mine)),
  ];
  $("collection-documents").replaceChildren(...rows);
  $("collection-empty").hidden = rows.length > 0;
}

function row(item, mine) {
  const actions = [];
  if (mine && item.id && item.status !== "failed") {
    actions.push(
      h("button", { type: "button", class: "secondary small", onclick: () => replace(item), text: t("Replace"), "aria-label": t("Replace %(name)s", { name: item.name }) }),
    );
  }
  if (mine && item.status !== "uploading") {
    actions.push(
      h("button", { type: "button", class: "secondary small", onclick: () => remove(item), text: t("Remove"), "aria-label": t("Remove %(name)s", { name: item.name }) }),
    );
  }
  return h(
    "tr",
    { class: `collection-document attachment-${item.status}`, "data-status": item.status },
    h("th", { scope: "row", class: "collection-document-name", text: item.name }),
    h("td", {}, h("span", { class: "attachment-status", role: "status", text: statusText(item) })),
    h("td", { class: "number", text: item.pages ? formatNumber(item.pages) : "–" }),
    h("td", { class: "number", text: `${formatNumber(Math.ceil((item.size || 0) / 1024))} KB` }),
    h("td", { class: "collection-document-actions" }, actions),
  );
}

// Ask the socket for the progress of every file not yet ready (again after a reconnect).
function watch() {
  if (!state.current) return;
  const ids = state.current.documents.filter((d) => !FINAL.has(d.status)).map((d) => d.id);
  if (ids.length) socket.send({ type: "watch_documents", document_ids: ids });
}

function onDocument(document) {
  if (!state.current) return;
  const found = state.current.documents.find((d) => d.id === document.id);
  if (!found) return;
  const before = found.status;
  Object.assign(found, document);
  // Ready: a file uploaded again has now replaced the earlier one, and the counts changed.
  if (document.status === "ready" && before !== "ready") {
    refresh();
    return;
  }
  paintDetail();
  // The server follows a bounded number of files at once: ask again for those still to come.
  if (document.status === "failed" && before !== "failed") watch();
}

// --- files ------------------------------------------------------------------------------------------
async function upload(file, name = file.name) {
  if (!state.current) return;
  const collectionId = state.current.collection.id;
  const key = `u${++state.counter}`;
  const item = { key, id: null, name, size: file.size, pages: 0, status: "uploading", error: null };
  state.uploads.set(key, item);
  paintDetail();
  const body = new FormData();
  body.append("file", file, name);
  try {
    const data = await api(`${collectionUrl(collectionId)}documents/`, { method: "POST", body });
    state.uploads.delete(key);
    if (state.current && state.current.collection.id === collectionId) state.current.documents.unshift(data.document);
  } catch (error) {
    Object.assign(item, { status: "failed", error: { code: error.code, message: error.message } });
  }
  paintDetail();
  watch();
}

let replacing = null;
function replace(item) {
  replacing = item;
  $("collection-replace-input").click();
}
$("collection-replace-input").addEventListener("change", (event) => {
  const [file] = event.target.files;
  event.target.value = "";
  // Sent under the file's name in the collection: indexed beside it, then it takes its place.
  if (file && replacing) upload(file, replacing.name);
  replacing = null;
});

async function remove(item) {
  if (!item.id) {
    state.uploads.delete(item.key);
    paintDetail();
    return;
  }
  try {
    await api(`${config.urls.api_documents}${item.id}/`, { method: "DELETE" });
  } catch (error) {
    if (error.code !== "not_found") {
      showError($("collection-error"), error.message);
      return;
    }
  }
  refresh();
}

$("collection-upload-button").addEventListener("click", () => $("collection-upload-input").click());
$("collection-upload-input").addEventListener("change", (event) => {
  for (const file of event.target.files) upload(file);
  event.target.value = "";
});
const detail = $("collection-detail");
detail.addEventListener("dragover", (event) => {
  if (!state.current || !state.current.collection.mine) return;
  if (![...(event.dataTransfer?.types || [])].includes("Files")) return;
  event.preventDefault();
  detail.classList.add("dropping");
});
detail.addEventListener("dragleave", () => detail.classList.remove("dropping"));
detail.addEventListener("drop", (event) => {
  detail.classList.remove("dropping");
  const files = [...(event.dataTransfer?.files || [])];
  if (!files.length || !state.current || !state.current.collection.mine) return;
  event.preventDefault();
  for (const file of files) upload(file);
});

// --- rename, delete ---------------------------------------------------------------------------------
const renameForm = $("collection-rename-form");
$("collection-rename").addEventListener("click", () => {
  renameForm.hidden = false;
  $("collection-rename-name").value = state.current.collection.name;
  $("collection-rename-name").focus();
});
$("collection-rename-cancel").addEventListener("click", () => {
  renameForm.hidden = true;
  showError($("collection-error"), "");
});
renameForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("collection-rename-name").value.trim();
  if (!name) {
    showError($("collection-error"), t("A name is required."));
    return;
  }
  try {
    const data = await api(collectionUrl(state.current.collection.id), { method: "PATCH", body: { name } });
    state.current.collection = data.collection;
    renameForm.hidden = true;
    showError($("collection-error"), "");
    paintDetail();
    loadList();
  } catch (error) {
    showError($("collection-error"), error.message);
  }
});

function confirmDelete(name) {
  const dialog = $("confirm-dialog");
  $("confirm-text").textContent = t("“%(name)s” and all its files will be deleted. Conversations that search it stop doing so. This cannot be undone.", { name });
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

$("collection-delete").addEventListener("click", async () => {
  const { collection } = state.current;
  if (!(await confirmDelete(collection.name))) return;
  try {
    await api(collectionUrl(collection.id), { method: "DELETE" });
  } catch (error) {
    showError($("collection-error"), error.message);
    return;
  }
  close();
  loadList();
});

// --- wiring -----------------------------------------------------------------------------------------
const socket = new ChatSocket(config.urls.socket);
socket.addEventListener("open", () => watch());
socket.addEventListener("frame", (event) => {
  if (event.detail.type === "document.updated") onDocument(event.detail.document);
});
socket.addEventListener("ended", () => {
  window.location.assign(`${config.urls.login}?next=${encodeURIComponent(window.location.pathname)}`);
});
window.addEventListener("popstate", () => {
  const match = /\/collections\/([0-9a-f-]{36})\/$/.exec(window.location.pathname);
  if (match) open(match[1], { push: false });
  else close({ push: false });
});

socket.connect();
loadList();
if (config.collection_id) open(config.collection_id, { push: false });
