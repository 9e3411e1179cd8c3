import Foundation

/// A parsed Jinja template. Parse once, render many times; safe to share across tasks.
///
/// Rendering follows jinja2 with `trim_blocks=True, lstrip_blocks=True` (the settings HF transformers and
/// llama-cpp-python use for chat templates) and jinja2's default `Undefined`.
public struct Template: Sendable {
    let nodes: [Node]

    public init(_ source: String) throws {
        nodes = try Parser.parse(source)
    }

    /// Renders with `context`. `now` is what `strftime_now(...)` formats (local time zone).
    public func render(_ context: [String: JinjaValue], now: Date = Date()) throws -> String {
        let interpreter = Interpreter(context: context, now: now)
        var out = ""
        out.reserveCapacity(1024)
        _ = try interpreter.render(nodes, into: &out)
        return out
    }
}

public struct ChatMessage: Sendable, Equatable {
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }

    public var jinjaValue: JinjaValue { ["role": .string(role), "content": .string(content)] }
}

/// A model's `tokenizer.chat_template` with its special tokens.
public struct ChatTemplate: Sendable {
    public let template: Template
    public let bosToken: String
    public let eosToken: String
    /// The template mentions `tools`: it can describe tools to the model itself.
    public let supportsTools: Bool

    public init(source: String, bosToken: String, eosToken: String) throws {
        template = try Template(source)
        supportsTools = source.contains("tools")
        self.bosToken = bosToken
        self.eosToken = eosToken
    }

    /// Renders plain text messages. `extra` adds or overrides context variables (e.g. `tools`, `date_string`).
    public func render(messages: [ChatMessage], addGenerationPrompt: Bool, extra: [String: JinjaValue] = [:],
                       now: Date = Date()) throws -> String {
        try render(messages: messages.map(\.jinjaValue), addGenerationPrompt: addGenerationPrompt, extra: extra, now: now)
    }

    /// Renders messages given as values, e.g. with `tool_calls` decoded from JSON.
    public func render(messages: [JinjaValue], addGenerationPrompt: Bool, extra: [String: JinjaValue] = [:],
                       now: Date = Date()) throws -> String {
        var context: [String: JinjaValue] = [
            "messages": .array(messages),
            "add_generation_prompt": .bool(addGenerationPrompt),
            "bos_token": .string(bosToken),
            "eos_token": .string(eosToken),
        ]
        context.merge(extra) { _, new in new }
        return try template.render(context, now: now)
    }
}
