"""The labeling server (robustal.label.server) through Starlette's TestClient, over a real project."""

from __future__ import annotations

import io
import re
import warnings

import pytest

pytest.importorskip("starlette", reason="the labeling page needs the extra robustal[label]")
from PIL import Image

with warnings.catch_warnings():  # starlette >= 1.0 warns that its TestClient moves from httpx to httpx2
    warnings.filterwarnings("ignore", message="Using `httpx`")
    from starlette.testclient import TestClient

from robustal.errors import ConfigError
from robustal.label import server
from robustal.label.project import LabelProject
from robustal.label.server import create_app

from label_helpers import write_digits

LOCAL = "http://127.0.0.1:8000"
TOKEN = "a-token-long-enough-1234"
CLASSES = ["zero", "one", "two"]


@pytest.fixture
def project(tmp_path):
    """A project of 16 digit images: 3 validation images then an initial batch of 8 (never all
    labeled here, so no test starts a training round)."""
    images = tmp_path / "images"
    write_digits(images, 16)
    settings = {"initial": 8, "per_round": 4, "budget": 12}
    opened = LabelProject.init(tmp_path / "project", images, CLASSES, None, settings, validation=3)
    yield opened
    opened.close()


@pytest.fixture
def training_calls(project, monkeypatch):
    """How often the app asked the project to start training (counted around the real method)."""
    calls = []
    start = project.maybe_start_training
    monkeypatch.setattr(project, "maybe_start_training", lambda: calls.append(1) or start())
    return calls


def client(project, annotator: str | None = "alice", token: str | None = None, base_url: str = LOCAL) -> TestClient:
    """A browser of the page: its cookies persist between requests, like a tab's."""
    browser = TestClient(create_app(project, token=token), base_url=base_url)
    if annotator is not None:
        browser.cookies.set(server.ANNOTATOR_COOKIE, annotator)
    return browser


def next_id(browser: TestClient) -> int:
    response = browser.get("/api/next")
    assert response.status_code == 200, response.text
    return response.json()["item"]["id"]


def test_the_page_shows_a_button_per_class_with_its_key(project):
    response = client(project, annotator=None).get("/")
    assert response.status_code == 200
    page = response.text
    for index, name in enumerate(CLASSES):
        assert f'data-label="{index}" aria-keyshortcuts="{index + 1}"><kbd>{index + 1}</kbd> {name}</button>' in page
    assert '<script src="/static/label.js" defer></script>' in page
    assert "http" not in page.replace("http-equiv", "")  # nothing from another site: works offline
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    # a first visit gets a random annotator id in a cookie, shown on the page
    annotator = response.cookies[server.ANNOTATOR_COOKIE]
    assert annotator.startswith("annotator-") and f"<b>{annotator}</b>" in page


def test_keys_1_to_9_then_0_name_the_first_ten_classes(tmp_path):
    names = [f"class{index}" for index in range(12)]
    images = tmp_path / "images"
    write_digits(images, 8)
    many = LabelProject.init(tmp_path / "many", images, names, None, {"initial": 2}, validation=2)
    try:
        page = client(many).get("/").text
    finally:
        many.close()
    buttons = re.findall(r'data-label="(\d+)"(?: aria-keyshortcuts="(\d)"><kbd>(\d)</kbd>)?', page)
    keys = [str((index + 1) % 10) if index < 10 else "" for index in range(12)]
    assert buttons == [(str(index), key, key) for index, key in enumerate(keys)]


def test_digit_classes_are_labeled_by_their_own_key():
    from robustal.label.server import class_keys

    assert class_keys([str(digit) for digit in range(10)]) == [str(digit) for digit in range(10)]  # MNIST: 3 is "3"
    assert class_keys(["0", "1", "2"]) == ["0", "1", "2"]
    assert class_keys(["2", "1"]) == ["1", "2"]  # not the digits in order: keys by position
    assert class_keys(["cat", "dog"]) == ["1", "2"]


def test_the_static_files_are_served(project):
    browser = client(project)
    assert "function drawPlot" in browser.get("/static/label.js").text
    assert "image-rendering: pixelated" in browser.get("/static/label.css").text


def test_a_label_is_stored_and_the_next_item_is_another(project, training_calls):
    browser = client(project)
    first = next_id(browser)
    response = browser.post(f"/api/items/{first}/label", json={"label": 2})
    assert response.status_code == 200, response.text
    shown = response.json()
    assert shown["item"]["id"] == first and shown["item"]["label"] == 2 and shown["item"]["label_name"] == "two"
    assert shown["progress"]["labeled"] == 1
    assert project.item(first).label == 2
    assert training_calls == [1]  # the app offers a round to train after every label
    assert next_id(browser) != first


def test_the_image_is_the_items_png(project):
    browser = client(project)
    item = next_id(browser)
    response = browser.get(f"/api/items/{item}/image")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content == project.image_png(item)
    assert Image.open(io.BytesIO(response.content)).format == "PNG"


def test_skip_marks_the_item_and_moves_on(project, training_calls):
    browser = client(project)
    item = next_id(browser)
    response = browser.post(f"/api/items/{item}/skip", json={})
    assert response.status_code == 200 and response.json()["item"]["skipped"] is True
    assert project.item(item).skipped and project.item(item).label is None
    assert next_id(browser) != item
    assert training_calls == []  # a skip adds no label


def test_undo_takes_back_the_annotators_latest_label_only(project):
    alice, bob = client(project, "alice"), client(project, "bob")
    first = next_id(alice)
    alice.post(f"/api/items/{first}/label", json={"label": 1})
    second = next_id(alice)
    alice.post(f"/api/items/{second}/label", json={"label": 0})
    assert bob.post("/api/undo", json={}).json()["item"] is None  # bob has labeled nothing
    undone = alice.post("/api/undo", json={}).json()
    assert undone["item"]["id"] == second and undone["item"]["label"] is None
    assert project.item(second).label is None and project.item(first).label == 1
    assert undone["progress"]["labeled"] == 1


def test_a_past_item_is_relabeled_and_history_shows_it(project):
    browser = client(project)
    first = next_id(browser)
    browser.post(f"/api/items/{first}/label", json={"label": 1})
    second = next_id(browser)
    browser.post(f"/api/items/{second}/label", json={"label": 1})
    assert [item["id"] for item in browser.get("/api/history").json()["items"]][:2] == [second, first]
    response = browser.post(f"/api/items/{first}/label", json={"label": 2})
    assert response.status_code == 200
    assert project.item(first).label == 2
    latest = browser.get("/api/history?limit=1").json()["items"]
    assert [(item["id"], item["label_name"]) for item in latest] == [(first, "two")]
    assert browser.get(f"/api/items/{first}").json()["item"]["label"] == 2


def test_the_page_is_told_no_file_path(project):
    shown = client(project).get("/api/next").json()["item"]
    assert set(shown) == {"id", "role", "round", "rank", "score", "label", "skipped", "label_name", "image"}
    assert project.item(shown["id"]).path.endswith(".png")  # the project knows it; the page does not


def test_a_restarted_server_sees_every_label(project):
    """A new app on the same folder (the old one never closed, as after a kill -9) shows every
    label, skip and undo the first one acknowledged."""
    browser = client(project)
    answered = {}
    for index in range(5):
        item = next_id(browser)
        if index == 2:
            assert browser.post(f"/api/items/{item}/skip", json={}).status_code == 200
            answered[item] = "skipped"
        else:
            assert browser.post(f"/api/items/{item}/label", json={"label": index % 3}).status_code == 200
            answered[item] = index % 3
    undone = browser.post("/api/undo", json={}).json()["item"]["id"]
    answered[undone] = None
    reopened = LabelProject.open(project.path)
    try:
        again = client(reopened)
        for item, answer in answered.items():
            shown = again.get(f"/api/items/{item}").json()["item"]
            assert (shown["label"], shown["skipped"]) == ((None, True) if answer == "skipped" else (answer, False))
        history = again.get("/api/history").json()["items"]
        assert [entry["id"] for entry in history] == [item for item in reversed(answered) if item != undone]
        assert again.get("/api/progress").json()["progress"]["labeled"] == 3
        assert next_id(again) == undone  # the undone item is alice's again, to label first
    finally:
        reopened.close()


def test_two_annotators_are_given_different_items(project):
    alice, bob = client(project, "alice"), client(project, "bob")
    mine, theirs = next_id(alice), next_id(bob)
    assert mine != theirs
    assert (next_id(alice), next_id(bob)) == (mine, theirs)  # a reloaded page shows the same image


@pytest.mark.parametrize("body", [{"label": 3}, {"label": -1}, {"label": "1"}, {"label": 1.0}, {"label": True}, {}])
def test_a_label_that_is_no_class_number_is_refused(project, body):
    browser = client(project)
    item = next_id(browser)
    response = browser.post(f"/api/items/{item}/label", json=body)
    assert response.status_code == 400
    assert response.json()["error"].startswith('"label" must be a class number: 0 zero, 1 one, 2 two')
    assert project.item(item).label is None


@pytest.mark.parametrize(
    "content, message",
    [(b"{not json", "not valid JSON"), (b"[1]", "must be a JSON object"), (b" " * 5000, "over 4096 bytes")],
)
def test_a_body_that_is_not_a_small_json_object_is_refused(project, content, message):
    browser = client(project)
    item = next_id(browser)
    response = browser.post(f"/api/items/{item}/label", content=content, headers={"content-type": "application/json"})
    assert response.status_code in (400, 413) and message in response.json()["error"]
    assert project.item(item).label is None


@pytest.mark.parametrize("path", ["/api/items/999", "/api/items/999/image", "/api/items/99999999999999999999999/image"])
def test_an_unknown_item_is_404_with_a_message(project, path):
    response = client(project).get(path)
    assert response.status_code == 404 and "unknown item id" in response.json()["error"]


def test_labeling_an_unknown_item_is_404(project):
    browser = client(project)
    assert browser.post("/api/items/999/label", json={"label": 0}).status_code == 404
    assert browser.post("/api/items/999/skip", json={}).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/api/items/..%2f..%2fetc%2fpasswd/image",
        "/api/items/../../../etc/passwd/image",
        "/api/items/%2Fetc%2Fpasswd/image",
        "/api/items//etc/passwd/image",
        "/api/items/1%2f..%2f..%2fetc%2fpasswd/image",
        "/api/items/-1/image",
        "/api/items/1.5/image",
        "/api/items/0x1/image",
        "/api/items/1e3/image",
        "/api/items/abc/image",
        "/static/..%2fserver.py",
        "/static/../server.py",
        "/static/%2e%2e/server.py",
        "/static//etc/passwd",
    ],
)
def test_paths_in_the_url_never_reach_the_filesystem(project, monkeypatch, path):
    read = []
    monkeypatch.setattr(project, "image_png", lambda item_id: read.append(item_id) or b"")
    response = client(project).get(path)
    assert response.status_code in (404, 422), (path, response.status_code)
    assert read == []
    assert b"root:" not in response.content and b"import" not in response.content


def test_without_a_token_the_host_must_be_this_machine(project):
    # a page that rebinds its own domain name to 127.0.0.1 sends its own name as Host
    response = client(project, base_url="http://attacker.example:8000").get("/api/next")
    assert response.status_code == 403 and "not this machine" in response.json()["error"]
    for local in ("http://localhost:8000", "http://127.0.0.1:8000", "http://[::1]:8000"):
        assert client(project, base_url=local).get("/api/next").status_code == 200


def test_with_a_token_every_request_needs_it(project):
    base = "http://192.168.1.20:8000"
    stranger = client(project, token=TOKEN, base_url=base)
    for path in ("/", "/api/next", "/api/progress", "/static/label.js", "/api/items/1/image"):
        assert stranger.get(path).status_code == 401, path
    assert stranger.get("/", headers={"Authorization": "Bearer wrong-token-of-some-length"}).status_code == 401
    assert stranger.get("/?token=wrong-token-of-some-length").status_code == 401
    assert stranger.post("/api/items/1/label", json={"label": 0}).status_code == 401
    assert project.item(1).label is None
    assert stranger.get("/api/next", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    # the printed address: the token becomes a cookie and leaves the address bar
    visit = stranger.get(f"/?token={TOKEN}&annotator=carol", follow_redirects=False)
    assert visit.status_code == 303 and visit.headers["location"] == "/?annotator=carol"
    assert stranger.cookies[server.TOKEN_COOKIE] == TOKEN
    assert stranger.get("/api/next").status_code == 200
    # the redirect stays on this site, whatever the path
    elsewhere = stranger.get(f"{base}//attacker.example/x?token={TOKEN}", follow_redirects=False)
    assert elsewhere.status_code == 303 and elsewhere.headers["location"] == "/attacker.example/x"


def test_a_network_address_needs_a_token(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr("uvicorn.run", lambda app, **options: started.append(options))
    for host in ("0.0.0.0", "192.168.1.20", "::", "example.org"):
        with pytest.raises(ConfigError, match=f"--host {host} makes the labeling page reachable from the network: pass --token"):
            server.serve(tmp_path, host=host)
    with pytest.raises(ConfigError, match="--token is 5 characters long: use at least 16"):
        server.serve(tmp_path, host="0.0.0.0", token="short")
    with pytest.raises(ConfigError, match="--port 0 is not a port number"):
        server.serve(tmp_path, port=0)
    assert started == []
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        server.check_address(host, 8000, None)


def test_serve_runs_uvicorn_on_the_address_and_prints_the_page_with_its_token(project, monkeypatch, capsys):
    started = []
    monkeypatch.setattr("uvicorn.run", lambda app, **options: started.append((app, options)))
    server.serve(project.path, host="0.0.0.0", port=8123, token=TOKEN)
    [(app, options)] = started
    assert options["host"] == "0.0.0.0" and options["port"] == 8123
    assert f"http://0.0.0.0:8123/?token={TOKEN}" in capsys.readouterr().out
    assert TestClient(app, base_url="http://192.168.1.20:8123").get("/api/next").status_code == 401


@pytest.mark.parametrize(
    "headers, status",
    [
        ({"content-type": "text/plain"}, 415),
        ({"content-type": "application/x-www-form-urlencoded"}, 415),
        ({"content-type": "multipart/form-data; boundary=x"}, 415),
        ({"content-type": "application/json", "origin": "http://attacker.example"}, 403),
        ({"content-type": "application/json", "origin": "null"}, 403),
        ({"content-type": "application/json", "origin": "http://127.0.0.1:9999"}, 403),
        ({"content-type": "application/json", "sec-fetch-site": "cross-site"}, 403),
        ({"content-type": "application/json", "origin": "http://127.0.0.1:8000"}, 200),
        ({"content-type": "application/json; charset=utf-8"}, 200),
    ],
)
def test_a_post_must_be_json_from_the_pages_own_origin(project, headers, status):
    browser = client(project)
    item = next_id(browser)
    response = browser.post(f"/api/items/{item}/label", content=b'{"label": 1}', headers=headers)
    assert response.status_code == status, response.text
    assert project.item(item).label == (1 if status == 200 else None)


def test_another_sites_page_cannot_use_the_api(project):
    browser = client(project)
    cross = {"sec-fetch-site": "cross-site"}
    for path in ("/api/next", "/api/items/1/image", "/api/progress"):
        response = browser.get(path, headers=cross)
        assert response.status_code == 403 and response.json()["error"] == "another site cannot use this page's API"
    assert project.next_item("someone").rank == 0  # the refused GET /api/next leased nothing
    assert browser.get("/api/next", headers={"sec-fetch-site": "same-origin"}).status_code == 200
    assert browser.get("/", headers=cross).status_code == 200  # a link to the page still opens it


def test_the_annotator_is_chosen_in_the_address_and_kept(project):
    browser = client(project, annotator=None)
    response = browser.get("/?annotator=dana")
    assert response.cookies[server.ANNOTATOR_COOKIE] == "dana"
    item = next_id(browser)
    browser.post(f"/api/items/{item}/label", json={"label": 0})
    assert [entry.id for entry in project.history("dana")] == [item]
    bad = browser.get("/?annotator=<script>")
    assert bad.status_code == 400 and "?annotator= takes 1 to 64 letters" in bad.json()["error"]


@pytest.mark.parametrize("limit", ["0", "101", "-1", "x", "1e9"])
def test_the_history_limit_is_bounded(project, limit):
    response = client(project).get(f"/api/history?limit={limit}")
    assert response.status_code == 400 and "?limit= takes a whole number from 1 to 100" in response.json()["error"]


def test_progress_carries_the_counts_rounds_and_classes(project):
    browser = client(project)
    item = next_id(browser)
    browser.post(f"/api/items/{item}/label", json={"label": 0})
    shown = browser.get("/api/progress").json()
    assert shown["classes"] == CLASSES
    assert shown["progress"]["labeled"] == 1 and shown["progress"]["validation_labeled"] == 1
    assert shown["rounds"] == []
