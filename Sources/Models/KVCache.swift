/// Keys and values of one sequence for every layer, stored as f16: layout [layer][position][kvDim].
public final class KVCache: @unchecked Sendable {
    public let layers: Int
    public let capacity: Int
    public let kvDim: Int
    /// Positions filled so far.
    public internal(set) var count = 0
    let keys: UnsafeMutablePointer<UInt16>
    let values: UnsafeMutablePointer<UInt16>

    public init(layers: Int, capacity: Int, kvDim: Int) {
        self.layers = layers
        self.capacity = capacity
        self.kvDim = kvDim
        let n = layers * capacity * kvDim
        keys = .allocate(capacity: n)
        values = .allocate(capacity: n)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    public var byteCount: Int { 2 * 2 * layers * capacity * kvDim }

    /// Forgets positions from `position` on (they will be overwritten).
    public func truncate(to position: Int) { count = max(0, min(count, position)) }

    @inline(__always) func keyBase(layer: Int) -> UnsafeMutablePointer<UInt16> { keys + layer * capacity * kvDim }
    @inline(__always) func valueBase(layer: Int) -> UnsafeMutablePointer<UInt16> { values + layer * capacity * kvDim }
}
