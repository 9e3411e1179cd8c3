import Console
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Testing

/// The body of a response, written into memory.
func bodyText(_ response: Response) async throws -> String {
    final class Sink: @unchecked Sendable { var text = "" }
    struct Writer: ResponseBodyWriter {
        let sink: Sink
        mutating func write(_ buffer: ByteBuffer) async throws { sink.text += String(buffer: buffer) }
        consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
    }
    let sink = Sink()
    try await response.body.write(Writer(sink: sink))
    return sink.text
}

@Suite struct ConsoleAssetTests {
    let assets = ConsoleAssets.load()

    @Test func filesAreFoundBesideTheExecutable() throws {
        #expect(!assets.isEmpty, "\(assets.origin)")
        #expect(assets.origin.contains(ConsoleAssets.bundleName), "release builds serve the copied bundle: \(assets.origin)")
        for path in ["/", "/console/app.js", "/console/charts.js", "/console/style.css", "/console/icon.svg"] {
            #expect(assets.assets[path] != nil, "\(path)")
        }
    }

    @Test func contentTypesAndCachingHeaders() async throws {
        let expected = [
            "/": "text/html; charset=utf-8", "/console/app.js": "text/javascript; charset=utf-8",
            "/console/style.css": "text/css; charset=utf-8", "/console/icon.svg": "image/svg+xml",
        ]
        for (path, type) in expected {
            let r = try #require(assets.response(path: path, ifNoneMatch: nil))
            #expect(r.status == .ok)
            #expect(r.headers[.contentType] == type)
            #expect(r.headers[.cacheControl] == "no-cache")
            #expect(r.headers[HTTPField.Name("X-Content-Type-Options")!] == "nosniff")
            let etag = try #require(r.headers[.eTag])
            #expect(etag.hasPrefix("\"") && etag.hasSuffix("\"") && etag.count > 4)
            let body = try await bodyText(r)
            #expect(body.utf8.count == assets.assets[path]!.bytes.count && r.headers[.contentLength] == String(body.utf8.count))
        }
        let index = try #require(assets.response(path: "/", ifNoneMatch: nil))
        let csp = try #require(index.headers[HTTPField.Name("Content-Security-Policy")!])
        #expect(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"))
        #expect(try await bodyText(index).contains("<script src=\"/console/app.js\""))
    }

    @Test func revalidationAnswers304() async throws {
        let first = try #require(assets.response(path: "/console/app.js", ifNoneMatch: nil))
        let etag = try #require(first.headers[.eTag])
        for header in [etag, "W/" + etag, "\"other\", " + etag, "*"] {
            let again = try #require(assets.response(path: "/console/app.js", ifNoneMatch: header))
            #expect(again.status == .notModified, "\(header)")
            #expect(again.headers[.eTag] == etag && again.headers[.cacheControl] == "no-cache")
            #expect(try await bodyText(again).isEmpty)
        }
        let changed = try #require(assets.response(path: "/console/app.js", ifNoneMatch: "\"stale\""))
        #expect(changed.status == .ok)
        #expect(assets.response(path: "/console/../Package.swift", ifNoneMatch: nil) == nil)
        #expect(assets.response(path: "/console/missing.js", ifNoneMatch: nil) == nil)
    }

    @Test func headHasTheHeadersOfGetAndNoBody() async throws {
        let get = try #require(assets.response(path: "/console/app.js", ifNoneMatch: nil))
        let head = try #require(assets.response(path: "/console/app.js", ifNoneMatch: nil, head: true))
        #expect(head.status == .ok && head.headers == get.headers)
        #expect(head.headers[.contentLength] == String(assets.assets["/console/app.js"]!.bytes.count))
        #expect(try await bodyText(head).isEmpty)
    }

    @Test func eachFileHasItsOwnETag() {
        let tags = Set(assets.assets.values.map(\.etag))
        #expect(tags.count == assets.assets.count)
    }

    @Test func contentTypeByExtension() {
        #expect(ConsoleAssets.contentType(forName: "a.HTML") == "text/html; charset=utf-8")
        #expect(ConsoleAssets.contentType(forName: "a.mjs") == "text/javascript; charset=utf-8")
        #expect(ConsoleAssets.contentType(forName: "a.png") == "image/png")
        #expect(ConsoleAssets.contentType(forName: "a.swift") == nil)
        #expect(ConsoleAssets.contentType(forName: "Makefile") == nil)
    }

    @Test func loadsFromADirectoryGivenInTheEnvironment() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("console-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("console"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data("<html>hi</html>".utf8).write(to: dir.appendingPathComponent("index.html"))
        try Data("x=1".utf8).write(to: dir.appendingPathComponent("console/a.js"))
        try Data("secret".utf8).write(to: dir.appendingPathComponent("console/notes.md"))
        let custom = ConsoleAssets.load(environment: ["SWIFTLET_CONSOLE_DIR": dir.path])
        #expect(custom.origin == dir.path)
        #expect(Set(custom.assets.keys) == ["/", "/console/a.js"], "files of unknown kinds are not served")
    }
}

@Suite struct LiveMetricsTests {
    @Test func percentilesByNearestRank() throws {
        let p = try #require(Percentiles((1...100).map(Double.init).shuffled()))
        #expect(p.p50 == 50 && p.p90 == 90 && p.p99 == 99 && p.count == 100)
        let one = try #require(Percentiles([0.25]))
        #expect(one.p50 == 0.25 && one.p99 == 0.25)
        #expect(Percentiles([]) == nil)
    }

    @Test func latenciesOlderThanTheWindowAreDropped() throws {
        let live = LiveMetrics(window: 60)
        live.timeToFirstToken(5, now: 100)
        live.timeToFirstToken(1, now: 150)
        live.timePerOutputToken(0.02, now: 150)
        live.timeToFirstToken(-1, now: 150)
        live.timeToFirstToken(.nan, now: 150)
        let early = live.latencies(now: 155)
        #expect(early.ttft?.count == 2 && early.ttft?.p99 == 5)
        let later = live.latencies(now: 170)
        #expect(later.ttft?.count == 1 && later.ttft?.p50 == 1 && later.tpot?.p50 == 0.02)
        #expect(live.latencies(now: 300).ttft == nil)
    }

    @Test func countsRequestsErrorsAndTokens() {
        let live = LiveMetrics()
        live.request(status: 200)
        live.request(status: 429)
        live.request(status: 503)
        live.error()
        live.tokens(prompt: 10, completion: 4)
        live.tokens(completion: -3)
        #expect(live.totals == LiveMetrics.Totals(requests: 3, errors: 3, promptTokens: 10, completionTokens: 4))
    }
}

@Suite struct MetricsFeedTests {
    @Test func snapshotsAreRatesOverTheInterval() throws {
        let live = LiveMetrics()
        let feed = MetricsFeed(live: live, historySize: 3, now: 0) { FeedGauges(queueDepth: 2, running: 5, kvUsage: 0.5) }
        live.tokens(prompt: 40, completion: 20)
        live.request(status: 200)
        live.request(status: 500)
        live.timeToFirstToken(0.3, now: 1.5)
        let s = feed.sample(now: 2, date: Date(timeIntervalSince1970: 1000))
        #expect(s.outputTokensPerSecond == 10 && s.promptTokensPerSecond == 20 && s.requestsPerSecond == 1)
        #expect(s.errors == 1 && s.totalErrors == 1 && s.totalRequests == 2 && s.totalCompletionTokens == 20)
        #expect(s.queueDepth == 2 && s.running == 5 && s.kvUsage == 0.5 && s.time == 1000 && s.interval == 2)
        #expect(s.ttft?.p50 == 0.3 && s.tpot == nil)
        let quiet = feed.sample(now: 3)
        #expect(quiet.outputTokensPerSecond == 0 && quiet.errors == 0 && quiet.totalCompletionTokens == 20)
        feed.sample(now: 4)
        feed.sample(now: 5)
        #expect(feed.history.count == 3, "the history keeps historySize samples")
        #expect(feed.history.last?.interval == 1)
    }

    @Test func subscribersGetTheHistoryThenEachSample() async throws {
        let feed = MetricsFeed(live: LiveMetrics(), maxSubscribers: 1, now: 0) { FeedGauges() }
        feed.sample(now: 1)
        let (history, updates) = try feed.subscribe()
        #expect(history.count == 1 && feed.subscriberCount == 1)
        #expect(throws: MetricsFeed.FeedError.tooManySubscribers(1)) { _ = try feed.subscribe() }
        feed.sample(now: 2)
        feed.sample(now: 3)
        feed.close()
        var received: [Double] = []
        for await s in updates { received.append(s.interval) }
        #expect(received == [1, 1])
        #expect(throws: MetricsFeed.FeedError.closed) { _ = try feed.subscribe() }
    }

    @Test func streamResponseIsServerSentEvents() async throws {
        let feed = MetricsFeed(live: LiveMetrics(), now: 0) { FeedGauges(queueDepth: 7) }
        feed.sample(now: 1)
        let response = try feed.streamResponse()
        #expect(response.headers[.contentType] == "text/event-stream")
        #expect(response.headers[.cacheControl] == "no-store")
        feed.sample(now: 2)
        feed.close()
        let text = try await bodyText(response)
        let events = text.components(separatedBy: "\n\n").filter { !$0.isEmpty }
        #expect(events.count == 3, "\(text)")
        #expect(events[0] == "retry: 2000")
        #expect(events[1].hasPrefix("event: history\ndata: [{"))
        #expect(events[2].hasPrefix("data: {") && events[2].contains("\"queue_depth\":7"))
        #expect(feed.subscriberCount == 0)
    }

    @Test func historyBodyIsJSON() throws {
        let feed = MetricsFeed(live: LiveMetrics(), now: 0) { FeedGauges() }
        feed.sample(now: 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(String(buffer: feed.historyBody()).utf8)) as? [String: Any])
        #expect(object["object"] as? String == "metrics.history")
        #expect((object["data"] as? [[String: Any]])?.first?["output_tokens_per_second"] as? Double == 0)
    }
}
