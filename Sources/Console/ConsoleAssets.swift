import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The console's static files (HTML, CSS, JS), read once from the package's resources and served from
/// memory: GET / is index.html, GET /console/NAME the files beside it. Every response carries its
/// content type, a strong ETag and `Cache-Control: no-cache`, so a browser keeps a copy and revalidates
/// it with one cheap 304 instead of fetching it again.
public struct ConsoleAssets: Sendable {
    public struct Asset: Sendable {
        public var bytes: [UInt8]
        public var contentType: String
        public var etag: String
    }

    /// By URL path: "/" and "/console/app.js", ...
    public let assets: [String: Asset]
    /// Where the files were found, or why not.
    public let origin: String

    public static let bundleName = "Swiftlet_Console.resources"

    /// Loads the files from the first directory that has them: $SWIFTLET_CONSOLE_DIR, the resource bundle
    /// beside the executable (release and debug builds, any working directory), then the source tree.
    public static func load(environment: [String: String] = ProcessInfo.processInfo.environment) -> ConsoleAssets {
        for dir in candidateDirectories(environment: environment) {
            let index = dir.appendingPathComponent("index.html")
            guard FileManager.default.fileExists(atPath: index.path) else { continue }
            if let assets = try? load(directory: dir) { return ConsoleAssets(assets: assets, origin: dir.path) }
        }
        return ConsoleAssets(assets: [:], origin: "console files not found (looked for \(bundleName) beside the executable)")
    }

    static func candidateDirectories(environment: [String: String]) -> [URL] {
        var dirs: [URL] = []
        if let dir = environment["SWIFTLET_CONSOLE_DIR"], !dir.isEmpty { dirs.append(URL(fileURLWithPath: dir)) }
        var executableDirs = [Bundle.main.bundleURL]
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            executableDirs.append(URL(fileURLWithPath: exe).deletingLastPathComponent())
        }
        for base in executableDirs {
            dirs.append(base.appendingPathComponent(bundleName).appendingPathComponent("Resources"))
            dirs.append(base.appendingPathComponent(bundleName))
        }
        dirs.append(URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Resources"))
        return dirs
    }

    /// index.html at "/" and every file of console/ at "/console/NAME".
    public static func load(directory: URL) throws -> [String: Asset] {
        var out: [String: Asset] = [:]
        out["/"] = try asset(directory.appendingPathComponent("index.html"))
        let sub = directory.appendingPathComponent("console")
        for name in (try? FileManager.default.contentsOfDirectory(atPath: sub.path)) ?? [] where !name.hasPrefix(".") {
            guard contentType(forName: name) != nil else { continue }
            out["/console/" + name] = try asset(sub.appendingPathComponent(name))
        }
        return out
    }

    static func asset(_ url: URL) throws -> Asset {
        let bytes = [UInt8](try Data(contentsOf: url))
        return Asset(bytes: bytes, contentType: contentType(forName: url.lastPathComponent) ?? "application/octet-stream",
                     etag: "\"" + fnv1a(bytes) + "\"")
    }

    public init(assets: [String: Asset], origin: String) {
        self.assets = assets
        self.origin = origin
    }

    public var isEmpty: Bool { assets.isEmpty }

    /// Content types by extension; files of other kinds are not served.
    public static func contentType(forName name: String) -> String? {
        switch (name as NSString).pathExtension.lowercased() {
        case "html": "text/html; charset=utf-8"
        case "js", "mjs": "text/javascript; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        case "svg": "image/svg+xml"
        case "png": "image/png"
        case "ico": "image/x-icon"
        case "json": "application/json"
        case "txt": "text/plain; charset=utf-8"
        default: nil
        }
    }

    /// Scripts, styles, images and requests only from this origin: the console never loads anything
    /// from elsewhere, and nothing can frame it.
    public static let contentSecurityPolicy =
        "default-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        + "form-action 'self'; frame-ancestors 'none'"

    /// The response for a GET (or HEAD: the same headers, no body) of `path`: the file, a 304 when
    /// `If-None-Match` has its ETag, nil when no such file exists.
    public func response(path: String, ifNoneMatch: String?, head: Bool = false) -> Response? {
        guard let asset = assets[path] else { return nil }
        var headers: HTTPFields = [
            .contentType: asset.contentType,
            .cacheControl: "no-cache",
            .eTag: asset.etag,
            HTTPField.Name("X-Content-Type-Options")!: "nosniff",
            HTTPField.Name("Referrer-Policy")!: "no-referrer",
        ]
        if path == "/" { headers[HTTPField.Name("Content-Security-Policy")!] = Self.contentSecurityPolicy }
        if let ifNoneMatch, Self.matches(ifNoneMatch, asset.etag) {
            return Response(status: .notModified, headers: headers, body: .init())
        }
        headers[.contentLength] = String(asset.bytes.count)
        if head { return Response(status: .ok, headers: headers, body: .init()) }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: asset.bytes)))
    }

    /// `If-None-Match: "a", "b"` or `*` (weak forms compare equal, as RFC 9110 says for this header).
    static func matches(_ header: String, _ etag: String) -> Bool {
        header.split(separator: ",").contains { part in
            var tag = part.trimmingCharacters(in: .whitespaces)
            if tag == "*" { return true }
            if tag.hasPrefix("W/") { tag.removeFirst(2) }
            return tag == etag
        }
    }

    static func fnv1a(_ bytes: [UInt8]) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        return String(h, radix: 16)
    }

    /// GET and HEAD of / and /console/{file} on a router.
    public func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        let assets = self
        let handler: @Sendable (Request, Context) async throws -> Response = { request, _ in
            let path = request.uri.path
            guard let response = assets.response(path: path, ifNoneMatch: request.headers[.ifNoneMatch],
                                                 head: request.method == .head) else {
                throw HTTPError(.notFound)
            }
            return response
        }
        router.get("/", use: handler)
        router.get("/console/{file}", use: handler)
        router.head("/", use: handler)
        router.head("/console/{file}", use: handler)
    }
}
