import HTTPTypes
import Hummingbird
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// Answers a request the HTTP parser rejects before any handler sees it (headers over the limit: 431,
/// anything else: 400) in OpenAI's error shape, then closes the connection. Without it Hummingbird
/// writes a 400 with an empty body. Only when no response is under way on the connection; otherwise
/// the error goes on to the handler reading the body.
final class HTTPParseErrorResponder: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let metrics: ServerMetrics
    /// Request heads read and responses ended: equal when the connection is between requests.
    private var heads = 0
    private var ends = 0
    private var answered = false

    init(metrics: ServerMetrics) { self.metrics = metrics }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) { heads += 1 }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { ends += 1 }
        context.write(data, promise: promise)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parseError = error as? HTTPParserError, heads == ends else {
            context.fireErrorCaught(error)
            return
        }
        guard !answered else { return }
        answered = true
        let apiError: APIError = switch parseError {
        case .headerOverflow:
            APIError(status: .init(code: 431, reasonPhrase: "Request Header Fields Too Large"),
                     message: "The request's headers are larger than the server accepts.",
                     type: "invalid_request_error", code: "headers_too_large")
        default:
            .invalidRequest("The request is not valid HTTP/1.1.", code: "invalid_http")
        }
        metrics.error(status: Int(apiError.status.code), code: apiError.code ?? apiError.type)
        metrics.request(endpoint: "unmatched", status: Int(apiError.status.code))
        let body = JSONResponse.encode(apiError.body)
        let head = HTTPResponse(status: apiError.status, headerFields: [
            .contentType: "application/json", .contentLength: String(body.readableBytes), .connection: "close",
        ])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        // Closing only our side lets the client read the answer (a full close with its unread bytes
        // here would reset the connection); the idle timeout ends a client that never closes.
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            bound.value.close(mode: .output).whenFailure { _ in bound.value.close(promise: nil) }
        }
    }
}

/// The routes a router answers and their methods, to tell "no such URL" (404) from "not with this
/// method" (405 with Allow). `{name}` in a pattern matches any one path segment.
final class RouteTable: Sendable {
    private let entries = NIOLockedValueBox<[(pattern: [Substring], method: HTTPRequest.Method)]>([])

    func add(_ method: HTTPRequest.Method, _ path: String) {
        let pattern = path.split(separator: "/")
        entries.withLockedValue { $0.append((pattern, method)) }
    }

    /// The methods routed for `path`, in the order they were added (empty for an unknown path).
    func methods(for path: String) -> [HTTPRequest.Method] {
        let segments = path.split(separator: "/")
        return entries.withLockedValue { entries in
            var out: [HTTPRequest.Method] = []
            for e in entries where e.pattern.count == segments.count && !out.contains(e.method) {
                let matches = zip(e.pattern, segments).allSatisfy { p, s in
                    (p.hasPrefix("{") && p.hasSuffix("}")) || p == s
                }
                if matches { out.append(e.method) }
            }
            return out
        }
    }
}

extension Router {
    /// `get`, `post`… that also record the route in `table`.
    @discardableResult
    func on<Output: ResponseGenerator>(
        _ method: HTTPRequest.Method, _ path: String, in table: RouteTable,
        use handler: @Sendable @escaping (Request, Context) async throws -> Output
    ) -> Self {
        table.add(method, path)
        return on(RouterPath(path), method: method, use: handler)
    }
}

/// The request context of the API: Hummingbird's basic one, plus whether the connection is gone, so
/// that work for a client that left (compiling its schemas) can stop.
public struct ServerRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    private let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }

    /// True once the client's connection has closed (a socket channel's `isActive` may be read from
    /// any thread).
    public var clientGone: @Sendable () -> Bool { { [channel] in !channel.isActive } }
}
