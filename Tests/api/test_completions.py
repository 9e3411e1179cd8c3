"""Chat and text completions through the official openai client, checked against `swiftlet generate`."""

import concurrent.futures
import subprocess

import openai
import pytest

from conftest import BIN, THREADS, cli_generate, model_args, printed

SYSTEM = "You are a terse assistant."
QUESTION = "What is the capital of France?"
PROMPT = "The capital of France is"


def test_models_list_and_retrieve(client, model_id):
    models = client.models.list().data
    assert [m.id for m in models] == [model_id]
    assert models[0].object == "model" and models[0].owned_by == "swiftlet" and models[0].created > 0
    assert client.models.retrieve(model_id).id == model_id
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("no-such-model")
    assert e.value.body["code"] == "model_not_found"


def test_chat_greedy_equals_cli(client, model_id):
    r = client.chat.completions.create(
        model=model_id, messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
        temperature=0, max_tokens=24)
    out, prompt_tokens, generated = cli_generate(QUESTION, 24, chat=True, system=SYSTEM)
    choice = r.choices[0]
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.model == model_id
    assert choice.message.role == "assistant" and choice.index == 0
    assert printed(choice.message.content, chat=True) == out
    assert r.usage.prompt_tokens == prompt_tokens
    assert r.usage.completion_tokens == generated
    assert r.usage.total_tokens == prompt_tokens + generated
    assert choice.finish_reason == ("length" if generated == 24 else "stop")


def test_prompt_tokens_are_the_chat_templated_count(client, model_id):
    # The model's template is ChatML; tokenizing the rendered conversation by hand gives the count.
    rendered = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    r = subprocess.run([BIN, "tokenize", "--parse-special", *model_args(), rendered], capture_output=True, text=True,
                       check=True)
    expected = len(r.stdout.split())
    resp = client.chat.completions.create(
        model=model_id, messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
        temperature=0, max_tokens=1)
    assert resp.usage.prompt_tokens == expected


def test_content_parts_equal_plain_string(client, model_id):
    plain = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=8)
    parts = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": [{"type": "text", "text": QUESTION}]}],
        temperature=0, max_tokens=8)
    assert parts.choices[0].message.content == plain.choices[0].message.content
    assert parts.usage.prompt_tokens == plain.usage.prompt_tokens


def test_completion_greedy_equals_cli_and_max_tokens_gives_length(client, model_id):
    r = client.completions.create(model=model_id, prompt=PROMPT, temperature=0, max_tokens=16)
    out, prompt_tokens, generated = cli_generate(PROMPT, 16)
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    assert printed(r.choices[0].text) == out
    assert generated == 16
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == prompt_tokens and r.usage.completion_tokens == 16


def test_max_completion_tokens(client, model_id):
    r = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "Count from one to one hundred in words."}],
        temperature=0, max_completion_tokens=5)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 5


def test_stop_sequences_end_text_before_them(client, model_id):
    full = client.completions.create(model=model_id, prompt=PROMPT, temperature=0, max_tokens=24).choices[0].text
    words = full.split()
    assert len(words) >= 3, full
    stop = words[2]
    expected = full[: full.index(stop)]
    for stop_param in (stop, [stop, "never-generated-zzz"]):
        r = client.completions.create(model=model_id, prompt=PROMPT, temperature=0, max_tokens=24, stop=stop_param)
        assert r.choices[0].text == expected
        assert r.choices[0].finish_reason == "stop"
    # The CLI agrees.
    out, _, _ = cli_generate(PROMPT, 24, stop=[stop])
    assert out == printed(expected)
    # Streaming never shows any part of the stop string.
    chunks = client.completions.create(model=model_id, prompt=PROMPT, temperature=0, max_tokens=24, stop=[stop],
                                       stream=True)
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert "".join(texts) == expected


def test_chat_stop_sequence(client, model_id):
    messages = [{"role": "user", "content": "List three colours, one per line."}]
    full = client.chat.completions.create(model=model_id, messages=messages, temperature=0, max_tokens=24)
    text = full.choices[0].message.content
    assert len(text) > 4
    stop = text[3:5]
    r = client.chat.completions.create(model=model_id, messages=messages, temperature=0, max_tokens=24, stop=stop)
    assert r.choices[0].message.content == text[: text.index(stop)]
    assert stop not in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"


def test_n_greedy_choices_are_identical(client, model_id):
    r = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": QUESTION}],
                                       temperature=0, max_tokens=8, n=2)
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].message.content == r.choices[1].message.content
    single = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": QUESTION}],
                                            temperature=0, max_tokens=8)
    assert r.usage.completion_tokens == 2 * single.usage.completion_tokens
    assert r.usage.prompt_tokens == single.usage.prompt_tokens


def test_seed_reproduces_sampling_and_choices_differ(client, model_id):
    def sample(seed, n=3):
        r = client.completions.create(model=model_id, prompt="Once upon a time", temperature=1.0, max_tokens=16,
                                      seed=seed, n=n)
        return [c.text for c in r.choices]

    first = sample(1234)
    assert len(first) == 3
    assert sample(1234) == first
    # Choice i uses seed + i: choice 1 of seed 1234 is choice 0 of seed 1235.
    assert sample(1235, n=1) == first[1:2]
    assert len(set(first)) > 1


def test_chat_logprobs(client, model_id):
    r = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": QUESTION}],
                                       temperature=0, max_tokens=8, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert b"".join(bytes(t.bytes) for t in content).decode() == r.choices[0].message.content
    for t in content:
        assert t.logprob <= 0
        assert len(t.top_logprobs) == 3
        assert [a.logprob for a in t.top_logprobs] == sorted([a.logprob for a in t.top_logprobs], reverse=True)
        # Greedy: the chosen token is the most likely one.
        assert t.top_logprobs[0].token == t.token and t.top_logprobs[0].logprob == pytest.approx(t.logprob)
        assert bytes(t.bytes).decode("utf-8", "replace") == t.token
    plain = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": QUESTION}],
                                           temperature=0, max_tokens=8)
    assert plain.choices[0].logprobs is None


def test_completion_logprobs_with_echo(client, model_id):
    r = client.completions.create(model=model_id, prompt=PROMPT, temperature=0, max_tokens=4, logprobs=2, echo=True)
    choice = r.choices[0]
    lp = choice.logprobs
    prompt_tokens = r.usage.prompt_tokens
    assert choice.text.startswith(PROMPT)
    assert len(lp.tokens) == prompt_tokens + 4
    assert "".join(lp.tokens) == choice.text
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(x is not None and x <= 0 for x in lp.token_logprobs[1:])
    assert all(0 < len(d) <= 2 for d in lp.top_logprobs[1:])
    assert lp.text_offset[0] == 0
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(lp.tokens))]
    # Without echo, offsets continue after the prompt, and the generated part is unchanged.
    plain = client.completions.create(model=model_id, prompt=PROMPT, temperature=0, max_tokens=4, logprobs=2)
    assert plain.choices[0].text == choice.text[len(PROMPT):]
    assert plain.choices[0].logprobs.tokens == lp.tokens[prompt_tokens:]
    assert plain.choices[0].logprobs.text_offset[0] == len(PROMPT)
    assert plain.choices[0].logprobs.token_logprobs == pytest.approx(lp.token_logprobs[prompt_tokens:], abs=1e-4)


def test_prompt_array_gives_a_choice_per_prompt(client, model_id):
    prompts = [PROMPT, "One, two, three,"]
    r = client.completions.create(model=model_id, prompt=prompts, temperature=0, max_tokens=6)
    assert [c.index for c in r.choices] == [0, 1]
    for prompt, choice in zip(prompts, r.choices):
        single = client.completions.create(model=model_id, prompt=prompt, temperature=0, max_tokens=6)
        assert choice.text == single.choices[0].text


def test_many_concurrent_requests_all_answered_correctly(client, model_id):
    prompts = [f"Fact number {i}:" for i in range(8)]
    expected = {p: client.completions.create(model=model_id, prompt=p, temperature=0, max_tokens=8).choices[0].text
                for p in prompts}
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = {p: pool.submit(client.completions.create, model=model_id, prompt=p, temperature=0, max_tokens=8)
                   for p in prompts}
        got = {p: f.result().choices[0].text for p, f in futures.items()}
    assert got == expected


def test_sampling_extensions_are_accepted(client, model_id):
    r = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": QUESTION}], max_tokens=8, temperature=0.7, top_p=0.9,
        seed=3, presence_penalty=0.5, frequency_penalty=0.5, logit_bias={"1": -100}, user="tests",
        extra_body={"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1})
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 8
