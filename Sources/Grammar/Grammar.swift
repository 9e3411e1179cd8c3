/// A compiled output grammar: what the generated text must look like, as a byte-level pushdown
/// automaton. Immutable and shareable; `GrammarMatcher` binds it to a vocabulary.
public final class Grammar: Sendable {
    let network: Network
    let limits: GrammarLimits
    /// Identifies the grammar for caching: equal keys, equal grammars.
    public let key: String

    init(network: Network, limits: GrammarLimits, key: String) {
        self.network = network
        self.limits = limits
        self.key = key
    }

    /// States of the compiled network (a measure of its size).
    public var stateCount: Int { network.stateCount }

    /// Output that is one JSON value valid against `schema` (optionally preceded by one space or newline).
    public static func jsonSchema(_ schema: JSONValue, limits: GrammarLimits = .init()) throws(SchemaError) -> Grammar {
        try build(schema, freeTextAlternative: false, limits: limits)
    }

    /// Any JSON object (the API's `json_object` mode).
    public static func jsonObject(limits: GrammarLimits = .init()) -> Grammar {
        // A fixed schema that always compiles.
        try! build(.object([("type", .string("object"))]), freeTextAlternative: false, limits: limits)
    }

    /// Either JSON valid against `schema`, or free text whose first character could not begin that
    /// JSON (nor be whitespace): the first character decides, and free text is unconstrained after it.
    /// This is how a reply may call a tool or answer in words.
    public static func jsonSchemaOrText(_ schema: JSONValue, limits: GrammarLimits = .init()) throws(SchemaError) -> Grammar {
        try build(schema, freeTextAlternative: true, limits: limits)
    }

    static func build(_ schema: JSONValue, freeTextAlternative: Bool, limits: GrammarLimits) throws(SchemaError) -> Grammar {
        let builder = NetworkBuilder(maxStates: limits.maxStates, shouldStop: limits.shouldStop)
        var compiler = SchemaCompiler(builder: builder, limits: limits, root: schema)
        let value = try compiler.rule(schema, path: "#", depth: 0)
        let (start, end) = try compiler.newRule("#")
        let afterSpace = try compiler.st("#")
        builder.epsilon(start, afterSpace)
        builder.edge(start, SchemaCompiler.whitespace, afterSpace)
        builder.call(afterSpace, rule: value, then: end)
        if freeTextAlternative {
            var first = ByteSet()
            var space = ConfigurationSpace(network: builder.network, maxDepth: limits.maxNesting)
            for c in space.closure([ConfigurationSpace.pack(start, 0)]) {
                for edge in builder.network.byteEdges[Int(ConfigurationSpace.state(c))] { first = first.union(edge.bytes) }
            }
            let text = try compiler.st("#")
            builder.setAnything(text)
            builder.setFinal(text)
            var allowed = ByteSet(range: 0...255).subtracting(first)
            for b in [0x09, 0x0D] as [UInt8] { allowed.remove(b) }
            builder.edge(start, allowed, text)
            builder.epsilon(start, end)
        }
        builder.setRoot(start)
        let key = (freeTextAlternative ? "json-or-text:" : "json:") + schema.serialized()
        return Grammar(network: builder.network, limits: limits, key: key)
    }

    /// Whether `text` is a complete output of this grammar (for tests and checks; not fast).
    public func accepts(_ text: String) -> Bool {
        network.accepts(rule: network.root, Array(text.utf8), maxNesting: limits.maxNesting)
    }

    /// Whether `text` can begin an output of this grammar.
    public func acceptsPrefix(_ text: String) -> Bool {
        var c = GrammarCursor(self)
        return c.advance(Array(text.utf8))
    }
}

/// A slow, uncached walk through a grammar's configurations: the reference that masks are checked
/// against in tests, and a way to check a whole text.
public struct GrammarCursor {
    private var space: ConfigurationSpace
    private var current: [UInt64]

    public init(_ grammar: Grammar) {
        space = ConfigurationSpace(network: grammar.network, maxDepth: grammar.limits.maxNesting)
        current = space.closure([ConfigurationSpace.pack(grammar.network.root, 0)])
    }

    /// Reads `bytes`; false (and the cursor dead) if the grammar does not allow them.
    public mutating func advance(_ bytes: [UInt8]) -> Bool {
        for byte in bytes {
            if current.isEmpty { return false }
            current = space.step(current, byte)
        }
        return !current.isEmpty
    }

    /// The output read so far is complete.
    public var isAccepting: Bool { space.isAccepting(current) }
}
