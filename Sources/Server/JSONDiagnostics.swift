/// Finds which parameter holds a number that JSONDecoder could not represent.
///
/// Foundation's decoder reports a number that does not fit its type (1e30 or 1.5 for an integer,
/// 1e400 for a double) as "not valid JSON" with no coding path. When that happens the server scans the
/// body once more to name the parameter, so the client gets "invalid value for 'max_tokens'" rather than
/// "could not parse the JSON body".
enum JSONDiagnostics {
    /// Parameters whose numbers are integers (`prompt` holds token ids).
    static let integerKeys: Set<String> = [
        "max_tokens", "max_completion_tokens", "n", "seed", "top_logprobs", "top_k", "best_of", "logprobs", "prompt",
    ]

    /// The error for the first such number, naming its path (`messages[0].content` style); nil when the
    /// body is malformed JSON or has no such number.
    static func unrepresentableNumber(in bytes: [UInt8]) -> APIError? {
        var scanner = Scanner(bytes: bytes)
        do {
            try scanner.value()
            scanner.skipSpace()
            guard scanner.i == bytes.count else { return nil }
        } catch {
            return nil
        }
        return scanner.found
    }

    private struct Malformed: Error {}

    private struct Scanner {
        enum Component {
            case key(String)
            case index(Int)
        }

        let bytes: [UInt8]
        var i = 0
        var path: [Component] = []
        /// The first number found that the decoder cannot represent.
        var found: APIError?
        static let maxDepth = 64

        init(bytes: [UInt8]) { self.bytes = bytes }

        var pathString: String {
            var out = ""
            for c in path {
                switch c {
                case .key(let k): out += out.isEmpty ? k : "." + k
                case .index(let n): out += "[\(n)]"
                }
            }
            return out
        }

        mutating func skipSpace() {
            while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x0A || bytes[i] == 0x0D { i += 1 }
        }

        mutating func take(_ c: Character) -> Bool {
            skipSpace()
            if i < bytes.count, bytes[i] == c.asciiValue! {
                i += 1
                return true
            }
            return false
        }

        mutating func expect(_ c: Character) throws {
            guard take(c) else { throw Malformed() }
        }

        mutating func value() throws {
            guard path.count < Self.maxDepth else { throw Malformed() }
            skipSpace()
            guard i < bytes.count else { throw Malformed() }
            switch bytes[i] {
            case UInt8(ascii: "{"):
                i += 1
                if take("}") { return }
                repeat {
                    skipSpace()
                    let key = try string()
                    try expect(":")
                    path.append(.key(key))
                    try value()
                    path.removeLast()
                } while take(",")
                try expect("}")
            case UInt8(ascii: "["):
                i += 1
                if take("]") { return }
                var index = 0
                repeat {
                    path.append(.index(index))
                    try value()
                    path.removeLast()
                    index += 1
                } while take(",")
                try expect("]")
            case UInt8(ascii: "\""):
                _ = try string()
            case UInt8(ascii: "t"), UInt8(ascii: "f"), UInt8(ascii: "n"):
                let start = i
                while i < bytes.count, bytes[i] >= UInt8(ascii: "a"), bytes[i] <= UInt8(ascii: "z") { i += 1 }
                guard ["true", "false", "null"].contains(String(decoding: bytes[start..<i], as: UTF8.self)) else {
                    throw Malformed()
                }
            default:
                let problem = try number()
                if found == nil { found = problem }
            }
        }

        mutating func string() throws -> String {
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw Malformed() }
            i += 1
            var out: [UInt8] = []
            while i < bytes.count {
                let c = bytes[i]
                i += 1
                if c == UInt8(ascii: "\"") { return String(decoding: out, as: UTF8.self) }
                if c == UInt8(ascii: "\\") {
                    guard i < bytes.count else { throw Malformed() }
                    out.append(bytes[i])
                    i += 1
                } else {
                    out.append(c)
                }
            }
            throw Malformed()
        }

        mutating func number() throws -> APIError? {
            let start = i
            while i < bytes.count, "-+.eE0123456789".utf8.contains(bytes[i]) { i += 1 }
            guard i > start else { throw Malformed() }
            let literal = String(decoding: bytes[start..<i], as: UTF8.self)
            var key: String?
            for c in path.reversed() {
                if case .key(let k) = c {
                    key = k
                    break
                }
            }
            guard let value = Double(literal) else { throw Malformed() }
            guard value.isFinite else {
                return APIError.invalidValue(pathString, "the number \(literal) is out of range.")
            }
            guard let key, JSONDiagnostics.integerKeys.contains(key) else { return nil }
            if value != value.rounded(.towardZero) {
                return APIError.invalidRequest("Invalid type for '\(pathString)': expected an integer, got \(literal).",
                                               param: pathString, code: "invalid_type")
            }
            if Int(exactly: value) == nil {
                return APIError.invalidValue(pathString, "the number \(literal) is out of range.")
            }
            return nil
        }
    }
}
