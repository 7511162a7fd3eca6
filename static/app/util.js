// Small shared helpers: the page's configuration, translated strings, DOM building.
//
// Strings come from the JSON data block #i18n that the server renders with Django's gettext
// (chat/web/ui_text.py). A data block is not script execution, so it is allowed under the
// Content-Security-Policy. Keys are the English source strings.

const readJson = (id) => {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : {};
};

export const config = readJson("parley-config");
const catalog = readJson("i18n");

// Strings of a module loaded later (static/app/library.js), from its own JSON catalog.
export function addCatalog(entries) {
  Object.assign(catalog, entries);
}

// t(text, values): gettext, with Python-style named placeholders such as %(name)s.
export function t(text, values) {
  const entry = catalog[text];
  const template = typeof entry === "string" ? entry : text;
  return interpolate(template, values);
}

// nt(singular, plural, count, values): ngettext; %(count)s is filled in.
export function nt(singular, plural, count, values) {
  const entry = catalog[singular];
  let template = count === 1 ? singular : plural;
  if (Array.isArray(entry)) template = entry[count === 1 ? 0 : 1] || template;
  return interpolate(template, { count, ...values });
}

function interpolate(template, values) {
  if (!values) return template;
  return template.replace(/%\((\w+)\)s/g, (whole, name) => (name in values ? String(values[name]) : whole));
}

// h("button", {class: "x", onclick: fn, "aria-label": "Copy"}, child, "text")
// Builds elements with DOM APIs only: no HTML strings, so nothing is ever parsed as markup.
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "hidden") node.hidden = Boolean(value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const ICONS = {
  copy: "M9 9h11v11H9zM5 15H4V4h11v1",
  check: "M5 12l5 5L20 7",
  edit: "M4 20h4L19 9l-4-4L4 16v4zM14 6l4 4",
  regenerate: "M20 11a8 8 0 1 0-2.3 5.7M20 4v7h-7",
  pin: "M12 17v5M9 3h6l-1 7 4 4H6l4-4-1-7z",
  rename: "M12 20h9M16.5 3.5l4 4L8 20H4v-4z",
  trash: "M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3",
  info: "M12 16v-5M12 8h.01M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18z",
  fork: "M6 3v6a6 6 0 0 0 6 6h0a6 6 0 0 1 6 6M18 3v18M6 21v-6",
  folder: "M3 6h6l2 2h10v11H3z",
  training: "M2 9l10-5 10 5-10 5zM6 11v5c3 2 9 2 12 0v-5M22 9v6",
  close: "M6 6l12 12M18 6L6 18",
};

// A decorative icon: the control holding it carries the accessible name.
export function icon(name) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  for (const [key, value] of Object.entries({
    class: "icon",
    viewBox: "0 0 24 24",
    width: "16",
    height: "16",
    fill: "none",
    stroke: "currentColor",
    "stroke-width": "2",
    "stroke-linecap": "round",
    "stroke-linejoin": "round",
    "aria-hidden": "true",
    focusable: "false",
  })) {
    svg.setAttribute(key, value);
  }
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", ICONS[name] || "");
  svg.append(path);
  return svg;
}

// A button with an icon and a visually hidden name ("Copy", "Regenerate"...).
export function iconButton(name, label, onclick, extra = {}) {
  return h(
    "button",
    { type: "button", class: "icon-button small", onclick, title: label, ...extra },
    icon(name),
    h("span", { class: "visually-hidden", text: label }),
  );
}

export function conversationUrl(id) {
  return config.urls.conversation.replace("00000000-0000-0000-0000-000000000000", id);
}

// Copy text to the clipboard; falls back to a hidden textarea where the async API is absent.
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // Permission refused (for example an unfocused document): try the fallback below.
    }
  }
  const area = h("textarea", { class: "clipboard-helper", readonly: true });
  area.value = text;
  document.body.append(area);
  area.select();
  const copied = document.execCommand("copy");
  area.remove();
  return copied;
}

// Flash "Copied" on a button for a moment.
export function confirmCopied(button) {
  const label = button.querySelector(".visually-hidden");
  const before = label ? label.textContent : "";
  button.classList.add("done");
  if (label) label.textContent = t("Copied");
  setTimeout(() => {
    button.classList.remove("done");
    if (label) label.textContent = before;
  }, 1500);
}

// Load a classic script once (KaTeX). Same origin only, so the CSP allows it.
const loading = new Map();
export function loadScript(src) {
  if (!loading.has(src)) {
    loading.set(
      src,
      new Promise((resolve, reject) => {
        const script = h("script", { src, async: true });
        script.addEventListener("load", resolve);
        script.addEventListener("error", () => reject(new Error(`could not load ${src}`)));
        document.head.append(script);
      }),
    );
  }
  return loading.get(src);
}

export function loadStylesheet(href) {
  if (!loading.has(href)) {
    loading.set(href, true);
    document.head.append(h("link", { rel: "stylesheet", href }));
  }
}

const numberFormat = new Intl.NumberFormat(document.documentElement.lang || undefined);
export const formatNumber = (n) => numberFormat.format(n);

export function formatCost(value) {
  if (value === null || value === undefined || value === "") return null;
  const amount = Number(value);
  if (!Number.isFinite(amount)) return null;
  if (amount !== 0 && Math.abs(amount) < 0.01) return `$${amount.toPrecision(2)}`;
  return `$${amount.toFixed(2)}`;
}
