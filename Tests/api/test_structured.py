"""Structured outputs and tool calling through the API: every constrained generation parses and validates
against its schema (checked with the independent `jsonschema` package), tools round-trip with the official
client, and unsupported schemas get a 400 that names the keyword."""

import json
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import openai
import pydantic
import pytest

CHAT = "/v1/chat/completions"

SCHEMAS = [
    ("Describe a person.", {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 30}, "age": {"type": "integer", "minimum": 0, "maximum": 120},
                       "email": {"type": "string", "pattern": "^[a-z]{1,10}@[a-z]{1,10}\\.(com|org)$"}},
        "required": ["name", "age"], "additionalProperties": False}),
    ("Describe a user account with tags.", {
        "type": "object",
        "properties": {"user": {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string", "maxLength": 20}},
                                "required": ["id", "name"], "additionalProperties": False},
                       "tags": {"type": "array", "items": {"enum": ["admin", "staff", "guest"]}, "minItems": 1, "maxItems": 3}},
        "required": ["user", "tags"], "additionalProperties": False}),
    ("List a few temperatures.", {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 5}),
    ("Report the job status.", {
        "type": "object",
        "properties": {"status": {"enum": ["ok", "error", "pending"]}, "version": {"const": 2}, "kind": {"const": "report"}},
        "required": ["status", "version", "kind"], "additionalProperties": False}),
    ("Give a result.", {
        "type": "object",
        "properties": {"result": {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 10}, {"type": "null"}]}},
        "required": ["result"], "additionalProperties": False}),
    ("Make up a product code.", {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
                       "color": {"type": "string", "pattern": "^#[0-9a-f]{6}$"}},
        "required": ["code", "color"], "additionalProperties": False}),
    ("Describe an item in a shop.", {
        "type": "object",
        "properties": {"price": {"type": "number"}, "in_stock": {"type": "boolean"}, "discount": {"type": "null"},
                       "count": {"type": "integer"}},
        "required": ["price", "in_stock", "discount", "count"], "additionalProperties": False}),
    ("Fill in what you like.", {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "string", "maxLength": 10}, "c": {"type": "boolean"}},
        "additionalProperties": False}),
    ("Give some points.", {
        "type": "array",
        "items": {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
                  "required": ["x", "y"], "additionalProperties": False},
        "minItems": 1, "maxItems": 3}),
    ("Name some animals.", {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 4}),
    ("Maybe give a nickname.", {
        "type": "object", "properties": {"nickname": {"type": ["string", "null"], "maxLength": 12}},
        "required": ["nickname"], "additionalProperties": False}),
    ("Score the answer.", {
        "type": "object",
        "properties": {"score": {"type": "integer", "minimum": -10, "maximum": 10},
                       "level": {"type": "integer", "exclusiveMinimum": 0, "maximum": 5}},
        "required": ["score", "level"], "additionalProperties": False}),
    ("Give two points.", {
        "$defs": {"pt": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                         "required": ["x", "y"], "additionalProperties": False}},
        "type": "object", "properties": {"a": {"$ref": "#/$defs/pt"}, "b": {"$ref": "#/$defs/pt"}},
        "required": ["a", "b"], "additionalProperties": False}),
    ("Write a short title.", {
        "type": "object", "properties": {"title": {"type": "string", "minLength": 3, "maxLength": 16},
                                         "words": {"type": "integer", "minimum": 1, "maximum": 9}},
        "required": ["title", "words"], "additionalProperties": False}),
]
TEMPERATURES = [0, 0.5, 0.8, 1.0]
CHOICES = 4


def response_format(schema, name="answer"):
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def test_generations_always_validate(client, model_id):
    """Every schema at every temperature, several seeded choices each, run concurrently through the batching
    engine: all parse, validate, and finish on their own (none cut by max_tokens)."""

    def run(case):
        (prompt, schema), temperature, seed = case
        reply = client.chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": prompt + " Reply in JSON."}],
            response_format=response_format(schema), temperature=temperature, seed=seed, n=CHOICES, max_tokens=160)
        return schema, temperature, reply

    cases = [(s, t, 100 * i + j) for i, s in enumerate(SCHEMAS) for j, t in enumerate(TEMPERATURES)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(run, cases))
    generations, truncated, invalid = 0, [], []
    for schema, temperature, reply in replies:
        for choice in reply.choices:
            generations += 1
            text = choice.message.content
            if choice.finish_reason != "stop":
                truncated.append((temperature, text))
                continue
            try:
                jsonschema.validate(json.loads(text), schema)
            except (ValueError, jsonschema.ValidationError) as e:
                invalid.append((schema, temperature, text, str(e)[:200]))
    print(f"\n{generations} generations, {len(invalid)} invalid, {len(truncated)} cut by max_tokens")
    assert generations >= 200
    assert not invalid, invalid[:3]
    assert not truncated, truncated[:3]


def test_json_object_mode(client, model_id):
    def ask(temperature, seed):
        return client.chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": "Give a JSON object with a name and a city."}],
            response_format={"type": "json_object"}, temperature=temperature, seed=seed, max_tokens=200).choices[0]
    greedy = ask(0, 3)
    assert greedy.finish_reason == "stop", greedy.message.content
    assert isinstance(json.loads(greedy.message.content), dict)
    # Sampled, a 135M model sometimes rambles past max_tokens inside the object; every reply that ends
    # is an object, and most end.
    sampled = [ask(0.7, seed) for seed in range(1, 7)]
    done = [c for c in sampled if c.finish_reason == "stop"]
    assert len(done) >= 4, [c.message.content[-80:] for c in sampled]
    for c in done:
        assert isinstance(json.loads(c.message.content), dict), c.message.content


def test_streaming_with_schema(client, model_id):
    prompt, schema = SCHEMAS[1]
    stream = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": prompt}], response_format=response_format(schema),
        temperature=0.8, seed=11, max_tokens=160, stream=True)
    text, finish = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    assert finish == "stop"
    jsonschema.validate(json.loads(text), schema)


def test_completions_endpoint_with_schema(server, model_id):
    prompt, schema = SCHEMAS[0]
    for stream in (False, True):
        r = server.post("/v1/completions", {
            "model": model_id, "prompt": "A person as JSON:", "max_tokens": 120, "temperature": 0.5, "seed": 5,
            "response_format": response_format(schema), "stream": stream}, stream=stream)
        assert r.status_code == 200, r.text
        if stream:
            events = [json.loads(line[6:]) for line in r.iter_lines(decode_unicode=True) if line.startswith("data: {")]
            text = "".join(e["choices"][0]["text"] for e in events if e["choices"])
        else:
            text = r.json()["choices"][0]["text"]
        jsonschema.validate(json.loads(text), schema)


def test_schema_key_order_is_kept(client, model_id):
    schema = {"type": "object", "properties": {"zeta": {"type": "integer"}, "alpha": {"type": "integer"}, "mid": {"type": "boolean"}},
              "required": ["zeta", "alpha", "mid"], "additionalProperties": False}
    reply = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "Numbers please."}], response_format=response_format(schema),
        temperature=0, max_tokens=60)
    assert list(json.loads(reply.choices[0].message.content)) == ["zeta", "alpha", "mid"]


# MARK: Errors


def error_of(r, status=400):
    assert r.status_code == status, r.text
    return r.json()["error"]


@pytest.mark.parametrize("schema, keyword", [
    ({"type": "object", "patternProperties": {"^a": {}}}, "patternProperties"),
    ({"if": {"type": "string"}, "then": {"minLength": 1}}, "if"),
    ({"$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}}, "$ref": "#/$defs/n"}, "$ref"),
    ({"type": "string", "pattern": "(?<=a)b"}, "pattern"),
    ({"type": "number", "multipleOf": 0.5}, "multipleOf"),
    ({"type": "array", "maxItems": 10 ** 7}, "maxItems"),
    ({"type": "array", "uniqueItems": True}, "uniqueItems"),
])
def test_unsupported_schema_keyword_is_named(server, model_id, schema, keyword):
    err = error_of(server.post(CHAT, {"model": model_id, "messages": [{"role": "user", "content": "Hi"}],
                                      "response_format": response_format(schema)}))
    assert err["param"] == "response_format" and err["type"] == "invalid_request_error"
    assert keyword in err["message"]


def test_hostile_schemas_are_refused(server, model_id):
    deep = {"type": "string"}
    for _ in range(200):
        deep = {"type": "array", "items": deep}
    huge_enum = {"enum": [f"value number {i}" for i in range(100_000)]}
    blowup = {"type": "string", "pattern": "^((a{900}){900}){900}$"}
    for schema in (deep, huge_enum, blowup):
        err = error_of(server.post(CHAT, {"model": model_id, "messages": [{"role": "user", "content": "Hi"}],
                                          "response_format": response_format(schema)}))
        assert err["param"] == "response_format"


def test_bad_response_format(server, model_id):
    base = {"model": model_id, "messages": [{"role": "user", "content": "Hi"}]}
    assert error_of(server.post(CHAT, {**base, "response_format": {"type": "xml"}}))["param"] == "response_format.type"
    assert error_of(server.post(CHAT, {**base, "response_format": {"type": "json_schema"}}))["param"] == "response_format.json_schema"


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather", "description": "Get the current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
                                                        "unit": {"enum": ["celsius", "fahrenheit"]}},
                       "required": ["city", "unit"], "additionalProperties": False},
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time", "description": "Get the local time in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}},
                       "required": ["city"], "additionalProperties": False},
    },
}
PARAMETERS = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, TIME)}


def test_bad_tool_definitions(server, model_id):
    base = {"model": model_id, "messages": [{"role": "user", "content": "Hi"}]}
    bad_params = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "not": {}}}}
    err = error_of(server.post(CHAT, {**base, "tools": [WEATHER, bad_params]}))
    assert err["param"] == "tools[1].function.parameters" and "not" in err["message"]
    err = error_of(server.post(CHAT, {**base, "tools": [{"type": "function", "function": {"name": "bad name!"}}]}))
    assert err["param"] == "tools[0].function.name"
    err = error_of(server.post(CHAT, {**base, "tools": [{"type": "retrieval", "function": {"name": "f"}}]}))
    assert err["param"] == "tools[0].type"
    err = error_of(server.post(CHAT, {**base, "tools": [WEATHER, WEATHER]}))
    assert err["param"] == "tools[1].function.name"
    err = error_of(server.post(CHAT, {**base, "tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}))
    assert err["param"] == "tool_choice"
    err = error_of(server.post(CHAT, {**base, "tool_choice": "required"}))
    assert err["param"] == "tool_choice"
    err = error_of(server.post(CHAT, {**base, "tools": [WEATHER], "tool_choice": "sometimes"}))
    assert err["param"] == "tool_choice"
    err = error_of(server.post(CHAT, {**base, "messages": [{"role": "tool", "content": "x"}]}))
    assert err["param"] == "messages[0].tool_call_id"


# MARK: Tools


def check_calls(calls):
    for call in calls:
        assert call.type == "function" and call.id
        jsonschema.validate(json.loads(call.function.arguments), PARAMETERS[call.function.name])


def test_tool_round_trip(client, model_id):
    """request → tool_calls → tool result → final answer, with the official client."""
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(
        model=model_id, messages=messages, tools=[WEATHER, TIME], tool_choice="required", temperature=0, max_tokens=100)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    check_calls(choice.message.tool_calls)
    messages.append(choice.message)
    for call in choice.message.tool_calls:
        messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 21, "sky": "clear"})})
    final = client.chat.completions.create(model=model_id, messages=messages, tools=[WEATHER, TIME], tool_choice="none",
                                           temperature=0, max_tokens=60)
    answer = final.choices[0]
    assert answer.message.tool_calls is None
    assert isinstance(answer.message.content, str) and answer.message.content.strip()


def test_tool_choice_named_and_none(client, model_id):
    named = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "What time is it in Tokyo?"}], tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}}, temperature=0.8, seed=1, n=4, max_tokens=80)
    for choice in named.choices:
        assert choice.finish_reason == "tool_calls"
        assert [c.function.name for c in choice.message.tool_calls] == ["get_time"]
        check_calls(choice.message.tool_calls)
    none = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "Say hello."}], tools=[WEATHER], tool_choice="none",
        temperature=0, max_tokens=20)
    assert none.choices[0].message.tool_calls is None and none.choices[0].message.content


def test_parallel_tool_calls(client, model_id):
    """Without parallel calls a reply holds exactly one call; with them, every call in it is valid."""
    messages = [{"role": "user", "content": "What are the weather and the time in Paris and in Rome?"}]
    single = client.chat.completions.create(model=model_id, messages=messages, tools=[WEATHER, TIME], tool_choice="required",
                                            parallel_tool_calls=False, temperature=1.0, seed=5, n=6, max_tokens=100)
    for choice in single.choices:
        assert choice.finish_reason == "tool_calls" and len(choice.message.tool_calls) == 1
        check_calls(choice.message.tool_calls)
    several = client.chat.completions.create(model=model_id, messages=messages, tools=[WEATHER, TIME], tool_choice="required",
                                             temperature=1.0, seed=9, n=6, max_tokens=200)
    for choice in several.choices:
        if choice.finish_reason == "tool_calls":
            check_calls(choice.message.tool_calls)
            assert len({c.id for c in choice.message.tool_calls}) == len(choice.message.tool_calls)


def test_tool_choice_auto_is_text_or_a_valid_call(client, model_id):
    reply = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "What is the weather in Oslo?"}], tools=[WEATHER],
        temperature=1.0, seed=2, n=8, max_tokens=80)
    for choice in reply.choices:
        if choice.finish_reason == "tool_calls":
            check_calls(choice.message.tool_calls)
        else:
            assert choice.message.tool_calls is None and not choice.message.content.lstrip().startswith(("{", "["))


def test_streamed_tool_calls(client, model_id):
    stream = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "Weather in Madrid, please."}], tools=[WEATHER, TIME],
        tool_choice="required", temperature=0.5, seed=4, max_tokens=100, stream=True)
    calls, finish, argument_chunks = {}, None, 0
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        assert not delta.content
        for tc in delta.tool_calls or []:
            call = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
            if tc.id:
                assert call["id"] is None
                call["id"], call["name"] = tc.id, tc.function.name
            call["arguments"] += tc.function.arguments or ""
            argument_chunks += bool(tc.function.arguments)
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls" and calls
    assert argument_chunks > 1, "arguments arrive in several chunks as they are generated"
    for call in calls.values():
        assert call["id"]
        jsonschema.validate(json.loads(call["arguments"]), PARAMETERS[call["name"]])


class Weather(pydantic.BaseModel):
    city: str
    celsius: int


class Forecast(pydantic.BaseModel):
    summary: str
    days: list[Weather]


def test_openai_client_helpers(client, model_id):
    """`chat.completions.parse` with a pydantic response format and `pydantic_function_tool` tools."""
    parsed = client.chat.completions.parse(
        model=model_id, messages=[{"role": "user", "content": "Forecast for Paris."}], response_format=Weather,
        temperature=0, max_tokens=80)
    assert isinstance(parsed.choices[0].message.parsed, Weather)
    tool = openai.pydantic_function_tool(Weather, name="report_weather")
    called = client.chat.completions.parse(
        model=model_id, messages=[{"role": "user", "content": "Report the weather in Rome."}], tools=[tool],
        tool_choice="required", temperature=0, max_tokens=80)
    call = called.choices[0].message.tool_calls[0]
    assert call.function.name == "report_weather" and isinstance(call.function.parsed_arguments, Weather)
    # Nested models ($defs and $ref); unbounded strings and lists may run past max_tokens, as with OpenAI.
    try:
        nested = client.chat.completions.parse(
            model=model_id, messages=[{"role": "user", "content": "A short forecast."}], response_format=Forecast,
            temperature=0, max_tokens=200)
        assert isinstance(nested.choices[0].message.parsed, Forecast)
    except openai.LengthFinishReasonError:
        pass
