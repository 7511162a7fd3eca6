// The open conversation: its messages, the reply that streams into it, and their actions.
//
// A streaming reply is assembled from `reply.snapshot` (the whole live text) and `reply.delta`
// (text continuing at `offset`, counted in Unicode code points as the protocol says, not in
// JavaScript's UTF-16 units). Each change re-renders the whole accumulated text through the
// sanitizing pipeline, at most once per animation frame.
import { paintAttachments } from "./images.js";
import { renderMarkdown, onLibraryLoaded } from "./render.js";
import { config, confirmCopied, copyText, formatCost, formatNumber, h, iconButton, nt, t } from "./util.js";

const codePoints = (text) => {
  let count = 0;
  for (const _ of text) count += 1;
  return count;
};

// `text` without its first `count` code points.
const dropCodePoints = (text, count) => {
  let index = 0;
  let seen = 0;
  for (const char of text) {
    if (seen === count) break;
    index += char.length;
    seen += 1;
  }
  return text.slice(index);
};

const FINAL = new Set(["complete", "stopped", "interrupted", "error", "blocked"]);

export class Thread {
  // actions: {regenerate(messageId), edit(messageId, text), switchTo(messageId), fork(messageId),
  //           sync(), openSettings(), busyChanged(busy), replyDone(message), messageTools(message)?}
  constructor(root, scroller, actions) {
    this.root = root;
    this.scroller = scroller;
    this.actions = actions;
    this.messages = [];
    this.views = new Map(); // message id → {article, body, status, footer, meta}
    this.live = new Map(); // message id → {text, length, dirty}
    this.frame = 0;
    this.stickToBottom = true;
    this.editing = null;
    this.choiceIds = new Set(); // answers of the last turn shown side by side, to pick from
    this.choiceBox = null;
    scroller.addEventListener("scroll", () => {
      const gap = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight;
      this.stickToBottom = gap < 80;
    });
    // highlight.js or KaTeX arrived: draw the messages again with them.
    onLibraryLoaded(() => {
      for (const message of this.messages) if (message.role === "assistant") this.paintBody(message);
    });
  }

  get busy() {
    return this.messages.some((m) => m.status === "streaming");
  }

  clear() {
    this.messages = [];
    this.views.clear();
    this.live.clear();
    this.editing = null;
    this.choiceIds = new Set();
    this.choiceBox = null;
    this.root.replaceChildren();
    this.root.removeAttribute("aria-busy");
    this.changed();
  }

  loading() {
    this.clear();
    this.root.setAttribute("aria-busy", "true");
  }

  // conversation.state: the saved messages of the branch shown, oldest first; `choices`, the
  // answers of the last turn side by side while the member picks one (the last message is
  // the first of them).
  setState(messages, hasMore, choices = []) {
    this.clear();
    if (hasMore) this.root.append(h("p", { class: "thread-note", text: t("Older messages are not shown. Export the conversation to see all of it.") }));
    const shown = choices.length > 1 ? messages.slice(0, -1) : messages;
    for (const message of shown) this.add(message);
    if (choices.length > 1) {
      this.choiceBox = h("div", { class: "choices", role: "group", "aria-label": t("Answers to pick from") });
      this.root.append(this.choiceBox);
      for (const choice of choices) {
        this.choiceIds.add(choice.id);
        this.add(choice);
      }
    }
    this.stickToBottom = true;
    this.scrollToEnd();
    this.changed();
  }

  add(message) {
    if (this.views.has(message.id)) {
      this.update(message);
      return;
    }
    this.messages.push(message);
    if (message.status === "streaming") {
      this.live.set(message.id, { text: message.content || "", length: codePoints(message.content || "") });
    }
    const view = this.build(message);
    this.views.set(message.id, view);
    (this.choiceIds.has(message.id) && this.choiceBox ? this.choiceBox : this.root).append(view.article);
    this.paint(message);
    this.changed();
    this.scrollToEnd();
  }

  update(message) {
    const index = this.messages.findIndex((m) => m.id === message.id);
    if (index === -1) return;
    // Events about one message (reply.done) do not list its versions: keep what the state said.
    if (!message.versions && this.messages[index].versions) message.versions = this.messages[index].versions;
    this.messages[index] = message;
    if (FINAL.has(message.status)) this.live.delete(message.id);
    this.paint(message);
    this.changed();
  }

  remove(ids) {
    for (const id of ids) {
      const view = this.views.get(id);
      if (view) view.article.remove();
      this.views.delete(id);
      this.live.delete(id);
      if (this.editing === id) this.editing = null;
    }
    this.messages = this.messages.filter((m) => !ids.includes(m.id));
    this.changed();
  }

  find(id) {
    return this.messages.find((m) => m.id === id);
  }

  // --- streaming ---------------------------------------------------------------------------------
  snapshot(messageId, text) {
    const entry = this.live.get(messageId);
    if (!entry || typeof text !== "string") return;
    const length = codePoints(text);
    if (length > entry.length) {
      entry.text = text;
      entry.length = length;
      this.schedule(messageId);
    }
  }

  delta(messageId, offset, text) {
    const entry = this.live.get(messageId);
    if (!entry || typeof text !== "string" || !Number.isInteger(offset)) return;
    if (offset > entry.length) {
      // A delta went missing (the channel layer may drop under load): ask for the state again.
      this.actions.sync();
      return;
    }
    const fresh = dropCodePoints(text, entry.length - offset);
    if (!fresh) return;
    entry.text += fresh;
    entry.length += codePoints(fresh);
    this.schedule(messageId);
  }

  done(message) {
    const known = this.find(message.id);
    if (!known) {
      this.add(message);
    } else {
      this.update(message);
    }
    this.actions.replyDone(message);
  }

  schedule(messageId) {
    const entry = this.live.get(messageId);
    if (entry) entry.dirty = true;
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      for (const [id, live] of this.live) {
        if (!live.dirty) continue;
        live.dirty = false;
        const message = this.find(id);
        if (message) {
          message.content = live.text;
          this.paintBody(message);
        }
      }
      this.scrollToEnd();
    });
  }

  scrollToEnd() {
    if (this.stickToBottom) this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  // --- drawing -------------------------------------------------------------------------------------
  build(message) {
    const mine = message.role === "user";
    const body = h("div", { class: mine ? "message-body plain" : "message-body markdown" });
    const status = h("div", { class: "message-status", hidden: true });
    const meta = h("span", { class: "message-meta" });
    const footer = h("div", { class: "message-footer" });
    const attachments = h("div", { class: "message-images", hidden: true });
    const versions = h("div", { class: "message-versions", hidden: true });
    let label = mine ? t("You said") : t("Parley said");
    if (this.choiceIds.has(message.id)) {
      label = t("Answer %(number)s", { number: this.choiceIds.size });
    }
    const article = h(
      "article",
      {
        class: `message ${mine ? "from-user" : "from-assistant"}`,
        "data-message-id": message.id,
        "aria-label": label,
      },
      h("div", { class: "message-main" }, body, attachments, status, h("div", { class: "message-tools" }, versions, footer, meta)),
    );
    return { article, body, status, footer, meta, versions, attachments };
  }

  paint(message) {
    this.paintBody(message);
    const view = this.views.get(message.id);
    if (view) paintAttachments(view.attachments, message);
    this.paintStatus(message);
    this.paintMeta(message);
    this.paintVersions(message);
  }

  // "Previous version" · "2 / 3" · "Next version" under a message that has siblings.
  paintVersions(message) {
    const view = this.views.get(message.id);
    if (!view) return;
    const versions = this.choiceIds.has(message.id) ? null : message.versions;
    if (!versions || versions.count < 2) {
      view.versions.hidden = true;
      view.versions.replaceChildren();
      return;
    }
    const go = (id) => () => this.actions.switchTo(id);
    view.versions.replaceChildren(
      h("button", { type: "button", class: "version-button", "aria-label": t("Previous version"), title: t("Previous version"), disabled: !versions.previous_id, onclick: go(versions.previous_id), text: "‹" }),
      h("span", { class: "version-count", text: `${versions.index} / ${versions.count}` }),
      h("button", { type: "button", class: "version-button", "aria-label": t("Next version"), title: t("Next version"), disabled: !versions.next_id, onclick: go(versions.next_id), text: "›" }),
    );
    view.versions.hidden = false;
  }

  paintBody(message) {
    const view = this.views.get(message.id);
    if (!view || this.editing === message.id) return;
    const live = this.live.get(message.id);
    const text = live ? live.text : message.content || "";
    view.article.classList.toggle("streaming", message.status === "streaming");
    if (message.role === "user") {
      view.body.textContent = text;
      return;
    }
    if (message.status === "streaming" && !text) {
      view.body.replaceChildren(
        h("span", { class: "typing", role: "img", "aria-label": t("Parley is writing") }, h("span"), h("span"), h("span")),
      );
      return;
    }
    renderMarkdown(view.body, text);
    if (message.passages > 0) linkCitations(view.body, message);
  }

  paintStatus(message) {
    const view = this.views.get(message.id);
    if (!view) return;
    const notes = [];
    if (message.role === "assistant" && message.omitted_messages > 0) {
      notes.push(
        h("p", { class: "note context-note" }, nt(
          "%(count)s earlier message was not sent: context limit",
          "%(count)s earlier messages were not sent: context limit",
          message.omitted_messages,
        )),
      );
    }
    if (message.role === "assistant" && message.omitted_passages > 0) {
      notes.push(
        h("p", { class: "note context-note" }, t("%(count)s relevant passages of your documents did not fit and were left out.", {
          count: message.omitted_passages,
        })),
      );
    }
    const explain = this.explain(message);
    if (explain) notes.push(explain);
    view.status.replaceChildren(...notes);
    view.status.hidden = notes.length === 0;
    view.article.dataset.status = message.status;
  }

  // A stopped, interrupted, failed or blocked reply says what happened and offers what helps.
  explain(message) {
    if (message.role !== "assistant") return null;
    const action = (label, handler) => h("button", { type: "button", class: "note-action", onclick: handler, text: label });
    const regenerate = () => action(t("Regenerate"), () => this.actions.regenerate(message.id));
    const error = message.error || {};
    switch (message.status) {
      case "stopped":
        return h("div", { class: "note note-stopped", role: "note" }, h("span", { text: t("You stopped this reply. The text so far is kept.") }), regenerate());
      case "interrupted":
        return h(
          "div",
          { class: "note note-warning", role: "note" },
          h("span", { text: t("This reply was interrupted before it finished. The text so far is kept.") }),
          regenerate(),
        );
      case "error":
        return h(
          "div",
          { class: "note note-error", role: "note" },
          h("span", { text: t("The reply failed: %(reason)s", { reason: error.message || t("unknown error") }) }),
          action(t("Try again"), () => this.actions.regenerate(message.id)),
        );
      case "blocked": {
        const categories = (message.moderation_categories || []).join(", ");
        const text = categories
          ? t("This reply was blocked by moderation (%(categories)s).", { categories })
          : t("This reply was blocked by moderation.");
        return h(
          "div",
          { class: "note note-error", role: "note" },
          // The server's reason says which text was blocked (the message, the system prompt...).
          h("span", { text: error.message || text }),
          action(t("Edit your message"), () => this.editLast()),
        );
      }
      case "complete":
        if (message.finish_reason === "length") {
          return h(
            "div",
            { class: "note note-warning", role: "note" },
            // Parley's own note when it ended a stream the provider did not end at the limit.
            h("span", { text: error.message || t("The reply was cut off at the maximum reply length.") }),
            action(t("Change settings"), () => this.actions.openSettings()),
          );
        }
        if (message.finish_reason === "content_filter") {
          return h("div", { class: "note note-warning", role: "note" }, h("span", { text: t("The provider's content filter ended this reply early.") }));
        }
        return null;
      default:
        return null;
    }
  }

  paintMeta(message) {
    const view = this.views.get(message.id);
    if (!view) return;
    const usage = message.usage;
    const parts = [];
    if (message.role === "assistant" && message.model) parts.push(message.model);
    if (usage) {
      const total = (usage.prompt_tokens || 0) + (usage.completion_tokens || 0);
      const tokens = t("%(total)s tokens (%(prompt)s in, %(completion)s out)", {
        total: formatNumber(total),
        prompt: formatNumber(usage.prompt_tokens || 0),
        completion: formatNumber(usage.completion_tokens || 0),
      });
      parts.push(usage.estimated ? `${tokens} ${t("(estimated)")}` : tokens);
      const cost = formatCost(usage.cost);
      if (cost) parts.push(cost);
    }
    view.meta.textContent = parts.join(" · ");
    if (parts.length) view.article.setAttribute("title", parts.join(" · "));
  }

  // Every message offers Copy and Fork; every reply Regenerate and every message of the
  // member Edit (each makes a new branch and keeps the old one); the last message of the
  // member without a reply, Get a reply; an answer to pick from, Continue. None of the
  // branch-making actions while a reply streams.
  changed() {
    const busy = this.busy;
    const last = this.messages[this.messages.length - 1];
    let number = 0;
    for (const message of this.messages) {
      const view = this.views.get(message.id);
      if (!view || this.editing === message.id) continue;
      const buttons = [
        iconButton("copy", t("Copy"), async (event) => {
          const button = event.currentTarget;
          if (await copyText(this.textOf(message))) confirmCopied(button);
        }),
      ];
      if (this.choiceIds.has(message.id)) {
        number += 1;
        if (!busy) {
          buttons.push(
            h("button", {
              type: "button",
              class: "secondary choice-pick",
              "aria-label": t("Continue from answer %(number)s", { number }),
              onclick: () => this.actions.switchTo(message.id),
              text: t("Continue from this answer"),
            }),
          );
        }
        view.footer.replaceChildren(...buttons);
        continue;
      }
      if (!busy && message.role === "assistant") {
        buttons.push(iconButton("regenerate", t("Regenerate"), () => this.actions.regenerate(message.id)));
      }
      if (!busy && message === last && message.role === "user") {
        buttons.push(iconButton("regenerate", t("Get a reply"), () => this.actions.regenerate(message.id)));
      }
      if (!busy && message.role === "user") {
        buttons.push(iconButton("edit", t("Edit"), () => this.startEdit(message)));
      }
      if (message.status !== "streaming") {
        buttons.push(iconButton("fork", t("Fork"), () => this.actions.fork(message.id)));
      }
      // Tools other modules add to a message (voice.js: Read aloud).
      if (this.actions.messageTools) buttons.push(...this.actions.messageTools(message));
      view.footer.replaceChildren(...buttons);
    }
    this.actions.busyChanged(busy);
  }

  textOf(message) {
    const live = this.live.get(message.id);
    return live ? live.text : message.content || "";
  }

  editLast() {
    const lastUser = [...this.messages].reverse().find((m) => m.role === "user");
    if (lastUser) this.startEdit(lastUser);
  }

  startEdit(message) {
    const view = this.views.get(message.id);
    if (!view || this.busy) return;
    this.editing = message.id;
    const area = h("textarea", { class: "edit-input", rows: 3, "aria-label": t("Edit message") });
    area.value = message.content;
    const cancel = () => {
      this.editing = null;
      this.paint(message);
      this.changed();
    };
    const form = h(
      "form",
      {
        class: "edit-form",
        onsubmit: (event) => {
          event.preventDefault();
          const text = area.value;
          if (!text.trim()) return;
          this.editing = null;
          message.content = text;
          this.paint(message);
          this.actions.edit(message.id, text);
        },
      },
      area,
      h(
        "div",
        { class: "edit-actions" },
        h("button", { type: "button", class: "secondary", onclick: cancel, text: t("Cancel") }),
        h("button", { type: "submit", class: "primary", text: t("Save and send") }),
      ),
    );
    area.addEventListener("keydown", (event) => {
      if (event.key === "Escape") cancel();
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    view.body.replaceChildren(form);
    view.footer.replaceChildren();
    area.focus();
    area.setSelectionRange(area.value.length, area.value.length);
  }
}

// Citations: "[2]" in a reply that carried document passages opens passage 2 in Parley's own
// passage view (docs/security.md T48). Only numbers the prompt carried become links, and only
// in text, never inside code.
const CITATION = /\[(\d{1,3})\]/g;
function linkCitations(body, message) {
  const walker = document.createTreeWalker(body, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) =>
      node.parentElement.closest("code, pre, a") || !/\[\d{1,3}\]/.test(node.data) ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT,
  });
  const nodes = [];
  while (walker.nextNode()) nodes.push(walker.currentNode);
  for (const node of nodes) {
    const parts = [];
    let last = 0;
    for (const match of node.data.matchAll(CITATION)) {
      const number = Number(match[1]);
      if (number < 1 || number > message.passages) continue;
      parts.push(node.data.slice(last, match.index));
      const href = config.urls.sources.replace("00000000-0000-0000-0000-000000000000", message.id).replace(/1\/$/, `${number}/`);
      parts.push(h("a", { class: "citation", href, target: "_blank", rel: "noopener", "aria-label": t("Source %(number)s", { number }), text: match[0] }));
      last = match.index + match[0].length;
    }
    if (!parts.length) continue;
    parts.push(node.data.slice(last));
    node.replaceWith(...parts);
  }
}
