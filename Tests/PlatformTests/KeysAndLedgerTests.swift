import Foundation
import GRDB
import Testing
import Platform

/// A database in a fresh temporary directory, removed at the end.
final class TemporaryDatabase {
    let directory: URL
    var path: String { directory.appendingPathComponent("platform.db").path }

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("swiftlet-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    func open() throws -> PlatformDatabase { try PlatformDatabase(path: path) }

    /// Every byte SQLite wrote: the database, its WAL and shared memory.
    func allBytes() throws -> Data {
        var out = Data()
        for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) {
            out += try Data(contentsOf: directory.appendingPathComponent(name))
        }
        return out
    }

    deinit { try? FileManager.default.removeItem(at: directory) }
}

@Suite struct KeyStoreTests {
    @Test func createAuthenticateRevoke() async throws {
        let tmp = try TemporaryDatabase()
        let keys = KeyStore(database: try tmp.open())
        let (key, secret) = try keys.create(name: "alice", requestsPerMinute: 10, tokensPerMinute: 1000, monthlyTokens: 5000)
        #expect(secret.hasPrefix(KeyStore.secretPrefix) && secret.count == KeyStore.secretPrefix.count + 64)
        #expect(key.id.hasPrefix("key_"))
        #expect(secret.hasPrefix(key.prefix))
        let found = try #require(try await keys.authenticate(secret: secret))
        #expect(found.id == key.id && found.requestsPerMinute == 10 && found.tokensPerMinute == 1000 && found.monthlyTokens == 5000)
        #expect(try await keys.authenticate(secret: secret + "x") == nil)
        #expect(try await keys.authenticate(secret: "") == nil)
        let revoked = try keys.revoke(id: key.id)
        #expect(revoked.isRevoked)
        #expect(try await keys.authenticate(secret: secret) == nil)
        #expect(throws: KeyStoreError.notFound("key_nope")) { try keys.revoke(id: "key_nope") }
        #expect(try keys.list().map(\.id) == [key.id])
    }

    @Test func secretsAreNeverStored() async throws {
        let tmp = try TemporaryDatabase()
        let keys = KeyStore(database: try tmp.open())
        var secrets: [String] = []
        for i in 0..<3 { secrets.append(try keys.create(name: "k\(i)").secret) }
        let bytes = try tmp.allBytes()
        for secret in secrets {
            #expect(bytes.range(of: Data(secret.utf8)) == nil)
            #expect(bytes.range(of: Data(secret.dropFirst(KeyStore.secretPrefix.count + 4).utf8)) == nil)
            #expect(bytes.range(of: Data(KeyStore.hash(secret).utf8)) != nil, "the hash is what is stored")
        }
        // SHA-256 of "abc".
        #expect(KeyStore.hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test func limitsMustBePositive() throws {
        let tmp = try TemporaryDatabase()
        #expect(throws: KeyStoreError.self) { try KeyStore(database: try tmp.open()).create(name: "x", requestsPerMinute: 0) }
    }
}

@Suite struct LedgerTests {
    func record(_ id: String, key: String = "key_a", deployment: String = "chat", prompt: Int = 10, completion: Int = 5,
                at date: Date = Date(), status: UsageRecord.Status = .completed) -> UsageRecord {
        UsageRecord(requestID: id, keyID: key, deployment: deployment, replica: "r1", cluster: "a", promptTokens: prompt,
                    completionTokens: completion, timeToFirstToken: 0.1, duration: 0.5, status: status, httpStatus: 200,
                    cost: Double(prompt + completion) / 1e6, coldStart: false, createdAt: date)
    }

    @Test func oneRowPerRequestEvenIfRecordedTwice() async throws {
        let tmp = try TemporaryDatabase()
        let ledger = Ledger(database: try tmp.open())
        #expect(try await ledger.record(record("req_1")))
        #expect(try await ledger.record(record("req_1", prompt: 999)) == false)
        #expect(try ledger.records().count == 1)
        #expect(try ledger.records()[0].promptTokens == 10)
    }

    @Test func committedRowsSurviveReopening() async throws {
        let tmp = try TemporaryDatabase()
        do {
            let ledger = Ledger(database: try tmp.open())
            for i in 0..<50 { try await ledger.record(record("req_\(i)")) }
        }
        // A second connection, as a restarted gateway or the usage command would open it.
        let reopened = Ledger(database: try tmp.open())
        let rows = try reopened.records()
        #expect(rows.count == 50)
        #expect(Set(rows.map(\.requestID)).count == 50)
        let mode = try await reopened.database.pool.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
        #expect(mode == "wal")
        let sync = try await reopened.database.pool.read { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") }
        #expect(sync == 2, "synchronous=FULL")
    }

    @Test func summaryAndMonthlyTokens() async throws {
        let tmp = try TemporaryDatabase()
        let ledger = Ledger(database: try tmp.open())
        let now = Date()
        let lastMonth = now.startOfMonthUTC.addingTimeInterval(-3600)
        try await ledger.record(record("1", key: "key_a", deployment: "chat", prompt: 100, completion: 50))
        try await ledger.record(record("2", key: "key_a", deployment: "chat", prompt: 10, completion: 5))
        try await ledger.record(record("3", key: "key_a", deployment: "code", prompt: 1, completion: 1))
        try await ledger.record(record("4", key: "key_b", deployment: "chat", prompt: 7, completion: 3))
        try await ledger.record(record("5", key: "key_a", deployment: "chat", prompt: 1000, completion: 1000, at: lastMonth))
        let rows = try await ledger.summary(since: now.startOfMonthUTC)
        #expect(rows.map { "\($0.keyID)/\($0.deployment)" } == ["key_a/chat", "key_a/code", "key_b/chat"])
        #expect(rows[0].requests == 2 && rows[0].promptTokens == 110 && rows[0].completionTokens == 55)
        #expect(abs(rows[0].cost - 165e-6) < 1e-12)
        #expect(try await ledger.summary(since: now.startOfMonthUTC, keyID: "key_b").count == 1)
        #expect(try await ledger.tokensUsed(keyID: "key_a", since: now.startOfMonthUTC) == 167)
        #expect(try await ledger.tokensUsed(keyID: "key_a", since: .distantPast) == 2167)
    }

    /// `requests` counts every row; how they ended is told apart, not folded into it.
    @Test func summaryTellsCompletedInterruptedAndFailedApart() async throws {
        let tmp = try TemporaryDatabase()
        let ledger = Ledger(database: try tmp.open())
        try await ledger.record(record("1", prompt: 10, completion: 5))
        try await ledger.record(record("2", prompt: 10, completion: 5))
        try await ledger.record(record("3", prompt: 10, completion: 2, status: .interrupted))
        try await ledger.record(record("4", prompt: 0, completion: 0, status: .failed))
        let row = try #require(try await ledger.summary(since: .distantPast).first)
        #expect(row.requests == 4 && row.completed == 2 && row.interrupted == 1 && row.failed == 1)
        #expect(row.promptTokens == 30 && row.completionTokens == 12)
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(row)) as? [String: Any]
        #expect(json?["completed"] as? Int == 2 && json?["interrupted"] as? Int == 1 && json?["failed"] as? Int == 1)
    }
}

@Suite struct ResponseArchiveTests {
    /// A stored response belongs to its key; deletion and the retention end it.
    @Test func scopedToTheKeyAndKeptForTheRetention() async throws {
        let tmp = try TemporaryDatabase()
        let archive = ResponseArchive(database: try tmp.open(), retention: 3600)
        let now = Date()
        let object = Data(#"{"id":"resp_a","object":"response"}"#.utf8)
        let items = Data(#"[{"role":"user","content":"Hi"}]"#.utf8)
        try await archive.save(id: "resp_a", keyID: "key_1", deployment: "chat", object: object, conversation: items, at: now)
        try await archive.save(id: "resp_old", keyID: "key_1", deployment: "chat", object: object, conversation: items,
                               at: now.addingTimeInterval(-7200))
        #expect(try await archive.object(id: "resp_a", keyID: "key_1", now: now) == object)
        #expect(try await archive.object(id: "resp_a", keyID: "key_2", now: now) == nil, "another key finds nothing")
        let c = try #require(try await archive.conversation(id: "resp_a", keyID: "key_1", now: now))
        #expect(c.items == items && c.deployment == "chat")
        #expect(try await archive.conversation(id: "resp_a", keyID: "key_2", now: now) == nil)
        #expect(try await archive.object(id: "resp_old", keyID: "key_1", now: now) == nil, "past the retention")
        #expect(try await archive.delete(id: "resp_a", keyID: "key_2") == false)
        #expect(try await archive.usage().count == 2)
        #expect(try await archive.prune(now: now) == 1)
        #expect(try await archive.delete(id: "resp_a", keyID: "key_1") == true)
        #expect(try await archive.object(id: "resp_a", keyID: "key_1", now: now) == nil)
        #expect(try await archive.usage().count == 0)
        // The database opens again with its migrations applied once.
        _ = try tmp.open()
    }
}
