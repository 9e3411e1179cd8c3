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
