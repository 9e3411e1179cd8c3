"""The Responses API (POST/GET/DELETE /v1/responses) with the official openai client against `swiftlet serve`:
create, previous_response_id conversations, stored responses, the typed stream events, .parse with a pydantic
model, function tools and their outputs, and clear 4xx for bad requests."""

import json

import openai
import pytest
import requests
from pydantic import BaseModel

from conftest import API_KEY

TOOLS = [{
    "type": "function", "name": "get_weather", "description": "The weather in a city.", "strict": True,
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                   "additionalProperties": False},
}]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def model(client):
    return client.models.list().data[0].id


def test_create_continue_retrieve_delete(client, model):
    first = client.responses.create(model=model, input="Name three fruits.", max_output_tokens=48, temperature=0)
    assert first.object == "response" and first.status == "completed" and first.id.startswith("resp_")
    assert first.output[0].type == "message" and first.output[0].role == "assistant"
    assert first.output_text.strip()
    assert first.usage.input_tokens > 0 and first.usage.output_tokens > 0
    assert first.usage.total_tokens == first.usage.input_tokens + first.usage.output_tokens
    assert first.usage.output_tokens_details.reasoning_tokens == 0
    # The same request without the earlier turn is shorter than the one continuing it.
    second = client.responses.create(model=model, input="And three vegetables?", previous_response_id=first.id,
                                     max_output_tokens=48, temperature=0)
    alone = client.responses.create(model=model, input="And three vegetables?", max_output_tokens=48, temperature=0)
    assert second.previous_response_id == first.id
    assert second.usage.input_tokens > alone.usage.input_tokens + first.usage.output_tokens
    # The continued turn is computed from the stored conversation: its prefix is cached.
    assert second.usage.input_tokens_details.cached_tokens > 0
    got = client.responses.retrieve(first.id)
    assert got.id == first.id and got.output_text == first.output_text
    deleted = client.responses.delete(first.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=model, input="More?", previous_response_id=first.id, max_output_tokens=8)


def test_store_false_is_not_kept(client, model):
    r = client.responses.create(model=model, input="Hi.", max_output_tokens=8, store=False)
    assert r.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)


def test_length_limit_is_incomplete(client, model):
    r = client.responses.create(model=model, input="Write a long story about the sea.", max_output_tokens=5, temperature=0)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 5


def test_stream_events_add_up(client, model):
    whole = client.responses.create(model=model, input="Say hello.", max_output_tokens=96, temperature=0)
    events = []
    with client.responses.stream(model=model, input="Say hello.", max_output_tokens=96, temperature=0) as stream:
        for event in stream:
            events.append(event)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text == whole.output_text
    done = [e for e in events if e.type == "response.output_text.done"]
    assert len(done) == 1 and done[0].text == deltas
    assert client.responses.retrieve(final.id).output_text == deltas


class City(BaseModel):
    name: str
    country: str


def test_parse_follows_the_schema(client, model):
    r = client.responses.parse(model=model, input="Describe Paris as JSON.", text_format=City, max_output_tokens=96,
                               temperature=0)
    assert isinstance(r.output_parsed, City) and r.output_parsed.name


def test_function_tools(client, model):
    r = client.responses.create(model=model, input="What is the weather in Paris?", tools=TOOLS,
                                tool_choice="required", max_output_tokens=64, temperature=0)
    calls = [o for o in r.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_weather" and calls[0].call_id
    assert set(json.loads(calls[0].arguments)) == {"city"}
    # Its output, as the next turn's input, continues the stored conversation.
    after = client.responses.create(
        model=model, previous_response_id=r.id, tools=TOOLS, max_output_tokens=48, temperature=0,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 22 C"}])
    assert after.status in ("completed", "incomplete") and after.usage.input_tokens > r.usage.input_tokens
    # The same history sent whole (as the Agents SDK does) instead of by id.
    history = [{"role": "user", "content": "What is the weather in Paris?"},
               {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather",
                "arguments": calls[0].arguments, "id": calls[0].id, "status": "completed"},
               {"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 22 C"}]
    whole = client.responses.create(model=model, input=history, tools=TOOLS, max_output_tokens=48, temperature=0)
    assert whole.usage.input_tokens == after.usage.input_tokens


def test_function_tools_streamed(client, model):
    with client.responses.stream(model=model, input="Weather in Rome?", tools=TOOLS, tool_choice="required",
                                 max_output_tokens=64, temperature=0) as stream:
        events = list(stream)
        final = stream.get_final_response()
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    call = [o for o in final.output if o.type == "function_call"][0]
    assert args == call.arguments and json.loads(args)["city"]
    assert any(e.type == "response.function_call_arguments.done" and e.arguments == args for e in events)


def bad(server, body, status=400):
    r = requests.post(server.url + "/v1/responses", json=body, headers=server.headers(), timeout=60)
    assert r.status_code == status, (r.status_code, r.text)
    return r.json()["error"]


def test_bad_requests(server, model):
    assert bad(server, {"model": model})["param"] == "input"
    assert bad(server, {"model": model, "input": 5})["param"] == "input"
    assert bad(server, {"model": model, "input": []})["param"] == "input"
    assert bad(server, {"model": model, "input": [{"type": "web_search_call"}]})["param"] == "input[0].type"
    assert bad(server, {"model": model, "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]})[
        "param"] == "input[0].content[0]"
    assert bad(server, {"model": model, "input": [{"role": "robot", "content": "hi"}]})["param"] == "input[0].role"
    assert bad(server, {"model": model, "input": [{"type": "function_call_output", "output": "x"}]})["param"] == "input[0].call_id"
    assert bad(server, {"model": model, "input": "hi", "tools": [{"type": "web_search"}]})["param"] == "tools[0].type"
    assert bad(server, {"model": model, "input": "hi", "tool_choice": "sometimes"})["param"] == "tool_choice"
    assert bad(server, {"model": model, "input": "hi", "text": {"format": {"type": "xml"}}})["param"] == "text.format.type"
    assert bad(server, {"model": model, "input": "hi", "max_output_tokens": 0})["param"] == "max_output_tokens"
    assert bad(server, {"model": model, "input": "hi", "temperature": 3})["param"] == "temperature"
    assert bad(server, {"model": model, "input": "hi", "previous_response_id": "resp_nope"}, 404)["code"] == "not_found"
    assert bad(server, {"model": "nope", "input": "hi"}, 404)
    r = requests.get(server.url + "/v1/responses/resp_nope", headers=server.headers(), timeout=60)
    assert r.status_code == 404
    r = requests.delete(server.url + "/v1/responses/resp_nope", headers=server.headers(), timeout=60)
    assert r.status_code == 404
