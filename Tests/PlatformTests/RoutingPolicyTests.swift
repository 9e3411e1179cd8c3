import Testing
import Engine
import Platform

@Suite struct RoutingPolicyTests {
    func c(_ id: String, _ cluster: String, _ outstanding: Int, load: Int = 0) -> RoutingCandidate {
        RoutingCandidate(id: id, cluster: cluster, outstanding: outstanding, reportedLoad: load)
    }

    @Test func leastOutstandingInThePreferredCluster() {
        let pick = RoutingPolicy.choose([c("a1", "a", 2), c("a2", "a", 1), c("b1", "b", 0)], placement: ["a", "b"],
                                        targetConcurrency: 4, affinityKey: nil)
        #expect(pick?.id == "a2")
    }

    @Test func spillsToTheNextClusterWhenThePreferredOneIsFull() {
        let pick = RoutingPolicy.choose([c("a1", "a", 4), c("a2", "a", 5), c("b1", "b", 1), c("b2", "b", 0)],
                                        placement: ["a", "b"], targetConcurrency: 4, affinityKey: nil)
        #expect(pick?.id == "b2")
    }

    @Test func everythingFullMeansLeastLoadedAnywhere() {
        let pick = RoutingPolicy.choose([c("a1", "a", 6), c("b1", "b", 5)], placement: ["a", "b"], targetConcurrency: 4,
                                        affinityKey: nil)
        #expect(pick?.id == "b1")
    }

    @Test func clusterOutsideThePlacementIsNeverChosen() {
        #expect(RoutingPolicy.choose([c("x", "other", 0)], placement: ["a"], targetConcurrency: 4, affinityKey: nil) == nil)
        #expect(RoutingPolicy.choose([], placement: ["a"], targetConcurrency: 4, affinityKey: nil) == nil)
    }

    @Test func failoverWhenThePreferredClusterHasNoReplica() {
        #expect(RoutingPolicy.choose([c("b1", "b", 3)], placement: ["a", "b"], targetConcurrency: 4, affinityKey: nil)?.id == "b1")
    }

    @Test func tiesBreakOnReportedLoadThenId() {
        let pick = RoutingPolicy.choose([c("a2", "a", 1, load: 0), c("a1", "a", 1, load: 3), c("a3", "a", 1, load: 0)],
                                        placement: ["a"], targetConcurrency: 4, affinityKey: nil)
        #expect(pick?.id == "a2")
    }

    @Test func affinityKeepsAConversationOnOneReplicaWhileLoadAllows() {
        let replicas = (1...4).map { c("r\($0)", "a", 0) }
        for conversation in 0..<20 {
            let key = "conversation \(conversation)"
            let home = RoutingPolicy.choose(replicas, placement: ["a"], targetConcurrency: 4, affinityKey: key)!
            // Other replicas busier or not: the home replica keeps it while below the target.
            let loaded = replicas.map { $0.id == home.id ? c($0.id, "a", 3) : $0 }
            #expect(RoutingPolicy.choose(loaded, placement: ["a"], targetConcurrency: 4, affinityKey: key)?.id == home.id)
            // Saturated: least outstanding instead.
            let full = replicas.map { $0.id == home.id ? c($0.id, "a", 4) : $0 }
            #expect(RoutingPolicy.choose(full, placement: ["a"], targetConcurrency: 4, affinityKey: key)?.id != home.id)
        }
    }

    @Test func affinitySpreadsKeysAndMovesFewWhenAReplicaJoins() {
        let three = (1...3).map { c("r\($0)", "a", 0) }
        let four = three + [c("r4", "a", 0)]
        var homes: [String: Int] = [:]
        var moved = 0
        for i in 0..<400 {
            let key = "k\(i)"
            let before = RoutingPolicy.choose(three, placement: ["a"], targetConcurrency: 9, affinityKey: key)!.id
            let after = RoutingPolicy.choose(four, placement: ["a"], targetConcurrency: 9, affinityKey: key)!.id
            homes[before, default: 0] += 1
            if before != after {
                moved += 1
                #expect(after == "r4", "a key only ever moves to the new replica")
            }
        }
        #expect(homes.values.allSatisfy { $0 > 80 }, "keys spread over replicas: \(homes)")
        #expect(moved > 50 && moved < 160, "about a quarter of the keys move: \(moved)")
    }

    @Test func affinityKeyIsStableAcrossTurns() {
        let turn1: [String: Any] = ["messages": [["role": "system", "content": "Be brief."], ["role": "user", "content": "Hi"]]]
        let turn2: [String: Any] = ["messages": [
            ["role": "system", "content": "Be brief."], ["role": "user", "content": "Hi"],
            ["role": "assistant", "content": "Hello"], ["role": "user", "content": "More"],
        ]]
        let other: [String: Any] = ["messages": [["role": "system", "content": "Be brief."], ["role": "user", "content": "Yo"]]]
        let k1 = RoutingPolicy.affinityKey(model: "m", body: turn1)
        #expect(k1 != nil)
        #expect(k1 == RoutingPolicy.affinityKey(model: "m", body: turn2))
        #expect(k1 != RoutingPolicy.affinityKey(model: "m", body: other))
        #expect(RoutingPolicy.affinityKey(model: "m", body: ["prompt": "abc"]) == RoutingPolicy.affinityKey(model: "m", body: ["prompt": ["abc"]]))
        #expect(RoutingPolicy.rendezvous("k", "r1") == RoutingPolicy.rendezvous("k", "r1"))
    }

    @Test func registryCountsOutstandingAndEjects() {
        let registry = ReplicaRegistry(unhealthyAfter: 2)
        var d = Deployment(name: "d", model: .name("m"), placement: ["a"])
        d.targetConcurrency = 1
        registry.register(id: "r1", deployment: "d", cluster: "a", url: "http://127.0.0.1:1", pid: nil, state: .ready, load: EngineLoad())
        registry.register(id: "r2", deployment: "d", cluster: "a", url: "http://127.0.0.1:2", pid: nil, state: .ready, load: EngineLoad())
        let first = registry.acquire(deployment: d, affinityKey: nil, excluding: [])!
        let second = registry.acquire(deployment: d, affinityKey: nil, excluding: [])!
        #expect(first.id != second.id)
        #expect(registry.demand("d") == 2)
        registry.release(first.id, connectionFailed: true)
        #expect(registry.replica(first.id)!.ejected)
        #expect(registry.acquire(deployment: d, affinityKey: nil, excluding: [])?.id == second.id)
        registry.probed(first.id, ok: true)
        #expect(!registry.replica(first.id)!.ejected)
        registry.probed(second.id, ok: false)
        #expect(!registry.replica(second.id)!.ejected)
        registry.probed(second.id, ok: false)
        #expect(registry.replica(second.id)!.ejected, "ejected after unhealthyAfter failed probes")
        #expect(registry.acquire(deployment: d, affinityKey: nil, excluding: [first.id]) == nil)
    }

    @Test func silentReplicasFailThenAreForgotten() {
        let registry = ReplicaRegistry()
        registry.register(id: "r", deployment: "d", cluster: "a", url: "http://127.0.0.1:1", pid: nil, state: .ready,
                          load: EngineLoad(), now: 0)
        #expect(registry.expire(timeout: 5, now: 4).isEmpty)
        #expect(registry.replica("r")?.state == .ready)
        registry.expire(timeout: 5, now: 6)
        #expect(registry.replica("r")?.state == .failed)
        #expect(registry.heartbeat(id: "r", state: .ready, load: EngineLoad(), now: 7))
        #expect(registry.replica("r")?.state == .ready)
        #expect(registry.expire(timeout: 5, now: 30) == ["r"])
        #expect(!registry.heartbeat(id: "r", state: .ready, load: EngineLoad(), now: 31), "unknown: must register again")
    }
}
