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

/// Tokens and cost of one key on one deployment over a period. `requests` is every request the
/// ledger holds (completed + interrupted + failed); the three say how they ended.
public struct UsageSummary: Sendable, Equatable, Codable {
    public var keyID: String
    public var deployment: String
    public var requests: Int
    /// Reached their end.
    public var completed: Int
    /// Streams that broke after output began (billed for the prompt and the tokens delivered).
    public var interrupted: Int
    /// Refused or failed before any output (no tokens billed).
    public var failed: Int
    public var promptTokens: Int
    public var completionTokens: Int
    public var cost: Double

    enum CodingKeys: String, CodingKey {
        case keyID = "key_id", deployment, requests, completed, interrupted, failed
        case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", cost
    }
}

/// Usage of one key on one deployment over a period, with the key's name.
public struct KeyUsage: Sendable, Equatable, Codable {
    public var keyID: String
    public var keyName: String
    public var deployment: String
    public var requests: Int
    public var failed: Int
    public var promptTokens: Int
    public var completionTokens: Int
    public var cost: Double
    public var lastRequest: Date

    enum CodingKeys: String, CodingKey {
        case keyID = "key_id", keyName = "key_name", deployment, requests, failed
        case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", cost, lastRequest = "last_request"
    }
}

/// Replica time a deployment held in one minute (Unix minute number), and what its hardware cost.
public struct HardwareTime: Sendable, Equatable {
    public var deployment: String
    public var minute: Int
    public var replicaSeconds: Double
    public var dollars: Double

    public init(deployment: String, minute: Int, replicaSeconds: Double, dollars: Double) {
        self.deployment = deployment
        self.minute = minute
        self.replicaSeconds = replicaSeconds
        self.dollars = dollars
    }

    /// The minute a date falls in (or the first minute starting at or after it).
    public static func minute(_ date: Date, roundingUp: Bool = false) -> Int {
        let m = date.timeIntervalSince1970 / 60
        return Int(roundingUp ? m.rounded(.up) : m.rounded(.down))
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
                SELECT key_id, deployment, COUNT(*) AS requests,
                       SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END) AS completed,
                       SUM(CASE WHEN status = 'interrupted' THEN 1 ELSE 0 END) AS interrupted,
                       SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed,
                       SUM(prompt_tokens) AS prompt,
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
                             completed: $0["completed"], interrupted: $0["interrupted"], failed: $0["failed"],
                             promptTokens: $0["prompt"], completionTokens: $0["completion"], cost: $0["cost"])
            }
        }
    }

    /// Requests, tokens and cost per key (with its name) and deployment in [since, until), optionally of
    /// one key or one deployment; failed requests are counted apart.
    public func usage(since: Date, until: Date, keyID: String? = nil, deployment: String? = nil) async throws -> [KeyUsage] {
        try await database.pool.read { db in
            var sql = """
                SELECT u.key_id AS key_id, k.name AS key_name, u.deployment AS deployment, COUNT(*) AS requests,
                       SUM(CASE WHEN u.status = 'failed' THEN 1 ELSE 0 END) AS failed,
                       SUM(u.prompt_tokens) AS prompt, SUM(u.completion_tokens) AS completion, SUM(u.cost) AS cost,
                       MAX(u.created_at) AS last
                FROM usage_record u LEFT JOIN api_key k ON k.id = u.key_id
                WHERE u.created_at >= ? AND u.created_at < ?
                """
            var args: StatementArguments = [since.timeIntervalSince1970, until.timeIntervalSince1970]
            if let keyID {
                sql += " AND u.key_id = ?"
                args += [keyID]
            }
            if let deployment {
                sql += " AND u.deployment = ?"
                args += [deployment]
            }
            sql += " GROUP BY u.key_id, u.deployment ORDER BY u.key_id, u.deployment"
            return try Row.fetchAll(db, sql: sql, arguments: args).map {
                KeyUsage(keyID: $0["key_id"], keyName: $0["key_name"] ?? $0["key_id"], deployment: $0["deployment"],
                         requests: $0["requests"], failed: $0["failed"], promptTokens: $0["prompt"],
                         completionTokens: $0["completion"], cost: $0["cost"],
                         lastRequest: Date(timeIntervalSince1970: $0["last"]))
            }
        }
    }

    /// Adds hardware time to the deployment's minute buckets.
    public func recordHardware(_ entries: [HardwareTime]) async throws {
        guard !entries.isEmpty else { return }
        try await database.pool.write { db in
            for e in entries {
                try db.execute(sql: """
                    INSERT INTO hardware_usage (deployment, minute, replica_seconds, dollars) VALUES (?, ?, ?, ?)
                    ON CONFLICT (deployment, minute) DO UPDATE SET
                        replica_seconds = replica_seconds + excluded.replica_seconds, dollars = dollars + excluded.dollars
                    """, arguments: [e.deployment, e.minute, e.replicaSeconds, e.dollars])
            }
        }
    }

    /// Replica time and its hardware price per deployment, over the minutes that start in [since, until).
    public func hardware(since: Date, until: Date) async throws -> [String: HardwareTime] {
        try await database.pool.read { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT deployment, SUM(replica_seconds) AS seconds, SUM(dollars) AS dollars FROM hardware_usage
                WHERE minute >= ? AND minute < ? GROUP BY deployment
                """, arguments: [HardwareTime.minute(since, roundingUp: true), HardwareTime.minute(until, roundingUp: true)])
            var out: [String: HardwareTime] = [:]
            for r in rows {
                let d: String = r["deployment"]
                out[d] = HardwareTime(deployment: d, minute: 0, replicaSeconds: r["seconds"], dollars: r["dollars"])
            }
            return out
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
