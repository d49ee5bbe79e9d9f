"""The search page in a real headless browser (Debian's chromium + chromedriver) against the live server."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.api.app import create_app
from service.config import PROJECT_ROOT, Settings
from service.engine import Engine
from tests.live_server import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path(shutil.which("chromedriver") or "/usr/bin/chromedriver")
SCREENSHOTS = PROJECT_ROOT / "artifacts" / "browser"
SEED_003 = "seeds/003_517cb5bd72187ee7.txt"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.model,
    pytest.mark.skipif(not CHROMIUM.exists() or not CHROMEDRIVER.exists(),
                       reason="needs Debian's chromium and chromium-driver (make browser-deps installs them)"),
]


@pytest.fixture(scope="module")
def server(seed_settings: Settings, seed_engine: Engine) -> Iterator[str]:
    with LiveServer(create_app(seed_settings, seed_engine)) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ask-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1440,1000", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _severe(driver) -> list[dict]:
    """The browser's error log, less the one expected 404: a service without collections answers
    ``GET /v1/collections`` with 404, and the page then shows no collection picker."""
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"
            and not ("/v1/collections " in e["message"] and "404" in e["message"])]


def test_ask_shows_highlighted_citation_and_opens_the_paragraph(server: str, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    wait = WebDriverWait(driver, 60)
    driver.get(server + "/")
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "5 documents"))

    box = driver.find_element(By.ID, "question")
    box.send_keys("who visited Myanmar?")
    driver.find_element(By.ID, "ask-button").click()
    wait.until(ec.visibility_of_element_located((By.ID, "answer-card")))
    answer = driver.find_element(By.ID, "answer").text
    assert "Liu Zhongyi" in answer

    first = driver.find_elements(By.CSS_SELECTOR, "#citations .citation")[0]
    assert first.get_attribute("data-source") == SEED_003
    paragraph = first.get_attribute("data-paragraph")
    marks = first.find_elements(By.CSS_SELECTOR, ".cite-text mark")
    assert len(marks) == 1 and "Liu Zhongyi" in marks[0].text and marks[0].text in answer
    assert f"{SEED_003} ¶{paragraph}" in first.text

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    first.find_element(By.CSS_SELECTOR, "a.open-doc").click()
    target = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#doc-body .para.target")))
    assert target.get_attribute("data-paragraph") == paragraph
    assert target.get_attribute("id") == f"para-{paragraph}"
    mark = target.find_element(By.TAG_NAME, "mark")
    assert "Liu Zhongyi" in mark.text and mark.is_displayed()
    assert driver.find_element(By.ID, "doc-source").text.startswith(SEED_003)
    # the highlighted paragraph is scrolled into the document panel's view
    in_view = driver.execute_script(
        "const b = document.getElementById('doc-body').getBoundingClientRect();"
        "const m = arguments[0].getBoundingClientRect();"
        "return m.top >= b.top - 1 && m.bottom <= b.bottom + 1;", mark)
    assert in_view
    assert f"doc={SEED_003.replace('/', '%2F')}" in driver.current_url and f"p={paragraph}" in driver.current_url
    driver.save_screenshot(str(SCREENSHOTS / "ask.png"))

    errors = _severe(driver)
    assert not errors, errors


def test_shared_link_opens_answer_and_document(server: str, browser) -> None:
    """A page URL carries the question and the opened paragraph, so a citation link can be shared."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    wait = WebDriverWait(driver, 60)
    driver.get(f"{server}/#q=who+visited+Myanmar%3F&doc={SEED_003}&p=1")
    driver.refresh()  # a hash-only navigation in the same page would not reload it
    target = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#doc-body .para.target")))
    assert target.get_attribute("data-paragraph") == "1"
    wait.until(ec.text_to_be_present_in_element((By.ID, "answer"), "Liu Zhongyi"))
    driver.find_element(By.ID, "doc-close").click()
    assert not driver.find_element(By.ID, "doc-view").is_displayed()


def test_page_asks_for_the_api_key_when_one_is_needed(seed_settings: Settings, seed_engine: Engine, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    settings = seed_settings.model_copy(update={"api_key": "page-key"})
    with LiveServer(create_app(settings, seed_engine)) as url:
        driver = browser
        wait = WebDriverWait(driver, 60)
        driver.get(url + "/")
        driver.find_element(By.ID, "question").send_keys("who visited Myanmar?")
        driver.find_element(By.ID, "ask-button").click()
        key = wait.until(ec.visibility_of_element_located((By.ID, "api-key")))
        assert "API key" in driver.find_element(By.ID, "error").text
        key.send_keys("page-key")
        driver.find_element(By.CSS_SELECTOR, "#key-form button").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "answer"), "Liu Zhongyi"))
        assert not driver.find_element(By.ID, "key-banner").is_displayed()


def _wait(driver, seconds: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds)


def _set_hash(driver, fragment: str) -> None:
    """Edit the URL's hash as a user would in the address bar (a new history entry, no reload)."""
    driver.execute_script("location.hash = arguments[0];", fragment)


def test_the_hash_drives_the_view_and_back_forward_work(server: str, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    driver, wait = browser, _wait(browser)
    driver.get_log("browser")  # what earlier tests left in the log (the key test's 401s) is theirs
    driver.get(server + "/")
    driver.refresh()
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "5 documents"))
    _set_hash(driver, "q=who+visited+Myanmar%3F")
    wait.until(ec.text_to_be_present_in_element((By.ID, "answer"), "Liu Zhongyi"))
    assert driver.find_element(By.ID, "question").get_attribute("value") == "who visited Myanmar?"
    assert len(driver.find_elements(By.CSS_SELECTOR, "#citations .citation")) == 5

    _set_hash(driver, "q=scam+centre+workers+repatriation&k=3")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#citations .citation")) == 3)
    assert driver.find_element(By.ID, "question").get_attribute("value") == "scam centre workers repatriation"
    assert driver.find_element(By.ID, "k").get_attribute("value") == "3"

    driver.back()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#citations .citation")) == 5)
    assert driver.find_element(By.ID, "question").get_attribute("value") == "who visited Myanmar?"
    assert "Liu Zhongyi" in driver.find_element(By.ID, "answer").text
    driver.forward()
    wait.until(lambda d: d.find_element(By.ID, "question").get_attribute("value") == "scam centre workers repatriation")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#citations .citation")) == 3)

    # opening a source is a step in the history too: back closes it again
    driver.find_elements(By.CSS_SELECTOR, "#citations a.open-doc")[0].click()
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#doc-body .para.target")))
    assert "doc=" in driver.current_url
    driver.back()
    wait.until(ec.invisibility_of_element_located((By.ID, "doc-view")))
    assert "doc=" not in driver.current_url
    errors = _severe(driver)
    assert not errors, errors


def test_an_error_replaces_the_answer(server: str, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    driver, wait = browser, _wait(browser)
    driver.get(server + "/#q=who+visited+Myanmar%3F")
    driver.refresh()
    wait.until(ec.text_to_be_present_in_element((By.ID, "answer"), "Liu Zhongyi"))
    _set_hash(driver, "q=who+visited+Myanmar%3F&k=999")  # over ASK_MAX_K: the service answers 422
    wait.until(ec.visibility_of_element_located((By.ID, "error")))
    message = driver.find_element(By.ID, "error").text
    assert "k" in message and "50" in message, message
    assert not driver.find_element(By.ID, "answer-card").is_displayed()
    assert not driver.find_element(By.ID, "citations-section").is_displayed()
    assert driver.find_elements(By.CSS_SELECTOR, "#citations .citation") == []
    _set_hash(driver, "q=who+visited+Myanmar%3F")  # and an answer replaces the error
    wait.until(ec.text_to_be_present_in_element((By.ID, "answer"), "Liu Zhongyi"))
    assert not driver.find_element(By.ID, "error").is_displayed()


def test_status_dot_turns_red_when_the_server_stops(seed_settings: Settings, seed_engine: Engine, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    driver, wait = browser, _wait(browser)
    live = LiveServer(create_app(seed_settings, seed_engine))
    url = live.__enter__()
    try:
        driver.get(url + "/")
        wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "5 documents"))
        assert "ok" in driver.find_element(By.ID, "status").get_attribute("class").split()
        # with one collection (or a service without /v1/collections) there is nothing to pick
        assert not driver.find_element(By.ID, "collection-picker").is_displayed()
    finally:
        live.__exit__(None, None, None)
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "service unavailable"))
    assert "down" in driver.find_element(By.ID, "status").get_attribute("class").split()
    color = driver.execute_script(
        "return getComputedStyle(document.getElementById('status'), '::before').color;")
    assert color == "rgb(180, 35, 24)"  # --danger: the red dot


class _FakeCollectionsApi:
    """The collections and filter contract of issue 16 (the default collection is named ``default``;
    entries carry ``ready``) as a tiny recorded backend, serving the real page.

    It checks what the page sends (routes, filter bodies) and how it shows what comes back (page
    numbers, the collection picker); the real routes' behaviour is the API tests' business. Answers
    are fixtures: they say nothing about retrieval.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []

    def app(self):
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import FileResponse, JSONResponse
        from starlette.routing import Mount, Route
        from starlette.staticfiles import StaticFiles

        from service.api.app import WEB_DIR
        from service.api.middleware import SecurityHeaders

        async def ask(request: Request) -> JSONResponse:
            body = await request.json()
            self.requests.append((request.url.path, body))
            name = request.path_params.get("name")
            if name == "reports":
                cite = {"id": "reports/annual.pdf#p3.2", "source": "reports/annual.pdf", "page": 3, "paragraph": 2,
                        "text": "Revenue rose by a tenth in 2024.", "char_start": 40, "char_end": 72, "score": 0.9,
                        "quote": "Revenue rose by a tenth in 2024.", "quote_start": 40, "quote_end": 72,
                        "title": "Annual report"}
            else:
                cite = {"id": "seeds/a.txt#p2", "source": "seeds/a.txt", "page": None, "paragraph": 2,
                        "text": "A plain text passage.", "char_start": 7, "char_end": 28, "score": 0.5,
                        "quote": "A plain text passage.", "quote_start": 7, "quote_end": 28, "title": "A"}
            return JSONResponse({"question": body["question"], "answer": cite["quote"], "reason": None,
                                 "confidence": 0.8, "citations": [cite]})

        async def document(request: Request) -> JSONResponse:
            self.requests.append((request.url.path, {}))
            text = "Annual report\n\nContents.\n\nRevenue rose by a tenth in 2024.\n"
            paragraphs = [{"page": 1, "paragraph": 1, "char_start": 0, "char_end": 13, "text": "Annual report"},
                          {"page": 1, "paragraph": 2, "char_start": 15, "char_end": 24, "text": "Contents."},
                          {"page": 3, "paragraph": 1, "char_start": 26, "char_end": 38, "text": "Third page."},
                          {"page": 3, "paragraph": 2, "char_start": 40, "char_end": 72,
                           "text": "Revenue rose by a tenth in 2024."}]
            return JSONResponse({"source": "reports/annual.pdf", "title": "Annual report", "sha256": "0" * 64,
                                 "encoding": "utf-8", "text": text, "paragraphs": paragraphs})

        routes = [
            Route("/", lambda request: FileResponse(WEB_DIR / "index.html")),
            Route("/health", lambda request: JSONResponse({"status": "ok", "documents": 7, "chunks": 21,
                                                           "model": "fake-model", "snapshot": "snap-000001"})),
            Route("/v1/collections", lambda request: JSONResponse({"collections": [
                {"name": "default", "default": True, "documents": 7, "chunks": 21, "store": "local", "ready": True},
                {"name": "reports", "default": False, "documents": 2, "chunks": 9, "store": "local", "ready": True},
                {"name": "drafts", "default": False, "documents": 0, "chunks": 0, "store": "local",
                 "ready": False}]})),
            Route("/v1/ask", ask, methods=["POST"]),
            Route("/v1/collections/{name}/ask", ask, methods=["POST"]),
            Route("/v1/collections/{name}/documents/{path:path}", document),
            Mount("/static", StaticFiles(directory=WEB_DIR)),
        ]
        app = Starlette(routes=routes)
        app.add_middleware(SecurityHeaders)  # the page must work under the real CSP
        return app


def test_collection_filter_and_page_numbers_against_the_api_contract(browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select

    fake = _FakeCollectionsApi()
    driver, wait = browser, _wait(browser)
    driver.get_log("browser")  # earlier tests' entries (a stopped server, a 422) are theirs
    with LiveServer(fake.app()) as url:
        driver.get(url + "/")
        driver.refresh()
        picker = wait.until(ec.visibility_of_element_located((By.ID, "collection")))
        assert [o.text for o in Select(picker).options] == ["default (7)", "reports (2)", "drafts (no index yet)"]
        assert Select(picker).first_selected_option.get_attribute("value") == "default"

        # the default collection goes to today's routes, with no filter unless one is set
        driver.find_element(By.ID, "question").send_keys("what is plain?")
        driver.find_element(By.ID, "ask-button").click()
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".cite-source"), "seeds/a.txt ¶2"))
        assert fake.requests[-1] == ("/v1/ask", {"question": "what is plain?", "k": 5})
        assert "p." not in driver.find_element(By.CSS_SELECTOR, ".cite-source").text

        Select(picker).select_by_value("reports")
        driver.find_element(By.CSS_SELECTOR, "#filter-panel summary").click()
        driver.find_element(By.ID, "f-path").send_keys("reports/2024/")
        driver.find_element(By.CSS_SELECTOR, "#f-types input[value=pdf]").click()
        driver.execute_script("document.getElementById('f-after').value = '2024-01-01';"
                              "document.getElementById('f-before').value = '2024-12-31';")
        question = driver.find_element(By.ID, "question")
        question.clear()
        question.send_keys("how did revenue change?")
        driver.find_element(By.ID, "ask-button").click()
        wait.until(lambda d: fake.requests[-1][1].get("question") == "how did revenue change?")
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".cite-source"), "reports/annual.pdf p. 3 ¶2"))
        path, body = fake.requests[-1]
        assert path == "/v1/collections/reports/ask"
        after, before = body["filter"].pop("modified_after"), body["filter"].pop("modified_before")
        assert body == {"question": "how did revenue change?", "k": 5,
                        "filter": {"path": "reports/2024/", "type": ["pdf"]}}
        # local midnights of the first day and of the day after the last, as ISO 8601 instants
        assert driver.execute_script("return new Date(arguments[0]).getTime() === new Date(2024, 0, 1).getTime()"
                                     " && new Date(arguments[1]).getTime() === new Date(2025, 0, 1).getTime();",
                                     after, before)
        assert "— reports/annual.pdf p. 3 ¶2 [1]" in driver.find_element(By.ID, "answer-source").text
        hash_ = driver.execute_script("return location.hash;")
        for part in ("c=reports", "path=reports%2F2024%2F", "type=pdf", "after=2024-01-01", "before=2024-12-31"):
            assert part in hash_

        link = driver.find_element(By.CSS_SELECTOR, "a.open-doc")
        assert link.text == "Open p. 3 ¶2 in the document →"
        link.click()
        target = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#doc-body .para.target")))
        assert (target.get_attribute("data-page"), target.get_attribute("data-paragraph")) == ("3", "2")
        assert target.get_attribute("id") == "para-3-2"
        assert [h.text for h in driver.find_elements(By.CSS_SELECTOR, "#doc-body .page-head")] == ["PAGE 1", "PAGE 3"]
        assert fake.requests[-1][0] == "/v1/collections/reports/documents/reports/annual.pdf"
        assert driver.find_element(By.ID, "doc-source").text == "reports/annual.pdf p. 3 ¶2"
        assert "pg=3" in driver.current_url
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOTS / "collections.png"))

        # the URL alone brings the whole view back: collection, filter, question and the open page
        shared = driver.current_url
        fake.requests.clear()
        driver.get("about:blank")
        driver.get(shared)
        wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#doc-body .para.target")))
        wait.until(lambda d: any(p == "/v1/collections/reports/ask" for p, _ in fake.requests))
        assert Select(driver.find_element(By.ID, "collection")).first_selected_option.get_attribute("value") == "reports"
        assert driver.find_element(By.ID, "f-path").get_attribute("value") == "reports/2024/"
        assert driver.find_element(By.CSS_SELECTOR, "#f-types input[value=pdf]").is_selected()
        resent = next(b for p, b in fake.requests if p == "/v1/collections/reports/ask")
        assert resent["filter"]["path"] == "reports/2024/" and resent["filter"]["type"] == ["pdf"]
        errors = _severe(driver)
        assert not errors, errors
