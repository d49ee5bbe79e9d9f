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

    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
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
