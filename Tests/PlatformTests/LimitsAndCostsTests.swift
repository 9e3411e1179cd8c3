import Foundation
import NIOCore
import Testing
import Platform

@Suite struct RateLimiterTests {
    func key(rpm: Int? = nil, tpm: Int? = nil, monthly: Int? = nil, id: String = "key_t") -> APIKey {
        APIKey(id: id, name: "t", prefix: "", requestsPerMinute: rpm, tokensPerMinute: tpm, monthlyTokens: monthly,
               createdAt: Date(), revokedAt: nil)
    }

    func refusal(_ body: () throws -> Void) -> LimitExceeded? {
        do {
            try body()
            return nil
        } catch let e as LimitExceeded {
            return e
        } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
    }

    @Test func requestsPerMinute() {
        let limiter = RateLimiter()
        let k = key(rpm: 3)
        for _ in 0..<3 { #expect(refusal { try limiter.admit(k, now: 0) } == nil) }
        let r = refusal { try limiter.admit(k, now: 0) }
        #expect(r?.kind == .requests && r?.retryAfterSeconds == 20)
        #expect(r?.message.contains("3 requests per minute") == true)
        #expect(refusal { try limiter.admit(k, now: 19) } != nil)
        #expect(refusal { try limiter.admit(k, now: 20.01) } == nil, "one request refilled after 20 s")
        #expect(refusal { try limiter.admit(key(rpm: 3, id: "other"), now: 20.01) } == nil, "keys are independent")
    }

    @Test func tokensPerMinuteAreChargedAfterTheRequest() {
        let limiter = RateLimiter()
        let k = key(tpm: 600)
        #expect(refusal { try limiter.admit(k, now: 0) } == nil)
        limiter.charge(k, tokens: 900, now: 0)
        let r = refusal { try limiter.admit(k, now: 1) }
        #expect(r?.kind == .tokens)
        #expect(r.map { $0.retryAfterSeconds >= 29 && $0.retryAfterSeconds <= 31 } == true, "\(String(describing: r))")
        #expect(refusal { try limiter.admit(k, now: 31) } == nil, "300 over the limit at 10 per second: about 30 s")
    }

    @Test func monthlyQuotaCountsTheLedgerAndNewUsage() {
        let limiter = RateLimiter()
        let k = key(monthly: 1000)
        let date = Date()
        #expect(limiter.needsMonthUsage(k, date: date))
        #expect(refusal { try limiter.admit(k, now: 0, date: date, monthUsed: 900) } == nil)
        #expect(!limiter.needsMonthUsage(k, date: date))
        limiter.charge(k, tokens: 100, now: 1, date: date)
        let r = refusal { try limiter.admit(k, now: 2, date: date) }
        #expect(r?.kind == .quota)
        #expect(r?.message.contains("Monthly token quota exhausted") == true)
        #expect(r?.message.contains("1000 of its 1000 tokens") == true)
        // A new month starts from the ledger's count for it.
        let next = date.startOfNextMonthUTC.addingTimeInterval(10)
        #expect(limiter.needsMonthUsage(k, date: next))
        #expect(refusal { try limiter.admit(k, now: 3, date: next, monthUsed: 0) } == nil)
        #expect(!limiter.needsMonthUsage(key(), date: date), "no quota, no ledger lookup")
    }
}

@Suite struct CostAndScalingTests {
    @Test func measuredCostIsHardwareDollarsOverTokens() {
        let meter = CostMeter(window: 100, now: 0)
        #expect(meter.report("d", now: 1).measuredPerMillion == nil)
        // Two replicas at $3.6/h for 10 s = $0.02; 2,000 tokens -> $10 per million.
        meter.held("d", seconds: 10, pricesPerHour: [3.6, 3.6], now: 10)
        meter.served("d", tokens: 1500, now: 10)
        meter.served("d", tokens: 500, now: 10)
        let r = meter.report("d", now: 10)
        #expect(r.tokens == 2000)
        #expect(abs(r.hardwareDollars - 0.02) < 1e-12)
        #expect(abs(r.measuredPerMillion! - 10) < 1e-9)
        #expect(abs(r.replicaHours - 20.0 / 3600) < 1e-12)
        #expect(abs(r.tokensPerHour - 2000.0 / 10 * 3600) < 1e-6)
        // Outside the window, samples no longer count.
        #expect(meter.report("d", now: 200).tokens == 0)
    }

    @Test func desiredReplicas() {
        var d = Deployment(name: "d", model: .name("m"), placement: ["a"])
        d.minReplicas = 0
        d.maxReplicas = 3
        d.targetConcurrency = 2
        d.scaleToZeroAfter = 60
        #expect(Autoscaler.desired(d, demand: 0, idleFor: nil, current: 0) == 0)
        #expect(Autoscaler.desired(d, demand: 1, idleFor: 0, current: 0) == 1)
        #expect(Autoscaler.desired(d, demand: 3, idleFor: 0, current: 1) == 2)
        #expect(Autoscaler.desired(d, demand: 100, idleFor: 0, current: 2) == 3, "never above max")
        #expect(Autoscaler.desired(d, demand: 0, idleFor: 10, current: 3) == 1, "one stays until the idle period ends")
        #expect(Autoscaler.desired(d, demand: 0, idleFor: 61, current: 1) == 0, "to zero after the idle period")
        d.minReplicas = 1
        #expect(Autoscaler.desired(d, demand: 0, idleFor: 1000, current: 1) == 1, "never below min")
    }
}

@Suite struct SSETests {
    @Test func splitsEventsAcrossChunks() {
        var parser = SSEParser()
        let text = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"
            + "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n"
            + "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
            + "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2,\"total_tokens\":9}}\n\n"
            + "data: [DONE]\n\n"
        let bytes = Array(text.utf8)
        var events: [SSEEvent] = []
        for start in stride(from: 0, to: bytes.count, by: 7) {
            events += parser.feed(ByteBuffer(bytes: bytes[start..<min(start + 7, bytes.count)]))
        }
        #expect(events.count == 5)
        #expect(!events[0].commits, "the role chunk is not output yet")
        #expect(events[1].tokenChunks == 1 && events[1].commits)
        #expect(events[2].finished)
        #expect(events[3].usageOnly && events[3].usage! == (7, 2))
        #expect(events[4].isDone)
        #expect(String(buffer: events[1].raw) == "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n")
        #expect(!parser.hasPartialEvent)
        #expect(parser.feed(ByteBuffer(string: "data: {\"err")).isEmpty && parser.hasPartialEvent)
    }

    /// A replica's error event is a failure, not output: before any token the gateway retries it.
    @Test func errorEventsDoNotCommit() {
        var parser = SSEParser()
        let events = parser.feed(ByteBuffer(string: "data: {\"error\":{\"message\":\"x\"}}\r\n\r\n"))
        #expect(events.count == 1 && events[0].isError && !events[0].commits && events[0].errorMessage == "x")
    }

    /// The Responses API's typed events: deltas are output, the terminal event carries usage and the
    /// response (and goes to the client: no [DONE] follows in that API).
    @Test func responsesEvents() throws {
        var parser = SSEParser()
        let events = parser.feed(ByteBuffer(string: """
            event: response.created
            data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_1","status":"in_progress","usage":null}}

            event: response.output_text.delta
            data: {"type":"response.output_text.delta","sequence_number":1,"delta":"Hi"}

            event: response.function_call_arguments.delta
            data: {"type":"response.function_call_arguments.delta","sequence_number":2,"delta":""}

            event: response.completed
            data: {"type":"response.completed","sequence_number":3,"response":{"id":"resp_1","status":"completed","output":[],"usage":{"input_tokens":7,"output_tokens":2,"total_tokens":9}}}

            event: response.failed
            data: {"type":"response.failed","sequence_number":4,"response":{"id":"resp_2","error":{"message":"boom"}}}


            """))
        #expect(events.count == 5)
        #expect(!events[0].commits && !events[0].isTerminal && events[0].usage == nil && !events[0].usageOnly)
        #expect(events[1].tokenChunks == 1 && events[1].commits)
        #expect(events[2].tokenChunks == 0 && !events[2].commits, "an empty delta is no output")
        #expect(events[3].isTerminal && events[3].finished && events[3].usage! == (7, 2) && !events[3].usageOnly)
        let response = try #require(events[3].response.flatMap { try JSONSerialization.jsonObject(with: $0) as? [String: Any] })
        #expect(response["id"] as? String == "resp_1" && response["status"] as? String == "completed")
        #expect(events[4].isTerminal && events[4].isError && events[4].errorMessage == "boom")
    }

    @Test func implausibleUsageIsIgnored() {
        var parser = SSEParser()
        let events = parser.feed(ByteBuffer(string: "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":-1,\"completion_tokens\":2}}\n\n"
            + "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9223372036854775807,\"completion_tokens\":2}}\n\n"))
        #expect(events.count == 2 && events.allSatisfy { $0.usage == nil })
    }
}
