import Console
import Engine
import Foundation
import HTTPTypes
import Hummingbird

/// An error the client sees, in OpenAI's shape and with its HTTP status.
public struct APIError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?
    /// Extra response headers (Retry-After on 429).
    public var headers: HTTPFields = [:]

    public init(status: HTTPResponse.Status, message: String, type: String, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    public var description: String { "\(status.code) \(type)\(code.map { " (\($0))" } ?? ""): \(message)" }

    public var body: ErrorResponse { ErrorResponse(error: .init(message: message, type: type, param: param, code: code)) }

    // MARK: Constructors for each case the server reports

    public static func invalidRequest(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(status: .badRequest, message: message, type: "invalid_request_error", param: param, code: code)
    }

    public static func invalidValue(_ param: String, _ message: String) -> APIError {
        invalidRequest("Invalid value for '\(param)': \(message)", param: param, code: "invalid_value")
    }

    public static let invalidJSON = invalidRequest(
        "We could not parse the JSON body of your request. The body must be a JSON object encoded as UTF-8.",
        code: "invalid_json")

    public static func contextLengthExceeded(_ message: String, param: String) -> APIError {
        invalidRequest(message, param: param, code: "context_length_exceeded")
    }

    public static let missingAPIKey = APIError(
        status: .unauthorized,
        message: "You didn't provide an API key. Send it in the Authorization header as 'Bearer KEY'.",
        type: "invalid_request_error", code: "missing_api_key")

    public static let invalidAPIKey = APIError(
        status: .unauthorized, message: "Incorrect API key provided.", type: "invalid_request_error",
        code: "invalid_api_key")

    public static func modelNotFound(_ model: String) -> APIError {
        APIError(status: .notFound, message: "The model '\(model)' does not exist.", type: "invalid_request_error",
                 param: "model", code: "model_not_found")
    }

    public static func unknownURL(_ method: HTTPRequest.Method, _ path: String) -> APIError {
        APIError(status: .notFound, message: "Invalid URL (\(method.rawValue) \(path))", type: "invalid_request_error",
                 code: "unknown_url")
    }

    public static func methodNotAllowed(_ method: HTTPRequest.Method, _ path: String, allowed: [HTTPRequest.Method]) -> APIError {
        var e = APIError(status: .methodNotAllowed,
                         message: "Method \(method.rawValue) is not allowed on \(path); use \(allowed.map(\.rawValue).joined(separator: " or ")).",
                         type: "invalid_request_error", code: "method_not_allowed")
        e.headers[.allow] = allowed.map(\.rawValue).joined(separator: ", ")
        return e
    }

    /// The client closed the connection before its request was read (nginx's 499): counted apart from
    /// server errors; nobody reads the response.
    public static let clientDisconnected = APIError(
        status: .init(code: 499, reasonPhrase: "Client Closed Request"),
        message: "The client closed the connection before the request was complete.", type: "invalid_request_error",
        code: "client_disconnected")

    public static func bodyTooLarge(limit: Int) -> APIError {
        APIError(status: .contentTooLarge, message: "The request body is larger than the limit of \(limit) bytes.",
                 type: "invalid_request_error", code: "request_too_large")
    }

    public static func queueFull(retryAfterSeconds: Int) -> APIError {
        var e = APIError(
            status: .tooManyRequests, message: "The server is busy: too many requests are waiting. Retry later.",
            type: "rate_limit_error", code: "rate_limit_exceeded")
        e.headers[.retryAfter] = String(retryAfterSeconds)
        return e
    }

    public static let modelLoading = APIError(
        status: .serviceUnavailable, message: "The model is still loading. Retry when GET /ready answers 200.",
        type: "server_error", code: "model_not_ready")

    public static let shuttingDown = APIError(
        status: .serviceUnavailable, message: "The server is shutting down.", type: "server_error",
        code: "shutting_down")

    public static let adminKeyRequired = APIError(
        status: .forbidden,
        message: "This needs an admin key; this key may only generate and read its own usage.",
        type: "permission_error", code: "admin_key_required")

    public static func tooManyFeeds(_ limit: Int) -> APIError {
        var e = APIError(
            status: .tooManyRequests, message: "Too many open metrics feeds (at most \(limit)); close one and retry.",
            type: "rate_limit_error", code: "too_many_feeds")
        e.headers[.retryAfter] = "5"
        return e
    }

    /// Never says what went wrong inside: the details go to the log.
    public static let internalError = APIError(
        status: .internalServerError, message: "The server had an error while processing your request.",
        type: "server_error")

    // MARK: Mapping errors from below

    /// A request that JSONDecoder rejected, naming the parameter where the decoder knows it.
    public static func decoding(_ error: DecodingError) -> APIError {
        switch error {
        case .typeMismatch(let type, let ctx):
            guard let param = parameterPath(ctx.codingPath) else { return invalidRequest("The request body must be a JSON object.", code: "invalid_type") }
            let expected = ctx.debugDescription.hasPrefix("expected ") ? ctx.debugDescription : "expected \(describe(type))"
            return invalidRequest("Invalid type for '\(param)': \(expected).", param: param, code: "invalid_type")
        case .valueNotFound(let type, let ctx):
            let param = parameterPath(ctx.codingPath) ?? "body"
            return invalidRequest("Invalid type for '\(param)': expected \(describe(type)), got null.", param: param,
                                  code: "invalid_type")
        case .keyNotFound(let key, let ctx):
            let param = parameterPath(ctx.codingPath + [key]) ?? key.stringValue
            return invalidRequest("Missing required parameter: '\(param)'.", param: param, code: "missing_required_parameter")
        case .dataCorrupted(let ctx):
            guard let param = parameterPath(ctx.codingPath) else { return invalidJSON }
            return invalidValue(param, numberMessage(ctx.debugDescription))
        @unknown default:
            return invalidJSON
        }
    }

    /// Errors of the engine and the generation service, as the client should see them.
    public static func from(_ error: Error) -> APIError? {
        switch error {
        case let e as APIError:
            return e
        case let e as EngineError:
            switch e {
            case .invalidParameter(let field, let message): return invalidValue(field, message)
            case .contextLengthExceeded: return contextLengthExceeded(e.description, param: "messages")
            case .emptyPrompt: return invalidRequest("The prompt is empty.", param: "prompt", code: "invalid_value")
            case .noChatTemplate:
                return invalidRequest("This model has no chat template; use /v1/completions.", param: "messages",
                                      code: "invalid_value")
            case .modelNotFound, .pullFailed, .checksumMismatch:
                return nil
            }
        case let e as GenerationServiceError:
            switch e {
            case .queueFull: return queueFull(retryAfterSeconds: 1)
            case .shuttingDown: return shuttingDown
            }
        case let e as DecodingError:
            return decoding(e)
        case let e as MetricsFeed.FeedError:
            switch e {
            case .closed: return shuttingDown
            case .tooManySubscribers(let n): return tooManyFeeds(n)
            }
        default:
            return nil
        }
    }

    /// `messages[0].content` from a coding path; nil for the top level.
    static func parameterPath(_ path: [CodingKey]) -> String? {
        var out = ""
        for key in path {
            if let i = key.intValue {
                out += "[\(i)]"
            } else {
                out += out.isEmpty ? key.stringValue : "." + key.stringValue
            }
        }
        return out.isEmpty ? nil : out
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Bool.Type: "a boolean"
        case is Int.Type, is Int64.Type, is UInt64.Type: "an integer"
        case is Double.Type, is Float.Type: "a number"
        case is [String].Type: "an array of strings"
        default: String(describing: type).hasPrefix("Array") ? "an array" : "an object"
        }
    }

    /// Foundation says e.g. "Parsed JSON number <1e30> does not fit in Int."; keep it plain.
    static func numberMessage(_ debug: String) -> String {
        if debug.contains("does not fit") || debug.contains("not representable") {
            return "the number is out of range."
        }
        return debug.isEmpty ? "the value is not valid." : debug
    }
}

extension APIError: HTTPResponseError {
    public func response(from request: Request, context: some RequestContext) throws -> Response {
        JSONResponse.make(status: status, body, headers: headers)
    }
}
