"""Serving another architecture than the default: Gemma 3 270M (gemma3: sliding-window layers, K-quants,
a 262k SentencePiece vocabulary, and the built-in Gemma chat template since its file carries none),
through the official openai client. scripts/test has pulled it (`swiftlet pull gemma3-270m`)."""

import os

import pytest

from conftest import API_KEY, Server

GEMMA = os.environ.get("SWIFTLET_GEMMA3_PATH", "gemma3-270m")


@pytest.fixture(scope="module")
def gemma():
    s = Server(api_key=API_KEY, model=GEMMA)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def gemma_client(gemma):
    import openai

    return openai.OpenAI(base_url=gemma.url + "/v1", api_key=API_KEY, max_retries=0, timeout=300)


def test_lists_the_model(gemma_client):
    ids = [m.id for m in gemma_client.models.list().data]
    assert any("gemma" in i.lower() for i in ids), ids


def test_chat_uses_gemmas_turns_and_stops_at_end_of_turn(gemma_client):
    messages = [{"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": "Name a primary colour."}]
    model = gemma_client.models.list().data[0].id
    a = gemma_client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=40)
    b = gemma_client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=40)
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.choices[0].finish_reason in ("stop", "length")
    text = a.choices[0].message.content
    assert text and "<end_of_turn>" not in text and "<start_of_turn>" not in text
    # <bos><start_of_turn>user\n + "Answer briefly.\n\nName a primary colour." + <end_of_turn>\n<start_of_turn>model\n
    assert 15 <= a.usage.prompt_tokens <= 30, a.usage


def test_streamed_equals_whole_at_temperature_zero(gemma_client):
    model = gemma_client.models.list().data[0].id
    messages = [{"role": "user", "content": "Write one sentence about the sea."}]
    whole = gemma_client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=32)
    stream = gemma_client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=32,
                                                  stream=True)
    parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(parts) == whole.choices[0].message.content


def test_long_prompt_past_the_sliding_window(gemma_client):
    """A prompt of ~700 tokens (past the 512-token window of its local layers) at the API's default
    sampling (temperature 1)."""
    model = gemma_client.models.list().data[0].id
    text = "The tide comes in and the tide goes out. " * 70
    r = gemma_client.completions.create(model=model, prompt=text, max_tokens=16, seed=7)
    assert r.usage.prompt_tokens > 512, r.usage
    assert r.usage.completion_tokens >= 1
    again = gemma_client.completions.create(model=model, prompt=text, max_tokens=16, seed=7)
    assert again.choices[0].text == r.choices[0].text


# A mixture of experts: the tiny Qwen 2 MoE test model (4 experts, 2 used per token, 2 layers, a shared
# expert), whose byte vocabulary makes every byte of a prompt a token.
TINY_MOE = os.path.join(os.path.dirname(__file__), "..", "ModelsTests", "Fixtures", "tiny", "tiny-qwen2moe.gguf")


@pytest.fixture(scope="module")
def moe():
    s = Server(api_key=API_KEY, model=os.path.abspath(TINY_MOE))
    try:
        yield s
    finally:
        s.stop()


def expert_tokens(server):
    return sum(v for k, v in server.metrics().items() if k.startswith("swiftlet_expert_tokens_total"))


def test_moe_serves_completions_and_counts_tokens_per_expert(moe):
    import openai

    client = openai.OpenAI(base_url=moe.url + "/v1", api_key=API_KEY, max_retries=0, timeout=300)
    model = client.models.list().data[0].id
    before = expert_tokens(moe)
    r = client.completions.create(model=model, prompt="A mixture of experts, routed per token.", max_tokens=12,
                                  seed=5, logit_bias={"1": -100})
    assert r.usage.completion_tokens == 12
    # Every computed token (the prompt and all but the last generated one) ran 2 experts in each of 2 layers.
    computed = r.usage.prompt_tokens + r.usage.completion_tokens - 1
    assert expert_tokens(moe) - before == 2 * 2 * computed
    per_expert = {k: v for k, v in moe.metrics().items() if k.startswith("swiftlet_expert_tokens_total")}
    assert len(per_expert) >= 2, per_expert
    # Streamed and batched requests at temperature 0 agree with the whole one.
    whole = client.completions.create(model=model, prompt="Experts", max_tokens=8, temperature=0)
    stream = client.completions.create(model=model, prompt="Experts", max_tokens=8, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == whole.choices[0].text
    two = client.completions.create(model=model, prompt="Experts", max_tokens=8, temperature=0, n=2)
    assert [c.text for c in two.choices] == [whole.choices[0].text] * 2
