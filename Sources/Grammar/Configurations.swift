/// Configurations of a `Network` run as a pushdown automaton: a configuration is a state and a call
/// stack; since rules are NFAs, the automaton is in a set of configurations at once. Stacks are
/// interned as (return state, parent stack) so that a configuration packs into one `UInt64` and a
/// set of them, kept sorted, is canonical.
struct ConfigurationSpace {
    let network: Network
    let maxDepth: Int32
    private var stackReturn: [Int32] = [-1]
    private var stackParent: [Int32] = [-1]
    private var stackDepth: [Int32] = [0]
    private var stackIndex: [UInt64: Int32] = [:]
    private var visited = Set<UInt64>()
    private var work: [UInt64] = []

    init(network: Network, maxDepth: Int) {
        self.network = network
        self.maxDepth = Int32(maxDepth)
    }

    @inline(__always) static func pack(_ state: Int32, _ stack: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: state)) << 32 | UInt64(UInt32(bitPattern: stack))
    }

    @inline(__always) static func state(_ c: UInt64) -> Int32 { Int32(truncatingIfNeeded: c >> 32) }
    @inline(__always) static func stack(_ c: UInt64) -> Int32 { Int32(truncatingIfNeeded: c & 0xFFFF_FFFF) }

    var stackCount: Int { stackReturn.count }

    private mutating func push(_ ret: Int32, onto parent: Int32) -> Int32? {
        guard stackDepth[Int(parent)] < maxDepth else { return nil }
        let key = Self.pack(ret, parent)
        if let k = stackIndex[key] { return k }
        let k = Int32(stackReturn.count)
        stackReturn.append(ret)
        stackParent.append(parent)
        stackDepth.append(stackDepth[Int(parent)] + 1)
        stackIndex[key] = k
        return k
    }

    /// Everything reachable from `seeds` without reading a byte, kept as the configurations that can
    /// read one (or are free text, or have completed the root rule). Sorted and unique.
    mutating func closure(_ seeds: [UInt64]) -> [UInt64] {
        visited.removeAll(keepingCapacity: true)
        work.removeAll(keepingCapacity: true)
        work.append(contentsOf: seeds)
        var out: [UInt64] = []
        while let c = work.popLast() {
            guard visited.insert(c).inserted else { continue }
            let s = Int(Self.state(c)), k = Self.stack(c)
            if !network.byteEdges[s].isEmpty || network.anything[s] || (network.final[s] && k == 0) { out.append(c) }
            for t in network.epsilons[s] { work.append(Self.pack(t, k)) }
            for call in network.calls[s] {
                if let pushed = push(call.next, onto: k) { work.append(Self.pack(call.rule, pushed)) }
            }
            if network.final[s] && k != 0 {
                work.append(Self.pack(stackReturn[Int(k)], stackParent[Int(k)]))
            }
        }
        out.sort()
        return out
    }

    /// The configurations after reading `byte` (empty: the byte is not allowed).
    mutating func step(_ configurations: [UInt64], _ byte: UInt8) -> [UInt64] {
        var seeds: [UInt64] = []
        for c in configurations {
            let s = Int(Self.state(c)), k = Self.stack(c)
            if network.anything[s] { seeds.append(c) }
            for edge in network.byteEdges[s] where edge.bytes.contains(byte) {
                seeds.append(Self.pack(edge.target, k))
            }
        }
        return seeds.isEmpty ? [] : closure(seeds)
    }

    /// The root rule has ended: the output may stop here.
    func isAccepting(_ configurations: [UInt64]) -> Bool {
        configurations.contains { Self.stack($0) == 0 && network.final[Int(Self.state($0))] }
    }

    /// No byte can follow.
    func isComplete(_ configurations: [UInt64]) -> Bool {
        configurations.allSatisfy {
            let s = Int(Self.state($0))
            return network.byteEdges[s].isEmpty && !network.anything[s]
        }
    }

    /// Only free text remains: every token is allowed from here on.
    func isFree(_ configurations: [UInt64]) -> Bool {
        !configurations.isEmpty && configurations.allSatisfy { network.anything[Int(Self.state($0))] }
    }
}

extension Network {
    /// Whether rule `rule` (run as the root) matches exactly `bytes`.
    func accepts(rule: Int32, _ bytes: [UInt8], maxNesting: Int) -> Bool {
        var space = ConfigurationSpace(network: self, maxDepth: maxNesting)
        var current = space.closure([ConfigurationSpace.pack(rule, 0)])
        for byte in bytes {
            current = space.step(current, byte)
            if current.isEmpty { return false }
        }
        return space.isAccepting(current)
    }
}
