/// Keys and values of every layer in blocks of `blockSize` positions, stored as f16:
/// keys[layer][block][slot][kvDim] (values alike). Sequences address it through block tables, so
/// one storage can serve many sequences (the engine's paged pool) or one (`KVCache`).
///
/// Split storage (`sliding` given) keeps the sliding-window layers in blocks of their own,
/// `slidingBlockCount` of them, addressed by each sequence's second block table: a sequence only
/// needs those blocks for its last window of positions, so they can be given back as it moves on.
public final class KVBlockStorage: @unchecked Sendable {
    public static let defaultBlockSize = 16

    public let layers: Int
    /// Blocks of the full-attention layers (of every layer when the storage is not split).
    public let blockCount: Int
    /// Blocks of the sliding-window layers when split, else 0.
    public let slidingBlockCount: Int
    /// Per layer: whether it is a sliding-window layer kept in the sliding blocks (all false: not split).
    public let sliding: [Bool]
    public let blockSize: Int
    public let kvDim: Int
    let blockSizeLog2: Int32
    let keys: UnsafeMutablePointer<UInt16>
    let values: UnsafeMutablePointer<UInt16>
    /// Per layer: where its keys (and values) begin, in elements.
    private let layerOffset: [Int]

    /// `blockSize` must be a power of two. `sliding`: per layer, whether it lives in the `slidingBlocks`
    /// blocks (empty: every layer in the `blocks` blocks).
    public init(layers: Int, blocks: Int, blockSize: Int = KVBlockStorage.defaultBlockSize, kvDim: Int,
                sliding: [Bool] = [], slidingBlocks: Int = 0) {
        precondition(blockSize > 0 && blockSize & (blockSize - 1) == 0, "block size must be a power of two")
        precondition(sliding.isEmpty || sliding.count == layers, "one sliding flag per layer")
        self.layers = layers
        self.blockCount = max(blocks, 0)
        self.sliding = sliding.isEmpty ? Array(repeating: false, count: layers) : sliding
        self.slidingBlockCount = self.sliding.contains(true) ? max(slidingBlocks, 0) : 0
        self.blockSize = blockSize
        self.kvDim = kvDim
        blockSizeLog2 = Int32(blockSize.trailingZeroBitCount)
        let per = blockSize * kvDim
        var offsets: [Int] = [], full = 0, slid = 0
        let fullLayers = self.sliding.filter { !$0 }.count
        for l in 0..<layers {
            if self.sliding[l] {
                offsets.append(fullLayers * blockCount * per + slid * slidingBlockCount * per)
                slid += 1
            } else {
                offsets.append(full * blockCount * per)
                full += 1
            }
        }
        layerOffset = offsets
        let n = max(1, fullLayers * blockCount * per + slid * slidingBlockCount * per)
        keys = .allocate(capacity: n)
        values = .allocate(capacity: n)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    /// Whether sliding-window layers have blocks of their own.
    public var isSplit: Bool { slidingBlockCount > 0 }

    /// Bytes of keys and values one block holds across `layers` layers.
    public static func bytesPerBlock(layers: Int, blockSize: Int = defaultBlockSize, kvDim: Int) -> Int {
        2 * 2 * layers * blockSize * kvDim
    }

    public var byteCount: Int {
        let slid = sliding.filter { $0 }.count
        return blockCount * Self.bytesPerBlock(layers: layers - slid, blockSize: blockSize, kvDim: kvDim)
            + slidingBlockCount * Self.bytesPerBlock(layers: slid, blockSize: blockSize, kvDim: kvDim)
    }

    @inline(__always) func keyLayer(_ layer: Int) -> UnsafeMutablePointer<UInt16> { keys + layerOffset[layer] }
    @inline(__always) func valueLayer(_ layer: Int) -> UnsafeMutablePointer<UInt16> { values + layerOffset[layer] }

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
