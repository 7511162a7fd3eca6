// Model output is untrusted input. Every render, including every intermediate render of a
// reply that is still streaming (docs/security.md T13), goes through the same pipeline:
//
//   markdown-it (raw HTML off)  →  DOMPurify (allow-list of tags and attributes)
//   →  link policy (http, https, mailto only)  →  DOM nodes (never an HTML string in the page)
//
// Images are never loaded: markdown images become links (T17: an image URL can carry data
// out). Code is highlighted by highlight.js and maths typeset by KaTeX; both are loaded only
// when a message needs them, so they cost nothing on pages without code or maths.
import { config, confirmCopied, copyText, h, icon, loadScript, loadStylesheet, t } from "./util.js";

const ALLOWED_SCHEMES = new Set(["http:", "https:", "mailto:"]);

// The absolute form of an href if its scheme is allowed, else null. Resolving it the way the
// browser will (new URL) defeats tricks like "java\tscript:" or entity-encoded schemes.
export function safeHref(raw) {
  if (typeof raw !== "string" || raw.trim() === "") return null;
  let url;
  try {
    url = new URL(raw, window.location.href);
  } catch {
    return null;
  }
  return ALLOWED_SCHEMES.has(url.protocol) ? url.href : null;
}

// --- lazily loaded libraries ------------------------------------------------------------------
let hljs = null;
let katex = null;
const pending = { highlight: null, katex: null };
const listeners = new Set();

// Called when highlight.js or KaTeX has arrived, so visible messages can be drawn again.
export function onLibraryLoaded(callback) {
  listeners.add(callback);
}

function announceLoaded() {
  for (const callback of listeners) callback();
}

function needHighlight() {
  if (hljs || pending.highlight) return;
  pending.highlight = import(config.urls.highlight)
    .then((module) => {
      hljs = module.default;
      announceLoaded();
    })
    .catch((error) => console.warn("highlight.js did not load; code stays plain", error));
}

function needKatex() {
  if (katex || pending.katex) return;
  loadStylesheet(config.urls.katex_css);
  pending.katex = loadScript(config.urls.katex_js)
    .then(() => {
      katex = window.katex;
      announceLoaded();
    })
    .catch((error) => console.warn("KaTeX did not load; maths stays as source", error));
}

// --- markdown-it ---------------------------------------------------------------------------------
const HIGHLIGHT_AUTO_LIMIT = 4000; // characters; guessing a language costs one pass per language

function highlight(code, lang) {
  if (!hljs) {
    needHighlight();
    return ""; // markdown-it escapes the code itself
  }
  try {
    if (lang && hljs.getLanguage(lang)) return hljs.highlight(code, { language: lang, ignoreIllegals: true }).value;
    if (!lang && code.length <= HIGHLIGHT_AUTO_LIMIT) return hljs.highlightAuto(code).value;
  } catch (error) {
    console.warn("highlight failed", error);
  }
  return "";
}

// $…$, $$…$$, \(…\) and \[…\] → <span class="math …">source</span>, typeset later by KaTeX.
// Runs before the escape rule so that "\(" is still there to be seen. A single "$" follows
// pandoc: no space just inside either dollar and no digit right after the closing one, so
// prices ("$5 and $10") stay text.
function mathRule(state, silent) {
  const src = state.src;
  const pos = state.pos;
  let open;
  let close;
  let display = false;
  if (src.startsWith("\\(", pos)) [open, close] = ["\\(", "\\)"];
  else if (src.startsWith("\\[", pos)) [open, close, display] = ["\\[", "\\]", true];
  else if (src.startsWith("$$", pos)) [open, close, display] = ["$$", "$$", true];
  else if (src[pos] === "$") [open, close] = ["$", "$"];
  else return false;
  const start = pos + open.length;
  let end = src.indexOf(close, start);
  if (open === "$") {
    if (start >= src.length || /\s/.test(src[start])) return false;
    while (end !== -1 && (/\s/.test(src[end - 1]) || src[end - 1] === "\\" || /\d/.test(src[end + 1] || ""))) {
      end = src.indexOf("$", end + 1);
    }
  }
  if (end === -1 || end === start) return false;
  if (!silent) {
    const token = state.push("math", "", 0);
    token.content = src.slice(start, end);
    token.meta = { display };
  }
  state.pos = end + close.length;
  return true;
}

function createMarkdown() {
  const md = window.markdownit({ html: false, linkify: true, typographer: false, breaks: false, highlight });
  const escape = md.utils.escapeHtml;

  // Only http(s), mailto and scheme-less (relative) destinations become links at all.
  md.validateLink = (url) => {
    const value = url.trim().toLowerCase();
    if (/^[a-z][a-z0-9+.-]*:/.test(value)) return /^(https?|mailto):/.test(value);
    return true;
  };

  md.renderer.rules.image = (tokens, index, options, env, self) => {
    const token = tokens[index];
    const src = token.attrGet("src") || "";
    const alt = self.renderInlineAsText(token.children || [], options, env);
    const label = escape(t("Image: %(name)s", { name: alt || src }));
    return safeHref(src) ? `<a href="${escape(src)}" class="image-link">${label}</a>` : `<span class="image-link">${label}</span>`;
  };

  // Table alignment becomes a class: style attributes are refused by the CSP.
  md.core.ruler.push("align_classes", (state) => {
    for (const token of state.tokens) {
      if ((token.type === "th_open" || token.type === "td_open") && token.attrs) {
        const style = token.attrGet("style") || "";
        token.attrs = token.attrs.filter(([name]) => name !== "style");
        const align = /text-align:(left|right|center)/.exec(style);
        if (align) token.attrJoin("class", `align-${align[1]}`);
      }
    }
  });

  md.inline.ruler.before("escape", "math", mathRule);
  md.renderer.rules.math = (tokens, index) => {
    const token = tokens[index];
    const kind = token.meta.display ? "math math-display" : "math math-inline";
    return `<span class="${kind}">${escape(token.content)}</span>`;
  };
  return md;
}

let markdown = null;

// --- DOMPurify -------------------------------------------------------------------------------------
const PURIFY = {
  ALLOWED_TAGS: [
    "a", "b", "blockquote", "br", "code", "del", "div", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i",
    "li", "ol", "p", "pre", "s", "span", "strong", "sub", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul",
  ],
  ALLOWED_ATTR: ["href", "class", "start", "title"],
  FORBID_ATTR: ["style"],
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

let purifyReady = false;
function setUpPurify() {
  if (purifyReady) return;
  window.DOMPurify.addHook("afterSanitizeAttributes", (node) => {
    if (node.nodeName !== "A") return;
    const href = safeHref(node.getAttribute("href"));
    if (href) {
      node.setAttribute("href", href);
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    } else {
      node.removeAttribute("href");
    }
  });
  purifyReady = true;
}

// --- post-processing (DOM only) ------------------------------------------------------------------
const MATH_CACHE_LIMIT = 300;
const mathCache = new Map();

function typeset(node) {
  const display = node.classList.contains("math-display");
  const source = node.textContent;
  const key = `${display ? "D" : "I"}${source}`;
  let rendered = mathCache.get(key);
  if (!rendered) {
    rendered = document.createElement("span");
    try {
      // katex.render builds DOM nodes and sets styles through CSSOM (allowed by the CSP);
      // renderToString would produce style attributes, which the CSP refuses. Errors are
      // caught here rather than drawn by KaTeX, whose error span sets a style attribute.
      katex.render(source, rendered, { displayMode: display, throwOnError: true, trust: false, strict: "ignore", maxSize: 50, maxExpand: 500 });
    } catch (error) {
      rendered.replaceChildren(document.createTextNode(source));
      rendered.className = "math-error";
      if (error && error.message) rendered.title = error.message;
    }
    if (mathCache.size >= MATH_CACHE_LIMIT) mathCache.clear();
    mathCache.set(key, rendered);
  }
  node.replaceChildren(...rendered.cloneNode(true).childNodes);
  node.classList.add("typeset");
  node.classList.toggle("failed", rendered.className === "math-error");
  node.setAttribute("title", rendered.title || source);
}

function decorateCode(fragment) {
  for (const pre of fragment.querySelectorAll("pre")) {
    const code = pre.querySelector("code");
    if (!code) continue;
    code.classList.add("hljs");
    const language = (/(?:^|\s)language-([\w#+.-]+)/.exec(code.className) || [])[1] || "";
    const copy = h(
      "button",
      {
        type: "button",
        class: "code-copy",
        onclick: async (event) => {
          const button = event.currentTarget;
          if (await copyText(code.textContent)) confirmCopied(button);
        },
      },
      icon("copy"),
      h("span", { class: "visually-hidden", text: t("Copy code") }),
    );
    const bar = h("div", { class: "code-bar" }, h("span", { class: "code-language", text: language }), copy);
    const wrapper = h("div", { class: "code-block" });
    pre.replaceWith(wrapper);
    wrapper.append(bar, pre);
  }
}

// Render untrusted markdown into `container`, replacing what it held.
export function renderMarkdown(container, text) {
  if (!markdown) markdown = createMarkdown();
  setUpPurify();
  const fragment = window.DOMPurify.sanitize(markdown.render(text || ""), PURIFY);
  decorateCode(fragment);
  const maths = fragment.querySelectorAll(".math");
  if (maths.length) {
    if (katex) maths.forEach(typeset);
    else needKatex();
  }
  container.replaceChildren(fragment);
}
