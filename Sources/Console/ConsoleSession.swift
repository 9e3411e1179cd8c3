/// Who the console is talking to and as whom: the body of GET /v1/console/session, on `serve` and on the gateway.
public struct ConsoleSession<Deployment: Encodable & Sendable>: Encodable, Sendable {
    /// The signed-in key (never the secret); nil on `serve`, which has one key or none.
    public struct Key: Encodable, Sendable {
        public var id: String
        public var name: String
        public var prefix: String

        public init(id: String, name: String, prefix: String) {
            self.id = id
            self.name = name
            self.prefix = prefix
        }
    }

    public var object = "console.session"
    public var server: String
    public var role: String
    public var open: Bool
    public var key: Key?
    public var status: String
    public var deployments: [Deployment]
    public var metricsInterval: Double
    public var canScale: Bool

    public init(server: String, role: String, open: Bool, key: Key?, status: String, deployments: [Deployment],
                metricsInterval: Double, canScale: Bool) {
        self.server = server
        self.role = role
        self.open = open
        self.key = key
        self.status = status
        self.deployments = deployments
        self.metricsInterval = metricsInterval
        self.canScale = canScale
    }

    enum CodingKeys: String, CodingKey {
        case object, server, role, open, key, status, deployments
        case metricsInterval = "metrics_interval", canScale = "can_scale"
    }
}
