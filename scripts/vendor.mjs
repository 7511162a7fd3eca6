#!/usr/bin/env node
// Copies Parley's pinned browser libraries from node_modules into static/vendor/ and writes
// static/vendor/VERSIONS.md. The copies are committed, so Parley runs offline without npm;
// run `npm ci && make vendor` only to change a version (pin it with `npm install --save-exact`).
//
// Only minified browser builds are copied. Two small rewrites keep Django's
// ManifestStaticFilesStorage happy (it fails on references to files that do not exist):
// - `//# sourceMappingURL=` comments are removed, because the maps are not shipped;
// - KaTeX's stylesheet keeps only its woff2 font sources (every browser Parley supports
//   reads woff2), so the woff and ttf copies need not be shipped.
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const modules = join(root, "node_modules");
const vendor = join(root, "static", "vendor");

const stripSourceMap = (text) => text.replace(/\n?\/\/# sourceMappingURL=\S+\s*$/, "\n");
const woff2Only = (css) =>
  css.replace(/src:([^;}]*)/g, (_all, sources) => {
    const woff2 = sources.split(/,(?=url\()/).filter((s) => s.includes('format("woff2")'));
    return `src:${woff2.join(",")}`;
  });

// name: npm package; files: [from (inside the package), to (inside static/vendor), transform]
const packages = [
  {
    name: "markdown-it",
    use: "Markdown to HTML (raw HTML disabled) for messages",
    files: [["dist/browser/markdown-it.umd.min.js", "markdown-it/markdown-it.min.js", stripSourceMap]],
    licenses: ["LICENSE"],
  },
  {
    name: "dompurify",
    use: "sanitizes every rendered message before it reaches the page",
    files: [["dist/purify.min.js", "dompurify/purify.min.js", stripSourceMap]],
    licenses: ["LICENSE"],
  },
  {
    name: "@highlightjs/cdn-assets",
    dir: "highlight.js",
    use: "code highlighting (common languages bundle), loaded when a code block appears",
    files: [["es/highlight.min.js", "highlight.js/highlight.min.mjs", stripSourceMap]],
    licenses: ["LICENSE"],
  },
  {
    name: "katex",
    use: "math rendering, loaded only when a message contains math",
    files: [
      ["dist/katex.min.js", "katex/katex.min.js", stripSourceMap],
      ["dist/katex.min.css", "katex/katex.min.css", woff2Only],
      ...readdirSync(join(modules, "katex", "dist", "fonts"))
        .filter((font) => font.endsWith(".woff2"))
        .map((font) => [`dist/fonts/${font}`, `katex/fonts/${font}`]),
    ],
    licenses: ["LICENSE"],
  },
];

const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8"));
const rows = [];
for (const pkg of packages) {
  const base = join(modules, pkg.name);
  const meta = JSON.parse(readFileSync(join(base, "package.json"), "utf8"));
  const locked = lock.packages[`node_modules/${pkg.name}`];
  if (!locked || locked.version !== meta.version) {
    throw new Error(`${pkg.name}: node_modules has ${meta.version}, package-lock.json pins ${locked?.version}`);
  }
  const dir = join(vendor, pkg.dir || pkg.name);
  rmSync(dir, { recursive: true, force: true });
  for (const [from, to, transform] of pkg.files) {
    const target = join(vendor, to);
    mkdirSync(dirname(target), { recursive: true });
    if (transform) writeFileSync(target, transform(readFileSync(join(base, from), "utf8")));
    else copyFileSync(join(base, from), target);
  }
  for (const license of pkg.licenses) copyFileSync(join(base, license), join(dir, license));
  rows.push(`| ${pkg.name} | ${meta.version} | ${meta.license} | \`${locked.integrity}\` | ${pkg.use} |`);
}

writeFileSync(
  join(vendor, "VERSIONS.md"),
  [
    "# Vendored browser libraries",
    "",
    "Written by `scripts/vendor.mjs` (`make vendor`) from the exact versions pinned in",
    "`package.json` and `package-lock.json`. Do not edit these files by hand. Each folder",
    "holds the package's license file. Source maps are not shipped; KaTeX ships only its",
    "woff2 fonts.",
    "",
    "| package | version | license | integrity (npm) | used for |",
    "|---|---|---|---|---|",
    ...rows,
    "",
  ].join("\n"),
);
console.log(`vendored ${packages.length} packages into static/vendor/`);
