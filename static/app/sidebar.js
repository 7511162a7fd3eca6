// The conversation list: New chat, search over titles, folder names and message text fused with
// search by meaning (the results in rank order, each with why it matched), the
// member's folders (create, rename, delete, collapse, drag a conversation in or use "Move to
// folder"), groups by date, rename, pin, delete with confirmation, and pages loaded as the
// member scrolls.
import { ApiError, api } from "./net.js";
import { config, conversationUrl, h, icon, iconButton, t } from "./util.js";

const DRAG_TYPE = "application/x-parley-conversation";

const DAY = 24 * 60 * 60 * 1000;

function startOfDay(date) {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate()).getTime();
}

// The group a conversation falls in, in the member's own time zone.
function groupOf(conversation, today) {
  if (conversation.pinned) return "pinned";
  const day = startOfDay(new Date(conversation.updated_at));
  if (day >= today) return "today";
  if (day >= today - DAY) return "yesterday";
  if (day >= today - 7 * DAY) return "week";
  return "older";
}

const GROUPS = [
  ["pinned", () => t("Pinned")],
  ["today", () => t("Today")],
  ["yesterday", () => t("Yesterday")],
  ["week", () => t("Previous 7 days")],
  ["older", () => t("Older")],
];

export class Sidebar {
  // callbacks: {open(id), deleted(id), notify(text)}
  constructor(callbacks) {
    this.callbacks = callbacks;
    this.root = document.getElementById("sidebar");
    this.groups = document.getElementById("conversation-groups");
    this.folderBox = document.getElementById("conversation-folders");
    this.folders = new Map((config.folders || []).map((folder) => [folder.id, folder]));
    this.status = document.getElementById("list-status");
    this.more = document.getElementById("load-more");
    this.search = document.getElementById("search-input");
    this.notice = document.getElementById("search-notice");
    this.matches = new Map(); // a search's results: id -> {text, meaning, snippet, rank}
    this.confirm = document.getElementById("confirm-dialog");
    this.items = new Map();
    this.activeId = null;
    this.query = "";
    this.nextBefore = null;
    this.loadingMore = false;
    this.renaming = null;
    this.searchTimer = null;
    this.request = 0;
    // Each open folder's own pages, fetched from the server: a folder lists all its
    // conversations, not only those the sidebar's pages happen to hold. id → {next, loading, loaded}
    this.folderPages = new Map();

    this.accept(config.sidebar || { conversations: [], next_before: null }, { replace: true });
    this.loadOpenFolders();
    this.search.addEventListener("input", () => {
      clearTimeout(this.searchTimer);
      this.searchTimer = setTimeout(() => this.runSearch(this.search.value.trim()), 250);
    });
    this.search.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.search.value) {
        this.search.value = "";
        this.runSearch("");
      }
    });
    this.more.addEventListener("click", () => this.loadMore());
    document.getElementById("new-folder").addEventListener("click", () => this.createFolder());
    // Dropping a conversation outside every folder takes it out of its folder.
    this.dropTarget(this.groups, () => null);
    if ("IntersectionObserver" in window) {
      new IntersectionObserver((entries) => {
        if (entries.some((entry) => entry.isIntersecting)) this.loadMore();
      }).observe(this.more);
    }
  }

  accept(page, { replace }) {
    if (replace) {
      this.items.clear();
      this.matches.clear();
      this.showNotice(page.search);
    }
    for (const conversation of page.conversations) {
      this.items.set(conversation.id, conversation);
      if (conversation.match) this.matches.set(conversation.id, { ...conversation.match, rank: this.matches.size });
    }
    this.nextBefore = page.next_before;
    this.render();
  }

  // Search by meaning took no part (no embedding model, or the search's embedding call was
  // refused or failed): the member is told, with the reason's stable code on the element.
  showNotice(search) {
    const notice = this.query && search && search.notice;
    this.notice.hidden = !notice;
    this.notice.textContent = notice ? notice.message : "";
    if (notice) this.notice.dataset.code = notice.code;
    else delete this.notice.dataset.code;
  }

  async fetchPage(before) {
    const params = new URLSearchParams();
    if (this.query) params.set("q", this.query);
    if (before) params.set("before", before);
    const query = params.toString();
    return api(`${config.urls.api_conversations}${query ? `?${query}` : ""}`);
  }

  async runSearch(query) {
    this.query = query;
    const ticket = ++this.request;
    this.status.textContent = query ? t("Searching…") : "";
    try {
      const page = await this.fetchPage(null);
      if (ticket !== this.request) return; // a newer search has started
      this.accept(page, { replace: true });
      if (!query) this.loadOpenFolders(); // the search results replaced the folders' pages
    } catch (error) {
      if (ticket === this.request) this.status.textContent = error.message;
    }
  }

  async loadMore() {
    if (!this.nextBefore || this.loadingMore) return;
    this.loadingMore = true;
    const ticket = this.request;
    try {
      const page = await this.fetchPage(this.nextBefore);
      if (ticket === this.request) this.accept(page, { replace: false });
    } catch (error) {
      this.callbacks.notify(error.message);
    } finally {
      this.loadingMore = false;
    }
  }

  // A conversation created or changed (possibly in another tab).
  upsert(conversation) {
    const known = this.items.get(conversation.id) || {};
    const summary = {
      id: conversation.id,
      title: conversation.title,
      pinned: conversation.pinned,
      folder_id: conversation.folder_id === undefined ? known.folder_id ?? null : conversation.folder_id,
      training: conversation.training || known.training || "off",
      created_at: conversation.created_at || known.created_at,
      updated_at: conversation.updated_at || known.updated_at,
    };
    if (this.query && !this.items.has(conversation.id)) return; // not part of these search results
    this.items.set(conversation.id, summary);
    this.render();
  }

  remove(id) {
    this.items.delete(id);
    this.render();
  }

  title(id) {
    const item = this.items.get(id);
    return item ? item.title : "";
  }

  setActive(id) {
    this.activeId = id;
    for (const link of this.root.querySelectorAll("a.conversation-link")) {
      if (link.dataset.id === id) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

  render() {
    // A title being edited survives a redraw (a conversation updated in another tab, a title
    // written by the model): its input is kept, with its text, focus and selection.
    const input = this.renameEl?.querySelector("input");
    const editing = input && document.activeElement === input ? [input.selectionStart, input.selectionEnd] : null;
    this.rendering = true;
    try {
      this.draw();
    } finally {
      this.rendering = false;
    }
    if (editing && input.isConnected) {
      input.focus();
      input.setSelectionRange(...editing);
    }
    if (this.renameFresh && this.renameEl?.isConnected) {
      this.renameFresh = false;
      const fresh = this.renameEl.querySelector("input");
      fresh.focus();
      fresh.select();
    }
  }

  draw() {
    const today = startOfDay(new Date());
    const byDate = (a, b) => Number(b.pinned) - Number(a.pinned) || (a.updated_at < b.updated_at ? 1 : a.updated_at > b.updated_at ? -1 : 0);
    // A search's results keep the server's rank (text and meaning fused); later pages after them.
    const rank = (conversation) => this.matches.get(conversation.id)?.rank ?? Infinity;
    const sorted = [...this.items.values()].sort(this.query ? (a, b) => rank(a) - rank(b) || byDate(a, b) : byDate);
    const buckets = new Map([...GROUPS.map(([key]) => [key, []]), ["results", []]]);
    const filed = new Map([...this.folders.keys()].map((id) => [id, []]));
    for (const conversation of sorted) {
      if (filed.has(conversation.folder_id)) filed.get(conversation.folder_id).push(conversation);
      else buckets.get(this.query ? "results" : groupOf(conversation, today)).push(conversation);
    }
    this.drawFolders(filed);
    const sections = [];
    for (const [key, label] of this.query ? [["results", () => t("Best matches")]] : GROUPS) {
      const list = buckets.get(key);
      if (!list.length) continue;
      const headingId = `group-${key}`;
      sections.push(
        h(
          "section",
          { class: "conversation-group", "aria-labelledby": headingId },
          h("h2", { class: "group-title", id: headingId, text: label() }),
          h("ul", { class: "conversation-list" }, list.map((conversation) => this.item(conversation))),
        ),
      );
    }
    this.groups.replaceChildren(...sections);
    this.more.hidden = !this.nextBefore;
    if (!sorted.length && !this.folderBox.childElementCount) {
      this.status.textContent = this.query
        ? t("No conversations match “%(query)s”.", { query: this.query })
        : t("Your conversations will appear here.");
    } else {
      this.status.textContent = "";
    }
  }

  // --- folders ---------------------------------------------------------------------------------------
  // Open folders whose conversations the sidebar's pages do not all hold yet (the page says how
  // many each has: a folder it holds whole costs no request).
  loadOpenFolders() {
    this.folderPages.clear();
    const held = new Map();
    for (const item of this.items.values()) held.set(item.folder_id, (held.get(item.folder_id) || 0) + 1);
    for (const folder of this.folders.values()) {
      if (folder.collapsed) continue;
      if (folder.conversations !== undefined && (held.get(folder.id) || 0) >= folder.conversations) continue;
      this.loadFolder(folder);
    }
  }

  // The first page of a folder's conversations (``more``: the next one), newest first.
  async loadFolder(folder, { more = false } = {}) {
    if (this.query) return; // search results already cover folders
    const page = this.folderPages.get(folder.id) || { next: null, loading: false, loaded: false };
    if (page.loading || (more ? !page.next : page.loaded)) return;
    page.loading = true;
    this.folderPages.set(folder.id, page);
    const ticket = this.request;
    try {
      const params = new URLSearchParams({ folder: String(folder.id) });
      if (more) params.set("before", page.next);
      const data = await api(`${config.urls.api_conversations}?${params}`);
      if (ticket !== this.request || this.folderPages.get(folder.id) !== page) return; // a search began since
      for (const conversation of data.conversations) this.items.set(conversation.id, conversation);
      page.next = data.next_before;
      page.loaded = true;
      this.render();
    } catch (error) {
      this.callbacks.notify(error instanceof ApiError ? error.message : String(error));
    } finally {
      page.loading = false;
    }
  }

  drawFolders(filed) {
    const query = this.query.toLowerCase();
    const sections = [];
    const folders = [...this.folders.values()].sort((a, b) => a.name.localeCompare(b.name));
    for (const folder of folders) {
      const list = filed.get(folder.id);
      // While searching, a folder shows when its name matches or it holds a result.
      if (query && !list.length && !folder.name.toLowerCase().includes(query)) continue;
      const headingId = `folder-${folder.id}`;
      const listId = `folder-list-${folder.id}`;
      const open = !folder.collapsed || Boolean(query);
      const more = !query && Boolean(this.folderPages.get(folder.id)?.next);
      const section = h(
        "section",
        { class: `conversation-group folder${open ? "" : " collapsed"}`, "aria-labelledby": headingId, "data-folder-id": folder.id },
        h(
          "div",
          { class: "folder-head" },
          h(
            "h2",
            { class: "group-title folder-title" },
            h(
              "button",
              {
                type: "button",
                class: "folder-toggle",
                id: headingId,
                "aria-expanded": open ? "true" : "false",
                "aria-controls": listId,
                onclick: () => this.updateFolder(folder, { collapsed: !folder.collapsed }),
              },
              icon("folder"),
              h("span", { text: folder.name }),
              h("span", { class: "folder-count", text: list.length ? ` (${list.length}${more ? "+" : ""})` : "" }),
            ),
          ),
          h(
            "div",
            { class: "item-actions" },
            iconButton("rename", t("Rename folder %(name)s", { name: folder.name }), () => this.renameFolder(folder)),
            iconButton("trash", t("Delete folder %(name)s", { name: folder.name }), () => this.deleteFolder(folder)),
          ),
        ),
        h(
          "ul",
          { class: "conversation-list", id: listId, hidden: !open },
          list.length ? list.map((conversation) => this.item(conversation)) : h("li", { class: "folder-empty", text: t("Drag conversations here, or use “Move to folder”.") }),
          more
            ? h(
                "li",
                { class: "folder-more" },
                h("button", {
                  type: "button",
                  class: "secondary small",
                  text: t("Show more"),
                  "aria-label": t("Show more in folder %(name)s", { name: folder.name }),
                  onclick: () => this.loadFolder(folder, { more: true }),
                }),
              )
            : null,
        ),
      );
      this.dropTarget(section, () => folder.id);
      sections.push(section);
    }
    this.folderBox.replaceChildren(...sections);
  }

  dropTarget(node, folderId) {
    node.addEventListener("dragover", (event) => {
      if (!event.dataTransfer.types.includes(DRAG_TYPE)) return;
      event.preventDefault(); // allows the drop
      event.stopPropagation();
      event.dataTransfer.dropEffect = "move";
      node.classList.add("drop-here");
    });
    node.addEventListener("dragleave", (event) => {
      if (!node.contains(event.relatedTarget)) node.classList.remove("drop-here");
    });
    node.addEventListener("drop", (event) => {
      const id = event.dataTransfer.getData(DRAG_TYPE);
      node.classList.remove("drop-here");
      if (!id || !this.items.has(id)) return;
      event.preventDefault();
      event.stopPropagation();
      const target = folderId();
      if ((this.items.get(id).folder_id ?? null) !== target) this.patch(id, { folder_id: target });
    });
  }

  async createFolder() {
    const { askName } = await import("./library.js"); // loaded when first used
    await askName({
      title: t("New folder"),
      label: t("Folder name"),
      save: async (name) => {
        const data = await api(config.urls.api_folders, { method: "POST", body: { name } });
        this.folders.set(data.folder.id, data.folder);
        this.render();
      },
    });
  }

  async renameFolder(folder) {
    const { askName } = await import("./library.js");
    await askName({
      title: t("Rename folder"),
      label: t("Folder name"),
      value: folder.name,
      save: async (name) => {
        if (name !== folder.name) await this.updateFolder(folder, { name }, { quiet: false });
      },
    });
  }

  async updateFolder(folder, values, { quiet = true } = {}) {
    try {
      const data = await api(`${config.urls.api_folders}${folder.id}/`, { method: "PATCH", body: values });
      this.folders.set(folder.id, data.folder);
      this.render();
      if (values.collapsed !== undefined) document.getElementById(`folder-${folder.id}`)?.focus();
      if (values.collapsed === false) this.loadFolder(data.folder); // opened: its conversations from the server
    } catch (error) {
      if (!quiet) throw error;
      this.callbacks.notify(error.message);
    }
  }

  async deleteFolder(folder) {
    try {
      await api(`${config.urls.api_folders}${folder.id}/`, { method: "DELETE" });
      this.folders.delete(folder.id);
      for (const item of this.items.values()) if (item.folder_id === folder.id) item.folder_id = null;
      this.render();
      this.callbacks.notify(t("Folder “%(name)s” deleted; its conversations are kept.", { name: folder.name }));
    } catch (error) {
      this.callbacks.notify(error.message);
    }
  }

  async moveToFolder(conversation) {
    const title = conversation.title || t("Untitled conversation");
    const { askFolder } = await import("./library.js");
    const target = await askFolder([...this.folders.values()], conversation.folder_id, title);
    if (target === undefined || target === (conversation.folder_id ?? null)) return;
    await this.patch(conversation.id, { folder_id: target });
    this.root.querySelector(`a[data-id="${conversation.id}"]`)?.focus();
  }

  item(conversation) {
    const title = conversation.title || t("Untitled conversation");
    const link = h("a", {
      class: "conversation-link",
      href: conversationUrl(conversation.id),
      "data-id": conversation.id,
      draggable: "true",
      ondragstart: (event) => {
        event.dataTransfer.setData(DRAG_TYPE, conversation.id);
        event.dataTransfer.effectAllowed = "move";
      },
      "aria-current": conversation.id === this.activeId ? "page" : null,
      text: title,
      title,
      onclick: (event) => {
        if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
        event.preventDefault();
        this.callbacks.open(conversation.id);
      },
    });
    if (this.renaming === conversation.id) return this.renameItem(conversation);
    return h(
      "li",
      { class: `conversation-item${conversation.pinned ? " pinned" : ""}`, "data-id": conversation.id },
      link,
      this.query ? this.matchNote(conversation.id) : null,
      h(
        "div",
        { class: "item-actions" },
        iconButton("rename", t("Rename"), () => {
          this.renaming = conversation.id;
          this.render();
        }),
        iconButton("pin", conversation.pinned ? t("Unpin") : t("Pin"), () => this.patch(conversation.id, { pinned: !conversation.pinned }), {
          "aria-pressed": conversation.pinned ? "true" : "false",
        }),
        iconButton("folder", t("Move to folder"), () => this.moveToFolder(conversation)),
        this.trainingButton(conversation),
        iconButton("trash", t("Delete"), () => this.askDelete(conversation)),
      ),
    );
  }

  // Why a search found the conversation: found by meaning (not by its words), and a snippet of
  // the message that matched. Text, never HTML.
  matchNote(id) {
    const match = this.matches.get(id);
    if (!match || (!match.snippet && match.text)) return null;
    return h(
      "p",
      { class: "match-note" },
      match.meaning && !match.text ? h("span", { class: "match-kind", text: t("Similar in meaning") }) : null,
      match.snippet ? h("span", { class: "match-snippet", text: match.snippet }) : null,
    );
  }

  // The member's consent to fine-tuning on this conversation (docs/fine-tuning.md): on until
  // the conversation is sent to the provider in a training file, then locked.
  trainingButton(conversation) {
    const state = conversation.training || "off";
    const labels = {
      off: t("Allow use for training"),
      on: t("Allowed for training: take back"),
      locked: t("Used for training: sent to the provider"),
    };
    return iconButton("training", labels[state] || labels.off, () => this.toggleTraining(conversation), {
      "aria-pressed": state === "off" ? "false" : "true",
      class: `icon-button small training-${state}`,
    });
  }

  async toggleTraining(conversation) {
    const allow = (conversation.training || "off") === "off";
    try {
      const data = await api(`${config.urls.api_conversations}${conversation.id}/training/`, { method: allow ? "PUT" : "DELETE" });
      this.upsert(data.conversation);
      this.callbacks.notify(
        allow
          ? t("This conversation may now be used to fine-tune a model. Admins will read it to build training data.")
          : t("This conversation will not be used for training."),
      );
    } catch (error) {
      this.callbacks.notify(error instanceof ApiError ? error.message : String(error));
    }
  }

  renameItem(conversation) {
    if (this.renameEl?.dataset.id === conversation.id) return this.renameEl;
    const input = h("input", { class: "rename-input", type: "text", maxlength: 200, "aria-label": t("Conversation title") });
    input.value = conversation.title;
    let finished = false;
    const finish = async (save) => {
      if (finished) return;
      finished = true;
      this.renaming = null;
      this.renameEl = null;
      const title = input.value.trim();
      if (save && title && title !== conversation.title) await this.patch(conversation.id, { title });
      else this.render();
      this.root.querySelector(`a[data-id="${conversation.id}"]`)?.focus();
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        finish(true);
      } else if (event.key === "Escape") {
        event.preventDefault();
        finish(false);
      }
    });
    input.addEventListener("blur", () => {
      if (!this.rendering) finish(true); // a redraw moves the input; it is not the member leaving it
    });
    // Focused and selected by render() as soon as it is in the page, not a frame later: a
    // deferred select() could land after the member's first keys and select them away.
    this.renameFresh = true;
    this.renameEl = h("li", { class: "conversation-item renaming", "data-id": conversation.id }, input);
    return this.renameEl;
  }

  async patch(id, values) {
    try {
      const data = await api(`${config.urls.api_conversations}${id}/`, { method: "PATCH", body: values });
      this.upsert(data.conversation);
      this.callbacks.changed(data.conversation);
    } catch (error) {
      this.render();
      this.callbacks.notify(error instanceof ApiError ? error.message : String(error));
    }
  }

  askDelete(conversation) {
    const text = document.getElementById("confirm-text");
    text.textContent = t("“%(title)s” and all its messages will be deleted. This cannot be undone.", {
      title: conversation.title || t("Untitled conversation"),
    });
    this.confirm.returnValue = "";
    this.confirm.addEventListener(
      "close",
      async () => {
        if (this.confirm.returnValue !== "confirm") return;
        try {
          await api(`${config.urls.api_conversations}${conversation.id}/`, { method: "DELETE" });
          this.remove(conversation.id);
          this.callbacks.deleted(conversation.id);
        } catch (error) {
          this.callbacks.notify(error.message);
        }
      },
      { once: true },
    );
    this.confirm.showModal();
  }

  // On a phone the list is a drawer behind the menu button.
  openDrawer() {
    document.body.classList.add("sidebar-open");
    document.getElementById("scrim").hidden = false;
    document.getElementById("sidebar-open").setAttribute("aria-expanded", "true");
    this.search.focus();
  }

  closeDrawer() {
    if (!document.body.classList.contains("sidebar-open")) return;
    document.body.classList.remove("sidebar-open");
    document.getElementById("scrim").hidden = true;
    document.getElementById("sidebar-open").setAttribute("aria-expanded", "false");
  }
}
