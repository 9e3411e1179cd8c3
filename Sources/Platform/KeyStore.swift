import Crypto
import Foundation
import GRDB

/// An API key as stored: never the secret, only its SHA-256 and a short prefix to recognise it by.
public struct APIKey: Sendable, Equatable, Codable {
    public var id: String
    public var name: String
    /// The first characters of the secret, for people to tell keys apart.
    public var prefix: String
    public var requestsPerMinute: Int?
    public var tokensPerMinute: Int?
    public var monthlyTokens: Int?
    /// May read every key's usage, the deployments and the live metrics, and change replica bounds.
    public var admin: Bool
    public var createdAt: Date
    public var revokedAt: Date?

    public var isRevoked: Bool { revokedAt != nil }

    enum CodingKeys: String, CodingKey {
        case id, name, prefix
        case requestsPerMinute = "requests_per_minute"
        case tokensPerMinute = "tokens_per_minute"
        case monthlyTokens = "monthly_tokens"
        case admin
        case createdAt = "created_at"
        case revokedAt = "revoked_at"
    }

    /// The caller when the gateway runs without keys: an open gateway is open to everyone, console included.
    public static let anonymous = APIKey(
        id: "anonymous", name: "anonymous", prefix: "", requestsPerMinute: nil, tokensPerMinute: nil,
        monthlyTokens: nil, admin: true, createdAt: Date(timeIntervalSince1970: 0), revokedAt: nil)

    public init(id: String, name: String, prefix: String, requestsPerMinute: Int?, tokensPerMinute: Int?, monthlyTokens: Int?,
         admin: Bool = false, createdAt: Date, revokedAt: Date?) {
        self.id = id
        self.admin = admin
        self.name = name
        self.prefix = prefix
        self.requestsPerMinute = requestsPerMinute
        self.tokensPerMinute = tokensPerMinute
        self.monthlyTokens = monthlyTokens
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }

    init(row: Row) {
        id = row["id"]
        name = row["name"]
        prefix = row["prefix"]
        requestsPerMinute = row["requests_per_minute"]
        tokensPerMinute = row["tokens_per_minute"]
        monthlyTokens = row["monthly_tokens"]
        admin = row["admin"] ?? false
        createdAt = Date(timeIntervalSince1970: row["created_at"])
        revokedAt = (row["revoked_at"] as Double?).map { Date(timeIntervalSince1970: $0) }
    }
}

public enum KeyStoreError: Error, CustomStringConvertible, Equatable {
    case invalidLimit(String)
    case notFound(String)

    public var description: String {
        switch self {
        case .invalidLimit(let m): m
        case .notFound(let id): "no API key with id '\(id)'"
        }
    }
}

/// Creates, lists, revokes and checks API keys. A secret is 32 random bytes; it is shown once at
/// creation and stored as its SHA-256 (a fast hash suits secrets this random: there is nothing to guess).
public struct KeyStore: Sendable {
    public let database: PlatformDatabase
    public static let secretPrefix = "sk-swiftlet-"

    public init(database: PlatformDatabase) { self.database = database }

    public static func hash(_ secret: String) -> String {
        SHA256.hash(data: Data(secret.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    public static func randomHex(_ bytes: Int) -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &g)) }.joined()
    }

    /// A new key and its secret (the only time the secret exists outside the caller).
    public func create(name: String, requestsPerMinute: Int? = nil, tokensPerMinute: Int? = nil,
                       monthlyTokens: Int? = nil, admin: Bool = false) throws -> (key: APIKey, secret: String) {
        for (label, v) in [("requests per minute", requestsPerMinute), ("tokens per minute", tokensPerMinute),
                           ("monthly tokens", monthlyTokens)] {
            if let v, v < 1 { throw KeyStoreError.invalidLimit("\(label) must be at least 1") }
        }
        let secret = Self.secretPrefix + Self.randomHex(32)
        let key = APIKey(
            id: "key_" + Self.randomHex(6), name: name, prefix: String(secret.prefix(Self.secretPrefix.count + 4)),
            requestsPerMinute: requestsPerMinute, tokensPerMinute: tokensPerMinute, monthlyTokens: monthlyTokens,
            admin: admin, createdAt: Date(), revokedAt: nil)
        try database.pool.write { db in
            try db.execute(sql: """
                INSERT INTO api_key (id, name, prefix, secret_sha256, requests_per_minute, tokens_per_minute,
                                     monthly_tokens, admin, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [key.id, key.name, key.prefix, Self.hash(secret), key.requestsPerMinute,
                                 key.tokensPerMinute, key.monthlyTokens, key.admin, key.createdAt.timeIntervalSince1970])
        }
        return (key, secret)
    }

    public func list() throws -> [APIKey] {
        try database.pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM api_key ORDER BY created_at, id").map(APIKey.init(row:))
        }
    }

    public func key(id: String) throws -> APIKey? {
        try database.pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM api_key WHERE id = ?", arguments: [id]).map(APIKey.init(row:))
        }
    }

    /// Revokes a key at once; requests with it get 401 from then on.
    public func revoke(id: String) throws -> APIKey {
        try database.pool.write { db in
            try db.execute(sql: "UPDATE api_key SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                           arguments: [Date().timeIntervalSince1970, id])
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM api_key WHERE id = ?", arguments: [id]) else {
                throw KeyStoreError.notFound(id)
            }
            return APIKey(row: row)
        }
    }

    /// The live key whose secret this is; nil for an unknown or revoked secret.
    public func authenticate(secret: String) async throws -> APIKey? {
        let digest = Self.hash(secret)
        let key = try await database.pool.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM api_key WHERE secret_sha256 = ?", arguments: [digest])
                .map(APIKey.init(row:))
        }
        guard let key, !key.isRevoked else { return nil }
        return key
    }
}
