import Engine
import Foundation

/// `swiftlet bench --quality`: Swiftlet's and llama.cpp's closeness to exact arithmetic on one fixture.
struct QualityBench {
    static let defaultFixture = "Tests/ModelsTests/Fixtures/quality-smollm2.json"

    var fixturePath: String
    var json: Bool

    struct Report: Codable {
        var model: String
        var fixture: String
        var reference: String
        var passages: Int
        var model_matches_fixture: Bool?
        var swiftlet: QualityMetrics
        var llamacpp: QualityMetrics
        var exact: QualityMetrics
    }

    /// Reads the fixture first, so a wrong path fails before the model loads.
    func run(_ options: ModelOptions) throws {
        guard FileManager.default.fileExists(atPath: fixturePath) else {
            throw EngineError.invalidParameter("fixture", "\(fixturePath) not found (run from the repository root or pass --fixture)")
        }
        let fixture = try QualityFixture.load(path: fixturePath)
        let modelPath = try options.resolvePath()
        let engine = try options.load()
        var matches: Bool?
        if let want = fixture.modelSHA256 {
            matches = try ModelStore.sha256(of: modelPath) == want.lowercased()
            if matches == false {
                log("warning: the model is not the file the fixture was made from (\(fixture.model)); llama.cpp's figures are for that file")
            }
        }
        let report = Report(
            model: engine.modelName, fixture: fixturePath, reference: fixture.reference, passages: fixture.passages.count,
            model_matches_fixture: matches, swiftlet: try engine.quality(fixture), llamacpp: fixture.llamacppMetrics,
            exact: fixture.exactMetrics)
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            writeOut(String(decoding: try enc.encode(report), as: UTF8.self) + "\n")
            return
        }
        let s = report.swiftlet, l = report.llamacpp, e = report.exact
        func line(_ name: String, _ cells: [String]) -> String {
            name.padding(toLength: 26, withPad: " ", startingAt: 0)
                + cells.map { $0.padding(toLength: 12, withPad: " ", startingAt: 0) }.joined() + "\n"
        }
        func row(_ name: String, _ f: (QualityMetrics) -> String) -> String { line(name, [s, l, e].map(f)) }
        var out = "\(report.model): closeness to exact arithmetic on \(s.tokens) tokens in \(report.passages) passages\n"
        out += "(exact: \(fixture.exactMethod ?? "the dequantized weights in f32 with an f32 KV cache"); "
            + "llama.cpp: \(report.reference) on the quantized file)\n"
        out += line("", ["Swiftlet", "llama.cpp", "exact"])
        out += row("mean |ΔNLL| (nats/token)") { String(format: "%.4f", $0.meanAbsDeltaNLL) }
        out += row("top-1 agreement") { String(format: "%.2f%%", $0.top1Agreement * 100) }
        out += row("approx. KL (nats/token)") { String(format: "%.5f", $0.approximateKL) }
        out += row("perplexity") { String(format: "%.3f", $0.perplexity) }
        writeOut(out)
    }
}
