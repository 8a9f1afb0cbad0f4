"""The web app in a real browser: Debian's chromium driven by Playwright, against the real stack
(nginx → gunicorn origin → Redis + S3 through moto) started by the e2e fixtures.

What a person does: pick, drop or paste an image, read its lines over the image, hover, copy,
send it again, send a bad file, open the shareable page; axe-core finds no critical or serious
problem in any of these states (light and dark). Screenshots of each state go to var/screenshots/.
"""
from __future__ import annotations

import base64
import io
import re
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from PIL import Image, ImageDraw, ImageFont

from tests.servers import REPO_ROOT, NginxServer

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO_ROOT / "var" / "screenshots"
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
NOTO_CJK = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
TIMEOUT_MS = 120_000  # a cold recognition on two busy cores, with margin

try:
    from playwright import sync_api as playwright_api
except ImportError as exc:  # a missing test dependency fails, it never skips (make test installs it)
    raise ImportError(f"{exc}: run `make test` (it installs the test extra: playwright, "
                      f"axe-playwright-python)") from exc


def render(lines: list[str], *, font: Path = DEJAVU, size: int = 30) -> bytes:
    """Dark text on white, one line per entry, as a PNG (made here, never downloaded)."""
    if not font.exists():
        pytest.fail(f"{font} missing: run `make test` (it installs the fonts)")
    face = ImageFont.truetype(str(font), size)
    widths = [face.getbbox(t)[2] for t in lines]
    step = int(size * 1.9)
    img = Image.new("RGB", (max(widths) + 2 * size, step * len(lines) + size), "white")
    draw = ImageDraw.Draw(img)
    for i, text in enumerate(lines):
        draw.text((size, size // 2 + i * step), text, font=face, fill=(20, 20, 20))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


INVOICE = ["Invoice No. 2026-0042", "Total due: $1,234.56"]
RECEIPT = ["Receipt 7781 paid in full", "Thank you for shopping"]
CHINESE = ["发票号码 12345678", "金额合计 人民币"]


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("chromium missing: apt-get install -y chromium (or run `make test`)")
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh profile every run
    with playwright_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-dev-shm-usage", "--no-first-run"],
            viewport={"width": 1280, "height": 900}, locale="en-US",
            permissions=["clipboard-read", "clipboard-write"])
        context.set_default_timeout(TIMEOUT_MS)
        yield context
        context.close()


@pytest.fixture
def page(browser_context: Any, nginx: NginxServer) -> Iterator[Any]:
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" and "favicon" not in msg.text
            and "status of 415" not in msg.text else None)
    page.goto(nginx.url + "/")
    yield page
    page.close()
    assert not errors, f"the page logged errors: {errors}"


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def axe_check(page: Any, state: str) -> None:
    from axe_playwright_python.sync_playwright import Axe

    violations = Axe().run(page).response["violations"]
    bad = [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
           for v in violations if v.get("impact") in ("critical", "serious")]
    assert not bad, f"axe-core on the {state}: " + "; ".join(bad)


def newest_card(page: Any, before: int) -> Any:
    """The card a new upload added (cards are prepended), once it has finished either way."""
    page.wait_for_function("n => document.querySelectorAll('[data-testid=card]').length > n", arg=before)
    card = page.locator("[data-testid=card]").first
    page.wait_for_function("el => el.dataset.state === 'done' || el.dataset.state === 'error'",
                           arg=card.element_handle(), timeout=TIMEOUT_MS)
    return card


def cards(page: Any) -> int:
    return page.locator("[data-testid=card]").count()


def pick(page: Any, name: str, data: bytes, mime: str = "image/png") -> Any:
    before = cards(page)
    page.get_by_test_id("file-input").set_input_files(files=[{"name": name, "mimeType": mime, "buffer": data}])
    return newest_card(page, before)


def drop(page: Any, name: str, data: bytes) -> Any:
    before = cards(page)
    page.evaluate("""([b64, name]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], name, { type: "image/png" }));
        const zone = document.querySelector("[data-testid=drop-zone]");
        for (const type of ["dragenter", "dragover", "drop"]) {
            zone.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
        }
    }""", [base64.b64encode(data).decode(), name])
    return newest_card(page, before)


def paste(page: Any, data: bytes) -> Any:
    before = cards(page)
    page.evaluate("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "image.png", { type: "image/png" }));
        document.dispatchEvent(new ClipboardEvent("paste", { bubbles: true, cancelable: true, clipboardData: dt }));
    }""", base64.b64encode(data).decode())
    return newest_card(page, before)


def shown_lines(card: Any) -> list[str]:
    return [t.strip() for t in card.locator("[data-testid=line-text]").all_inner_texts()]


def result_of(nginx: NginxServer, card: Any) -> dict:
    key = card.get_attribute("data-key")
    assert key, "a finished card names its result key"
    r = requests.get(f"{nginx.url}/results/{key}", timeout=30)
    assert r.status_code == 200
    return r.json()


def assert_card_matches(card: Any, result: dict) -> None:
    """Text shown = the result's lines; one polygon per line, each with its line's index."""
    assert card.get_attribute("data-state") == "done", card.inner_text()
    assert shown_lines(card) == [line["text"].strip() for line in result["lines"]]
    n = len(result["lines"])
    assert n >= 1
    assert card.locator("[data-testid=overlay] polygon[data-line]").count() == n
    assert card.locator("[data-testid=line][data-line]").count() == n
    assert sorted(int(x) for x in card.locator("[data-testid=overlay] polygon[data-line]")
                  .evaluate_all("els => els.map((e) => e.dataset.line)")) == list(range(n))
    # word boxes, when the result has them, are drawn too (thinner, not counted as lines)
    words = sum(len(line.get("words") or []) for line in result["lines"])
    assert card.locator("[data-testid=overlay] [data-testid=word]").count() == words


def is_active(locator: Any) -> bool:
    return "active" in (locator.get_attribute("class") or "").split()


def wait_live(page: Any, text: str) -> None:
    """Until the live region (what a screen reader announces) contains `text`."""
    page.wait_for_function("t => document.querySelector('[data-testid=live]').textContent.includes(t)", arg=text)


def clipboard(page: Any) -> str:
    return page.evaluate("navigator.clipboard.readText()")


# ---------------------------------------------------------------- the tests
def test_home_page_is_accessible_and_fits_a_phone(page: Any, browser_context: Any, nginx: NginxServer) -> None:
    assert page.title().endswith("ocr-origin")
    assert page.get_by_label("Choose images").get_attribute("data-testid") == "file-input"  # labelled
    axe_check(page, "home page")
    shot(page, "home")
    phone = browser_context.new_page()
    phone.set_viewport_size({"width": 390, "height": 844})
    phone.goto(nginx.url + "/")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    for target in phone.locator("button:visible, label.pick, header a, footer a").all():
        box = target.bounding_box()
        assert box and box["height"] >= 44, f"touch target under 44 px: {target.inner_text()!r} {box}"
    shot(phone, "home-phone")
    phone.close()


def test_keyboard_reaches_the_picker_with_a_visible_focus(page: Any) -> None:
    for _ in range(8):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == "file":
            break
    else:
        raise AssertionError("Tab never reached the file input")
    outline = page.evaluate("getComputedStyle(document.querySelector('label.pick')).outlineStyle")
    assert outline not in ("none", ""), "the picker shows no focus"


def test_upload_by_picker_shows_text_polygons_hover_and_copy(page: Any, nginx: NginxServer) -> None:
    card = pick(page, "invoice.png", render(INVOICE))
    result = result_of(nginx, card)
    assert_card_matches(card, result)
    assert "Invoice" in " ".join(shown_lines(card))
    summary = card.get_by_test_id("card-summary").inner_text()
    assert summary.startswith("Recognised in") or summary.startswith("Reused"), summary

    line0 = card.locator("[data-testid=line][data-line='0']")
    poly0 = card.locator("[data-testid=overlay] polygon[data-line='0']")
    assert not is_active(poly0)
    line0.hover()
    assert is_active(poly0) and is_active(line0)
    if len(result["lines"]) > 1:  # and the reverse: a polygon lights its line
        poly1 = card.locator("[data-testid=overlay] polygon[data-line='1']")
        poly1.hover()
        assert is_active(card.locator("[data-testid=line][data-line='1']")) and not is_active(poly0)
    line0.focus()  # keyboard focus does the same as hovering
    assert is_active(poly0)

    line0.click()
    assert clipboard(page) == result["lines"][0]["text"]
    card.get_by_test_id("copy-all").click()
    wait_live(page, "Copied all")
    assert clipboard(page) == result["text"]
    axe_check(page, "result")
    line0.hover()  # the screenshot shows a line and its polygon lit together
    shot(page, "result")

    again = pick(page, "invoice-again.png", render(INVOICE))
    assert again.get_attribute("data-key") == card.get_attribute("data-key")
    assert again.get_by_test_id("card-summary").inner_text().startswith(
        "Reused an earlier result (identical image) in")
    assert again.get_attribute("data-match") == "exact"
    shot(page, "reused")

    # The same picture re-encoded as a JPEG: other pixels, a verified near duplicate.
    buf = io.BytesIO()
    Image.open(io.BytesIO(render(INVOICE))).convert("RGB").save(buf, format="JPEG", quality=90)
    near = pick(page, "invoice.jpg", buf.getvalue(), "image/jpeg")
    assert near.get_attribute("data-key") == card.get_attribute("data-key")
    assert near.get_attribute("data-match") == "near"
    assert near.get_by_test_id("card-summary").inner_text().startswith(
        "Reused an earlier result (near-duplicate image) in")


def test_a_tilted_scan_is_read_straightened(page: Any, nginx: NginxServer) -> None:
    import numpy as np

    from ocr_core.skew import tilt

    lines = ["Invoice No. 2026-0117", "Total due: $88.20", "Paid by card 4411", "Thank you"]
    upright = np.asarray(Image.open(io.BytesIO(render(lines))).convert("RGB"))
    buf = io.BytesIO()
    Image.fromarray(tilt(upright, 5.0)).save(buf, format="PNG")      # scanned 5 degrees off
    card = pick(page, "tilted-scan.png", buf.getvalue())
    result = result_of(nginx, card)
    assert abs(result["skew"] - 5.0) <= 0.5, result["skew"]
    assert_card_matches(card, result)
    assert "Total due: $88.20" in shown_lines(card)
    assert re.search(r"tilt of [45]\.\d° straightened", card.get_by_test_id("card-detail").inner_text())


def test_upload_by_drop_and_by_paste(page: Any, nginx: NginxServer) -> None:
    dropped = drop(page, "receipt.png", render(RECEIPT))
    assert_card_matches(dropped, result_of(nginx, dropped))
    assert "Receipt" in " ".join(shown_lines(dropped))

    pasted = paste(page, render(CHINESE, font=NOTO_CJK))
    result = result_of(nginx, pasted)
    assert_card_matches(pasted, result)
    assert pasted.get_by_test_id("card-title").inner_text().startswith("pasted-")
    han = [line for line in result["lines"] if any("\u4e00" <= ch <= "\u9fff" for ch in line["text"])]
    assert han, result["text"]
    assert pasted.locator("[data-testid=line-text][lang=zh]").count() == len(han)


def test_a_queued_upload_is_followed_until_its_result_shows_with_byte_progress(page: Any,
                                                                               nginx: NginxServer) -> None:
    """An upload answered `202 Accepted` is followed at its job location until the result shows,
    and the upload's bytes are reported while they go. The 202 is the real server's: this
    browser's POST asks for it (`Prefer: respond-async`), as a busy queue would answer."""
    posts: list[int] = []
    job_gets: list[int] = []
    page.route("**/ocr?format=json", lambda route: route.continue_(
        headers={**route.request.headers, "prefer": "respond-async"}))
    page.on("response", lambda r: posts.append(r.status) if r.request.method == "POST" and "/ocr?" in r.url
            else job_gets.append(r.status) if "/jobs/" in r.url else None)
    # Every status text and progress value the card shows, however briefly.
    page.evaluate("""() => {
        window.seen = { status: [], progress: [] };
        new MutationObserver((records) => {
            for (const r of records) {
                if (r.type === "attributes") { window.seen.progress.push(r.target.getAttribute("value")); continue; }
                if (r.target.dataset?.testid !== "card-status") continue;  // (a replaced text has no parent now)
                for (const n of r.addedNodes) if (n.nodeType === Node.TEXT_NODE) window.seen.status.push(n.data);
            }
        }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["value"] });
    }""")
    tag = uuid.uuid4().hex[:8].upper()  # new content: a MISS (a stored result would answer 200)
    card = pick(page, "queued.png", render([f"Queued scan {tag}", "Total due: $9,876.54"]))
    seen = page.evaluate("window.seen")
    assert posts == [202], posts  # queued, not answered in the request
    assert job_gets and set(job_gets) <= {200, 303}, job_gets  # the job location, followed to the result
    assert_card_matches(card, result_of(nginx, card))
    assert card.get_attribute("data-match") == "miss"
    assert any(tag in line for line in shown_lines(card)), shown_lines(card)
    status = seen["status"]
    assert any(re.fullmatch(r"Uploading [\d.]+ (bytes|KiB|MiB) of [\d.]+ (bytes|KiB|MiB)…", t) for t in status), status
    assert "100" in seen["progress"], seen["progress"]  # every byte sent
    assert any(t.startswith("Waiting in the queue") for t in status), status
    assert status.index(next(t for t in status if t.startswith("Waiting in the queue"))) > \
        status.index(next(t for t in status if t.startswith("Uploading"))), status


def test_a_bad_file_shows_a_readable_error(page: Any) -> None:
    card = pick(page, "notes.png", b"these are not the pixels you are looking for")
    assert card.get_attribute("data-state") == "error"
    message = card.get_by_test_id("card-error").inner_text()
    assert "notes.png" in message and "not an image we can decode" in message, message
    wait_live(page, "not an image")
    axe_check(page, "error")
    shot(page, "error")


def test_view_page_renders_the_same_result(page: Any, browser_context: Any, nginx: NginxServer) -> None:
    card = pick(page, "invoice.png", render(INVOICE))
    result = result_of(nginx, card)
    link = card.get_by_test_id("view-link").get_attribute("href")
    assert link == f"/view/{result['key']}"
    assert card.get_by_test_id("json-link").get_attribute("target") == "_blank"

    view = browser_context.new_page()
    view.goto(nginx.url + link)
    shown = view.locator("[data-testid=card]").first
    view.wait_for_function("el => el.dataset.state === 'done' || el.dataset.state === 'error'",
                           arg=shown.element_handle())
    assert_card_matches(shown, result)
    assert view.get_by_test_id("card-image").get_attribute("src") == f"/results/{result['key']}/thumbnail.jpg"
    assert view.evaluate("document.querySelector('[data-testid=card-image]').naturalWidth") > 0
    axe_check(view, "view page")
    shot(view, "view")
    view.emulate_media(color_scheme="dark")
    axe_check(view, "view page (dark)")
    shot(view, "view-dark")
    view.set_viewport_size({"width": 390, "height": 844})  # a phone: the card fits, no sideways scroll
    assert view.evaluate("document.documentElement.scrollWidth") <= 390
    for target in view.locator("[data-testid=card] button:visible, [data-testid=card] a.button:visible").all():
        box = target.bounding_box()
        assert box and box["height"] >= 44 and box["width"] >= 44, f"small touch target {target.inner_text()!r}"
    shot(view, "view-phone")
    view.close()


def test_history_lists_and_searches_this_browsers_uploads(page: Any) -> None:
    pick(page, "receipt.png", render(RECEIPT))
    page.reload()
    items = page.get_by_test_id("history-item")
    assert items.count() >= 1
    page.get_by_test_id("history-search").fill("receipt.png")
    assert items.count() >= 1 and all("receipt.png" in t for t in items.all_inner_texts())
    page.get_by_test_id("history-search").fill("no upload has this name")
    assert items.count() == 0
    page.emulate_media(color_scheme="dark")
    page.get_by_test_id("history-search").fill("")
    axe_check(page, "home page with history (dark)")
    shot(page, "home-dark")


def test_docs_render_offline(page: Any, nginx: NginxServer) -> None:
    requested: list[str] = []
    page.on("request", lambda req: requested.append(req.url))
    page.goto(nginx.url + "/docs")
    assert page.get_by_test_id("operation").count() >= 8
    assert all(url.startswith(nginx.url) for url in requested), requested
    axe_check(page, "API docs")


def test_form_works_without_javascript(browser_context: Any, nginx: NginxServer, tmp_path: Path) -> None:
    """Script blocked: the plain form posts to /ocr and the browser follows the 303 to the result."""
    no_js = browser_context.new_page()
    no_js.route("**/static/app.*.js", lambda route: route.abort())
    no_js.goto(nginx.url + "/")
    assert no_js.evaluate("document.documentElement.classList.contains('js')") is False
    path = tmp_path / "invoice.png"
    path.write_bytes(render(INVOICE))
    no_js.get_by_test_id("file-input").set_input_files(str(path))
    with no_js.expect_navigation():
        no_js.get_by_test_id("submit").click()
    assert "/results/" in no_js.url
    assert "Invoice" in no_js.inner_text("body")
    no_js.close()


def test_assets_are_cached_by_nginx(nginx: NginxServer) -> None:
    html = requests.get(nginx.url + "/", timeout=30).text
    asset = re.search(r'src="(/static/app\.[0-9a-f]{10}\.js)"', html)
    assert asset, "the page names its script by content hash"
    first, second = (requests.get(nginx.url + asset.group(1), timeout=30) for _ in range(2))
    assert first.status_code == second.status_code == 200
    assert second.headers.get("X-Cache-Status") == "HIT"
    assert second.headers["Cache-Control"] == "public, max-age=31536000, immutable"
