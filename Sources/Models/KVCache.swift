/// Keys and values of every layer in blocks of `blockSize` positions, stored as f16:
/// keys[layer][block][slot][kvDim] (values alike). Sequences address it through block tables, so
/// one storage can serve many sequences (the engine's paged pool) or one (`KVCache`).
public final class KVBlockStorage: @unchecked Sendable {
    public static let defaultBlockSize = 16

    public let layers: Int
    public let blockCount: Int
    public let blockSize: Int
    public let kvDim: Int
    let blockSizeLog2: Int32
    let keys: UnsafeMutablePointer<UInt16>
    let values: UnsafeMutablePointer<UInt16>

    /// `blockSize` must be a power of two.
    public init(layers: Int, blocks: Int, blockSize: Int = KVBlockStorage.defaultBlockSize, kvDim: Int) {
        precondition(blockSize > 0 && blockSize & (blockSize - 1) == 0, "block size must be a power of two")
        self.layers = layers
        self.blockCount = max(blocks, 0)
        self.blockSize = blockSize
        self.kvDim = kvDim
        blockSizeLog2 = Int32(blockSize.trailingZeroBitCount)
        let n = max(1, layers * blockCount * blockSize * kvDim)
        keys = .allocate(capacity: n)
        values = .allocate(capacity: n)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    /// Bytes of keys and values one block holds across all layers.
    public static func bytesPerBlock(layers: Int, blockSize: Int = defaultBlockSize, kvDim: Int) -> Int {
        2 * 2 * layers * blockSize * kvDim
    }

    public var byteCount: Int { blockCount * Self.bytesPerBlock(layers: layers, blockSize: blockSize, kvDim: kvDim) }

    @inline(__always) func keyLayer(_ layer: Int) -> UnsafeMutablePointer<UInt16> { keys + layer * blockCount * blockSize * kvDim }
    @inline(__always) func valueLayer(_ layer: Int) -> UnsafeMutablePointer<UInt16> { values + layer * blockCount * blockSize * kvDim }

    /// Offset (in elements, within a layer) of position `position` of a sequence with `table`.
    @inline(__always) func slot(_ table: UnsafePointer<Int32>, _ position: Int) -> Int {
        (Int(table[position >> Int(blockSizeLog2)]) << Int(blockSizeLog2) | (position & (blockSize - 1))) * kvDim
    }
}

/// The KV cache of one sequence with blocks of its own (the single-sequence path: CLI, evaluation).
public final class KVCache: @unchecked Sendable {
    public let storage: KVBlockStorage
    public let capacity: Int
    /// Positions filled so far.
    public internal(set) var count = 0
    let blockTable: [Int32]

    public init(layers: Int, capacity: Int, kvDim: Int) {
        let bs = KVBlockStorage.defaultBlockSize
        let blocks = (max(capacity, 1) + bs - 1) / bs
        storage = KVBlockStorage(layers: layers, blocks: blocks, blockSize: bs, kvDim: kvDim)
        self.capacity = capacity
        blockTable = (0..<blocks).map(Int32.init)
    }

    public var layers: Int { storage.layers }
    public var kvDim: Int { storage.kvDim }
    public var byteCount: Int { storage.byteCount }

    /// Forgets positions from `position` on (they will be overwritten).
    public func truncate(to position: Int) { count = max(0, min(count, position)) }
}
