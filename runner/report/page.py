"""The comparison as one self-contained HTML page that opens from disk (no network at view time): the shared
settings listed once, the tables, the figures inlined, links to each run's folder.

``compare`` fills a ``Page``; ``render_page`` turns it into HTML, escaping every value a run folder gave. Each
table sorts by a click on a header (again: reversed) and filters by a text box, with a few lines of inline
JavaScript: no library, no CDN, so the page works offline after copying a sweep folder to a laptop. A Content
Security Policy lets only that script run and only inlined images load, should a value ever slip through.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import re
from dataclasses import dataclass, field


@dataclass
class Cell:
    text: str  # as shown
    # The value a click on the header sorts by. None: in a numeric column the number the text starts with, if
    # any ("61.20 ± 0.40" sorts as 61.2, "-" last); in a text column the text itself.
    sort: float | str | None = None
    href: str | None = None  # a URL relative to the page (a run's folder or file) or http(s); others are dropped


@dataclass
class Table:
    caption: str
    headers: list[str]
    numeric: list[bool]  # per column: right-aligned, and sorted as numbers
    rows: list[list[Cell]]


@dataclass
class Figure:
    caption: str
    png: bytes


@dataclass
class Page:
    title: str
    command: str
    shared: list[tuple[str, str]] = field(default_factory=list)  # settings every run has alike, listed once
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


STYLE = """
:root {
  --text: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --accent: #0969da; --hover: #eef4fc;
  color-scheme: light dark;
}
@media (prefers-color-scheme: dark) {
  :root { --text: #e6edf3; --muted: #9198a1; --line: #3d444d; --soft: #151b23; --accent: #4493f8; --hover: #1c2a3d; }
  body { background: #0d1117; }
}
* { box-sizing: border-box; }
body {
  margin: 0 auto; padding: 2rem 2.5rem 4rem; max-width: 90rem; color: var(--text);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
}
h1 { font-size: 1.6rem; margin: 0 0 0.5rem; }
h2 { font-size: 1.15rem; margin: 0; }
section { margin-top: 2.25rem; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code { font: 0.85rem/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.command { margin: 0; color: var(--muted); }
.command code {
  display: block; margin-top: 0.25rem; padding: 0.5rem 0.75rem; background: var(--soft);
  border: 1px solid var(--line); border-radius: 6px; color: var(--text); white-space: pre-wrap; word-break: break-all;
}
nav { margin-top: 1rem; display: flex; flex-wrap: wrap; gap: 0.25rem 1.25rem; font-size: 0.9rem; }
.hint { margin: 0.25rem 0 0.75rem; color: var(--muted); font-size: 0.85rem; font-weight: normal; }
.settings { display: flex; flex-wrap: wrap; gap: 0.4rem; margin: 0; padding: 0; list-style: none; }
.settings li {
  padding: 0.15rem 0.6rem; border: 1px solid var(--line); border-radius: 999px; background: var(--soft);
  font-size: 0.875rem; overflow-wrap: anywhere;
}
.settings .key { color: var(--muted); }
.scroll { overflow: auto; max-height: 85vh; width: fit-content; max-width: 100%; }
table { border-collapse: separate; border-spacing: 0; min-width: 36rem; font-size: 0.875rem; }
.caption-line { display: flex; align-items: center; flex-wrap: wrap; gap: 0.5rem 1rem; }
.caption-line .name { font-size: 1.15rem; font-weight: 600; margin-right: auto; }
.caption-line input {
  font: inherit; font-size: 0.875rem; padding: 0.25rem 0.6rem; width: 15rem; border: 1px solid var(--line);
  border-radius: 6px; background: transparent; color: inherit;
}
.caption-line input[hidden] { display: none; }
.count { color: var(--muted); font-size: 0.85rem; font-variant-numeric: tabular-nums; }
th, td { padding: 0.35rem 0.75rem; text-align: left; white-space: nowrap; border-bottom: 1px solid var(--line); }
th {
  position: sticky; top: 0; z-index: 1; background: var(--soft); font-weight: 600; padding: 0;
}
th button {
  all: unset; box-sizing: border-box; display: block; width: 100%; padding: 0.45rem 0.75rem; cursor: pointer;
}
th button:focus-visible { outline: 2px solid var(--accent); outline-offset: -2px; }
th button::after { content: "\\2195"; margin-left: 0.35rem; opacity: 0.3; }
th[aria-sort="ascending"] button::after { content: "\\25B2"; opacity: 1; color: var(--accent); }
th[aria-sort="descending"] button::after { content: "\\25BC"; opacity: 1; color: var(--accent); }
th.number, td.number { text-align: right; font-variant-numeric: tabular-nums; }
thead th:first-child, td:first-child { border-left: 1px solid var(--line); }
thead th:last-child, td:last-child { border-right: 1px solid var(--line); }
thead th { border-top: 1px solid var(--line); }
tbody tr:hover td { background: var(--hover); }
td.missing { color: var(--muted); }
figure { margin: 1rem 0 0; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { color: var(--muted); font-size: 0.9rem; margin-top: 0.35rem; }
ul.notes { margin: 0.5rem 0 0; padding-left: 1.25rem; }
"""

# Every ``section.data-table``: a click on a header sorts by that column, a second click reverses; the box keeps
# rows with every word typed in some cell. Cells sort by their data-sort attribute: numbers as numbers, text in
# natural order ("run 2" before "run 10"); cells without one go last in both directions; ties keep page order.
SCRIPT = """
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

function sortKey(cell) {
  const value = cell.dataset.sort;
  if (value === undefined) return null;
  const number = Number(value);
  return Number.isNaN(number) ? value : number;
}

function rank(key) {
  return key === null ? 2 : typeof key === "number" ? 0 : 1;
}

function compareKeys(a, b, direction) {
  if (rank(a) !== rank(b)) return rank(a) - rank(b);
  if (a === null) return 0;
  const order = typeof a === "number" ? (a > b) - (a < b) : collator.compare(a, b);
  return direction * order;
}

function setUp(section) {
  const table = section.querySelector("table");
  const headers = [...table.tHead.rows[0].cells];
  const rows = [...table.tBodies[0].rows];
  const keys = rows.map((row) => [...row.cells].map(sortKey));
  const texts = rows.map((row) => [...row.cells].map((cell) => cell.textContent.toLowerCase()));
  const filter = section.querySelector("input");
  const count = section.querySelector(".count");

  headers.forEach((header, column) => header.addEventListener("click", () => {
    const direction = header.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    headers.forEach((other) => other.removeAttribute("aria-sort"));
    header.setAttribute("aria-sort", direction === 1 ? "ascending" : "descending");
    const order = rows.map((_, index) => index);
    order.sort((a, b) => compareKeys(keys[a][column], keys[b][column], direction) || a - b);
    table.tBodies[0].append(...order.map((index) => rows[index]));
  }));

  filter.hidden = false;  // without this script the box would do nothing, so it stays hidden
  filter.addEventListener("input", () => {
    const words = filter.value.toLowerCase().split(/\\s+/).filter(Boolean);
    let shown = 0;
    rows.forEach((row, index) => {
      const match = words.every((word) => texts[index].some((text) => text.includes(word)));
      row.hidden = !match;
      shown += match;
    });
    const total = rows.length === 1 ? "1 row" : `${rows.length} rows`;
    count.textContent = shown === rows.length ? total : `${shown} of ${total}`;
  });
}

document.querySelectorAll("section.data-table").forEach(setUp);
"""


def csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii") + "'"


# Only this page's own script and style, and images inlined as data: URLs. An injected <script>, onmouseover=
# or <img src="http://..."> would not run or load even if escaping ever failed. Links to run folders still work:
# following a link is not something this policy restricts.
POLICY = (
    f"default-src 'none'; script-src {csp_hash(SCRIPT)}; style-src {csp_hash(STYLE)}; img-src data:; "
    "base-uri 'none'; form-action 'none'"
)

LEADING_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*):")
URL_WHITESPACE = re.compile(r"[\t\n\r]")  # browsers delete these anywhere in a URL: "java\tscript:" runs
CONTROLS_AND_SPACE = "".join(chr(code) for code in range(0x21))
CONTROL = re.compile(r"[\x00-\x1f]")


def escape(value: object) -> str:
    """Text for HTML content and quoted attributes alike: & < > " ' all become entities."""
    return html.escape(str(value), quote=True)


def safe_href(href: str) -> str | None:
    """The link if it is a relative URL (a run's folder or file) or http(s); None for javascript:, data:, file:
    or a host-relative "//host" that a copied page would send to some server."""
    # Read the URL as a browser would: it strips leading and trailing controls and spaces, deletes tabs and
    # newlines anywhere, and takes a backslash for a slash.
    cleaned = URL_WHITESPACE.sub("", href).strip(CONTROLS_AND_SPACE)
    if not cleaned or CONTROL.search(cleaned):
        return None
    scheme = SCHEME.match(cleaned)
    if scheme:
        return cleaned if scheme.group(1).lower() in {"http", "https"} else None
    if cleaned.replace("\\", "/").startswith("//"):
        return None
    return cleaned


def sort_value(cell: Cell, numeric: bool) -> str | None:
    """The cell's data-sort attribute, as JavaScript's Number() reads numbers; None sorts last."""
    value = cell.sort
    if value is None:
        if not numeric:
            return cell.text.strip() or None
        number = LEADING_NUMBER.match(cell.text.strip())
        return number.group(0) if number else None
    if isinstance(value, str):
        return value or None
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def render_cell(cell: Cell, numeric: bool) -> str:
    text = escape(cell.text)
    href = safe_href(cell.href) if cell.href else None
    if href is not None:
        text = f'<a href="{escape(href)}">{text}</a>'
    sort = sort_value(cell, numeric)
    # A number column's "-" (or blank) is muted: it has nothing to sort by, so it also sorts last.
    classes = " ".join(name for name, wanted in (("number", numeric), ("missing", numeric and sort is None)) if wanted)
    attributes = (f' class="{classes}"' if classes else "") + (f' data-sort="{escape(sort)}"' if sort else "")
    return f"<td{attributes}>{text}</td>"


def render_header(header: str, numeric: bool) -> str:
    kind = ' class="number"' if numeric else ""
    name = escape(header)
    return f'<th scope="col"{kind}><button type="button" title="Sort by {name}">{name}</button></th>'


def render_table(table: Table, number: int) -> str:
    if len(table.numeric) != len(table.headers):
        raise ValueError(f"table {table.caption!r}: {len(table.headers)} headers but {len(table.numeric)} flags")
    head = "".join(render_header(header, numeric) for header, numeric in zip(table.headers, table.numeric, strict=True))
    body = "\n".join(
        "<tr>" + "".join(render_cell(cell, numeric) for cell, numeric in zip(row, table.numeric, strict=True)) + "</tr>"
        for row in table.rows
    )
    caption = escape(table.caption)
    rows = f"{len(table.rows)} row" + ("" if len(table.rows) == 1 else "s")
    # The name, the filter box and the hint above the scrolled box, not in the table's caption: a table wider
    # than the window would carry them out of view with its right side.
    return f"""<section class="data-table" id="table-{number}">
<div class="caption-line"><span class="name" id="table-{number}-name">{caption}</span>
<input type="search" placeholder="Filter rows" aria-label="Filter the rows of: {caption}" hidden>
<span class="count" aria-live="polite">{rows}</span></div>
<div class="hint">Click a header to sort by it, again to reverse.</div>
<div class="scroll">
<table aria-labelledby="table-{number}-name">
<thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody>
</table>
</div>
</section>"""


def render_shared(shared: list[tuple[str, str]]) -> str:
    items = "\n".join(f'<li><span class="key">{escape(key)}</span> {escape(value)}</li>' for key, value in shared)
    return f"""<section id="shared">
<h2>Shared settings</h2>
<p class="hint">Every run has these alike; the tables show only the settings that differ.</p>
<ul class="settings">
{items}
</ul>
</section>"""


def render_figures(figures: list[Figure]) -> str:
    blocks = "\n".join(
        f'<figure><img alt="{escape(figure.caption)}" src="data:image/png;base64,'
        f'{base64.b64encode(figure.png).decode("ascii")}"><figcaption>{escape(figure.caption)}</figcaption></figure>'
        for figure in figures
        if figure.png  # compare passes an empty figure when it drew none
    )
    return f'<section id="figures">\n<h2>Figures</h2>\n{blocks}\n</section>' if blocks else ""


def render_notes(notes: list[str]) -> str:
    items = "\n".join(f"<li>{escape(note)}</li>" for note in notes)
    return f'<section id="notes">\n<h2>Notes</h2>\n<ul class="notes">\n{items}\n</ul>\n</section>'


def render_contents(page: Page) -> str:
    """Links to each part, for a page long enough to scroll."""
    links = [(f"table-{number}", table.caption) for number, table in enumerate(page.tables, start=1)]
    links += [("figures", "Figures")] if any(figure.png for figure in page.figures) else []
    links += [("shared", "Shared settings")] if page.shared else []
    links += [("notes", "Notes")] if page.notes else []
    if len(links) < 2:
        return ""
    return "<nav>" + "".join(f'<a href="#{anchor}">{escape(text)}</a>' for anchor, text in links) + "</nav>"


def render_page(page: Page) -> str:
    # What answers the question first (the tables, the figures); what every run has alike after them.
    parts = [
        *(render_table(table, number) for number, table in enumerate(page.tables, start=1)),
        render_figures(page.figures),
        render_shared(page.shared) if page.shared else "",
        render_notes(page.notes) if page.notes else "",
    ]
    body = "\n".join(part for part in parts if part)
    # The script is a module: it runs once the page is parsed, in strict mode, with its names kept to itself.
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{POLICY}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(page.title)}</title>
<style>{STYLE}</style>
</head>
<body>
<header>
<h1>{escape(page.title)}</h1>
<p class="command">Made by<code>{escape(page.command)}</code></p>
{render_contents(page)}
</header>
<main>
{body}
</main>
<script type="module">{SCRIPT}</script>
</body>
</html>
"""
