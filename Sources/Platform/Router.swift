import Foundation

/// What the router needs to know of a replica.
public struct RoutingCandidate: Sendable, Equatable {
    public var id: String
    public var cluster: String
    /// Requests the gateway has sent it that have not ended.
    public var outstanding: Int
    /// Sequences the replica last reported running plus waiting (a tie-breaker).
    public var reportedLoad: Int

    public init(id: String, cluster: String, outstanding: Int, reportedLoad: Int = 0) {
        self.id = id
        self.cluster = cluster
        self.outstanding = outstanding
        self.reportedLoad = reportedLoad
    }
}

/// Picks the replica for a request, from healthy ones only:
/// 1. Clusters in placement order: the first cluster with a replica below the target concurrency
///    gets the request; when every replica everywhere is at or above it, all clusters compete.
/// 2. Prefix affinity: within that set, the replica the request's affinity key hashes to
///    (rendezvous hashing: highest hash of key and replica id) takes it if it is below the target
///    concurrency, so a conversation's turns land where their KV blocks are cached; a replica joining
///    or leaving moves only the keys that hash to it.
/// 3. Otherwise the least outstanding requests, then the least reported load, then the id.
public enum RoutingPolicy {
    public static func choose(
        _ candidates: [RoutingCandidate], placement: [String], targetConcurrency: Int, affinityKey: String?
    ) -> RoutingCandidate? {
        let allowed = candidates.filter { placement.contains($0.cluster) }
        guard !allowed.isEmpty else { return nil }
        var group = allowed
        for cluster in placement {
            let inCluster = allowed.filter { $0.cluster == cluster }
            if inCluster.contains(where: { $0.outstanding < targetConcurrency }) {
                group = inCluster
                break
            }
        }
        if let key = affinityKey, let home = group.max(by: { rendezvous(key, $0.id) < rendezvous(key, $1.id) }),
           home.outstanding < targetConcurrency {
            return home
        }
        return group.min {
            ($0.outstanding, $0.reportedLoad, $0.id) < ($1.outstanding, $1.reportedLoad, $1.id)
        }
    }

    /// Stable across processes (FNV-1a, then a 64-bit mix), so a restarted gateway keeps the mapping.
    public static func rendezvous(_ key: String, _ replica: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        h = (h ^ 0xff) &* 0x0000_0100_0000_01b3
        for b in replica.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        h ^= h >> 33
        h = h &* 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        return h
    }

    /// The part of a request that stays the same across a conversation's turns: the first message
    /// (and the second if the first is a system prompt) for chat, the start of the prompt for completions,
    /// the instructions and first input item for responses.
    public static func affinityKey(model: String, body: [String: Any]) -> String? {
        if let messages = body["messages"] as? [Any], let first = messages.first as? [String: Any] {
            var parts = [text(of: first)]
            if (first["role"] as? String) == "system" || (first["role"] as? String) == "developer",
               messages.count > 1, let second = messages[1] as? [String: Any] {
                parts.append(text(of: second))
            }
            return model + "\u{1}" + parts.joined(separator: "\u{1}")
        }
        // Responses: the instructions and the first input item (the gateway puts a stored conversation
        // before the new input, so every turn starts the same).
        if let input = body["input"] {
            var parts = [(body["instructions"] as? String).map { String($0.prefix(256)) } ?? ""]
            if let text = input as? String {
                parts.append("user:" + String(text.prefix(256)))
            } else if let first = (input as? [Any])?.first as? [String: Any] {
                parts.append(text(of: first))
            }
            return model + "\u{3}" + parts.joined(separator: "\u{1}")
        }
        if let prompt = body["prompt"] as? String { return model + "\u{2}" + String(prompt.prefix(256)) }
        if let prompts = body["prompt"] as? [Any], let first = prompts.first as? String {
            return model + "\u{2}" + String(first.prefix(256))
        }
        return nil
    }

    static func text(of message: [String: Any]) -> String {
        let role = message["role"] as? String ?? ""
        if let s = message["content"] as? String { return role + ":" + s }
        if let parts = message["content"] as? [Any] {
            return role + ":" + parts.compactMap { ($0 as? [String: Any])?["text"] as? String }.joined(separator: "\n")
        }
        return role + ":"
    }
}
