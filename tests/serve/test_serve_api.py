"""The HTTP API through FastAPI's TestClient: round trip, validation, batching, a missing generator."""

from __future__ import annotations

import json
import re
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import run_cli

FIELDS = ["context", "generator", "strategy", "temperature", "top_p", "top_k", "num_beams", "max_len"]


@pytest.fixture
def client(make_app):
    with TestClient(make_app("full")) as c:
        yield c


def assert_client_error(r, status: int | None = None, needle: str | None = None) -> str:
    """A 4xx with exactly {"error": "<one line>"}."""
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    if status is not None:
        assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body
    assert "\n" not in body["error"]
    if needle is not None:
        assert needle in body["error"], body["error"]
    return body["error"]


def test_round_trip_both_generators(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/v1/info").json()
    assert info["generators"]["pretrained"]["available"] and info["generators"]["adversarial"]["available"]
    assert info["generators"]["adversarial"]["checkpoint"].endswith("adversarial/best.pt")
    assert info["config"]["name"] == "tiny" and info["limits"]["max_len"] == 24
    assert {"max_batch_size", "max_wait_ms", "batches", "largest_batch"} <= set(info["batching"])
    for generator in ("pretrained", "adversarial"):
        r = client.post("/v1/respond", json={"context": ["hello how are you", "fine thanks"], "generator": generator,
                                             "temperature": 0.8, "top_p": 0.9, "top_k": 20, "max_len": 10})
        assert r.status_code == 200, r.text
        out = r.json()
        assert set(out) == {"response", "tokens", "latency_ms", "generator", "batch_size"}
        assert isinstance(out["response"], str) and 0 <= out["tokens"] <= 10
        assert out["latency_ms"] > 0 and out["generator"] == generator
    assert client.get("/v1/info").json()["batching"]["requests"] == 2


def test_greedy_and_beam_are_deterministic(client):
    for opts in ({"temperature": 0}, {"strategy": "greedy"}, {"num_beams": 3}):
        body = {"context": ["what about the weekend"], **opts}
        a, b = (client.post("/v1/respond", json=body).json() for _ in range(2))
        assert a["response"] == b["response"] and a["tokens"] == b["tokens"], opts


def test_tiny_temperature_and_top_p_act_as_greedy(client):
    greedy = client.post("/v1/respond", json={"context": ["hello there"], "temperature": 0}).json()["response"]
    for opts in ({"temperature": 1e-320}, {"top_p": 1e-320}, {"temperature": 1e-6, "top_p": 1e-9}):
        r = client.post("/v1/respond", json={"context": ["hello there"], **opts})
        assert r.status_code == 200 and r.json()["response"] == greedy, opts


def test_page_and_static_files_are_served_without_external_resources(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("chat.js", "chat.css"):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and r.text
        assert not re.search(r"https?://", r.text), name
    assert re.findall(r'(?:src|href)="([^"]+)"', page.text) == ["/static/chat.css", "/static/chat.js"]
    assert_client_error(client.get("/static/../app.py"), 404)


BAD_BODIES = [  # (raw body, status, words of the error)
    (b"{not json", 400, "malformed JSON"),
    (b"", 400, "malformed JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b"null", 400, "JSON object"),
    (b'"hello"', 400, "JSON object"),
    (b'{"context": ["hi"], "temperature": NaN}', 422, "temperature"),
    (b'{"context": ["hi"], "temperature": 1e999}', 422, "temperature"),
    (b"\xff\xfe\x00", 400, "malformed JSON"),
]

BAD_JSON = [  # (body, words of the error)
    ({}, "missing field 'context'"),
    ({"context": ["hi"], "foo": 1}, "unknown field 'foo'"),
    ({"context": ["hi"], "Temperature": 1.0}, "unknown field 'Temperature'"),
    ({"context": "hello"}, "context"),
    ({"context": [1, 2]}, "context[0]"),
    ({"context": [["nested"]]}, "context[0]"),
    ({"context": ["hi"], "temperature": "0.5"}, "temperature"),
    ({"context": ["hi"], "top_k": 1.5}, "top_k"),
    ({"context": ["hi"], "top_k": True}, "top_k"),
    ({"context": ["hi"], "num_beams": "4"}, "num_beams"),
    ({"context": ["hi"], "generator": 3}, "generator"),
    ({"context": ["hi"], "generator": "best"}, "generator"),
    ({"context": ["hi"], "strategy": "nucleus"}, "strategy"),
    ({"context": []}, "context"),
    ({"context": ["", "   "]}, "empty"),
    ({"context": ["hi", ""]}, "empty"),  # an empty turn cuts the context there, as in training
    ({"context": ["\x01\x02"]}, "empty"),
    ({"context": ["hi"] * 33}, "at most 32 turns"),
    ({"context": ["x" * 3000, "y" * 1001]}, "at most 4000 characters"),
    ({"context": ["hi"], "temperature": -0.1}, "temperature"),
    ({"context": ["hi"], "temperature": 1e6}, "temperature"),
    ({"context": ["hi"], "top_p": 0}, "top_p"),
    ({"context": ["hi"], "top_p": 1.5}, "top_p"),
    ({"context": ["hi"], "top_p": -1}, "top_p"),
    ({"context": ["hi"], "top_k": -1}, "top_k"),
    ({"context": ["hi"], "top_k": 10**30}, "top_k"),
    ({"context": ["hi"], "num_beams": 0}, "num_beams"),
    ({"context": ["hi"], "num_beams": 10_000}, "num_beams"),
    ({"context": ["hi"], "max_len": 0}, "max_len"),
    ({"context": ["hi"], "max_len": 25}, "at most 24"),
    ({"context": ["hi"], "max_len": -5}, "max_len"),
]


@pytest.mark.parametrize("raw,status,needle", BAD_BODIES, ids=[repr(b[0][:12]) for b in BAD_BODIES])
def test_malformed_bodies_get_4xx_json(client, raw, status, needle):
    r = client.post("/v1/respond", content=raw, headers={"content-type": "application/json"})
    assert_client_error(r, status, needle)


@pytest.mark.parametrize("body,needle", BAD_JSON, ids=[n for _, n in BAD_JSON])
def test_invalid_requests_get_422_naming_the_field(client, body, needle):
    assert_client_error(client.post("/v1/respond", json=body), 422, needle)


def test_other_http_errors_have_the_same_shape(client, make_app):
    assert_client_error(client.get("/nope"), 404, "/nope")
    assert_client_error(client.get("/v1/respond"), 405)
    assert_client_error(client.delete("/v1/info"), 405)
    big = json.dumps({"context": ["hi " * 40000]}).encode()
    assert_client_error(client.post("/v1/respond", content=big), 413)
    # a body sent in chunks without a length is counted too
    assert_client_error(client.post("/v1/respond", content=iter([big[:40000], big[40000:]])), 413)
    # limits are settings
    with TestClient(make_app("full", max_context_turns=2, max_context_chars=10)) as small:
        assert_client_error(small.post("/v1/respond", json={"context": ["a", "b", "c"]}), 422, "at most 2 turns")
        assert_client_error(small.post("/v1/respond", json={"context": ["hello world!"]}), 422, "at most 10")
        assert small.get("/v1/info").json()["limits"]["max_context_turns"] == 2


def test_get_routes_answer_head_too(client):
    for path in ("/", "/healthz", "/v1/info", "/static/chat.js", "/favicon.ico"):
        r = client.head(path)
        assert r.status_code in (200, 204), (path, r.status_code)
        assert r.content == b""


def test_respond_takes_json_only(client):
    body = json.dumps({"context": ["hi"]})
    for media in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"content-type": media} if media else {}
        assert_client_error(client.post("/v1/respond", content=body, headers=headers), 415, "application/json")
    r = client.post("/v1/respond", content=body, headers={"content-type": "Application/JSON; charset=utf-8"})
    assert r.status_code == 200, r.text


def test_a_turn_longer_than_the_limit_is_refused_before_batching(make_app):
    with TestClient(make_app("full", max_context_chars=10_000)) as c:
        limits = c.get("/v1/info").json()["limits"]
        assert limits["max_turn_chars"] == 4000 and limits["max_context_chars"] == 10_000
        assert_client_error(c.post("/v1/respond", json={"context": ["hi " * 1667]}), 422, "4000 characters a turn")
        assert c.get("/v1/info").json()["batching"]["requests"] == 0


def test_a_context_with_nothing_left_once_normalized_never_joins_a_batch(make_app):
    """It used to fail its whole batch, whose other requests were then answered one at a time."""
    with TestClient(make_app("full", max_batch_size=8, max_wait_ms=300)) as c:
        bodies = [{"context": ["how are you doing today"], "max_len": 6}] * 6 + [{"context": ["\x01"], "max_len": 6}]
        with ThreadPoolExecutor(len(bodies)) as pool:
            replies = list(pool.map(lambda b: c.post("/v1/respond", json=b), bodies))
        stats = c.get("/v1/info").json()["batching"]
    assert_client_error(replies[-1], 422, "empty")
    assert all(r.status_code == 200 for r in replies[:-1])
    assert stats["requests"] == 6 and max(r.json()["batch_size"] for r in replies[:-1]) > 1


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
VALID = {
    "context": st.lists(st.text(max_size=40), min_size=1, max_size=4),
    "generator": st.sampled_from(["pretrained", "adversarial"]),
    "strategy": st.sampled_from(["sample", "greedy", "beam"]),
    "temperature": st.floats(0, 3), "top_p": st.floats(0.01, 1), "top_k": st.integers(0, 200),
    "num_beams": st.integers(1, 5), "max_len": st.integers(1, 24),
}


@st.composite
def bodies(draw) -> object:
    """A valid request with 0-2 fields replaced by anything (or, sometimes, any JSON at all)."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON_VALUES)
    body = draw(st.fixed_dictionaries({"context": VALID["context"]},
                                      optional={k: v for k, v in VALID.items() if k != "context"}))
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(FIELDS + ["extra"]))
        body[key] = draw(JSON_VALUES | st.integers(-5, 40) | st.floats(-2, 30))
    return body


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(bodies())
def test_any_json_body_gets_200_or_a_4xx_never_500(client, body):
    r = client.post("/v1/respond", json=body)
    if r.status_code == 200:
        assert isinstance(r.json()["response"], str)
    else:
        assert_client_error(r)


def test_concurrent_requests_are_batched(make_app):
    with TestClient(make_app("full", max_batch_size=8, max_wait_ms=300)) as c:
        body = {"context": ["how are you doing today"], "max_len": 8}
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda i: c.post("/v1/respond", json=body), range(8)))
        assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
        stats = c.get("/v1/info").json()["batching"]
    assert stats["requests"] == 8 and stats["largest_batch"] > 1 and stats["batches"] < 8
    assert max(r.json()["batch_size"] for r in replies) == stats["largest_batch"]


def test_requests_with_other_options_are_not_batched_together(make_app):
    with TestClient(make_app("full", max_batch_size=16, max_wait_ms=300)) as c:
        bodies = [{"context": ["hi there"], "temperature": t, "max_len": 6} for t in (0.5, 0.9) for _ in range(4)]
        bodies += [{"context": ["hi there"], "generator": "adversarial", "max_len": 6}] * 2
        with ThreadPoolExecutor(len(bodies)) as pool:
            replies = list(pool.map(lambda b: c.post("/v1/respond", json=b), bodies))
        stats = c.get("/v1/info").json()["batching"]
    assert all(r.status_code == 200 for r in replies)
    assert stats["batches"] >= 3 and stats["largest_batch"] <= 4
    assert [r.json()["generator"] for r in replies] == ["pretrained"] * 8 + ["adversarial"] * 2


def test_the_app_survives_a_second_lifespan(make_app):
    app = make_app("full")
    for _ in range(2):
        with TestClient(app) as c:
            assert c.post("/v1/respond", json={"context": ["hi"]}).status_code == 200


def test_no_batching_with_batch_size_one(make_app):
    with TestClient(make_app("full", max_batch_size=1)) as c:
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda i: c.post("/v1/respond", json={"context": ["hi"]}), range(4)))
        stats = c.get("/v1/info").json()["batching"]
    assert all(r.json()["batch_size"] == 1 for r in replies) and stats["batch_sizes"] == {"1": 4}


def test_missing_adversarial_generator(make_app, serve_runs):
    with TestClient(make_app("pretrained")) as c:
        info = c.get("/v1/info").json()["generators"]
        assert info["pretrained"]["available"] and not info["adversarial"]["available"]
        assert "seqgan train" in info["adversarial"]["reason"]
        assert_client_error(c.post("/v1/respond", json={"context": ["hi"], "generator": "adversarial"}), 404,
                            "no adversarial generator")
        assert c.post("/v1/respond", json={"context": ["hi"]}).status_code == 200


def test_serve_command_errors_are_one_line(serve_runs, capsys):
    assert run_cli("serve", "--run-dir", serve_runs["prepared"]) == 2
    err = capsys.readouterr().err.strip()
    assert "seqgan pretrain generator" in err and len(err.splitlines()) == 1
    for flags, needle in ((["--port", "70000"], "--port"), (["--max-batch-size", "0"], "--max-batch-size"),
                          (["--max-wait-ms", "-1"], "--max-wait-ms"), (["--port", "x"], "invalid int")):
        assert run_cli("serve", "--run-dir", serve_runs["full"], *flags) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err


def test_serve_on_a_busy_port_is_one_line(serve_runs, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        assert run_cli("serve", "--run-dir", serve_runs["full"], "--port", s.getsockname()[1]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot listen on 127.0.0.1" in err and len(err.splitlines()) == 1


def test_serve_without_the_extra_says_how_to_install_it(serve_runs, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "seqgan.serve" or m.startswith("seqgan.serve.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi -> ModuleNotFoundError
    assert run_cli("serve", "--run-dir", serve_runs["full"]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install 'seqgan[serve]'" in err and len(err.splitlines()) == 1
