import Engine
import Foundation

extension Bench {
    /// Times the sampler (penalties, truncation, the draw and logprobs) on logits of real decode steps
    /// at the settings clients send, against the decode step that produced them.
    func benchSampling(_ engine: InferenceEngine, prompt: [Int]) throws {
        let model = engine.model
        let vocab = model.config.vocabularySize
        let cache = model.makeCache(capacity: prompt.count + genTokens)
        var logits: [Float] = []
        try model.forward(tokens: prompt, cache: cache, logits: .last, into: &logits)
        // Rows of real logits, one per decode step, and the decode step's own time.
        var rows: [[Float]] = []
        var token = logits.withUnsafeBufferPointer { Sampler.argmax(UnsafeBufferPointer(rebasing: $0[0..<vocab])) }
        let t0 = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<genTokens {
            try model.forward(tokens: [token], cache: cache, logits: .last, into: &logits)
            rows.append(Array(logits[0..<vocab]))
            token = logits.withUnsafeBufferPointer { Sampler.argmax(UnsafeBufferPointer(rebasing: $0[0..<vocab])) }
        }
        let stepMicros = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e3 / Double(genTokens)

        let settings: [(String, SamplingParameters, Int?)] = [
            ("greedy", SamplingParameters(), nil),
            ("temperature 1 (API default)", SamplingParameters(temperature: 1), nil),
            ("temperature 0.7, top_p 0.9", SamplingParameters(temperature: 0.7, topP: 0.9), nil),
            ("temperature 1, top_p 0.5", SamplingParameters(temperature: 1, topP: 0.5), nil),
            ("temperature 0.8, top_k 40", SamplingParameters(temperature: 0.8, topK: 40), nil),
            ("temperature 1, top_k 1000", SamplingParameters(temperature: 1, topK: 1000), nil),
            ("temperature 0.8, min_p 0.05", SamplingParameters(temperature: 0.8, minP: 0.05), nil),
            ("all: top_k 40, top_p 0.95, min_p 0.05, penalties, logprobs 5",
             SamplingParameters(temperature: 0.9, topK: 40, topP: 0.95, minP: 0.05, repetitionPenalty: 1.1,
                                frequencyPenalty: 0.5, presencePenalty: 0.5), 5),
        ]
        let scratch = SamplerScratch(vocabularySize: vocab)
        var row = [Float](repeating: 0, count: vocab)
        var results: [(String, Double)] = []
        for (name, params, logprobs) in settings {
            var times: [Double] = []
            for r in 0..<`repeat` {
                var p = params
                p.seed = UInt64(r)
                var sampler = Sampler(parameters: p)
                var context = prompt
                var total: UInt64 = 0
                for logitsRow in rows {
                    row.replaceSubrange(0..<vocab, with: logitsRow)
                    let start = DispatchTime.now().uptimeNanoseconds
                    let t = row.withUnsafeMutableBufferPointer { buf -> Int in
                        sampler.applyPenalties(buf, context: context[...])
                        let t = sampler.sample(UnsafeBufferPointer(buf), scratch: scratch)
                        if let logprobs { _ = TokenLogprob.compute(UnsafeBufferPointer(buf), token: t, topN: logprobs) }
                        return t
                    }
                    total += DispatchTime.now().uptimeNanoseconds - start
                    sampler.accept(t)
                    context.append(t)
                }
                times.append(Double(total) / 1e3 / Double(rows.count))
            }
            results.append((name, times.sorted()[times.count / 2]))
        }
        if json {
            var out: [String: Any] = ["model": engine.modelName, "vocabulary": vocab, "decode_step_us": stepMicros]
            out["sampling_us"] = Dictionary(uniqueKeysWithValues: results.map { ($0.0, $0.1) })
            let data = try JSONSerialization.data(withJSONObject: out, options: [.prettyPrinted, .sortedKeys])
            writeOut(String(decoding: data, as: UTF8.self) + "\n")
            return
        }
        writeOut(String(format: "%@: vocabulary %d, decode step %.0f µs (single sequence)\n", engine.modelName, vocab, stepMicros))
        for (name, us) in results {
            let label = name.padding(toLength: 62, withPad: " ", startingAt: 0)
            writeOut("  " + label + String(format: " %7.1f µs/token  %5.2f%% of a decode step\n", us, 100 * us / stepMicros))
        }
    }
}
