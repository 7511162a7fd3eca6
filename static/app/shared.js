// A shared conversation's read-only page: the snapshot in the #parley-config block, drawn with
// the chat page's own renderer (render.js: markdown-it with raw HTML off, DOMPurify, the link
// policy), so model output is exactly as safe here as in the chat (docs/security.md T52).
import { onLibraryLoaded, renderMarkdown } from "./render.js";
import { config, h, t } from "./util.js";

const root = document.getElementById("shared-thread");
const messages = (config.shared && config.shared.messages) || [];
const bodies = [];

function draw() {
  for (const { body, message } of bodies) {
    if (message.role === "user") body.textContent = message.content;
    else renderMarkdown(body, message.content);
  }
}

for (const message of messages) {
  const mine = message.role === "user";
  const body = h("div", { class: mine ? "message-body plain" : "message-body markdown" });
  const meta = !mine && message.model ? h("span", { class: "message-meta", text: message.model }) : null;
  root.append(
    h(
      "article",
      { class: `message ${mine ? "from-user" : "from-assistant"}`, "aria-label": mine ? t("They said") : t("Parley said") },
      h("div", { class: "message-main" }, body, h("div", { class: "message-tools" }, meta)),
    ),
  );
  bodies.push({ body, message });
}

// markdown-it and DOMPurify are classic deferred scripts: they have run before a module does.
draw();
onLibraryLoaded(draw);
