import Foundation
import GRDB

/// The gateway's SQLite file: API keys, the usage ledger and stored responses, in one WAL-mode pool shared by the
/// gateway and the `keys`/`usage` commands (other processes may open the same file at the same time).
///
/// synchronous=FULL: a committed ledger row survives not only the process being killed (WAL frames
/// are in the OS already at NORMAL) but also power loss or an OS crash, at the price of one fsync per
/// commit, which is small next to a generation.
public final class PlatformDatabase: Sendable {
    public let pool: DatabasePool
    public let path: String

    public init(path: String) throws {
        self.path = path
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        var config = Configuration()
        config.busyMode = .timeout(10)
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        pool = try DatabasePool(path: path, configuration: config)
        try Self.migrator.migrate(pool)
    }

    /// The default file: $SWIFTLET_DB, else swiftlet.db in the current directory.
    public static var defaultPath: String {
        if let p = ProcessInfo.processInfo.environment["SWIFTLET_DB"], !p.isEmpty { return p }
        return "swiftlet.db"
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE api_key (
                    id TEXT PRIMARY KEY NOT NULL,
                    name TEXT NOT NULL,
                    prefix TEXT NOT NULL,
                    secret_sha256 TEXT NOT NULL UNIQUE,
                    requests_per_minute INTEGER,
                    tokens_per_minute INTEGER,
                    monthly_tokens INTEGER,
                    created_at DOUBLE NOT NULL,
                    revoked_at DOUBLE
                );
                CREATE TABLE usage_record (
                    request_id TEXT PRIMARY KEY NOT NULL,
                    key_id TEXT NOT NULL,
                    deployment TEXT NOT NULL,
                    replica TEXT,
                    cluster TEXT,
                    prompt_tokens INTEGER NOT NULL,
                    completion_tokens INTEGER NOT NULL,
                    ttft DOUBLE,
                    duration DOUBLE NOT NULL,
                    status TEXT NOT NULL,
                    http_status INTEGER NOT NULL,
                    cost DOUBLE NOT NULL,
                    cold_start BOOLEAN NOT NULL DEFAULT 0,
                    created_at DOUBLE NOT NULL
                );
                CREATE INDEX usage_record_key_time ON usage_record(key_id, created_at);
                CREATE INDEX usage_record_time ON usage_record(created_at);
                """)
        }
        m.registerMigration("v2: admin keys, hardware time") { db in
            try db.execute(sql: """
                ALTER TABLE api_key ADD COLUMN admin BOOLEAN NOT NULL DEFAULT 0;
                CREATE TABLE hardware_usage (
                    deployment TEXT NOT NULL,
                    minute INTEGER NOT NULL,
                    replica_seconds DOUBLE NOT NULL,
                    dollars DOUBLE NOT NULL,
                    PRIMARY KEY (deployment, minute)
                );
                """)
        }
        m.registerMigration("v3: stored responses") { db in
            try db.execute(sql: """
                CREATE TABLE stored_response (
                    id TEXT PRIMARY KEY NOT NULL,
                    key_id TEXT NOT NULL,
                    deployment TEXT NOT NULL,
                    object BLOB NOT NULL,
                    conversation BLOB NOT NULL,
                    created_at DOUBLE NOT NULL
                );
                CREATE INDEX stored_response_time ON stored_response(created_at);
                """)
        }
        return m
    }
}
