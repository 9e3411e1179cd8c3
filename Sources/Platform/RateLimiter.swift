import Foundation
import NIOConcurrencyHelpers

/// A bucket that refills continuously at `capacity` per minute. Requests take 1 before they run;
/// tokens are taken after a request by what it used, so the level can go below zero and then
/// holds back the key's next requests until it has refilled.
public struct TokenBucket: Sendable, Equatable {
    public let capacity: Double
    public private(set) var level: Double
    private var updated: Double

    public init(perMinute: Int, now: Double) {
        capacity = Double(perMinute)
        level = capacity
        updated = now
    }

    var ratePerSecond: Double { capacity / 60 }

    mutating func refill(_ now: Double) {
        if now > updated { level = min(capacity, level + (now - updated) * ratePerSecond) }
        updated = max(updated, now)
    }

    /// Takes `amount` if the level allows it (at least `amount` left); otherwise the seconds until it will.
    mutating func take(_ amount: Double, now: Double) -> Double? {
        refill(now)
        if level >= amount {
            level -= amount
            return nil
        }
        return (amount - level) / ratePerSecond
    }

    /// Seconds until the level is above zero again; nil if it is now.
    mutating func waitUntilPositive(now: Double) -> Double? {
        refill(now)
        return level > 0 ? nil : (-level) / ratePerSecond + 1 / ratePerSecond
    }

    mutating func spend(_ amount: Double, now: Double) {
        refill(now)
        level -= amount
    }
}

/// Why a key may not send a request now.
public struct LimitExceeded: Error, Sendable, Equatable {
    public enum Kind: String, Sendable { case requests, tokens, quota }
    public var kind: Kind
    public var retryAfterSeconds: Int
    public var message: String
}

/// Per-key limits: requests per minute and tokens per minute (token buckets), and tokens per calendar
/// month (UTC) counted from the ledger. Concurrent requests of one key may overshoot a token limit by
/// what they use together: tokens are known only when a request ends.
public final class RateLimiter: Sendable {
    struct KeyState {
        var requests: TokenBucket?
        var tokens: TokenBucket?
        var month: Date?
        var monthTokens = 0
    }

    private let state = NIOLockedValueBox<[String: KeyState]>([:])

    public init() {}

    /// Whether `admit` needs the key's tokens used this month from the ledger (first request of a month).
    public func needsMonthUsage(_ key: APIKey, date: Date = Date()) -> Bool {
        key.monthlyTokens != nil && state.withLockedValue { $0[key.id]?.month != date.startOfMonthUTC }
    }

    /// Admits one request of `key` at `now` (seconds, any monotonic origin) or says why not.
    /// `monthUsed` is what the ledger says the key used this month, when `needsMonthUsage` asked for it.
    public func admit(_ key: APIKey, now: Double, date: Date = Date(), monthUsed seed: Int? = nil) throws(LimitExceeded) {
        let month = date.startOfMonthUTC
        let refusal: LimitExceeded? = state.withLockedValue { all in
            var s = all[key.id] ?? KeyState()
            defer { all[key.id] = s }
            if s.month != month {
                s.month = month
                s.monthTokens = seed ?? 0
            }
            if let quota = key.monthlyTokens, s.monthTokens >= quota {
                let reset = date.startOfNextMonthUTC
                let formatter = ISO8601DateFormatter()
                return LimitExceeded(
                    kind: .quota, retryAfterSeconds: max(1, Int(reset.timeIntervalSince(date).rounded(.up))),
                    message: "Monthly token quota exhausted: key \(key.id) has used \(s.monthTokens) of its \(quota) tokens this month. The quota resets at \(formatter.string(from: reset)).")
            }
            if let tpm = key.tokensPerMinute {
                if s.tokens == nil || s.tokens!.capacity != Double(tpm) { s.tokens = TokenBucket(perMinute: tpm, now: now) }
                if let wait = s.tokens!.waitUntilPositive(now: now) {
                    return LimitExceeded(
                        kind: .tokens, retryAfterSeconds: max(1, Int(wait.rounded(.up))),
                        message: "Rate limit reached for key \(key.id): \(tpm) tokens per minute. Retry in \(Int(wait.rounded(.up))) s.")
                }
            }
            if let rpm = key.requestsPerMinute {
                if s.requests == nil || s.requests!.capacity != Double(rpm) { s.requests = TokenBucket(perMinute: rpm, now: now) }
                if let wait = s.requests!.take(1, now: now) {
                    return LimitExceeded(
                        kind: .requests, retryAfterSeconds: max(1, Int(wait.rounded(.up))),
                        message: "Rate limit reached for key \(key.id): \(rpm) requests per minute. Retry in \(Int(wait.rounded(.up))) s.")
                }
            }
            return nil
        }
        if let refusal { throw refusal }
    }

    /// Charges a finished request's tokens to the key's minute bucket and month.
    public func charge(_ key: APIKey, tokens: Int, now: Double, date: Date = Date()) {
        guard tokens > 0 else { return }
        state.withLockedValue { all in
            var s = all[key.id] ?? KeyState()
            if let tpm = key.tokensPerMinute {
                if s.tokens == nil { s.tokens = TokenBucket(perMinute: tpm, now: now) }
                s.tokens!.spend(Double(tokens), now: now)
            }
            if s.month == date.startOfMonthUTC { s.monthTokens += tokens }
            all[key.id] = s
        }
    }
}
