import Engine
import Foundation
import Testing

/// The closeness metrics on hand-made distributions (the real fixture is in ModelsTests/QualityTests).
struct QualityMetricsTests {
    /// A passage of 3 tokens (2 scored positions) over a 4-token vocabulary, with full distributions.
    static let p: [[Double]] = [[0.6, 0.3, 0.06, 0.04], [0.1, 0.2, 0.5, 0.2]]
    static let q: [[Double]] = [[0.5, 0.4, 0.02, 0.08], [0.45, 0.1, 0.25, 0.2]]
    static let tokens = [3, 1, 2]
    static let top = [[0, 1], [2, 1]]  // each row's two most likely tokens under p

    static func run(_ d: [[Double]]) -> QualityFixture.Run {
        QualityFixture.Run(
            nll: (0..<2).map { -log(d[$0][tokens[$0 + 1]]) },
            top1: d.map { row in row.indices.max { row[$0] < row[$1] }! },
            topLogprobs: (0..<2).map { i in top[i].map { log(d[i][$0]) } })
    }

    static let fixture = QualityFixture(
        model: "m.gguf", reference: "test",
        passages: [.init(name: "p", tokenIDs: tokens, topIDs: top, exact: run(p), llamacpp: run(q))])

    @Test func metricsByHand() throws {
        try Self.fixture.check()
        let m = Self.fixture.llamacppMetrics
        #expect(m.tokens == 2)
        // NLLs of tokens 1 and 2: -log .3 vs -log .4, and -log .5 vs -log .25; q's top-1 differs at position 1.
        #expect(abs(m.meanAbsDeltaNLL - (log(0.4 / 0.3) + log(0.5 / 0.25)) / 2) < 1e-12)
        #expect(m.top1Agreement == 0.5)
        #expect(abs(m.perplexity - exp(-(log(0.4) + log(0.25)) / 2)) < 1e-12)
        // KL over the top two plus a tail bucket, per position, averaged.
        let kl0 = 0.6 * log(0.6 / 0.5) + 0.3 * log(0.3 / 0.4) + 0.1 * log(0.1 / 0.1)
        let kl1 = 0.5 * log(0.5 / 0.25) + 0.2 * log(0.2 / 0.1) + 0.3 * log(0.3 / 0.65)
        #expect(abs(m.approximateKL - (kl0 + kl1) / 2) < 1e-12)
        let e = Self.fixture.exactMetrics
        #expect(e.meanAbsDeltaNLL == 0 && e.top1Agreement == 1 && e.approximateKL == 0)
    }

    /// Grouping the tail never increases KL: the approximation is a lower bound of the full KL.
    @Test func bucketedKLIsALowerBound() {
        var full = 0.0
        for i in 0..<2 { for j in 0..<4 { full += Self.p[i][j] * log(Self.p[i][j] / Self.q[i][j]) } }
        let approx = Self.fixture.llamacppMetrics.approximateKL
        #expect(approx > 0 && approx <= full / 2)
    }

    @Test func malformedFixturesAreRejected() {
        var f = Self.fixture
        f.passages[0].llamacpp.nll.removeLast()
        #expect(throws: EngineError.self) { try f.check() }
        f = Self.fixture
        f.passages[0].topIDs[1].append(3)
        #expect(throws: EngineError.self) { try f.check() }
        f.passages = []
        #expect(throws: EngineError.self) { try f.check() }
    }
}
