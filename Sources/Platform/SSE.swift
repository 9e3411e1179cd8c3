import Foundation
import NIOCore

/// One server-sent event from a replica, kept verbatim for forwarding, with what the gateway needs
/// to know of it.
public struct SSEEvent: Sendable {
    public var raw: ByteBuffer
    public var isDone = false
    /// Choices in it that carry generated text or a finish reason.
    public var tokenChunks = 0
    public var finished = false
    public var isError = false
    /// The error event's message, for the log and the client's error.
    public var errorMessage: String?
    /// The usage object, if any: (prompt, completion).
    public var usage: (prompt: Int, completion: Int)?
    /// A chunk with no choices that only carries usage.
    public var usageOnly = false
    /// The Responses API's last event (`response.completed`, `.incomplete`, `.failed`): it goes to the
    /// client, and no `[DONE]` follows it.
    public var isTerminal = false
    /// A terminal event's response object (JSON), which the gateway stores.
    public var response: Data?

    /// After this event, output has started: a failure is no longer retried. An error event is not
    /// output: before any token it is a failure like any other (retried elsewhere).
    public var commits: Bool { isDone || tokenChunks > 0 || finished }

    /// Token counts a replica reports, sane or nothing (a count beyond 2^40 is not a real one).
    static func count(_ value: Any?) -> Int? {
        guard let n = value as? Int, (0...(1 << 40)).contains(n) else { return nil }
        return n
    }

    public init(data: String, raw: ByteBuffer) {
        self.raw = raw
        if data == "[DONE]" {
            isDone = true
            return
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any] else { return }
        if let error = object["error"] {
            isError = true
            errorMessage = ((error as? [String: Any])?["message"] as? String).map { String($0.prefix(500)) }
        }
        if let type = object["type"] as? String, type.hasPrefix("response.") {
            responsesEvent(type, object)
            return
        }
        if let u = object["usage"] as? [String: Any], let p = Self.count(u["prompt_tokens"]),
           let c = Self.count(u["completion_tokens"]) {
            usage = (p, c)
        }
        let choices = object["choices"] as? [[String: Any]] ?? []
        usageOnly = choices.isEmpty && usage != nil
        for choice in choices {
            let delta = choice["delta"] as? [String: Any]
            let text = (delta?["content"] as? String) ?? (choice["text"] as? String) ?? ""
            if !text.isEmpty { tokenChunks += 1 }
            if !(choice["finish_reason"] is NSNull), choice["finish_reason"] != nil { finished = true }
        }
    }
}

extension SSEEvent {
    /// The Responses API's typed events: text and call-argument deltas are output; the terminal event
    /// carries the usage (input and output tokens) and the finished response.
    mutating func responsesEvent(_ type: String, _ object: [String: Any]) {
        switch type {
        case "response.output_text.delta", "response.function_call_arguments.delta", "response.refusal.delta":
            if let delta = object["delta"] as? String, !delta.isEmpty { tokenChunks = 1 }
        case "response.completed", "response.incomplete", "response.failed":
            isTerminal = true
            finished = true
            guard let r = object["response"] as? [String: Any] else { return }
            if let u = r["usage"] as? [String: Any], let p = Self.count(u["input_tokens"]), let c = Self.count(u["output_tokens"]) {
                usage = (p, c)
            }
            if type == "response.failed" {
                isError = true
                errorMessage = ((r["error"] as? [String: Any])?["message"] as? String).map { String($0.prefix(500)) }
            }
            response = try? JSONSerialization.data(withJSONObject: r)
        default:
            break
        }
    }
}

/// Splits a byte stream into events at blank lines ("\n\n" or "\r\n\r\n").
public struct SSEParser {
    public init() {}

    private var pending: [UInt8] = []

    public mutating func feed(_ buffer: ByteBuffer) -> [SSEEvent] {
        pending.append(contentsOf: buffer.readableBytesView)
        var events: [SSEEvent] = []
        var start = 0
        var i = 0
        while i + 1 < pending.count {
            var end: Int?
            if pending[i] == 10 && pending[i + 1] == 10 {
                end = i + 2
            } else if i + 3 < pending.count, pending[i] == 13, pending[i + 1] == 10, pending[i + 2] == 13, pending[i + 3] == 10 {
                end = i + 4
            }
            if let end {
                let bytes = pending[start..<end]
                if let event = Self.event(bytes) { events.append(event) }
                start = end
                i = end
            } else {
                i += 1
            }
        }
        if start > 0 { pending.removeFirst(start) }
        return events
    }

    /// Bytes left that did not end an event (a stream cut mid-event).
    public var hasPartialEvent: Bool { pending.contains { $0 != 10 && $0 != 13 } }

    static func event(_ bytes: ArraySlice<UInt8>) -> SSEEvent? {
        let text = String(decoding: bytes, as: UTF8.self)
        var data: [String] = []
        for line in text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            if line.hasPrefix("data:") {
                var value = line.dropFirst(5)
                if value.first == " " { value = value.dropFirst() }
                data.append(String(value))
            }
        }
        guard !data.isEmpty else { return nil }
        return SSEEvent(data: data.joined(separator: "\n"), raw: ByteBuffer(bytes: bytes))
    }
}
