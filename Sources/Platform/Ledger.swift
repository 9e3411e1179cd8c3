import Foundation
import GRDB

/// One request as billed: who, where, how many tokens, how long, how it ended and what it cost.
public struct UsageRecord: Sendable, Equatable, Codable {
    public enum Status: String, Sendable, Codable {
        /// The response reached its end.
        case completed
        /// A stream broke after output had gone out; the tokens counted are those delivered.
        case interrupted
        /// Refused or failed before any output (replica errors, 4xx from the replica).
        case failed
    }

    public var requestID: String
    public var keyID: String
    public var deployment: String
    public var replica: String?
    public var cluster: String?
    public var promptTokens: Int
    public var completionTokens: Int
    /// Seconds from arrival to the first token (nil without one).
    public var timeToFirstToken: Double?
    public var duration: Double
    public var status: Status
    public var httpStatus: Int
    public var cost: Double
    /// The request waited for a replica to start.
    public var coldStart: Bool
    public var createdAt: Date

    public var totalTokens: Int { promptTokens + completionTokens }

    enum CodingKeys: String, CodingKey {
        case requestID = "request_id", keyID = "key_id", deployment, replica, cluster
        case promptTokens = "prompt_tokens", completionTokens = "completion_tokens"
        case timeToFirstToken = "ttft", duration, status, httpStatus = "http_status", cost
        case coldStart = "cold_start", createdAt = "created_at"
    }

    public init(requestID: String, keyID: String, deployment: String, replica: String?, cluster: String?,
                promptTokens: Int, completionTokens: Int, timeToFirstToken: Double?, duration: Double,
                status: Status, httpStatus: Int, cost: Double, coldStart: Bool, createdAt: Date = Date()) {
        self.requestID = requestID
        self.keyID = keyID
        self.deployment = deployment
        self.replica = replica
        self.cluster = cluster
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.timeToFirstToken = timeToFirstToken
        self.duration = duration
        self.status = status
        self.httpStatus = httpStatus
        self.cost = cost
        self.coldStart = coldStart
        self.createdAt = createdAt
    }
}

/// Tokens and cost of one key on one deployment over a period.
public struct UsageSummary: Sendable, Equatable, Codable {
    public var keyID: String
    public var deployment: String
    public var requests: Int
    public var promptTokens: Int
    public var completionTokens: Int
    public var cost: Double

    enum CodingKeys: String, CodingKey {
        case keyID = "key_id", deployment, requests
        case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", cost
    }
}

/// The usage ledger: one row per request, keyed by its id, each written in its own transaction
/// before the client sees the end of the response.
public struct Ledger: Sendable {
    public let database: PlatformDatabase

    public init(database: PlatformDatabase) { self.database = database }

    /// Writes the record durably. A second record with the same request id is ignored, so a
    /// request is never billed twice. Returns whether the row was new.
    @discardableResult
    public func record(_ r: UsageRecord) async throws -> Bool {
        try await database.pool.write { db in
            try db.execute(sql: """
                INSERT OR IGNORE INTO usage_record (request_id, key_id, deployment, replica, cluster, prompt_tokens,
                    completion_tokens, ttft, duration, status, http_status, cost, cold_start, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [r.requestID, r.keyID, r.deployment, r.replica, r.cluster, r.promptTokens,
                                 r.completionTokens, r.timeToFirstToken, r.duration, r.status.rawValue, r.httpStatus,
                                 r.cost, r.coldStart, r.createdAt.timeIntervalSince1970])
            return db.changesCount > 0
        }
    }

    public func records(since: Date = .distantPast, keyID: String? = nil) throws -> [UsageRecord] {
        try database.pool.read { db in
            var sql = "SELECT * FROM usage_record WHERE created_at >= ?"
            var args: StatementArguments = [since.timeIntervalSince1970]
            if let keyID {
                sql += " AND key_id = ?"
                args += [keyID]
            }
            return try Row.fetchAll(db, sql: sql + " ORDER BY created_at, request_id", arguments: args).map(Self.record)
        }
    }

    static func record(_ row: Row) -> UsageRecord {
        UsageRecord(
            requestID: row["request_id"], keyID: row["key_id"], deployment: row["deployment"], replica: row["replica"],
            cluster: row["cluster"], promptTokens: row["prompt_tokens"], completionTokens: row["completion_tokens"],
            timeToFirstToken: row["ttft"], duration: row["duration"],
            status: UsageRecord.Status(rawValue: row["status"]) ?? .failed, httpStatus: row["http_status"],
            cost: row["cost"], coldStart: row["cold_start"], createdAt: Date(timeIntervalSince1970: row["created_at"]))
    }

    /// Tokens and cost per key and deployment since `since`.
    public func summary(since: Date, keyID: String? = nil) async throws -> [UsageSummary] {
        try await database.pool.read { db in
            var sql = """
                SELECT key_id, deployment, COUNT(*) AS requests, SUM(prompt_tokens) AS prompt,
                       SUM(completion_tokens) AS completion, SUM(cost) AS cost
                FROM usage_record WHERE created_at >= ?
                """
            var args: StatementArguments = [since.timeIntervalSince1970]
            if let keyID {
                sql += " AND key_id = ?"
                args += [keyID]
            }
            sql += " GROUP BY key_id, deployment ORDER BY key_id, deployment"
            return try Row.fetchAll(db, sql: sql, arguments: args).map {
                UsageSummary(keyID: $0["key_id"], deployment: $0["deployment"], requests: $0["requests"],
                             promptTokens: $0["prompt"], completionTokens: $0["completion"], cost: $0["cost"])
            }
        }
    }

    /// Tokens (prompt + completion) a key used since a time, e.g. the start of the month.
    public func tokensUsed(keyID: String, since: Date) async throws -> Int {
        try await database.pool.read { db in
            try Int.fetchOne(db, sql: """
                SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM usage_record
                WHERE key_id = ? AND created_at >= ?
                """, arguments: [keyID, since.timeIntervalSince1970]) ?? 0
        }
    }
}

extension Date {
    /// The first instant of this date's month, in UTC.
    public var startOfMonthUTC: Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar.date(from: calendar.dateComponents([.year, .month], from: self)) ?? self
    }

    public var startOfNextMonthUTC: Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar.date(byAdding: .month, value: 1, to: startOfMonthUTC) ?? self
    }
}
