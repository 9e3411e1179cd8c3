import Tokenizer

/// The bytes of every token, once per model, arranged as a trie in depth-first order so that a grammar
/// state's allowed tokens are found by one walk that skips whole subtrees at the first rejected byte.
public final class TokenVocabulary: Sendable {
    /// Tokens (the logits' length may be larger: the rest are never allowed).
    public let size: Int
    /// Each token's text bytes; empty for special tokens, which a grammar never allows.
    public let tokenBytes: [[UInt8]]
    /// End-of-generation tokens: allowed where the grammar accepts the output as complete.
    public let endOfGeneration: [Int32]
    // Trie nodes in preorder: the byte into the node, its depth (1 for children of the root), the index
    // after its subtree, and the tokens ending there (tokenIDs[tokenStart[i]..<tokenStart[i + 1]]).
    let nodeByte: [UInt8]
    let nodeDepth: [Int32]
    let subtreeEnd: [Int32]
    let tokenStart: [Int32]
    let tokenIDs: [Int32]
    let maxTokenLength: Int

    /// From a model's tokenizer: control and unknown tokens have no text; end-of-generation tokens are
    /// the tokenizer's.
    public convenience init(tokenizer: Tokenizer) {
        var tokens: [[UInt8]] = []
        tokens.reserveCapacity(tokenizer.vocabularySize)
        for id in 0..<tokenizer.vocabularySize {
            tokens.append(tokenizer.isSpecial(id) ? [] : tokenizer.tokenPiece(id))
        }
        self.init(tokens: tokens, endOfGeneration: Array(tokenizer.endOfGenerationTokens))
    }

    public init(tokens: [[UInt8]], endOfGeneration: [Int]) {
        size = tokens.count
        tokenBytes = tokens
        self.endOfGeneration = endOfGeneration.filter { $0 >= 0 && $0 < tokens.count }.map(Int32.init).sorted()
        let eog = Set(endOfGeneration)
        let order = tokens.indices.filter { !tokens[$0].isEmpty && !eog.contains($0) }
            .sorted { tokens[$0].lexicographicallyPrecedes(tokens[$1]) }
        var bytes: [UInt8] = [], depths: [Int32] = [], starts: [Int32] = [], ids: [Int32] = []
        var previous: [UInt8] = []
        for id in order {
            let t = tokens[id]
            var common = 0
            while common < previous.count, common < t.count, previous[common] == t[common] { common += 1 }
            for d in common..<t.count {
                bytes.append(t[d])
                depths.append(Int32(d + 1))
                starts.append(Int32(ids.count))
            }
            ids.append(Int32(id))
            previous = t
        }
        starts.append(Int32(ids.count))
        var ends = [Int32](repeating: Int32(bytes.count), count: bytes.count)
        var open: [Int] = []
        for i in bytes.indices {
            while let top = open.last, depths[top] >= depths[i] {
                ends[top] = Int32(i)
                open.removeLast()
            }
            open.append(i)
        }
        nodeByte = bytes
        nodeDepth = depths
        subtreeEnd = ends
        tokenStart = starts
        tokenIDs = ids
        maxTokenLength = tokens.map(\.count).max() ?? 0
    }

    /// Nodes of the trie (a measure of the work of one uncached mask).
    public var trieNodeCount: Int { nodeByte.count }
}
