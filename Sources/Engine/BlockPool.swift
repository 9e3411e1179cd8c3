import Models

/// The KV cache's blocks: which are free, which sequences hold which, and the prefix cache.
///
/// A full block whose positions were all computed as prompt is registered under the hash of its
/// tokens and of every token before it, so a later sequence with the same prefix takes it instead
/// of computing it again. Blocks are reference counted; a cached block nobody holds stays cached
/// until a new block is needed and it is the least recently used. Not thread-safe: the engine's
/// loop owns it.
final class BlockPool {
    let blockSize: Int
    let capacity: Int
    let prefixCaching: Bool

    private var refCount: [Int32]
    private var free: [Int32]
    /// Cached blocks: hash -> block, and per block its key (to rule out hash collisions).
    private var cached: [UInt64: Int32] = [:]
    private var key: [CacheKey?]
    /// Cached blocks nobody holds, least recently released first.
    private var evictable: LRUList

    private(set) var lookups = 0
    private(set) var hits = 0

    struct CacheKey: Equatable {
        var parent: UInt64
        var tokens: [Int]
    }

    init(capacity: Int, blockSize: Int, prefixCaching: Bool) {
        self.capacity = capacity
        self.blockSize = blockSize
        self.prefixCaching = prefixCaching
        refCount = [Int32](repeating: 0, count: capacity)
        key = [CacheKey?](repeating: nil, count: capacity)
        free = (0..<Int32(capacity)).reversed()
        evictable = LRUList(capacity: capacity)
    }

    /// Blocks a new allocation could get: free ones plus cached ones nobody holds.
    var available: Int { free.count + evictable.count }
    /// Blocks held by sequences.
    var used: Int { capacity - available }
    var cachedBlocks: Int { cached.count }

    /// A block for a sequence (reference count 1), evicting the least recently used unheld cached
    /// block when none is free; nil when every block is held.
    func allocate() -> Int32? {
        if let b = free.popLast() {
            refCount[Int(b)] = 1
            return b
        }
        guard let victim = evictable.popFirst() else { return nil }
        uncache(victim)
        refCount[Int(victim)] = 1
        return victim
    }

    /// Gives back one reference to each block (entries below 0 stand for none).
    func release(_ blocks: [Int32]) {
        for b in blocks where b >= 0 {
            let i = Int(b)
            precondition(refCount[i] > 0, "block \(b) released more often than held")
            refCount[i] -= 1
            guard refCount[i] == 0 else { continue }
            if key[i] != nil {
                evictable.append(b)
            } else {
                free.append(b)
            }
        }
    }

    /// Hash of a block's tokens following a prefix whose hash is `parent`.
    static func hash(parent: UInt64, tokens: ArraySlice<Int>) -> UInt64 {
        var h = parent ^ 0xcbf2_9ce4_8422_2325
        for t in tokens {
            h ^= UInt64(bitPattern: Int64(t))
            h = (h &* 0x0000_0100_0000_01b3) ^ (h >> 29)
        }
        return h &* 0x9E37_79B9_7F4A_7C15 | 1
    }

    /// The cached blocks of the longest run of leading full blocks of `tokens`, at most `limit`
    /// blocks, each now held once more. Returns the blocks, each one's parent hash, and the hash after
    /// the last of them.
    func lookupPrefix(_ tokens: [Int], limit: Int) -> (blocks: [Int32], parents: [UInt64], hash: UInt64) {
        guard prefixCaching else { return ([], [], 0) }
        var blocks: [Int32] = [], parents: [UInt64] = []
        var parent: UInt64 = 0
        let bs = blockSize
        while blocks.count < limit, (blocks.count + 1) * bs <= tokens.count {
            let slice = tokens[(blocks.count * bs)..<((blocks.count + 1) * bs)]
            let h = Self.hash(parent: parent, tokens: slice)
            lookups += 1
            guard let b = cached[h], key[Int(b)] == CacheKey(parent: parent, tokens: Array(slice)) else { break }
            hits += 1
            if refCount[Int(b)] == 0 { evictable.remove(b) }
            refCount[Int(b)] += 1
            blocks.append(b)
            parents.append(parent)
            parent = h
        }
        return (blocks, parents, parent)
    }

    /// The cached block of `tokens` after a prefix hashed `parent`, if any (not held).
    func cachedBlock(parent: UInt64, tokens: ArraySlice<Int>) -> Int32? {
        guard prefixCaching, let b = cached[Self.hash(parent: parent, tokens: tokens)],
              key[Int(b)] == CacheKey(parent: parent, tokens: Array(tokens)) else { return nil }
        return b
    }

    /// Holds a block found by `cachedBlock` once more.
    func hold(_ b: Int32) {
        if refCount[Int(b)] == 0 { evictable.remove(b) }
        refCount[Int(b)] += 1
    }

    /// Registers `block`, now full with prompt positions `tokens` after a prefix hashed `parent`.
    /// Returns the block's hash (the parent of the next block).
    @discardableResult
    func register(_ block: Int32, parent: UInt64, tokens: ArraySlice<Int>) -> UInt64 {
        let h = Self.hash(parent: parent, tokens: tokens)
        guard prefixCaching, key[Int(block)] == nil, cached[h] == nil else { return h }
        cached[h] = block
        key[Int(block)] = CacheKey(parent: parent, tokens: Array(tokens))
        return h
    }

    private func uncache(_ b: Int32) {
        guard let k = key[Int(b)] else { return }
        let h = Self.hash(parent: k.parent, tokens: k.tokens[...])
        if cached[h] == b { cached[h] = nil }
        key[Int(b)] = nil
    }

    /// Drops every cached block nobody holds (they become free).
    func clearCache() {
        while let b = evictable.popFirst() {
            uncache(b)
            free.append(b)
        }
    }
}

/// A doubly linked list of block ids in arrays: O(1) append, remove and pop.
struct LRUList {
    private var prev: [Int32], next: [Int32]
    private var member: [Bool]
    private var head: Int32 = -1, tail: Int32 = -1
    private(set) var count = 0

    init(capacity: Int) {
        prev = [Int32](repeating: -1, count: capacity)
        next = prev
        member = [Bool](repeating: false, count: capacity)
    }

    mutating func append(_ b: Int32) {
        let i = Int(b)
        guard !member[i] else { return }
        member[i] = true
        prev[i] = tail
        next[i] = -1
        if tail >= 0 { next[Int(tail)] = b } else { head = b }
        tail = b
        count += 1
    }

    mutating func remove(_ b: Int32) {
        let i = Int(b)
        guard member[i] else { return }
        member[i] = false
        if prev[i] >= 0 { next[Int(prev[i])] = next[i] } else { head = next[i] }
        if next[i] >= 0 { prev[Int(next[i])] = prev[i] } else { tail = prev[i] }
        count -= 1
    }

    mutating func popFirst() -> Int32? {
        guard head >= 0 else { return nil }
        let b = head
        remove(b)
        return b
    }
}
