"""The HTML report (runner.report.page): every value a run folder gave is escaped and the page loads nothing from
outside (plain Python), and in a real browser, headless Chromium driven over the DevTools protocol with only the
standard library, a header click sorts, a second reverses, the box filters, hostile text stays text, the page
draws. The browser tests are marked ``browser`` and skipped where no Chromium is installed."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import numpy
import pytest
from matplotlib import image

from runner import compare
from runner.report.page import Cell, Figure, Page, Table, render_page, safe_href, sort_value

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
# Headless as root on a machine whose network is closed: without the background-networking flags Chromium keeps
# trying (and failing) to reach Google's servers.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-port=0",  # Chromium picks a free port and writes it to DevToolsActivePort
]
TIMEOUT_S = 20.0

SCRIPT_HOSTILE = "<script>alert(1)</script>"
ATTRIBUTE_HOSTILE = '" onmouseover="alert(2)'
BAD_HREFS = [
    "javascript:alert(3)",
    "JaVaScRiPt:alert(3)",
    " javascript:alert(3)",
    "java\tscript:alert(3)",
    "java\nscript:alert(3)",
    "\x01javascript:alert(3)",
    "data:text/html,<script>alert(3)</script>",
    "vbscript:msgbox(3)",
    "file:///etc/passwd",
    "//evil.example/x",
    "\\\\evil.example/x",
    "/\\evil.example/x",
]
RUN_LINK = "https://example.org/runs/2"  # an http(s) link given on purpose, the only one the page may have


# --- a page built by hand ---------------------------------------------------------------------------------------


def figure_png() -> bytes:
    """A small gradient, so the screenshot has more than the page's own colours."""
    gradient = numpy.linspace(0.0, 1.0, 64 * 160).reshape(64, 160)
    buffer = io.BytesIO()
    image.imsave(buffer, gradient, format="png", cmap="viridis")
    return buffer.getvalue()


def runs_table() -> Table:
    """Four runs: negative numbers, missing values, a duration whose text is not a number, a hostile setting."""
    headers = ["run", "activation", "test acc %", "gap %", "train time"]
    rows = [
        [Cell("run 2", href="multirun/2/"), Cell("relu"),
         Cell("61.20", 0.612), Cell("-1.50", -0.015), Cell("2 min", 120)],
        [Cell("run 10", href=RUN_LINK), Cell("gelu"),
         Cell("-"), Cell("3.25", 0.0325), Cell("1 h 2 min", 3720)],
        [Cell("run 1", href="multirun/1/summary.json"), Cell(SCRIPT_HOSTILE),
         Cell("58.00", 0.58), Cell("-12.00", -0.12), Cell("59 s", 59)],
        [Cell("run 3", href=BAD_HREFS[0]), Cell(ATTRIBUTE_HOSTILE),
         Cell("72.50", 0.725), Cell("-"), Cell("-")],
    ]  # fmt: skip
    return Table("One row per run", headers, [False, False, True, True, True], rows)


def groups_table() -> Table:
    headers = ["runs", "activation", "test acc %"]
    rows = [
        [Cell("3", 3), Cell("relu"), Cell("60.10 ± 1.20", 0.601)],
        [Cell("2", 2), Cell("gelu"), Cell("64.00 ± 0.50", 0.64)],
        [Cell("1", 1), Cell("selu"), Cell("-")],
    ]
    return Table("Mean ± std over seeds", headers, [True, False, True], rows)


def hand_page() -> Page:
    return Page(
        title="Comparison of 4 runs",
        command="python -m runner.compare outputs/multirun/2025-01-01 --report outputs/report",
        shared=[("model", "convnet"), ("optimizer", "nesterov"), ("epochs", "30"), ("data", SCRIPT_HOSTILE)],
        tables=[runs_table(), groups_table()],
        figures=[Figure("Learning curves", figure_png())],
        notes=["run 10: diverged at epoch 3", f"run 1: {SCRIPT_HOSTILE}"],
    )


def hostile_page() -> Page:
    """A hostile value in every place a run folder's text can reach."""
    rows = [[Cell(SCRIPT_HOSTILE, sort=ATTRIBUTE_HOSTILE, href=href), Cell(ATTRIBUTE_HOSTILE)] for href in BAD_HREFS]
    rows.append([Cell("quoted", href=f"runs/{ATTRIBUTE_HOSTILE}"), Cell("linked", href=RUN_LINK)])
    return Page(
        title=SCRIPT_HOSTILE,
        command=f"python -m runner.compare '{ATTRIBUTE_HOSTILE}'",
        shared=[(SCRIPT_HOSTILE, ATTRIBUTE_HOSTILE)],
        tables=[Table(SCRIPT_HOSTILE, [SCRIPT_HOSTILE, ATTRIBUTE_HOSTILE], [False, True], rows)],
        figures=[Figure(ATTRIBUTE_HOSTILE, figure_png())],
        notes=[SCRIPT_HOSTILE, ATTRIBUTE_HOSTILE],
    )


# --- plain Python: escaping, links, sort values -----------------------------------------------------------------


class Elements(HTMLParser):
    """Every start tag and its attributes, as a browser's parser reads them."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_every_hostile_value_is_escaped_and_nothing_loads_from_outside():
    text = render_page(hostile_page())
    tags = Elements(text).tags
    assert SCRIPT_HOSTILE not in text and ATTRIBUTE_HOSTILE not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&quot; onmouseover=&quot;alert(2)" in text
    assert [tag for tag, _ in tags].count("script") == 1  # the page's own
    assert not [(tag, name) for tag, attributes in tags for name in attributes if name.startswith("on")]
    hrefs = [attributes["href"] for tag, attributes in tags if "href" in attributes]
    sources = [attributes["src"] for tag, attributes in tags if "src" in attributes]
    assert all(source.startswith("data:image/png;base64,") for source in sources) and sources
    outside = [href for href in hrefs if urllib.parse.urlsplit(href).scheme or href.startswith("//")]
    assert outside == [RUN_LINK]
    assert f"runs/{ATTRIBUTE_HOSTILE}" in hrefs  # a quote in a link stays inside its attribute
    assert text.count("http://") + text.count("https://") == 1  # the run link: no CDN, no font, no tracker
    assert "url(" not in text and "@import" not in text


def test_the_page_keeps_what_compares_own_tests_look_for():
    """compare's tests look for a <table (named by its heading) and for no hostile <script> tag."""
    text = render_page(hand_page())
    assert "<table aria-labelledby=" in text and "<script>" not in text and text.count("<table ") == 2


@pytest.mark.parametrize("href", BAD_HREFS)
def test_a_link_to_anything_but_a_relative_path_or_http_is_dropped(href):
    assert safe_href(href) is None


@pytest.mark.parametrize(
    "href", ["0/", "multirun/0/summary.json", "../runs/a%20b/", "/home/me/run", "#table-1", "http://x.org", "HTTPS://x"]
)
def test_relative_and_http_links_are_kept(href):
    assert safe_href(href) == href


@pytest.mark.parametrize(
    ("cell", "numeric", "expected"),
    [
        (Cell("61.20", 0.612), True, "0.612"),
        (Cell("-1.50", -0.015), True, "-0.015"),
        (Cell("60.10 ± 1.20"), True, "60.10"),  # no sort value given: the number the text starts with
        (Cell("-12"), True, "-12"),
        (Cell("-"), True, None),  # the missing-value dash sorts last
        (Cell("x", float("nan")), True, None),
        (Cell("x", float("-inf")), True, "-Infinity"),
        (Cell("relu"), False, "relu"),
        (Cell(""), False, None),
        (Cell("lr", "0.1"), False, "0.1"),
    ],
)
def test_sort_values(cell, numeric, expected):
    assert sort_value(cell, numeric) == expected


# --- the browser ------------------------------------------------------------------------------------------------


class WebSocket:
    """The client half of RFC 6455, as much as the DevTools protocol needs: text frames, one connection."""

    def __init__(self, url: str):
        parts = urllib.parse.urlsplit(url)
        self.socket = socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT_S)
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        self.socket.sendall(
            f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode("ascii")
        )
        self.reader = self.socket.makefile("rb")
        status = self.reader.readline()
        if b" 101 " not in status:
            raise ConnectionError(f"DevTools refused the WebSocket: {status!r}")
        while self.reader.readline() not in (b"\r\n", b""):
            pass  # the rest of the handshake's headers

    def send(self, text: str) -> None:
        payload = text.encode("utf-8")
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x81, 0x80 | length)  # FIN + text; masked, as a client must
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, length)
        mask = os.urandom(4)
        self.socket.sendall(header + mask + bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload)))

    def receive(self) -> str:
        message = b""
        while True:
            first, second = self.read(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self.read(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self.read(8))
            payload = self.read(length)  # a server never masks
            opcode = first & 0x0F
            if opcode == 0x8:
                raise ConnectionError("Chromium closed the DevTools connection")
            if opcode in (0x9, 0xA):
                continue  # ping or pong: Chromium sends none unasked
            message += payload  # a text frame or its continuation (a screenshot may come in several)
            if first & 0x80:
                return message.decode("utf-8")

    def read(self, count: int) -> bytes:
        data = self.reader.read(count)
        if len(data) < count:
            raise ConnectionError("the DevTools connection ended mid-frame")
        return data

    def close(self) -> None:
        self.reader.close()
        self.socket.close()


# Before any of the page's own script: record what a dialog or a blocked script would have done.
WATCH = """
window.dialogs = [];
for (const name of ["alert", "confirm", "prompt"]) {
  window[name] = (message) => window.dialogs.push(String(message));
}
window.violations = [];
document.addEventListener("securitypolicyviolation", (event) => window.violations.push(event.violatedDirective));
"""


class Chromium:
    """One headless Chromium and its first tab, driven with DevTools commands."""

    def __init__(self, executable: str, folder: Path):
        profile, self.log = folder / "profile", folder / "chromium.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"], stdout=log, stderr=log
            )
        self.calls = 0
        try:
            port = self.wait_for_port(profile / "DevToolsActivePort")
            self.socket = WebSocket(self.page_socket_url(port))
            self.call("Page.enable")  # without it, Chromium keeps the script below but never runs it
            self.call("Page.addScriptToEvaluateOnNewDocument", source=WATCH)
            # A window's frame takes its share of --window-size even headless: size the page itself instead.
            self.call("Emulation.setDeviceMetricsOverride", width=1280, height=1600, deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.stop()
            raise

    def wait_for_port(self, path: Path) -> int:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Chromium exited at once with status {self.process.returncode}:\n{log}")
            lines = path.read_text().splitlines() if path.exists() else []
            if lines and lines[0].isdigit():
                return int(lines[0])
            time.sleep(0.05)
        raise TimeoutError(f"Chromium wrote no {path.name} in {TIMEOUT_S:.0f} s; see {self.log}")

    @staticmethod
    def page_socket_url(port: int) -> str:
        # http.client rather than urllib.request, which would send localhost through any http_proxy set.
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
        connection.request("GET", "/json/list")
        targets = json.loads(connection.getresponse().read())
        connection.close()
        return next(target["webSocketDebuggerUrl"] for target in targets if target["type"] == "page")

    def call(self, method: str, **params) -> dict:
        self.calls += 1
        self.socket.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.receive())
            if message.get("id") == self.calls:  # anything else is an event, which no test here waits for
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, path: Path) -> None:
        url = path.as_uri()
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + TIMEOUT_S
        while self.evaluate(f"location.href !== {json.dumps(url)} || document.readyState !== 'complete'"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not load in {TIMEOUT_S:.0f} s")
            time.sleep(0.02)

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element, as a person's would land."""
        x, y = self.evaluate(
            f"(() => {{ const element = document.querySelector({json.dumps(selector)});"
            " element.scrollIntoView({block: 'center'}); const box = element.getBoundingClientRect();"
            " return [box.x + box.width / 2, box.y + box.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def type_into(self, selector: str, text: str) -> None:
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", text=text)

    def column(self, table: int, header: str) -> list[str]:
        """The shown rows' cells under ``header``, top to bottom."""
        return self.evaluate(
            f"(() => {{ const table = document.querySelector('#table-{table} table');"
            f" const name = {json.dumps(header)};"
            " const column = [...table.tHead.rows[0].cells].findIndex((cell) => cell.textContent === name);"
            " return [...table.tBodies[0].rows].filter((row) => !row.hidden)"
            ".map((row) => row.cells[column].textContent); })()"
        )

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def stop(self) -> None:
        if getattr(self, "socket", None):
            try:
                self.call("Browser.close")
            except (OSError, ConnectionError, RuntimeError):
                pass  # it may close the connection before it answers
            self.socket.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no Chromium: install it (apt-get install chromium) to run the browser tests")
    browser = Chromium(CHROMIUM, tmp_path_factory.mktemp("chromium"))
    yield browser
    browser.stop()


@pytest.fixture
def hand_report(tmp_path) -> Path:
    path = tmp_path / "index.html"
    path.write_text(render_page(hand_page()), encoding="utf-8")
    return path


def header(table: int, name: str) -> str:
    position = {1: runs_table(), 2: groups_table()}[table].headers.index(name) + 1
    return f"#table-{table} th:nth-child({position})"


@pytest.mark.browser
def test_a_header_click_sorts_and_a_second_reverses(chromium, hand_report):
    chromium.open(hand_report)
    assert chromium.column(1, "run") == ["run 2", "run 10", "run 1", "run 3"]  # as compare ordered them
    chromium.click(header(1, "test acc %"))
    assert chromium.column(1, "test acc %") == ["58.00", "61.20", "72.50", "-"]  # the missing value last
    chromium.click(header(1, "test acc %"))
    assert chromium.column(1, "test acc %") == ["72.50", "61.20", "58.00", "-"]  # reversed, missing still last
    chromium.click(header(1, "gap %"))
    assert chromium.column(1, "gap %") == ["-12.00", "-1.50", "3.25", "-"]  # negatives as numbers, not text
    chromium.click(header(1, "train time"))
    assert chromium.column(1, "train time") == ["59 s", "2 min", "1 h 2 min", "-"]  # by data-sort, not the text
    chromium.click(header(1, "run"))
    assert chromium.column(1, "run") == ["run 1", "run 2", "run 3", "run 10"]  # text in natural order
    chromium.click(header(1, "run"))
    assert chromium.column(1, "run") == ["run 10", "run 3", "run 2", "run 1"]
    assert chromium.evaluate(f"document.querySelector('{header(1, 'run')}').getAttribute('aria-sort')") == "descending"

    # Each table sorts on its own.
    chromium.click(header(2, "test acc %"))
    assert chromium.column(2, "activation") == ["relu", "gelu", "selu"]
    chromium.click(header(2, "test acc %"))
    assert chromium.column(2, "activation") == ["gelu", "relu", "selu"]
    assert chromium.column(1, "run") == ["run 10", "run 3", "run 2", "run 1"]
    assert chromium.evaluate("window.violations") == []  # the policy let the page's own script run


@pytest.mark.browser
def test_the_box_filters_rows_by_any_cells_text(chromium, hand_report):
    chromium.open(hand_report)
    box = "#table-1 input"
    assert chromium.evaluate(f"document.querySelector('{box}').hidden") is False  # shown once the script runs
    chromium.type_into(box, "ELU")
    assert chromium.column(1, "run") == ["run 2", "run 10"]  # relu, gelu; case does not matter
    chromium.type_into(box, " 61")
    assert chromium.column(1, "run") == ["run 2"]  # every word, each in some cell
    assert chromium.evaluate("document.querySelector('#table-1 .count').textContent") == "1 of 4 rows"
    assert chromium.column(2, "activation") == ["relu", "gelu", "selu"]  # the other table untouched
    chromium.evaluate(f"document.querySelector('{box}').value = ''")
    chromium.type_into(box, "script")
    assert chromium.column(1, "activation") == [SCRIPT_HOSTILE]  # the hostile value, as text


@pytest.mark.browser
def test_the_watch_sees_a_dialog_and_a_blocked_script(chromium, tmp_path):
    """The checks below could fail: an unescaped value would be caught running, or blocked by the page's policy."""
    loose = tmp_path / "loose.html"
    loose.write_text(f"<!DOCTYPE html><p>{SCRIPT_HOSTILE}</p>")
    chromium.open(loose)
    assert chromium.evaluate("window.dialogs") == ["1"]
    guarded = tmp_path / "guarded.html"
    guarded.write_text(render_page(hand_page()).replace("<main>", f"<main>{SCRIPT_HOSTILE}"))
    chromium.open(guarded)
    assert chromium.evaluate("window.dialogs") == [] and chromium.evaluate("window.violations") == ["script-src-elem"]


@pytest.mark.browser
def test_hostile_values_stay_text_and_links_lead_to_run_folders(chromium, hand_report):
    chromium.open(hand_report)
    assert chromium.evaluate("window.dialogs") == []
    assert chromium.evaluate("document.scripts.length") == 1
    assert chromium.evaluate("document.querySelectorAll('[onmouseover]').length") == 0
    shown = chromium.evaluate("document.body.innerText")
    assert SCRIPT_HOSTILE in shown and ATTRIBUTE_HOSTILE in shown
    links = chromium.evaluate("[...document.querySelectorAll('td a')].map((link) => link.getAttribute('href'))")
    assert links == ["multirun/2/", RUN_LINK, "multirun/1/summary.json"]  # run 3's javascript: link dropped
    resolved = chromium.evaluate("document.querySelector('td a').href")  # relative to the page's own folder
    assert resolved == hand_report.parent.joinpath("multirun", "2").as_uri() + "/"


@pytest.mark.browser
def test_the_page_draws(chromium, hand_report, tmp_path):
    chromium.open(hand_report)
    assert chromium.evaluate("[...document.images].every((picture) => picture.complete && picture.naturalWidth > 0)")
    path = tmp_path / "page.png"
    path.write_bytes(chromium.screenshot())
    pixels = image.imread(path)
    assert pixels.shape[:2] == (1600, 1280)
    channels = (pixels * 255).round().astype(numpy.uint32)  # one integer a colour: unique() in 1-D is fast
    packed = sum(channels[..., index] << (8 * index) for index in range(channels.shape[-1]))
    colours, counts = numpy.unique(packed, return_counts=True)
    assert len(colours) > 50 and counts.max() < 0.98 * counts.sum()  # text, lines, a figure: not a blank page


def write_run(folder: Path, activation: str, accuracies: list[float]) -> None:
    """A run folder as runner.loop leaves it, reduced to what compare reads."""
    folder.mkdir(parents=True)
    history = [{"epoch": epoch, "test_acc": value} for epoch, value in enumerate(accuracies, start=1)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in history))
    summary = {
        "status": "completed",
        "test_acc": accuracies[-1],
        "best_test_acc": max(accuracies),
        "epochs_completed": len(accuracies),
        "choices": {"model": "convnet", "activation": activation},
        "overrides": [f"activation={activation}", "seed=0"],
        "seed": 0,
    }
    (folder / "summary.json").write_text(json.dumps(summary))


@pytest.mark.browser
def test_the_report_compare_writes_sorts_in_the_browser(chromium, tmp_path, capsys):
    sweep = tmp_path / "multirun"
    write_run(sweep / "0", "relu", [0.9, 0.5])  # best first (compare's order) differs from last-epoch order
    write_run(sweep / "1", "gelu", [0.6, 0.6])
    write_run(sweep / "2", "selu", [0.7, 0.7])
    assert compare.main([str(sweep), "--report", str(tmp_path / "report")]) == 0
    capsys.readouterr()
    chromium.open(tmp_path / "report" / "index.html")
    assert chromium.column(1, "activation") == ["relu", "selu", "gelu"]  # by best test accuracy
    test_accuracy = chromium.evaluate(
        "[...document.querySelectorAll('#table-1 th')].findIndex((cell) => cell.textContent === 'test acc %')"
    )
    chromium.click(f"#table-1 th:nth-child({test_accuracy + 1})")
    assert chromium.column(1, "activation") == ["relu", "gelu", "selu"]  # 50 < 60 < 70
    chromium.click(f"#table-1 th:nth-child({test_accuracy + 1})")
    assert chromium.column(1, "activation") == ["selu", "gelu", "relu"]


@pytest.mark.browser
def test_a_table_wider_than_the_window_keeps_its_name_and_filter_box_in_view(chromium, tmp_path):
    """Forty columns scroll inside their box; the table's name, filter box and row count stay on the page."""
    headers = [f"setting {index}" for index in range(40)]
    wide = Table("A sweep of forty settings, each a column", headers, [False] * 40, [[Cell("value")] * 40])
    page = tmp_path / "wide.html"
    page.write_text(render_page(Page("Wide", "python -m runner.compare wide", [], [wide], [], [])), encoding="utf-8")
    chromium.open(page)
    width = chromium.evaluate("document.documentElement.clientWidth")
    assert chromium.evaluate("document.querySelector('#table-1 table').scrollWidth") > width  # it is wider
    for selector in ("#table-1 .name", "#table-1 input", "#table-1 .count"):
        right = chromium.evaluate(f"document.querySelector('{selector}').getBoundingClientRect().right")
        assert 0 < right <= width, selector
