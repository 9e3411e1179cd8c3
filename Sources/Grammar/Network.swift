/// A recursive transition network over bytes: a set of rules, each an NFA whose edges read a byte,
/// read nothing (epsilon), or call a rule and go on at a return state once the callee ends. It is a
/// pushdown automaton; `GrammarMatcher` runs it as a lazily built DFA over its configurations.
struct Network: Sendable {
    struct ByteEdge: Sendable {
        var bytes: ByteSet
        var target: Int32
    }

    struct Call: Sendable {
        var rule: Int32
        var next: Int32
    }

    var byteEdges: [[ByteEdge]] = []
    var epsilons: [[Int32]] = []
    var calls: [[Call]] = []
    /// The rule that contains this state ends here: return to the caller, or at the root, the output is complete.
    var final: [Bool] = []
    /// Free text: any byte, any number of times (and the rule may end anywhere).
    var anything: [Bool] = []
    var root: Int32 = 0

    var stateCount: Int { final.count }
}

/// Builds a `Network` within a bound on its size.
final class NetworkBuilder {
    private(set) var network = Network()
    let maxStates: Int
    let shouldStop: (@Sendable () -> Bool)?

    /// Past `maxStates`, or `stopped` when `shouldStop` said so.
    struct TooLarge: Error {
        var stopped = false
    }

    init(maxStates: Int, shouldStop: (@Sendable () -> Bool)? = nil) {
        self.maxStates = maxStates
        self.shouldStop = shouldStop
    }

    func state() throws(TooLarge) -> Int32 {
        guard network.final.count < maxStates else { throw TooLarge() }
        if network.final.count & 0xFFF == 0xFFF, let shouldStop, shouldStop() { throw TooLarge(stopped: true) }
        network.byteEdges.append([])
        network.epsilons.append([])
        network.calls.append([])
        network.final.append(false)
        network.anything.append(false)
        return Int32(network.final.count - 1)
    }

    func edge(_ from: Int32, _ bytes: ByteSet, _ to: Int32) {
        if let i = network.byteEdges[Int(from)].firstIndex(where: { $0.target == to }) {
            network.byteEdges[Int(from)][i].bytes = network.byteEdges[Int(from)][i].bytes.union(bytes)
        } else {
            network.byteEdges[Int(from)].append(.init(bytes: bytes, target: to))
        }
    }

    func edge(_ from: Int32, _ byte: UInt8, _ to: Int32) { edge(from, ByteSet([byte]), to) }

    func epsilon(_ from: Int32, _ to: Int32) {
        if from != to { network.epsilons[Int(from)].append(to) }
    }

    func call(_ from: Int32, rule: Int32, then to: Int32) {
        network.calls[Int(from)].append(.init(rule: rule, next: to))
    }

    func setFinal(_ s: Int32) { network.final[Int(s)] = true }

    func setAnything(_ s: Int32) { network.anything[Int(s)] = true }

    func setRoot(_ s: Int32) { network.root = s }

    /// A chain reading `bytes` from `from`; returns its last state.
    func literal(_ from: Int32, _ bytes: some Sequence<UInt8>) throws(TooLarge) -> Int32 {
        var s = from
        for b in bytes {
            let t = try state()
            edge(s, b, t)
            s = t
        }
        return s
    }
}
