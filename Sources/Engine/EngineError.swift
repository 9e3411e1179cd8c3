/// Errors the engine reports to its callers (CLI, server) with a message fit for a user.
public enum EngineError: Error, CustomStringConvertible, Sendable, Equatable {
    case invalidParameter(String, String)
    case contextLengthExceeded(promptTokens: Int, maxTokens: Int, contextLength: Int)
    case emptyPrompt
    case modelNotFound(String)
    case pullFailed(String)
    case checksumMismatch(expected: String, found: String)
    case noChatTemplate

    public var description: String {
        switch self {
        case .invalidParameter(let f, let m): "invalid parameter '\(f)': \(m)"
        case .contextLengthExceeded(let p, let m, let c):
            "this model's maximum context length is \(c) tokens, but \(p.addingReportingOverflow(m).overflow ? "more" : String(p + m)) were requested (\(p) in the prompt, \(m) to generate)"
        case .emptyPrompt: "the prompt is empty"
        case .modelNotFound(let m): "model '\(m)' not found: give a path to a .gguf file or a known model name (\(ModelStore.knownModels.keys.sorted().joined(separator: ", ")))"
        case .pullFailed(let m): "could not fetch the model: \(m)"
        case .checksumMismatch(let e, let f): "SHA-256 mismatch: expected \(e), got \(f)"
        case .noChatTemplate: "the model has no chat template (tokenizer.chat_template)"
        }
    }
}
