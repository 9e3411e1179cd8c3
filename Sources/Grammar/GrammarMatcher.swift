import Foundation

/// The tokens allowed in one grammar state, stored in whichever form is smallest.
public struct TokenMask: Sendable {
    enum Storage: Sendable {
        case allowed([Int32])
        case disallowed([Int32])
        case bits([UInt64])
    }

    let storage: Storage
    let size: Int
    /// Tokens allowed (end-of-generation tokens included).
    public let allowedCount: Int

    init(allowed: [Int32], size: Int) {
        self.size = size
        allowedCount = allowed.count
        if allowed.count <= size / 16 {
            storage = .allowed(allowed.sorted())
            return
        }
        var bits = [UInt64](repeating: 0, count: (size + 63) / 64)
        for t in allowed { bits[Int(t) >> 6] |= 1 << UInt64(t & 63) }
        if size - allowed.count <= size / 16 {
            var rejected: [Int32] = []
            for t in 0..<size where bits[t >> 6] & (1 << UInt64(t & 63)) == 0 { rejected.append(Int32(t)) }
            storage = .disallowed(rejected)
        } else {
            storage = .bits(bits)
        }
    }

    public func allows(_ token: Int) -> Bool {
        guard token >= 0 && token < size else { return false }
        switch storage {
        case .allowed(let a): return a.contains(Int32(token))
        case .disallowed(let d): return !d.contains(Int32(token))
        case .bits(let b): return b[token >> 6] & (1 << UInt64(token & 63)) != 0
        }
    }

    /// Sets the logits of disallowed tokens to -infinity (and of every index past the vocabulary).
    public func apply(to logits: UnsafeMutableBufferPointer<Float>) {
        let n = logits.count
        switch storage {
        case .allowed(let allowed):
            withUnsafeTemporaryAllocation(of: Float.self, capacity: max(allowed.count, 1)) { saved in
                for (i, t) in allowed.enumerated() where Int(t) < n { saved[i] = logits[Int(t)] }
                logits.update(repeating: -.infinity)
                for (i, t) in allowed.enumerated() where Int(t) < n { logits[Int(t)] = saved[i] }
            }
        case .disallowed(let rejected):
            for t in rejected where Int(t) < n { logits[Int(t)] = -.infinity }
            if n > size { logits[size..<n].update(repeating: -.infinity) }
        case .bits(let bits):
            bits.withUnsafeBufferPointer { words in
                for w in 0..<min(words.count, (n + 63) / 64) {
                    var off = ~words[w]
                    while off != 0 {
                        let t = w << 6 | off.trailingZeroBitCount
                        if t < n { logits[t] = -.infinity }
                        off &= off - 1
                    }
                }
            }
            if n > size { logits[size..<n].update(repeating: -.infinity) }
        }
    }
}

/// A grammar bound to a vocabulary: runs the grammar's pushdown automaton as a DFA built lazily over
/// its configuration sets (each set interned as a state number, its byte transitions filled in as
/// they are first needed), and caches each state's token mask. Shared by every sequence that uses
/// the same grammar; a sequence holds only a `GrammarState`.
public final class GrammarMatcher: @unchecked Sendable {
    // @unchecked: every mutable property below is read and written with `lock` held.
    public let grammar: Grammar
    public let vocabulary: TokenVocabulary
    private let lock = NSLock()
    private var space: ConfigurationSpace
    private var configurations: [[UInt64]] = []
    private var index: [[UInt64]: Int32] = [:]
    /// 256 transitions per state: a state, `dead`, or `unknown`.
    private var rows: UnsafeMutablePointer<Int32>
    private var rowCapacity: Int
    private var flags: [UInt8] = []
    private var masks: [TokenMask?] = []
    /// Masks stored as bitsets (6 KB each for 49k tokens); past `maxBitsetMasks` they are recomputed instead.
    private var bitsetMasks = 0
    static let maxBitsetMasks = 1000
    private var walkStates: [Int32]
    private var allowedScratch: [Int32] = []
    private(set) var stats = Statistics()

    static let unknown: Int32 = -2
    static let dead: Int32 = -1
    static let accepting: UInt8 = 1, complete: UInt8 = 2, free: UInt8 = 4

    public struct Statistics: Sendable {
        public var states = 0
        public var masksComputed = 0
        public var maskLookups = 0
        public var transitionsComputed = 0
        public var maskNanoseconds: UInt64 = 0
    }

    /// The state before any output.
    public let initialState: GrammarState.ID

    public init(grammar: Grammar, vocabulary: TokenVocabulary) {
        self.grammar = grammar
        self.vocabulary = vocabulary
        space = ConfigurationSpace(network: grammar.network, maxDepth: grammar.limits.maxNesting)
        rowCapacity = 64
        rows = .allocate(capacity: rowCapacity * 256)
        walkStates = [Int32](repeating: 0, count: vocabulary.maxTokenLength + 1)
        let start = space.closure([ConfigurationSpace.pack(grammar.network.root, 0)])
        initialState = 0
        _ = intern(start)
    }

    deinit { rows.deallocate() }

    public var statistics: Statistics {
        lock.lock()
        defer { lock.unlock() }
        var s = stats
        s.states = configurations.count
        return s
    }

    /// Number of DFA states built so far (a measure of this matcher's memory).
    public var stateCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return configurations.count
    }

    private func intern(_ c: [UInt64]) -> Int32 {
        if let s = index[c] { return s }
        let s = Int32(configurations.count)
        if configurations.count == rowCapacity {
            let bigger = UnsafeMutablePointer<Int32>.allocate(capacity: rowCapacity * 2 * 256)
            bigger.update(from: rows, count: rowCapacity * 256)
            rows.deallocate()
            rows = bigger
            rowCapacity *= 2
        }
        (rows + Int(s) * 256).initialize(repeating: Self.unknown, count: 256)
        configurations.append(c)
        index[c] = s
        var f: UInt8 = 0
        if space.isAccepting(c) { f |= Self.accepting }
        if space.isComplete(c) { f |= Self.complete }
        if space.isFree(c) { f |= Self.free }
        flags.append(f)
        masks.append(nil)
        return s
    }

    @inline(__always)
    private func transition(_ s: Int32, _ byte: UInt8) -> Int32 {
        let t = rows[Int(s) * 256 + Int(byte)]
        if t != Self.unknown { return t }
        stats.transitionsComputed += 1
        let next = space.step(configurations[Int(s)], byte)
        let result = next.isEmpty ? Self.dead : intern(next)
        rows[Int(s) * 256 + Int(byte)] = result
        return result
    }

    func flag(_ s: GrammarState.ID, _ f: UInt8) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return flags[Int(s)] & f != 0
    }

    /// The state after `token`'s bytes, or nil if the grammar does not allow them.
    func advance(_ s: GrammarState.ID, token: Int) -> GrammarState.ID? {
        guard token >= 0 && token < vocabulary.size else { return nil }
        lock.lock()
        defer { lock.unlock() }
        var state = s
        for byte in vocabulary.tokenBytes[token] {
            state = transition(state, byte)
            if state < 0 { return nil }
        }
        return vocabulary.tokenBytes[token].isEmpty ? nil : state
    }

    /// The state after `text`, or nil if the grammar does not allow it.
    func advance(_ s: GrammarState.ID, bytes: some Sequence<UInt8>) -> GrammarState.ID? {
        lock.lock()
        defer { lock.unlock() }
        var state = s
        for byte in bytes {
            state = transition(state, byte)
            if state < 0 { return nil }
        }
        return state
    }

    /// The tokens allowed in state `s`: those whose bytes the grammar can read from here, and the
    /// end-of-generation tokens if the output may end here. Cached per state.
    public func mask(_ s: GrammarState.ID) -> TokenMask {
        lock.lock()
        defer { lock.unlock() }
        stats.maskLookups += 1
        if let m = masks[Int(s)] { return m }
        let start = DispatchTime.now().uptimeNanoseconds
        allowedScratch.removeAll(keepingCapacity: true)
        let v = vocabulary
        let n = v.nodeByte.count
        walkStates[0] = s
        var i = 0
        while i < n {
            let d = Int(v.nodeDepth[i])
            let next = transition(walkStates[d - 1], v.nodeByte[i])
            if next < 0 {
                i = Int(v.subtreeEnd[i])
                continue
            }
            walkStates[d] = next
            var k = Int(v.tokenStart[i])
            let end = Int(v.tokenStart[i + 1])
            while k < end {
                allowedScratch.append(v.tokenIDs[k])
                k += 1
            }
            i += 1
        }
        if flags[Int(s)] & Self.accepting != 0 { allowedScratch.append(contentsOf: v.endOfGeneration) }
        let mask = TokenMask(allowed: allowedScratch, size: v.size)
        if case .bits = mask.storage {
            if bitsetMasks < Self.maxBitsetMasks {
                bitsetMasks += 1
                masks[Int(s)] = mask
            }
        } else {
            masks[Int(s)] = mask
        }
        stats.masksComputed += 1
        stats.maskNanoseconds += DispatchTime.now().uptimeNanoseconds - start
        return mask
    }
}

/// One sequence's place in a grammar: a state of a shared `GrammarMatcher`.
public struct GrammarState: Sendable {
    public typealias ID = Int32
    public let matcher: GrammarMatcher
    public private(set) var id: ID

    public init(matcher: GrammarMatcher) {
        self.matcher = matcher
        id = matcher.initialState
    }

    /// The output so far is complete: end-of-generation tokens are allowed.
    public var isAccepting: Bool { matcher.flag(id, GrammarMatcher.accepting) }
    /// Nothing can follow: generation must end.
    public var isComplete: Bool { matcher.flag(id, GrammarMatcher.complete) }
    /// Free text: every token is allowed from here on (no mask needed).
    public var isFree: Bool { matcher.flag(id, GrammarMatcher.free) }

    public func mask() -> TokenMask { matcher.mask(id) }

    /// Moves past `token`; false (and no move) if the grammar does not allow it.
    public mutating func advance(token: Int) -> Bool {
        guard let next = matcher.advance(id, token: token) else { return false }
        id = next
        return true
    }

    /// Moves past `text`; false (and no move) if the grammar does not allow it.
    public mutating func advance(text: String) -> Bool {
        guard let next = matcher.advance(id, bytes: text.utf8) else { return false }
        id = next
        return true
    }
}
