import Foundation
import GRDB

/// Responses stored through the gateway (`store`, the Responses API's default), in the platform's
/// database beside the ledger. Each belongs to the API key that made it: another key finds nothing.
///
/// `object` is the response as the client got it (GET returns it); `conversation` the Responses input
/// items that `previous_response_id` continues: the conversation before it, its own input and its output
/// (without `instructions`, which OpenAI does not carry over either).
public struct ResponseArchive: Sendable {
    public let database: PlatformDatabase
    /// Stored responses older than this are deleted.
    public let retention: Double

    public init(database: PlatformDatabase, retention: Double = 30 * 86400) {
        self.database = database
        self.retention = retention
    }

    public func save(id: String, keyID: String, deployment: String, object: Data, conversation: Data,
                     at date: Date = Date()) async throws {
        try await database.pool.write { db in
            try db.execute(sql: """
                INSERT OR REPLACE INTO stored_response (id, key_id, deployment, object, conversation, created_at)
                VALUES (?, ?, ?, ?, ?, ?)
                """, arguments: [id, keyID, deployment, object, conversation, date.timeIntervalSince1970])
        }
    }

    /// The response object, if `keyID` stored it and it is within the retention.
    public func object(id: String, keyID: String, now: Date = Date()) async throws -> Data? {
        try await fetch("object", id: id, keyID: keyID, now: now)
    }

    /// The conversation up to and including the response (JSON array of input items), and its deployment.
    public func conversation(id: String, keyID: String, now: Date = Date()) async throws -> (items: Data, deployment: String)? {
        let cutoff = now.timeIntervalSince1970 - retention
        return try await database.pool.read { db in
            try Row.fetchOne(db, sql: "SELECT conversation, deployment FROM stored_response WHERE id = ? AND key_id = ? AND created_at >= ?",
                             arguments: [id, keyID, cutoff]).map { ($0["conversation"], $0["deployment"]) }
        }
    }

    private func fetch(_ column: String, id: String, keyID: String, now: Date) async throws -> Data? {
        let cutoff = now.timeIntervalSince1970 - retention
        return try await database.pool.read { db in
            try Data.fetchOne(db, sql: "SELECT \(column) FROM stored_response WHERE id = ? AND key_id = ? AND created_at >= ?",
                              arguments: [id, keyID, cutoff])
        }
    }

    /// Whether the key had such a response (now gone).
    public func delete(id: String, keyID: String) async throws -> Bool {
        try await database.pool.write { db in
            try db.execute(sql: "DELETE FROM stored_response WHERE id = ? AND key_id = ?", arguments: [id, keyID])
            return db.changesCount > 0
        }
    }

    /// Deletes responses past the retention; returns how many.
    @discardableResult
    public func prune(now: Date = Date()) async throws -> Int {
        try await database.pool.write { db in
            try db.execute(sql: "DELETE FROM stored_response WHERE created_at < ?",
                           arguments: [now.timeIntervalSince1970 - retention])
            return db.changesCount
        }
    }

    /// Responses kept, and the bytes of their objects and conversations.
    public func usage() async throws -> (count: Int, bytes: Int) {
        try await database.pool.read { db in
            let row = try Row.fetchOne(db, sql: "SELECT COUNT(*) AS n, COALESCE(SUM(LENGTH(object) + LENGTH(conversation)), 0) AS b FROM stored_response")
            return (row?["n"] ?? 0, row?["b"] ?? 0)
        }
    }
}
