"""The web console in real headless Chromium (Debian's chromium and chromedriver, driven by Selenium), against a
real `swiftlet serve` and a real gateway with a supervised worker, both on 127.0.0.1: sign in, stream a chat reply
from the model, see its token count, the live metrics chart move, the usage row, the deployments; a user key
gets the playground and its own usage only; every page fits 1280x800 and a 390 px phone. Screenshots of each page
go to $SWIFTLET_SCREENSHOTS (default .build/console-screenshots)."""

import json
import os
import time

import pytest
import requests

from conftest import ROOT, Server
from platform_support import MODEL_SOURCE, running_gateway, wait_for

CHROMIUM = os.environ.get("SWIFTLET_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SWIFTLET_CHROMEDRIVER", "/usr/bin/chromedriver")
SHOTS = os.environ.get("SWIFTLET_SCREENSHOTS", os.path.join(ROOT, ".build", "console-screenshots"))
ADMIN_KEY = "console-admin-key"
WAIT = 60  # seconds for anything in the page; a whole reply of at most 48 tokens comes well within it

pytestmark = pytest.mark.skipif(os.environ.get("SWIFTLET_SKIP_BROWSER_TESTS") == "1",
                                reason="SWIFTLET_SKIP_BROWSER_TESTS=1")


@pytest.fixture(scope="module")
def browser():
    for path in (CHROMIUM, CHROMEDRIVER):
        assert os.access(path, os.X_OK), f"{path} is missing: apt-get install chromium chromium-driver"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,800",
                "--disable-gpu", "--no-first-run", "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-default-apps"):
        options.add_argument(arg)
    os.makedirs(SHOTS, exist_ok=True)
    print(f"\nconsole screenshots: {SHOTS}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


class Page:
    """The console in the browser, with the waits and reads the tests need."""

    def __init__(self, driver, base):
        self.d = driver
        self.base = base

    def size(self, width, height, mobile=False):
        # Device metrics override, so that 390 px is the layout viewport whatever the window minimum.
        self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})

    def open(self, fragment=""):
        self.d.get(self.base + "/" + fragment)

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def el(self, element_id):
        return self.d.find_element("id", element_id)

    def visible(self, element_id):
        return self.js("const e = document.getElementById(arguments[0]); return !!e && e.offsetParent !== null;",
                       element_id)

    def until(self, predicate, what, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        self.shot("failed-" + "".join(c if c.isalnum() else "-" for c in what)[:60])
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; console errors: {self.errors()}")

    def errors(self):
        try:
            # Script errors only: refused requests (a wrong key's 401) are logged too and are expected.
            return [e["message"] for e in self.d.get_log("browser")
                    if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]]
        except Exception:  # noqa: BLE001 - the log is only for the failure message
            return []

    def shot(self, name):
        path = os.path.join(SHOTS, name + ".png")
        self.d.save_screenshot(path)
        assert os.path.getsize(path) > 1000, path
        return path

    def sign_in(self, key):
        self.open()
        self.js("sessionStorage.clear();")
        self.d.refresh()
        self.until(lambda: self.visible("login-key"), "the sign-in form")
        self.el("login-key").clear()
        self.el("login-key").send_keys(key)
        self.el("login-submit").click()

    def signed_in_as(self, role):
        self.until(lambda: self.visible("who-role") and self.el("who-role").text.lower() == role, f"signed in as {role}")

    def go(self, page):
        self.js("location.hash = arguments[0];", "#/" + page)
        self.until(lambda: self.visible("page-" + page), f"the {page} page")

    def chat(self, text, max_tokens=24, json_schema=None):
        """Sends a message from the playground; returns the finished assistant bubble's text and token counts."""
        self.go("playground")
        before = len(self.d.find_elements("css selector", "#pg-transcript .message.assistant"))
        self.js("document.getElementById('pg-temperature').value = '0';"
                "document.getElementById('pg-max-tokens').value = arguments[0];", str(max_tokens))
        if json_schema is not None:
            if not self.el("pg-json").is_selected():
                self.js("document.getElementById('pg-settings').open = true;")
                self.el("pg-json").click()
            self.js("document.getElementById('pg-schema').value = arguments[0];", json.dumps(json_schema))
        self.el("pg-input").send_keys(text)
        self.el("pg-send").click()
        bubble = self.until(lambda: (lambda b: b[before] if len(b) > before and b[before].get_attribute("data-done")
                                     else None)(self.d.find_elements("css selector", "#pg-transcript .message.assistant")),
                            "the streamed reply")
        assert bubble.get_attribute("data-done") == "true", bubble.text
        text = bubble.find_element("css selector", ".text").text
        if json_schema is not None:
            self.el("pg-json").click()
        return text, int(bubble.get_attribute("data-completion-tokens")), int(bubble.get_attribute("data-prompt-tokens"))

    def no_horizontal_overflow(self, width):
        scroll = self.js("return document.documentElement.scrollWidth;")
        if scroll > width:
            self.shot(f"failed-overflow-{width}")
            # The deepest elements reaching past the viewport, to say what overflowed.
            culprits = self.js("""
                const w = arguments[0], out = [];
                const clipped = e => { for (let a = e.parentElement; a; a = a.parentElement)
                  if (getComputedStyle(a).overflowX !== 'visible') return true; return false; };
                for (const e of document.querySelectorAll('body *')) {
                  if (clipped(e)) continue;
                  const r = e.getBoundingClientRect();
                  if (r.width && r.right > w + 0.5 && ![...e.children].some(c => c.getBoundingClientRect().right > w + 0.5))
                    out.push(e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className ? '.' + String(e.className).replace(/ /g, '.') : '')
                             + ' right=' + Math.round(r.right) + ' "' + (e.textContent || '').trim().slice(0, 60) + '"');
                }
                return out.slice(0, 8);""", width)
            raise AssertionError(f"page is {scroll} px wide at a {width} px viewport: {culprits}")


def fetch_status(page, path, key):
    """The status a fetch from the page itself gets (same origin, the key as a Bearer token)."""
    return page.d.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {headers: {Authorization: 'Bearer ' + arguments[1]}})"
        "  .then((r) => { done(r.status); if (r.body) r.body.cancel(); }).catch((e) => done(String(e)));", path, key)


# MARK: swiftlet serve


@pytest.fixture(scope="module")
def serve():
    s = Server(api_key=ADMIN_KEY)
    try:
        yield s
    finally:
        s.stop()


def test_static_files_have_types_and_caching(serve):
    for path, kind in [("/", "text/html; charset=utf-8"), ("/console/app.js", "text/javascript; charset=utf-8"),
                       ("/console/style.css", "text/css; charset=utf-8"), ("/console/icon.svg", "image/svg+xml")]:
        r = requests.get(serve.url + path, timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"] == kind, (path, r.headers)
        assert r.headers["Cache-Control"] == "no-cache" and r.headers["ETag"]
        again = requests.get(serve.url + path, headers={"If-None-Match": r.headers["ETag"]}, timeout=10)
        assert again.status_code == 304 and again.content == b""
    html = requests.get(serve.url + "/", timeout=10).text
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html, "no outside URLs"
    for path in ("/console/../Package.swift", "/console/%2e%2e/Package.swift", "/console/nope.js", "/index.html",
                 "/console/", "/../../etc/passwd"):
        r = requests.get(serve.url + path, timeout=10)
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url", (path, r.status_code, r.text)
    assert requests.get(serve.url + "/v1/console/session", timeout=10).status_code == 401


def test_serve_console_end_to_end(browser, serve):
    page = Page(browser, serve.url)
    page.size(1280, 800)
    page.open()
    page.until(lambda: page.visible("login-key"), "the sign-in form")
    assert not page.visible("nav") and not page.visible("page-playground")
    page.shot("serve-login")
    page.sign_in("wrong-key")
    page.until(lambda: page.visible("login-error") and "not accepted" in page.el("login-error").text, "a refusal")
    page.sign_in(ADMIN_KEY)
    page.signed_in_as("admin")
    model = page.until(lambda: page.el("pg-model").get_attribute("value"), "a deployment to pick")

    # Streams a reply from the real model: text, token counts, TTFT and tokens/s shown.
    text, completion, prompt = page.chat("Name three colors.", max_tokens=24)
    assert text.strip() and 0 < completion <= 24 and prompt > 0
    assert page.el("stat-completion-tokens").text == str(completion)
    assert page.el("stat-ttft").text.endswith("s") and page.el("stat-tps").text not in ("", "–")
    assert page.el("stat-cost").text == "no price", "serve has no prices"
    page.shot("serve-playground-1280")

    # JSON-schema mode: the reply is constrained to the schema.
    schema = {"type": "object", "properties": {"color": {"type": "string", "enum": ["red", "green", "blue"]}},
              "required": ["color"], "additionalProperties": False}
    reply, json_tokens, _ = page.chat("Pick a color.", max_tokens=48, json_schema=schema)
    assert json.loads(reply)["color"] in ("red", "green", "blue"), reply

    # View code: curl and the openai client, for what the playground would send.
    page.el("pg-code").click()
    page.until(lambda: page.visible("code-curl"), "the code dialog")
    curl = page.el("code-curl").text
    assert curl.startswith("curl -N " + serve.url + "/v1/chat/completions") and '"stream": true' in curl
    assert "$SWIFTLET_API_KEY" in curl and ADMIN_KEY not in curl
    page.shot("serve-view-code")
    page.d.find_element("css selector", "#code-dialog [data-tab=python]").click()
    python = page.el("code-python").text
    assert "from openai import OpenAI" in python and f'model="{model}"' in python and "stream=True" in python
    page.el("code-close").click()

    # Usage: totals since the server started, exactly what the two replies used.
    page.go("usage")
    row = f'#usage-table tbody tr[data-deployment="{model}"]'
    page.until(lambda: page.d.find_elements("css selector", row), "the usage row")
    cells = [c.text for c in page.d.find_elements("css selector", row + " td")]
    assert cells[2] == "2" and cells[3] == "0", cells
    assert int(cells[5].replace(",", "")) == completion + json_tokens, cells
    page.shot("serve-usage-1280")

    # Deployments: the local engine as one ready replica with its KV use.
    page.go("deployments")
    page.until(lambda: page.d.find_elements("css selector", '#dep-list tr[data-state="ready"]'), "a ready replica")
    assert model in page.el("dep-list").text and "KV" in page.el("dep-list").text
    # A dense model: its parameters, no experts.
    facts = serve.get("/v1/deployments").json()["data"][0]["model_facts"]
    assert facts["experts"] == 0 and facts["active_parameters"] == facts["parameters"] > 0, facts
    shown = page.el("dep-list").text
    assert "Parameters" in shown and "active" not in shown and "Experts" not in shown, shown
    page.shot("serve-deployments-1280")

    # Live metrics: the history shows the replies; a request made now moves the chart while the page is open.
    page.go("metrics")
    page.until(lambda: "live" in page.el("feed-state").get_attribute("class"), "the live feed")
    canvas = page.el("chart-tokens")
    page.until(lambda: float(canvas.get_attribute("data-total") or 0) > 0, "output tokens in the chart")
    total = float(canvas.get_attribute("data-total"))
    points = int(canvas.get_attribute("data-points"))
    r = serve.post("/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": "Count to five."}],
                                            "max_tokens": 16, "temperature": 0})
    assert r.status_code == 200, r.text
    page.until(lambda: float(canvas.get_attribute("data-total")) > total, "the chart to take the new request")
    assert int(canvas.get_attribute("data-points")) > points
    page.until(lambda: page.el("tile-errors").text.startswith("3 /"), "three requests counted")
    page.shot("serve-metrics-1280")
    assert page.errors() == []


def test_serve_console_on_a_phone(browser, serve):
    page = Page(browser, serve.url)
    page.size(390, 844, mobile=True)
    try:
        page.sign_in(ADMIN_KEY)
        page.until(lambda: page.visible("nav-toggle"), "the menu button")
        assert not page.visible("nav"), "the menu is folded on a phone"
        page.el("nav-toggle").click()
        page.until(lambda: page.visible("nav"), "the unfolded menu")
        page.signed_in_as("admin")
        page.d.find_element("css selector", '#nav a[data-page="usage"]').click()
        page.until(lambda: not page.visible("nav") and page.visible("page-usage"), "the menu to fold after a choice")
        text, completion, _ = page.chat("Say hello.", max_tokens=12)
        assert text.strip() and completion > 0
        page.no_horizontal_overflow(390)
        page.shot("serve-playground-390")
        for name, ready in [("deployments", "#dep-list tr[data-state]"), ("usage", "#usage-table tbody tr[data-key]"),
                            ("metrics", "#chart-tokens[data-points]")]:
            page.go(name)
            page.until(lambda: page.d.find_elements("css selector", ready), f"the {name} page's data")
            page.no_horizontal_overflow(390)
            page.shot(f"serve-{name}-390")
        page.js("sessionStorage.clear();")
        page.open()
        page.until(lambda: page.visible("login-key"), "the sign-in form")
        page.no_horizontal_overflow(390)
        page.shot("serve-login-390")
    finally:
        page.d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@pytest.fixture(scope="module")
def embed_serve():
    s = Server(api_key=ADMIN_KEY, model="all-minilm-l6-v2")
    try:
        yield s
    finally:
        s.stop()


def test_playground_embeds_and_compares(browser, embed_serve):
    """The playground's embed-and-compare mode on an embedding model: the cosine similarity it shows is the
    one of the API's vectors."""
    page = Page(browser, embed_serve.url)
    page.size(1280, 800)
    page.sign_in(ADMIN_KEY)
    page.signed_in_as("admin")
    page.go("playground")
    page.d.find_element("css selector", 'input[name="pg-mode"][value="embed"]').click()
    page.until(lambda: page.visible("pg-embed"), "the embed card")
    assert not page.d.find_element("css selector", ".card.chat").is_displayed()
    a, b = "A cat sat on the mat.", "A feline rested on the rug."
    page.el("em-compare").click()
    page.until(lambda: page.visible("em-error"), "the missing-text message")
    page.el("em-a").send_keys(a)
    page.el("em-b").send_keys(b)
    page.el("em-compare").click()
    page.until(lambda: page.el("em-cosine").text not in ("", "–"), "the similarity")
    r = embed_serve.post("/v1/embeddings", {"model": "all-minilm-l6-v2", "input": [a, b], "encoding_format": "float"})
    x, y = (d["embedding"] for d in r.json()["data"])
    expected = sum(p * q for p, q in zip(x, y)) / (sum(p * p for p in x) * sum(q * q for q in y)) ** 0.5
    assert float(page.el("em-cosine").get_attribute("data-value")) == pytest.approx(expected, abs=1e-6)
    assert page.el("em-dims").text == "384" and int(page.el("em-tokens").text) == r.json()["usage"]["prompt_tokens"]
    assert not page.visible("em-error")
    page.shot("serve-embed-1280")
    page.d.find_element("css selector", 'input[name="pg-mode"][value="chat"]').click()
    page.until(lambda: page.d.find_element("css selector", ".card.chat").is_displayed(), "the chat card again")
    assert page.errors() == []


# MARK: swiftlet gateway

# The tiny Qwen 2 MoE test model (4 experts, 2 per token), made by scripts/fixtures/make_tiny_models.py.
TINY_MOE = os.path.join(ROOT, "Tests", "ModelsTests", "Fixtures", "tiny", "tiny-qwen2moe.gguf")

GATEWAY_CONFIG = f"""
gateway:
  cluster_token: console-cluster-token
  health_check_interval: 250ms
  worker_stop_grace: 5s
clusters:
  - {{name: local, supervised: true, hardware_price_per_hour: 0.36}}
deployments:
  - name: chat
    model: {json.dumps(MODEL_SOURCE)}
    engine: {{threads: 1, kv_cache_memory: 32MB, max_sequences: 4, context_length: 1024}}
    replicas: {{min: 1, max: 1}}
    price: {{input_per_million: 0.5, output_per_million: 1.5}}
  - name: experts
    model: {json.dumps(TINY_MOE)}
    engine: {{threads: 1, kv_cache_memory: 16MB, max_sequences: 2, context_length: 512}}
    replicas: {{min: 1, max: 1}}
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with running_gateway(str(tmp_path_factory.mktemp("console")), GATEWAY_CONFIG, token="console-cluster-token") as g:
        g.admin = g.create_key("ops", admin=True)
        g.user = g.create_key("app")
        for name in ("chat", "experts"):
            wait_for(lambda: any(r["state"] == "ready" for r in g.replicas(name, g.admin["secret"])), 120,
                     f"a ready replica of {name}")
        yield g


def test_gateway_user_key_gets_the_playground_and_its_own_usage(browser, gateway):
    page = Page(browser, gateway.url)
    page.size(1280, 800)
    page.sign_in(gateway.user["secret"])
    page.signed_in_as("user")
    admin_links = page.d.find_elements("css selector", "#nav a[data-admin]")
    assert admin_links and not any(a.is_displayed() for a in admin_links)
    text, completion, prompt = page.chat("Name a fruit.", max_tokens=16)
    assert text.strip() and completion > 0
    cost = (prompt * 0.5 + completion * 1.5) / 1e6
    shown = page.el("stat-cost").text
    assert shown.startswith("$") and float(shown[1:]) == pytest.approx(cost, rel=0.01), shown
    page.shot("gateway-playground-user")
    # Admin pages are not for this key: the router sends it back, and the API refuses it.
    page.js("location.hash = '#/deployments';")
    page.until(lambda: page.visible("page-playground"), "the playground instead of deployments")
    for path in ("/v1/deployments", "/v1/console/metrics", "/v1/console/metrics/stream",
                 f"/v1/console/usage?key={gateway.admin['id']}"):
        assert fetch_status(page, path, gateway.user["secret"]) == 403, path
    page.go("usage")
    row = f'#usage-table tbody tr[data-key="{gateway.user["id"]}"]'
    page.until(lambda: page.d.find_elements("css selector", row), "the user's usage row")
    keys = {r.get_attribute("data-key") for r in page.d.find_elements("css selector", "#usage-table tbody tr[data-key]")}
    assert keys == {gateway.user["id"]}
    cells = [c.text for c in page.d.find_elements("css selector", row + " td")]
    assert cells[1] == "chat" and int(cells[5]) == completion, cells
    assert "admin only" in page.el("cost-table").text
    page.shot("gateway-usage-user")
    page.el("logout").click()
    page.until(lambda: page.visible("login-key"), "the sign-in form after signing out")
    assert page.js("return sessionStorage.length;") == 0


def test_gateway_admin_sees_deployments_metrics_and_all_usage(browser, gateway):
    page = Page(browser, gateway.url)
    page.size(1280, 800)
    page.sign_in(gateway.admin["secret"])
    page.signed_in_as("admin")

    page.go("deployments")
    page.until(lambda: page.d.find_elements("css selector", '#dep-list tr[data-state="ready"]'), "a ready replica")
    card = page.d.find_element("css selector", '#dep-list article[data-deployment="chat"]')
    assert "Cold starts" in card.text and "local" in card.text
    form = card.find_element("css selector", "form.scale")
    assert form.find_element("name", "min").get_attribute("value") == "1"
    page.js("arguments[0].elements.max.value = '2'; arguments[0].dispatchEvent(new Event('input'));", form)
    form.find_element("css selector", "button[type=submit]").click()
    page.until(lambda: "Saved" in form.find_element("css selector", ".status").text, "the new bounds saved")
    assert gateway.deployment("chat", gateway.admin["secret"])["replicas"]["max"] == 2
    page.until(lambda: "changed until the gateway restarts" in card.text, "the change marked")
    # The mixture of experts shows its total and active parameters, as its replica reported them.
    facts = gateway.deployment("experts", gateway.admin["secret"])["model_facts"]
    assert facts["architecture"] == "qwen2moe" and (facts["experts"], facts["experts_used"]) == (4, 2), facts
    assert 0 < facts["active_parameters"] < facts["parameters"], facts
    moe = page.d.find_element("css selector", '#dep-list article[data-deployment="experts"]')
    page.until(lambda: "active" in moe.text, "the active parameters")
    assert "2 of 4 per token" in moe.text and "qwen2moe" in moe.text, moe.text
    page.shot("gateway-deployments-1280")

    page.go("metrics")
    page.until(lambda: "live" in page.el("feed-state").get_attribute("class"), "the live feed")
    canvas = page.el("chart-tokens")
    total = float(canvas.get_attribute("data-total") or 0)
    text, completion, _ = page.chat("Name an animal.", max_tokens=16)  # playground, then back to the chart
    assert text.strip() and completion > 0
    page.go("metrics")
    page.until(lambda: float(page.el("chart-tokens").get_attribute("data-total") or 0) > total,
               "the chart to show the reply")
    page.shot("gateway-metrics-1280")

    page.go("usage")
    for key in (gateway.user["id"], gateway.admin["id"]):
        page.until(lambda: page.d.find_elements("css selector", f'#usage-table tbody tr[data-key="{key}"]'),
                   f"the usage row of {key}")
    cost_row = page.until(lambda: page.d.find_elements("css selector", '#cost-table tbody tr[data-deployment="chat"]'),
                          "the cost row")[0]
    cells = [c.text for c in cost_row.find_elements("css selector", "td")]
    assert cells[2] == "$0.5000" and cells[3] == "$1.5000", cells
    assert cells[5] not in ("admin only",) and cells[7].startswith("$"), cells
    page.shot("gateway-usage-1280")

    page.size(390, 844, mobile=True)
    try:
        for name in ("deployments", "metrics", "usage", "playground"):
            page.go(name)
            time.sleep(0.3)
            page.no_horizontal_overflow(390)
            page.shot(f"gateway-{name}-390")
    finally:
        page.d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert page.errors() == []
