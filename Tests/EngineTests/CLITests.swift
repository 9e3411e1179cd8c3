import Engine
import Foundation
import SwiftletTesting
import Testing

/// Runs the built `swiftlet` executable as a user would.
enum CLI {
    static var binary: String? {
        if let b = ProcessInfo.processInfo.environment["SWIFTLET_BIN"] { return b }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let candidates = ["release", "debug"].map { root.appendingPathComponent(".build/\($0)/swiftlet").path }
        return candidates.filter { FileManager.default.isExecutableFile(atPath: $0) }
            .max { (mtime($0) ?? .distantPast) < (mtime($1) ?? .distantPast) }
    }

    static func mtime(_ path: String) -> Date? {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
    }

    struct Output { var status: Int32; var stdout: String; var stderr: String }

    static func run(_ args: [String], stdin: String? = nil) throws -> Output {
        let bin = try #require(binary, "swiftlet binary not built (run `swift build -c release` first)")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: bin)
        p.arguments = args
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = inp
        try p.run()
        if let stdin { inp.fileHandleForWriting.write(Data(stdin.utf8)) }
        try inp.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Output(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }
}

@Suite(.serialized) struct CLITests {
    @Test func generatePrintsOnlyGeneratedText() throws {
        guard !TestModel.skipped, let model = TestModel.path else { return }
        let r = try CLI.run(["generate", "--model", model, "--prompt", "The capital of France is", "--temperature", "0",
                             "--max-tokens", "12", "--threads", "2"])
        #expect(r.status == 0)
        // The greedy continuation under exact arithmetic (llama.cpp on the F32-dequantized weights gives the
        // same 24 tokens; llama.cpp on the quantized file, with 8-bit activations, goes " The United States").
        #expect(r.stdout.hasPrefix(" Paris.\n\nThe answer is: 201"))
        #expect(r.stderr.contains("prompt tokens: 5") && r.stderr.contains("generated tokens: 12"))
    }

    @Test func tokenizePrintsIds() throws {
        guard !TestModel.skipped, let model = TestModel.path else { return }
        let plain = try CLI.run(["tokenize", "--model", model, "Hello world <|im_start|>"])
        #expect(plain.status == 0)
        #expect(plain.stdout == "19556 905 2067 108 306 79 3738 108 46\n")
        let special = try CLI.run(["tokenize", "--model", model, "--parse-special", "Hello world <|im_start|>"])
        #expect(special.stdout == "19556 905 216 1\n")
    }

    @Test func chatReplAnswersEachLine() throws {
        guard !TestModel.skipped, let model = TestModel.path else { return }
        let r = try CLI.run(["chat", "--model", model, "--temperature", "0", "--max-tokens", "24"],
                            stdin: "What is the capital of France?\n/reset\nSay hello.\n/exit\n")
        #expect(r.status == 0)
        // The greedy reply under exact arithmetic (as llama.cpp on the F32-dequantized weights answers);
        // /reset starts the second turn afresh.
        #expect(r.stdout.hasPrefix("The capital of France is Paris."))
        #expect(r.stdout.contains("\nHello"))
    }

    @Test func benchReportsJSON() throws {
        guard !TestModel.skipped, let model = TestModel.path else { return }
        let r = try CLI.run(["bench", "--model", model, "--prompt-tokens", "8", "--gen-tokens", "4", "--repeat", "1",
                             "--threads", "2", "--json"])
        #expect(r.status == 0)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(json["prompt_tokens"] as? Int == 8 && json["gen_tokens"] as? Int == 4 && json["threads"] as? Int == 2)
        for key in ["prefill_tokens_per_second", "decode_tokens_per_second", "time_to_first_token_ms", "peak_rss_mb"] {
            #expect((json[key] as? Double ?? 0) > 0, "\(key)")
        }
        let bad = try CLI.run(["bench", "--model", model, "--prompt-tokens", "0"])
        #expect(bad.status != 0)
    }

    @Test func benchQualityComparesWithLlamaCpp() throws {
        guard !TestModel.skipped, let model = TestModel.path else { return }
        // The fixture's shortest passage only (ModelsTests/QualityTests runs them all), from a temporary file.
        var full = try QualityFixture.load(path: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("ModelsTests/Fixtures/quality-smollm2.json").path)
        full.passages = [try #require(full.passages.min { $0.tokenIDs.count < $1.tokenIDs.count })]
        let fixture = FileManager.default.temporaryDirectory.appendingPathComponent("quality-\(UUID().uuidString).json")
        try JSONEncoder().encode(full).write(to: fixture)
        defer { try? FileManager.default.removeItem(at: fixture) }
        let r = try CLI.run(["bench", "--quality", "--fixture", fixture.path, "--model", model, "--threads", "2", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(json["model_matches_fixture"] as? Bool == true)
        for side in ["swiftlet", "llamacpp", "exact"] {
            let m = try #require(json[side] as? [String: Any], "\(side)")
            #expect(m["tokens"] as? Int == full.positions)
            for key in ["mean_abs_delta_nll", "top1_agreement", "approximate_kl", "perplexity"] {
                #expect(m[key] as? Double != nil, "\(side).\(key)")
            }
        }
        let missing = try CLI.run(["bench", "--quality", "--fixture", "/nonexistent/quality.json", "--model", model])
        #expect(missing.status == 1 && missing.stderr.contains("not found"))
    }

    @Test func badInputGivesCleanErrors() throws {
        guard CLI.binary != nil else { Issue.record("swiftlet binary not built"); return }
        let missing = try CLI.run(["generate", "--model", "/nonexistent/model.gguf", "--prompt", "hi"])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("error:") && missing.stderr.contains("not found"))
        let notGGUF = try CLI.run(["generate", "--model", "/etc/hostname", "--prompt", "hi"])
        #expect(notGGUF.status == 1)
        #expect(notGGUF.stderr.contains("GGUF") || notGGUF.stderr.contains("truncated"))
        let badFlag = try CLI.run(["generate", "--prompt", "hi", "--threads", "0"])
        #expect(badFlag.status != 0)
        let unknown = try CLI.run(["pull", "no-such-model"])
        #expect(unknown.status == 1 && unknown.stderr.contains("no-such-model"))
    }
}
