"""The monitors' digest (#15.6), opened in a real headless Chromium.

The demo trial is loaded as two sites (subjects 21-40 renamed to site 02), synced, and a few
queries moved through their lifecycle as a site and a monitor would; `ecrf queries report`
writes the page from an API URL that carries a user name and password, which must not reach
the page. Chromium comes from the system's packages (Debian `chromium` and `chromium-driver`,
installed by scripts/test when missing); the browser tests skip, saying why, only when no
browser can be started.
"""
from __future__ import annotations

import re
import shutil
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest
from click.testing import CliRunner
from redcap import Project

from sync.cli import cli
from sync.demo.data import demo_records
from sync.digest.links import data_entry_link, public_base
from sync.job import run_sync
from tests.trials import ROOT, deployed_trial

KEYS = ["record_id", "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance"]


def two_sites() -> pd.DataFrame:
    records = demo_records(40)
    number = records["record_id"].str.split("-").str[1].astype(int)
    second = number > 20
    records.loc[second, "record_id"] = "02-" + number[second].map("{:03d}".format)
    return records


def export(project: Project) -> pd.DataFrame:
    return pd.DataFrame(project.export_records(format_type="json")).fillna("").astype(str)


@pytest.fixture(scope="module")
def digest(redcap_server, tmp_path_factory):
    """(page path, the dq_query rows REDCap holds, events, API URL with credentials, pid)."""
    folder = tmp_path_factory.mktemp("digest")
    settings = deployed_trial(redcap_server, folder, two_sites())
    token = settings.redcap_api_token.get_secret_value()
    run_sync(settings)
    project = Project(redcap_server.url, token)
    queries = export(project)
    queries = queries[queries["redcap_repeat_instrument"] == "dq_query"]
    answered, closed = queries.iloc[0], queries.iloc[-1]
    project.import_records([
        {**answered[KEYS].to_dict(), "dq_status": "2", "dq_response": "Checked <b>source</b>: correct"},
        {**closed[KEYS].to_dict(), "dq_status": "3"}])
    url = redcap_server.url.replace("http://", "http://monitor:s3cret@")
    config = folder / "ecrf.toml"
    config.write_text(f'redcap_dir = "{ROOT / "redcap"}"\nstate_path = "{folder / "state.sqlite"}"\n')
    out = folder / "queries.html"
    result = CliRunner().invoke(cli, ["queries", "report", "--out", str(out), "--config",
                                      str(config), "--allow-url-credentials"],
                                env={"REDCAP_API_URL": url, "REDCAP_API_TOKEN": token})
    assert result.exit_code == 0, result.output
    rows = export(project)
    return (out, rows[rows["redcap_repeat_instrument"] == "dq_query"], project.export_events(),
            url, str(project.export_project_info()["project_id"]))


def test_digest_is_one_self_contained_file_without_credentials(digest):
    page_path, queries, _, url, _ = digest
    page = page_path.read_text(encoding="utf-8")
    assert "s3cret" not in page and "monitor@" not in page
    assert not re.search(r"<(script|img|iframe)[^>]+src=|<link |@import|url\(", page), \
        "the page must load nothing from anywhere"
    assert "Checked &lt;b&gt;source&lt;/b&gt;: correct" in page, "site text is escaped"
    assert page.count("<tr data-site=") == len(queries)


@pytest.mark.parametrize("url,base", [
    ("https://dm:pw@redcap.example.org/redcap/api/", "https://redcap.example.org/redcap/"),
    ("https://redcap.example.org:8443/api/?token=x#y", "https://redcap.example.org:8443/"),
    ("http://user@[::1]:8080/api/", "http://[::1]:8080/"),
])
def test_links_keep_host_port_and_folder_and_drop_credentials(url, base):
    assert public_base(url) == base
    link = data_entry_link(url, "15.7.6", "7", "01 004", "41", "adverse_event", "")
    assert link == (f"{base}redcap_v15.7.6/DataEntry/index.php?pid=7&id=01+004&event_id=41"
                    "&page=adverse_event&instance=1")


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven through chromedriver (Debian's chromium-driver)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("no system Chromium: apt-get install chromium chromium-driver "
                    "(scripts/test does it when it may)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def visible_rows(driver) -> list:
    return [row for row in driver.find_elements("css selector", "#queries tbody tr")
            if row.is_displayed()]


def test_filtering_by_site_in_the_browser_shows_that_sites_open_queries(digest, browser):
    from selenium.webdriver.support.ui import Select
    page_path, queries, _, _, _ = digest
    browser.get(page_path.as_uri())
    active = queries[queries["dq_status"].isin(["1", "2"])]
    assert len(visible_rows(browser)) == len(active), "open or answered by default"
    assert browser.find_element("id", "total-closed").text.split()[-1] == "1"
    Select(browser.find_element("id", "filter-site")).select_by_value("02")
    rows = visible_rows(browser)
    site_02 = active[active["record_id"].str.startswith("02-")]
    assert len(rows) == len(site_02) > 0
    assert {row.get_attribute("data-site") for row in rows} == {"02"}
    assert browser.find_element("id", "shown").text == str(len(site_02))
    Select(browser.find_element("id", "filter-status")).select_by_value("")
    every = queries[queries["record_id"].str.startswith("02-")]
    assert len(visible_rows(browser)) == len(every)


def test_sorting_by_a_column_in_the_browser(digest, browser):
    page_path, _, _, _, _ = digest
    browser.get(page_path.as_uri())
    header = browser.find_element("xpath", "//table[@id='queries']//th[.='Subject']")
    header.click()
    header.click()
    subjects = [row.find_elements("tag name", "td")[2].text for row in visible_rows(browser)]
    assert subjects == sorted(subjects, reverse=True) and len(set(subjects)) > 1


def test_a_row_links_to_the_exact_form_and_instance_in_redcap_data_entry(digest, browser):
    page_path, queries, events, url, pid = digest
    browser.get(page_path.as_uri())
    row = next(r for r in visible_rows(browser) if r.get_attribute("data-rule") == "SAE_LATE")
    anchor = row.find_element("css selector", "a.entry")
    href = anchor.get_attribute("href")
    target = urlsplit(href)
    api = urlsplit(url)
    assert (target.scheme, target.hostname, target.port) == (api.scheme, api.hostname, api.port)
    assert target.username is None and target.password is None
    assert re.fullmatch(r"/redcap_v[0-9.]+/DataEntry/index\.php", target.path)
    subject = row.find_elements("tag name", "td")[2].text
    query = queries[(queries["record_id"] == subject) & (queries["dq_rule"] == "SAE_LATE")].iloc[0]
    event_id = {e["unique_event_name"]: str(e["event_id"]) for e in events}[query["dq_event"]]
    assert parse_qs(target.query) == {"pid": [pid], "id": [subject], "event_id": [event_id],
                                      "page": [query["dq_instrument"]],
                                      "instance": [query["dq_instance"]]}
    assert query["dq_instrument"] == "adverse_event" and query["dq_instance"] != ""
    first = browser.current_window_handle
    anchor.click()
    opened = [handle for handle in browser.window_handles if handle != first]
    browser.switch_to.window(opened[-1])
    assert browser.current_url == href
    browser.close()
    browser.switch_to.window(first)
