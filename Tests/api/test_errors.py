"""Every bad input gets OpenAI's error shape and the right status; keys are enforced."""

import openai
import pytest
import requests

from conftest import API_KEY

CHAT = "/v1/chat/completions"


def error_of(r, status):
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    return err


def chat_body(model_id, **overrides):
    body = {"model": model_id, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    body.update(overrides)
    return body


def test_malformed_json(server):
    err = error_of(server.post(CHAT, data=b'{"model": "x", "messages": [', headers={"Content-Type": "application/json"}), 400)
    assert err["type"] == "invalid_request_error" and err["param"] is None


def test_body_that_is_not_an_object(server):
    error_of(server.post(CHAT, data=b"[1, 2]"), 400)


def test_invalid_utf8(server):
    body = b'{"model": "x", "messages": [{"role": "user", "content": "\xff\xfe"}]}'
    err = error_of(server.post(CHAT, data=body, headers={"Content-Type": "application/json"}), 400)
    assert "UTF-8" in err["message"]


@pytest.mark.parametrize("field, value", [
    ("temperature", "hot"), ("max_tokens", "ten"), ("stream", "yes"), ("n", 1.5), ("stop", 7), ("messages", "hi"),
    ("logit_bias", [1, 2]),
])
def test_wrong_types_name_the_parameter(server, model_id, field, value):
    err = error_of(server.post(CHAT, chat_body(model_id, **{field: value})), 400)
    assert err["param"] == field
    assert err["code"] == "invalid_type"


def test_wrong_type_inside_a_message(server, model_id):
    err = error_of(server.post(CHAT, chat_body(model_id, messages=[{"role": "user", "content": 42}])), 400)
    assert err["param"] == "messages[0].content"
    err = error_of(server.post(CHAT, chat_body(model_id, messages=[{"role": "user"}])), 400)
    assert err["param"] == "messages[0].content"
    err = error_of(server.post(CHAT, chat_body(model_id, messages=[{"content": "hi"}])), 400)
    assert err["param"] == "messages[0].role" and err["code"] == "missing_required_parameter"
    err = error_of(server.post(CHAT, chat_body(model_id, messages=[{"role": "wizard", "content": "hi"}])), 400)
    assert err["param"] == "messages[0].role"
    err = error_of(server.post(CHAT, chat_body(model_id, messages=[
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])), 400)
    assert err["param"] == "messages[0].content[0].type"


@pytest.mark.parametrize("field, value", [
    ("temperature", 2.5), ("temperature", -1), ("top_p", 1.5), ("n", 0), ("n", 1000), ("max_tokens", 0),
    ("max_tokens", -5), ("presence_penalty", 3), ("frequency_penalty", -2.5), ("top_logprobs", 3),
    ("logit_bias", {"not-a-token": 1}), ("logit_bias", {"1": 1000}), ("logit_bias", {"99999999": 1}),
    ("top_k", -1), ("min_p", 2), ("repetition_penalty", 0), ("stream_options", {"include_usage": True}),
])
def test_out_of_range_values(server, model_id, field, value):
    err = error_of(server.post(CHAT, chat_body(model_id, **{field: value})), 400)
    assert err["param"] == field
    assert err["type"] == "invalid_request_error"


@pytest.mark.parametrize("raw", [b"1e30", b"99999999999999999999", b"-99999999999999999999", b"1e400"])
def test_huge_numbers(server, model_id, raw):
    for field in (b"max_tokens", b"seed", b"n"):
        body = (b'{"model": "' + model_id.encode() + b'", "messages": [{"role": "user", "content": "Hi"}], "'
                + field + b'": ' + raw + b"}")
        err = error_of(server.post(CHAT, data=body, headers={"Content-Type": "application/json"}), 400)
        assert err["param"] == field.decode()
    body = (b'{"model": "' + model_id.encode() + b'", "messages": [{"role": "user", "content": "Hi"}], "temperature": '
            + raw + b"}")
    err = error_of(server.post(CHAT, data=body, headers={"Content-Type": "application/json"}), 400)
    assert err["param"] == "temperature"


def test_empty_and_missing_messages(server, model_id):
    err = error_of(server.post(CHAT, chat_body(model_id, messages=[])), 400)
    assert err["param"] == "messages"
    body = chat_body(model_id)
    del body["messages"]
    err = error_of(server.post(CHAT, body), 400)
    assert err["param"] == "messages" and err["code"] == "missing_required_parameter"


def test_empty_prompt(server, model_id):
    for prompt in ("", [], [[]]):
        err = error_of(server.post("/v1/completions", {"model": model_id, "prompt": prompt}), 400)
        assert err["param"] == "prompt"
    err = error_of(server.post("/v1/completions", {"model": model_id, "prompt": [10**9]}), 400)
    assert err["param"] == "prompt"


def test_context_length_exceeded(server, client, model_id):
    err = error_of(server.post(CHAT, chat_body(model_id, max_tokens=10**9)), 400)
    assert err["code"] == "context_length_exceeded"
    err = error_of(server.post("/v1/completions", {"model": model_id, "prompt": "word " * 9000}), 400)
    assert err["code"] == "context_length_exceeded" and err["param"] == "prompt"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "Hi"}],
                                       max_tokens=10**9)
    assert e.value.code == "context_length_exceeded"


def test_unknown_model(server, client):
    err = error_of(server.post(CHAT, chat_body("gpt-17")), 404)
    assert err["code"] == "model_not_found" and err["param"] == "model"
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-17", prompt="Hi", max_tokens=2)


def test_unknown_route_and_method(server):
    err = error_of(server.get("/v1/nothing-here"), 404)
    assert "/v1/nothing-here" in err["message"]
    r = server.get(CHAT)
    assert error_of(r, 405)["code"] == "method_not_allowed" and r.headers["Allow"] == "POST"
    r = requests.delete(server.url + "/health", timeout=10)
    assert error_of(r, 405)["code"] == "method_not_allowed" and r.headers["Allow"] == "GET"
    error_of(requests.get(server.url + "/favicon.ico"), 404)


def test_body_over_the_limit(server, model_id):
    big = chat_body(model_id, messages=[{"role": "user", "content": "x" * (5 << 20)}])
    err = error_of(server.post(CHAT, big), 413)
    assert err["type"] == "invalid_request_error"


def test_api_key_required(server, model_id):
    r = requests.post(server.url + CHAT, json=chat_body(model_id))
    assert error_of(r, 401)["code"] == "missing_api_key"
    r = requests.post(server.url + CHAT, json=chat_body(model_id), headers={"Authorization": "Bearer wrong"})
    assert error_of(r, 401)["code"] == "invalid_api_key"
    r = requests.get(server.url + "/v1/models", headers={"Authorization": "Basic " + API_KEY})
    error_of(r, 401)
    wrong = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()


def test_errors_are_counted_in_metrics(server, model_id):
    before = server.metrics()
    key = 'swiftlet_errors_total{status="404",code="model_not_found"}'
    error_of(server.post(CHAT, chat_body("gpt-17")), 404)
    assert server.metrics()[key] == before.get(key, 0) + 1
