"""A property test of `llmscisci serve` over the OpenAI chat-completions request schema.

Hypothesis draws requests: valid ones (any role and content, every sampling field in range,
tiny temperatures included, streamed or not), and valid ones with one client mistake put in
(a wrong type, a number out of bounds or not finite, an oversized list or string, a lone
surrogate, JSON nested too deep, an unknown field or model, a body that is not a JSON object,
another Content-Type). Each is sent to the suite's server together with a fixed greedy probe
request, and then:

- every response is JSON (a stream: every event is JSON, then ``[DONE]``);
- a valid request gets 200 with ``n`` choices; a mistake gets a 4xx in OpenAI's error shape;
- the probe's answer is the one it gets alone, and a deterministic request (greedy or seeded)
  gets the answer it gets alone: no request changes another's answer;
- the server answers the next request, and logged no traceback.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from llmscisci_cfg.serve.protocol import MIN_TEMPERATURE, SEED_MAX, SEED_MIN

PROBE = {
    "messages": [{"role": "user", "content": "What was easy?"}],
    "max_tokens": 4,
    "temperature": 0,
}
SURROGATE = "<<lone surrogate>>"  # in the body's bytes: "\ud800"
DEEP = "<<deep>>"  # in the body's bytes: a list nested 1000 deep
FIELDS = [
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
    "seed", "n", "stop", "stream", "stream_options", "response_format", "user",
]  # fmt: skip

text = st.text(max_size=30)
content = st.one_of(
    text,
    st.none(),
    st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": text}), max_size=2),
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "developer"]), "content": content},
    optional={"name": st.text(min_size=1, max_size=8)},
)
temperature = st.one_of(
    st.floats(0, 2), st.sampled_from([0.0, 5e-324, 1e-300, MIN_TEMPERATURE / 2, 2.0])
)
valid = st.fixed_dictionaries(
    {"messages": st.lists(message, min_size=1, max_size=3), "max_tokens": st.integers(1, 5)},
    optional={
        "model": st.just("builtin:tiny"),
        "max_completion_tokens": st.integers(1, 5),
        "temperature": temperature,
        "top_p": st.floats(0, 1, exclude_min=True),
        "seed": st.one_of(st.integers(SEED_MIN, SEED_MAX), st.integers(0, 100)),
        "n": st.integers(1, 3),
        "stop": st.one_of(st.none(), text, st.lists(st.text(max_size=4), max_size=4)),
        "stream": st.booleans(),
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
        "response_format": st.sampled_from([{"type": "text"}, {"type": "json_object"}]),
        "user": text,
    },
)

not_an_int = st.one_of(st.booleans(), st.floats(), st.text(max_size=3), st.just([1]))
not_a_float = st.one_of(st.booleans(), st.text(max_size=3), st.lists(st.integers(), max_size=1))
too_deep = st.integers(300, 3000).map(lambda d: "[" * d + "]" * d)
#: (field, a value that is a mistake there); json.dumps writes NaN/Infinity, JSON has neither
wrong_values = st.one_of(
    st.tuples(st.sampled_from(["max_tokens", "max_completion_tokens"]), st.one_of(
        not_an_int, st.integers(max_value=0), st.integers(min_value=2048, max_value=2**70)
    )),
    st.tuples(st.just("n"), st.one_of(
        not_an_int, st.integers(max_value=0), st.integers(min_value=17)
    )),
    st.tuples(st.just("seed"), st.one_of(
        st.booleans(), st.floats(), st.text(max_size=3),
        st.integers(min_value=SEED_MAX + 1), st.integers(max_value=SEED_MIN - 1),
    )),
    st.tuples(st.just("temperature"), st.one_of(
        not_a_float, st.floats(max_value=-1e-9), st.floats(min_value=2.000001),
        st.sampled_from([float("nan"), float("inf"), float("-inf")]),
    )),
    st.tuples(st.just("top_p"), st.one_of(
        not_a_float, st.floats(max_value=0), st.floats(min_value=1.000001),
        st.just(float("nan")),
    )),
    st.tuples(st.just("stop"), st.one_of(
        st.lists(text, min_size=5, max_size=8), st.text(min_size=513, max_size=600),
        st.integers(), st.lists(st.integers(), min_size=1, max_size=2),
    )),
    st.tuples(st.sampled_from(["stream", "stream_options"]), st.one_of(
        st.integers(), st.text(max_size=3), st.just({"include_usage": 1})
    )),
    st.tuples(st.just("messages"), st.one_of(
        st.just([]), text, st.just([{"role": "tool", "content": "x"}]),
        st.just([{"role": "user", "content": 7}]), st.just([{"content": "no role"}]),
        st.just([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
        st.just([{"role": "user", "content": SURROGATE}]),
        st.just([{"role": "user", "content": "x"}] * 4097),
    )),
    st.tuples(st.just("model"), st.one_of(st.text(min_size=1).filter(lambda m: m != "builtin:tiny"), st.integers())),
    st.tuples(st.just("response_format"), st.one_of(
        st.just({"type": "xml"}), st.just({"type": "json_object", "strict": 1}),
        st.just({"type": "json_schema", "json_schema": {"schema": {"type": "string", "pattern": "a+"}}}),
    )),
    st.tuples(st.just("user"), st.sampled_from([DEEP, SURROGATE, 7, ["a"]])),
    st.tuples(
        st.text(min_size=1, max_size=12).filter(lambda k: k not in FIELDS), st.integers()
    ),
)  # fmt: skip
#: a body that is wrong as a whole: (Content-Type, bytes)
wrong_bodies = st.one_of(
    st.tuples(st.just("application/json"), st.sampled_from([b"", b"[]", b"null", b"{", b"42"])),
    st.tuples(st.just("application/json"), too_deep.map(lambda d: f'{{"messages": {d}}}'.encode())),
    st.tuples(st.sampled_from(["text/plain", "application/x-www-form-urlencoded", ""]), st.just(None)),
)  # fmt: skip


@st.composite
def cases(draw):
    """(body bytes, Content-Type, the request drawn, whether the body holds a mistake)."""
    request = draw(valid)
    kind = draw(st.sampled_from(["valid", "value", "body"] + ["valid", "value"] * 2))
    content_type = "application/json"
    if kind == "value":
        field, value = draw(wrong_values)
        request = {**request, field: value}
        if field == "max_tokens":  # with max_completion_tokens, that one is read (as vLLM does),
            request.pop("max_completion_tokens", None)  # and a too-large max_tokens is moot
    raw = json.dumps(request).replace(json.dumps(SURROGATE), '"\\ud800"')
    raw = raw.replace(json.dumps(DEEP), "[" * 1000 + "]" * 1000).encode()
    if kind == "body":
        content_type, body = draw(wrong_bodies)
        raw = raw if body is None else body
    event(kind)
    return raw, content_type, request, kind != "valid"


def _post(client: httpx.Client, raw: bytes, content_type: str) -> httpx.Response:
    headers = {"content-type": content_type} if content_type else {}
    return client.post("/chat/completions", content=raw, headers=headers)


def _texts(response: httpx.Response, streamed: bool) -> list[str]:
    """Every choice's text, checking that the answer is JSON throughout."""
    if not streamed:
        assert response.headers["content-type"] == "application/json"
        return [c["message"]["content"] for c in response.json()["choices"]]
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]", events[-3:]
    texts: dict[int, str] = {}
    for chunk in map(json.loads, events[:-1]):
        assert "error" not in chunk, chunk
        for choice in chunk["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + (
                choice["delta"].get("content") or ""
            )
    return [texts[i] for i in sorted(texts)]


@pytest.fixture(scope="module")
def probe_alone(server) -> list[dict]:
    """The probe's choices when it is sent alone."""
    return httpx.post(f"{server.url}/chat/completions", json=PROBE, timeout=60).json()["choices"]


def _check(server, probe_alone, case) -> None:
    raw, content_type, request, mistake = case
    with httpx.Client(base_url=server.url, timeout=60) as client, ThreadPoolExecutor(2) as pool:
        sent = pool.submit(_post, client, raw, content_type)
        probe = pool.submit(client.post, "/chat/completions", json=PROBE)
        response, probe = sent.result(), probe.result()
        assert probe.status_code == 200 and probe.json()["choices"] == probe_alone
        if mistake:
            assert 400 <= response.status_code < 500, (response.status_code, response.text)
            assert response.headers["content-type"] == "application/json"
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"} and error["message"]
        else:
            assert response.status_code == 200, response.text
            streamed = request.get("stream", False)
            texts = _texts(response, streamed)
            assert len(texts) == request.get("n", 1)
            greedy = request.get("temperature", 1.0) < MIN_TEMPERATURE
            if greedy or request.get("seed") is not None:  # deterministic: as it is alone
                assert _texts(_post(client, raw, content_type), streamed) == texts
        assert client.get("/models").status_code == 200
    assert "Traceback" not in server.stderr()


_SLOW_OK = [HealthCheck.too_slow]


@settings(max_examples=15, deadline=None, suppress_health_check=_SLOW_OK)
@given(case=cases())
def test_every_request_gets_json_mistakes_4xx_and_no_neighbour_changes(server, probe_alone, case):
    _check(server, probe_alone, case)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=_SLOW_OK)
@given(case=cases())
def test_many_requests_get_json_mistakes_4xx_and_no_neighbour_changes(server, probe_alone, case):
    _check(server, probe_alone, case)
