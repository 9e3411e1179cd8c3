"""The OpenAI Agents SDK's default model class (OpenAIResponsesModel, over the Responses API) running agents to
completion against `swiftlet serve`: one answering in text, one calling a Python function tool with arguments
the model wrote, the SDK executing it and ending the run on its result. (SmolLM2-135M keeps calling a tool it
is offered, so the tool agent stops at its first call rather than asking the model again.)"""

import asyncio

import agents

from conftest import API_KEY


def run(coro):
    return asyncio.run(coro)


def model_for(server):
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=300)
    return agents.OpenAIResponsesModel(model="smollm2", openai_client=client)


def test_agent_answers_in_text(server):
    agents.set_tracing_disabled(True)
    agent = agents.Agent(name="brief", instructions="Answer in one short sentence.", model=model_for(server),
                         model_settings=agents.ModelSettings(temperature=0, max_tokens=48))
    result = run(agents.Runner.run(agent, "What color is the sky on a clear day?"))
    assert isinstance(result.final_output, str) and result.final_output.strip()
    assert [type(i).__name__ for i in result.new_items] == ["MessageOutputItem"]


def test_agent_calls_a_function_tool(server):
    agents.set_tracing_disabled(True)
    cities = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        cities.append(city)
        return f"Sunny and 22 C in {city}."

    agent = agents.Agent(name="weather", instructions="Use get_weather to answer weather questions.",
                         tools=[get_weather], model=model_for(server), tool_use_behavior="stop_on_first_tool",
                         model_settings=agents.ModelSettings(temperature=0, max_tokens=96, tool_choice="required"))
    result = run(agents.Runner.run(agent, "What is the weather in Paris?", max_turns=3))
    assert len(cities) == 1 and cities[0].strip()
    assert result.final_output == f"Sunny and 22 C in {cities[0]}."
    kinds = [type(i).__name__ for i in result.new_items]
    assert kinds == ["ToolCallItem", "ToolCallOutputItem"], kinds
