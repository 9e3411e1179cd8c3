#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

/// Starts and stops `swiftlet worker` processes on this machine for the autoscaler. Each worker runs
/// in a process group of its own (stopping it signals the group), watches its parent and exits if the
/// gateway dies, and is reaped here; on shutdown every child is stopped, killed after the grace period.
public final class Supervisor: Service, Sendable {
    struct Child: Sendable {
        var pid: pid_t
        var deployment: String
        var cluster: String
        var startedAt: Double
        /// When to SIGKILL a child that was asked to stop.
        var killAt: Double?
    }

    /// Workers of a deployment that exited before becoming ready, in a row: starts back off.
    struct StartFailures: Sendable {
        var count = 0
        var notBefore = 0.0
        var last: String?
    }

    private let children = NIOLockedValueBox<[String: Child]>([:])
    private let failures = NIOLockedValueBox<[String: StartFailures]>([:])
    private let gatewayURL = NIOLockedValueBox<String?>(nil)
    /// Set by `stopAll`: the gateway is going away, no worker starts any more.
    private let closed = NIOLockedValueBox(false)
    let registry: ReplicaRegistry
    let logger: Logger
    let executable: String
    let clusterToken: String
    let stopGrace: Double
    let modelsDir: String?
    /// A child still starting after this long is stopped (it would hold capacity forever).
    let startTimeout: Double

    public init(registry: ReplicaRegistry, executable: String, clusterToken: String, stopGrace: Double,
                startTimeout: Double, modelsDir: String?, logger: Logger) {
        self.registry = registry
        self.executable = executable
        self.clusterToken = clusterToken
        self.stopGrace = stopGrace
        self.startTimeout = startTimeout
        self.modelsDir = modelsDir
        self.logger = logger
    }

    /// The path of the running executable (the workers are the same binary).
    public static var currentExecutable: String {
        if let p = ProcessInfo.processInfo.environment["SWIFTLET_WORKER_BIN"], !p.isEmpty { return p }
        if let p = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return p }
        return CommandLine.arguments[0]
    }

    /// Set once the gateway listens; workers register there.
    public func setGatewayURL(_ url: String) { gatewayURL.withLockedValue { $0 = url } }

    /// Whether the gateway listens (workers can be started).
    public var isListening: Bool { gatewayURL.withLockedValue { $0 != nil } }

    /// Why the last start of the deployment's worker failed, while its starts back off.
    public func startFailure(_ deployment: String) -> String? { failures.withLockedValue { $0[deployment]?.last } }

    public var runningCount: Int { children.withLockedValue { $0.count } }

    public func pids() -> [String: Int32] { children.withLockedValue { $0.mapValues { $0.pid } } }

    /// Arguments of `swiftlet worker` for a replica of `deployment` in `cluster`.
    public func arguments(id: String, deployment: Deployment, cluster: String, gateway: String) -> [String] {
        var args = [executable, "worker", "--deployment", deployment.name, "--cluster", cluster, "--gateway", gateway,
                    "--replica-id", id, "--host", "127.0.0.1", "--port", "0", "--exit-with-parent"]
        switch deployment.model {
        case .name(let name): args += ["--model", name]
        case .package(let requirement, let file, let sha256):
            args += ["--model-package", requirement, "--model-file", file]
            if let sha256 { args += ["--model-sha256", sha256] }
        }
        if let modelsDir { args += ["--models-dir", modelsDir] }
        let e = deployment.engine
        if let v = e.threads { args += ["--threads", String(v)] }
        if let v = e.contextLength { args += ["--context-length", String(v)] }
        if let v = e.kvCacheMemory { args += ["--kv-cache-memory", v] }
        if let v = e.maxSequences { args += ["--max-sequences", String(v)] }
        if let v = e.maxBatchTokens { args += ["--max-batch-tokens", String(v)] }
        if let v = e.maxQueue { args += ["--max-queue", String(v)] }
        if !e.prefixCache { args.append("--no-prefix-cache") }
        if let v = e.activationBits { args += ["--activation-bits", String(v)] }
        if let v = e.matryoshkaDimensions { args += ["--matryoshka-dimensions", String(v)] }
        args += ["--shutdown-grace", String(Int(stopGrace.rounded(.up)))]
        return args
    }

    /// Starts a replica; it registers itself once its model is loaded. Returns its id.
    public func start(deployment: Deployment, cluster: String) throws -> String {
        guard !closed.withLockedValue({ $0 }) else { throw SupervisorError.stopping }
        guard let gateway = gatewayURL.withLockedValue({ $0 }) else { throw SupervisorError.notListening }
        if let f = failures.withLockedValue({ $0[deployment.name] }), ReplicaRegistry.now() < f.notBefore {
            throw SupervisorError.backingOff(deployment.name, f.last ?? "")
        }
        let id = "\(deployment.name)-\(cluster)-\(KeyStore.randomHex(4))"
        let args = arguments(id: id, deployment: deployment, cluster: cluster, gateway: gateway)
        var env = ProcessInfo.processInfo.environment
        env["SWIFTLET_CLUSTER_TOKEN"] = clusterToken
        env["SWIFTLET_API_KEY"] = nil
        let pid = try Self.spawn(args, environment: env)
        let now = ReplicaRegistry.now()
        children.withLockedValue {
            $0[id] = Child(pid: pid, deployment: deployment.name, cluster: cluster, startedAt: now)
        }
        registry.addStarting(id: id, deployment: deployment.name, cluster: cluster, pid: pid, now: now)
        logger.info("started replica \(id) (pid \(pid))")
        return id
    }

    /// Asks a replica to stop (SIGTERM to its group: it drains); killed after the grace period.
    public func stop(_ id: String) {
        let pid: pid_t? = children.withLockedValue { all in
            guard var c = all[id], c.killAt == nil else { return nil }
            c.killAt = ReplicaRegistry.now() + stopGrace
            all[id] = c
            return c.pid
        }
        guard let pid else { return }
        registry.setState(id, .draining)
        kill(-pid, SIGTERM)
        logger.info("stopping replica \(id) (pid \(pid))")
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            reap()
            try? await Task.sleep(for: .milliseconds(50))
        }
        await stopAll()
    }

    /// Reaps exited children, kills those past their grace period or stuck starting.
    func reap() {
        let now = ReplicaRegistry.now()
        var exited: [(String, Child, Int32)] = []
        var stuck: [String] = []
        children.withLockedValue { all in
            for (id, var c) in all {
                var status: Int32 = 0
                let r = waitpid(c.pid, &status, WNOHANG)
                if r == c.pid || (r == -1 && errno == ECHILD) {
                    exited.append((id, c, status))
                    all[id] = nil
                } else if let killAt = c.killAt, now >= killAt {
                    kill(-c.pid, SIGKILL)
                    c.killAt = .infinity
                    all[id] = c
                } else if c.killAt == nil, now - c.startedAt > startTimeout,
                          registry.replica(id).map({ $0.state == .starting }) ?? false {
                    stuck.append(id)
                }
            }
        }
        for (id, child, status) in exited {
            let neverReady = registry.replica(id)?.readyAt == nil && child.killAt == nil
            registry.remove(id)
            let how = (status & 0x7f) == 0 ? "exit status \((status >> 8) & 0xff)" : "signal \(status & 0x7f)"
            if neverReady {
                failures.withLockedValue { all in
                    var f = all[child.deployment] ?? StartFailures()
                    f.count += 1
                    f.notBefore = now + min(30, 0.5 * Double(1 << min(f.count - 1, 6)))
                    f.last = "its last worker exited (\(how)) before it was ready"
                    all[child.deployment] = f
                }
                logger.error("replica \(id) of \(child.deployment) exited (\(how)) before it was ready")
            } else {
                logger.info("replica \(id) of \(child.deployment) exited (\(how))")
            }
        }
        let ready = Set(registry.replicas().filter { $0.supervised && $0.state == .ready }.map(\.deployment))
        if !ready.isEmpty {
            failures.withLockedValue { all in for d in ready { all[d] = nil } }
        }
        for id in stuck {
            logger.warning("replica \(id) did not become ready in \(Int(startTimeout)) s; stopping it")
            stop(id)
        }
    }

    /// SIGTERM to every child, then SIGKILL to those still there after the grace period.
    public func stopAll() async {
        closed.withLockedValue { $0 = true }
        let ids = children.withLockedValue { Array($0.keys) }
        for id in ids { stop(id) }
        let deadline = ReplicaRegistry.now() + stopGrace + 2
        while runningCount > 0 && ReplicaRegistry.now() < deadline {
            reap()
            try? await Task.sleep(for: .milliseconds(50))
        }
        children.withLockedValue { all in
            for c in all.values {
                kill(-c.pid, SIGKILL)
                var status: Int32 = 0
                waitpid(c.pid, &status, 0)
            }
            all.removeAll()
        }
    }

    /// posix_spawn in a new process group, with SIGTERM/SIGINT at their defaults and no signal blocked
    /// (the gateway's own handling of them must not be inherited).
    static func spawn(_ args: [String], environment: [String: String]) throws -> pid_t {
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        posix_spawnattr_setpgroup(&attr, 0)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGTERM, SIGINT, SIGPIPE, SIGHUP] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)

        let argv = args.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, args[0], &actions, &attr, argv, envp)
        guard rc == 0 else { throw SupervisorError.spawnFailed(args[0], String(cString: strerror(rc))) }
        return pid
    }
}

public enum SupervisorError: Error, CustomStringConvertible {
    case notListening
    case stopping
    case spawnFailed(String, String)
    case backingOff(String, String)

    public var description: String {
        switch self {
        case .notListening: "the gateway is not listening yet"
        case .stopping: "the gateway is shutting down"
        case .backingOff(let d, let why): "not starting a worker of \(d) yet: \(why)"
        case .spawnFailed(let path, let why): "cannot start \(path): \(why)"
        }
    }
}
