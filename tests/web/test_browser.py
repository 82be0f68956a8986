"""The web UI in a real browser (Chromium, driven by Playwright) against a real ``aifab up``: what a user
does on each page, checked in the page and through the API. The key tests come last: the first key ends
keyless access for every test after it."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from aifab.web import STATIC

pytestmark = [pytest.mark.slow, pytest.mark.integration]
CHAT_MODEL = "smollm2-135m-instruct"
ADMIN: dict[str, str] = {}  # the admin key the key tests create, for the ones after them


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def test_an_app_answers_streamed_with_citations_and_takes_a_rating(page, server):
    page.goto("/#/chat")
    page.get_by_label("Model or app").select_option("helpdesk")
    page.get_by_label("Message").fill("What causes the tides?")
    page.get_by_role("button", name="Send").click()
    answer = page.locator("article.msg.assistant").last
    expect(answer).to_have_attribute("data-done", "true")
    expect(answer.locator(".markdown")).not_to_be_empty()
    assert float(answer.get_attribute("data-first-token-ms")) > 0  # the first text was painted, and timed
    assert page.evaluate("performance.getEntriesByName('first-token').length") == 1
    chip = answer.locator(".chip", has_text="tides.md").first
    chip.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("gravitational pull")
    expect(dialog).to_contain_text("Tides")  # the section
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    answer.get_by_role("button", name="Good answer").click()
    expect(answer.get_by_role("status")).to_contain_text("Rated good")
    response_id = answer.get_attribute("data-response-id")
    assert response_id and response_id.startswith("chatcmpl-")
    lineage = httpx.get(f"{server.url}/v1/admin/responses/{response_id}/lineage", timeout=30).json()
    assert [f["rating"] for f in lineage["feedback"]] == ["up"]
    page.reload()  # the conversation is kept in the browser
    expect(page.get_by_role("button", name="What causes the tides?", exact=True)).to_be_visible()
    expect(page.locator("article.msg.assistant")).to_have_count(1)


def test_a_correction_is_recorded(page, server):
    page.goto("/#/chat")
    page.get_by_role("button", name="New conversation").click()
    page.get_by_label("Model or app").select_option(CHAT_MODEL)
    page.get_by_text("Options").click()
    page.get_by_label("Max tokens").fill("8")
    page.get_by_label("Message").fill("Say hello.")
    page.get_by_label("Message").press("Enter")
    answer = page.locator("article.msg.assistant").last
    expect(answer).to_have_attribute("data-done", "true")
    answer.get_by_role("button", name="Correct this answer").click()
    answer.get_by_label("The right answer").fill("Hello!")
    answer.get_by_role("button", name="Send correction").click()
    expect(answer.get_by_role("status")).to_contain_text("Correction recorded")
    lineage = httpx.get(f"{server.url}/v1/admin/responses/{answer.get_attribute('data-response-id')}/lineage",
                        timeout=30).json()
    assert [(f["rating"], f["correction"]) for f in lineage["feedback"]] == [("down", "Hello!")]


def test_an_upload_is_ingested_before_your_eyes(page, server):
    page.goto("/#/documents")
    page.get_by_label("Upload files into kb").set_input_files(
        files=[{"name": "comets.md", "mimeType": "text/markdown",
                "buffer": b"# Comets\n\nA comet is an icy body that releases gas near the Sun, making a tail.\n"}])
    job = page.locator(".jobs li").first
    expect(job).to_have_attribute("data-status", "succeeded")
    expect(job).to_contain_text("1 added")
    expect(page.get_by_role("table", name="Documents of the live version")).to_contain_text("comets.md")
    page.get_by_label("Query").fill("What makes a comet's tail?")
    page.get_by_role("button", name="Search").click()
    hit = page.locator(".hit").first
    expect(hit).to_contain_text("comets.md")
    expect(hit).to_contain_text(re.compile(r"fused \d\.\d{4}.*(dense|lexical) #1"))


def test_a_bad_upload_shows_the_reason(page, server):
    page.goto("/#/documents")
    page.get_by_label("Upload files into kb").set_input_files(
        files=[{"name": "photo.png", "mimeType": "image/png", "buffer": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8}])
    expect(page.locator(".jobs li").first).to_have_attribute("data-status", "failed")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("photo.png")
    jobs = httpx.get(f"{server.url}/v1/collections/kb/jobs", timeout=30).json()["data"]
    reason = jobs[0]["summary"]["errors"][0]["reason"]
    expect(alert).to_contain_text(reason)  # the API's own words


def test_a_canary_is_promoted_and_rolled_back(page, server, canary):
    page.goto("/#/models")
    registry = page.get_by_role("table", name="Registered models")
    expect(registry).to_contain_text(canary)
    page.get_by_label("Model", exact=True).select_option(canary)
    page.get_by_label("Served as").fill(CHAT_MODEL)
    page.get_by_label("Canary %").fill("10")
    page.get_by_role("button", name="Promote").click()
    row = page.locator(f'tr[data-model="{CHAT_MODEL}"]')
    expect(row).to_contain_text(canary)
    expect(row).to_contain_text("10%")
    rollouts = httpx.get(f"{server.url}/v1/admin/rollouts", timeout=30).json()["data"]
    assert [(r["model"], r["candidate"], r["percent"]) for r in rollouts] == [(CHAT_MODEL, canary, 10)]
    row.get_by_role("button", name=f"Roll back {CHAT_MODEL}").click()
    expect(row.locator("td").nth(2)).to_have_text("—")
    rollouts = httpx.get(f"{server.url}/v1/admin/rollouts", timeout=30).json()["data"]
    assert [(r["model"], r["current"], r["candidate"]) for r in rollouts] == [(CHAT_MODEL, CHAT_MODEL, None)]


def test_the_lineage_of_a_model_is_shown(page, server, canary):
    page.goto("/#/models")
    page.get_by_role("button", name=canary, exact=True).click()
    expect(page.get_by_role("region", name="Lineage")).to_contain_text(f"Lineage of {canary}")


def test_every_page_module_loads(page, server):
    page.goto("/")
    names = sorted(p.name for p in STATIC.glob("*.js") if p.name != "app.js")  # app.js: the page runs it already
    errors = page.evaluate("""async (names) => {
        const out = [];
        for (const name of names) {
            try { await import(`/ui/${name}`); } catch (err) { out.push(`${name}: ${err.message}`); }
        }
        return out;
    }""", names)
    assert len(names) >= 8 and errors == []


def test_eval_runs_are_listed_and_compared(page, server, tmp_path):
    from aifab.testing.cli import run_aifab

    (tmp_path / "qa.jsonl").write_text('{"question": "What causes the tides?", "gold": "Tides are caused by the '
                                       'gravitational pull of the Moon and the Sun on the oceans."}\n')
    data = str(server.log_path.parent)
    for limit in (0.5, 1.5):  # the second run asks for more than recall can give: it fails
        suite = tmp_path / "suite.toml"
        suite.write_text(f'name = "web"\n[[retrieval]]\ncollection = "kb"\nqa = "qa.jsonl"\n'
                         f'thresholds = {{ "recall@5" = {limit} }}\n')
        r = run_aifab("eval", "run", str(suite), "--data-dir", data, timeout=300)  # measured by the server
        assert r.returncode == 0, r.stderr
    page.goto("/#/evals")
    runs = page.get_by_role("table", name="Eval runs")
    expect(runs).to_contain_text("failed")
    expect(runs).to_contain_text("passed")
    verdicts = page.get_by_role("table", name=re.compile("Verdicts of run"))
    expect(verdicts).to_contain_text("recall@5")
    expect(verdicts).to_contain_text("≥ 1.5")
    expect(verdicts).to_contain_text("+0.000")  # compared with the run before: the same recall
    page.get_by_role("button", name="Run again").click()  # the newest run's suite, measured by the server again
    expect(page.get_by_role("table", name="Eval runs").locator("tbody tr")).to_have_count(3)
    runs = httpx.get(f"{server.url}/v1/admin/evals").json()["data"]
    assert len(runs) == 3 and runs[0]["baseline"] == f"run {runs[1]['id']}" and runs[0]["passed"] is False


@pytest.mark.parametrize("where", ["/#/chat", "/#/documents", "/#/models", "/#/evals", "/#/keys"])
def test_every_page_fits_a_phone(page, server, where):
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto(where)
    expect(page.locator("main h1, main .chat").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways scrolling


ATTACKS = [
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "[x](javascript:alert(1))",
    '[x](http://a.b/"onmouseover="alert(1))', "**<b>bold</b>**", "`<i>code</i>`", "```\n<script>x</script>\n```",
    "[1](http://e.com/[1])", '<a href="javascript:alert(1)">x</a>', "# <svg onload=alert(1)>",
]


def test_markdown_is_rendered_without_letting_html_through(page, server):
    page.goto("/")
    out = page.evaluate("""async (attacks) => {
        const { renderMarkdown } = await import("/ui/markdown.js");
        const box = document.createElement("div");
        const sample = "# Title\\n\\nSome **bold**, *italic* and `code` [link](https://example.com) [2].\\n\\n- one\\n- two";
        box.innerHTML = renderMarkdown(sample);
        const shape = [...box.querySelectorAll("*")].map((e) => e.tagName.toLowerCase());
        const unsafe = attacks.map((a) => {
            box.innerHTML = renderMarkdown(a);
            const bad = [...box.querySelectorAll("*")].filter((e) => !["p", "strong", "em", "code", "pre", "a", "h3",
                "button", "br"].includes(e.tagName.toLowerCase()) || [...e.attributes].some((x) => x.name.startsWith("on"))
                || (e.tagName === "A" && !/^https?:/.test(e.getAttribute("href"))));
            return bad.map((e) => e.outerHTML);
        });
        return { shape, unsafe };
    }""", ATTACKS)
    assert out["shape"] == ["h3", "p", "strong", "em", "code", "a", "button", "ul", "li", "li"]
    assert out["unsafe"] == [[] for _ in ATTACKS]


def test_keys_are_created_shown_once_and_revoked(page, server):
    page.once("dialog", lambda d: d.accept())  # the confirm() of a revoke
    page.goto("/#/keys")
    page.get_by_label("Name").fill("ui-admin")
    page.get_by_label("admin").check()
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("code.secret")
    expect(secret).to_have_text(re.compile(r"\S{20,}"))
    expect(page.get_by_text("first key")).to_be_visible()
    ADMIN["key"] = secret.inner_text()
    page.get_by_label("Name").fill("ui-user")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_text("The key for 'ui-user'")).to_be_visible()
    user_secret = secret.inner_text()
    assert user_secret != ADMIN["key"]
    page.get_by_role("button", name="Revoke ui-user").click()
    expect(page.locator('tr[data-key="ui-user"]')).to_contain_text("revoked")
    auth = {"Authorization": f"Bearer {ADMIN['key']}"}
    keys = httpx.get(f"{server.url}/v1/admin/keys?all=true", headers=auth, timeout=30).json()["data"]
    assert {k["name"]: bool(k["revoked_at"]) for k in keys} == {"ui-admin": False, "ui-user": True}
    assert httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {user_secret}"}).status_code == 401


def test_a_key_is_asked_for_once_keys_exist(page, server):
    assert ADMIN, "runs after the key test above"
    page.goto("/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("API key").fill("sk-not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).not_to_be_empty()
    page.get_by_label("API key").fill(ADMIN["key"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_contain_text("ui-admin · admin")
    expect(page.get_by_role("link", name="Keys")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_a_non_admin_key_sees_no_admin_pages(page, server):
    auth = {"Authorization": f"Bearer {ADMIN['key']}"}
    r = httpx.post(f"{server.url}/v1/admin/keys", json={"name": "ui-reader"}, headers=auth, timeout=30)
    assert r.status_code == 201, r.text
    page.goto("/")
    page.get_by_label("API key").fill(r.json()["key"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_contain_text("ui-reader")
    expect(page.get_by_role("link", name="Chat")).to_be_visible()
    for name in ("Models", "Fine-tuning", "Keys"):
        expect(page.get_by_role("link", name=name)).to_be_hidden()
    page.goto("/#/keys")  # typed by hand: the chat page instead
    expect(page.get_by_label("Message")).to_be_visible()
