import ArgumentParser
import Engine
import Foundation
import GGUF
import Kernels
import Templates
import Tokenizer

@main
struct Swiftlet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swiftlet",
        abstract: "Fast LLM inference on GGUF models.",
        subcommands: [Generate.self, Chat.self, Tokenize.self, Pull.self, Bench.self, Serve.self, GatewayCommand.self,
                      Worker.self, Keys.self, UsageCommand.self])
}

/// Options every model-using command shares.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "Model: a known name (smollm2, gemma3-270m) or a path to a .gguf file.")
    var model: String = ModelStore.defaultModelName

    @Option(name: .long, help: "Directory for downloaded models (default $SWIFTLET_MODELS or ~/.cache/swiftlet/models).")
    var modelsDir: String?

    @Option(name: .long, help: "Worker threads (default: number of cores).")
    var threads: Int?

    @Option(name: .long, help: "Context length in tokens (default: the model's, at most 8192).")
    var contextLength: Int?

    @Option(name: .long, help: "Take the model from this Python package, NAME==VERSION (with --model-file).")
    var modelPackage: String?

    @Option(name: .long, help: "Path of the .gguf inside --model-package.")
    var modelFile: String?

    @Option(name: .long, help: "SHA-256 the --model-package file must have.")
    var modelSha256: String?

    @Option(name: .long, help: "Bits per activation in quantized matrix products: 16 (closer to exact arithmetic) or 8 (more batched throughput).")
    var activationBits: Int = 16

    @Option(name: .long, help: ArgumentHelp(
        "Embedding models trained to be truncated (Matryoshka, e.g. nomic-embed-text-v1.5 from 64): the fewest dimensions a request's 'dimensions' may ask for.",
        discussion: "Without it, 'dimensions' other than the model's own get 400."))
    var matryoshkaDimensions: Int?

    func validate() throws {
        if (modelPackage == nil) != (modelFile == nil) {
            throw ValidationError("--model-package and --model-file go together")
        }
        if modelSha256 != nil && modelPackage == nil { throw ValidationError("--model-sha256 needs --model-package") }
    }

    func resolvePath() throws -> String {
        let store = ModelStore(directory: modelsDir)
        if let modelPackage, let modelFile {
            let model = try KnownModel.packaged(requirement: modelPackage, member: modelFile, sha256: modelSha256)
            return try store.resolve(package: model, log: { log($0) })
        }
        return try store.resolve(model, log: { log($0) })
    }

    func load() throws -> InferenceEngine {
        try checkEngineOptions()
        return try InferenceEngine(path: try resolvePath(), threads: threads, contextLength: contextLength)
    }

    func checkEngineOptions() throws {
        if let threads, threads < 1 || threads > 256 { throw ValidationError("--threads must be between 1 and 256") }
        if let contextLength, contextLength < 1 { throw ValidationError("--context-length must be positive") }
        guard activationBits == 8 || activationBits == 16 else { throw ValidationError("--activation-bits must be 8 or 16") }
        if let m = matryoshkaDimensions, m < 1 || m > 1 << 20 { throw ValidationError("--matryoshka-dimensions must be between 1 and 1048576") }
        Ops.setActivationBits(activationBits)
    }

    enum Loaded {
        case generation(InferenceEngine)
        case embedding(EmbeddingEngine)
    }

    /// A generative model, or an embedding model (an encoder such as BERT) for `serve`.
    func loadAny() throws -> Loaded {
        try checkEngineOptions()
        let path = try resolvePath()
        if try EmbeddingEngine.isEmbeddingModel(path: path) {
            let engine = try EmbeddingEngine(path: path, threads: threads, minimumDimensions: matryoshkaDimensions)
            if let m = matryoshkaDimensions, m > engine.model.dimensions {
                throw ValidationError("--matryoshka-dimensions \(m) is more than the model's \(engine.model.dimensions) dimensions")
            }
            return .embedding(engine)
        }
        let engine = try InferenceEngine(path: path, threads: threads, contextLength: contextLength, minimumDimensions: matryoshkaDimensions)
        if let m = matryoshkaDimensions {
            guard engine.pooling == .last else {
                throw ValidationError("--matryoshka-dimensions is for embedding models; this file declares no last-token pooling")
            }
            guard m <= engine.model.config.embeddingLength else {
                throw ValidationError("--matryoshka-dimensions \(m) is more than the model's \(engine.model.config.embeddingLength) dimensions")
            }
        }
        return .generation(engine)
    }
}

struct SamplingOptions: ParsableArguments {
    @Option(name: .long, help: "Maximum tokens to generate.")
    var maxTokens: Int = 256

    @Option(name: .long, help: "Sampling temperature; 0 = greedy.")
    var temperature: Float = 0.8

    @Option(name: .long, help: "Nucleus sampling: keep the smallest set of tokens with this total probability.")
    var topP: Float = 0.95

    @Option(name: .long, help: "Keep only the K most likely tokens (0 = off).")
    var topK: Int = 40

    @Option(name: .long, help: "Drop tokens less likely than this fraction of the most likely one.")
    var minP: Float = 0.05

    @Option(name: .long, help: "Penalty for repeating recent tokens (1 = off).")
    var repeatPenalty: Float = 1.0

    @Option(name: .long, help: "Random seed for reproducible sampling.")
    var seed: UInt64?

    @Option(name: .long, help: "Stop when this text is generated (repeatable).")
    var stop: [String] = []

    @Flag(name: .long, help: "Keep generating past end-of-sequence tokens.")
    var ignoreEos = false

    var parameters: SamplingParameters {
        SamplingParameters(
            temperature: temperature, topK: topK, topP: topP, minP: minP, repetitionPenalty: repeatPenalty, seed: seed)
    }

    func validate() throws {
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be >= 0") }
    }
}

func log(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

func writeOut(_ text: String) {
    FileHandle.standardOutput.write(Data(text.utf8))
}

/// Runs `body`, turning library errors into a clean message and exit status 1.
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let e as ValidationError {
        throw e
    } catch let e as CleanExit {
        throw e
    } catch {
        log("error: \(error)")
        throw ExitCode.failure
    }
}

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text from a prompt; prints only the generated text to stdout.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var sampling: SamplingOptions

    @Option(name: .long, help: "The prompt text.")
    var prompt: String

    @Flag(name: .long, help: "Wrap the prompt with the model's chat template.")
    var chat = false

    @Option(name: .long, help: "System message (with --chat).")
    var system: String?

    func run() throws {
        try reportingErrors {
            let engine = try modelOptions.load()
            let tokens: [Int]
            if chat {
                var messages: [ChatMessage] = []
                if let system { messages.append(ChatMessage(role: "system", content: system)) }
                messages.append(ChatMessage(role: "user", content: prompt))
                tokens = try engine.chatTokens(messages)
            } else {
                tokens = engine.encode(prompt)
            }
            let request = GenerationRequest(
                promptTokens: tokens, maxTokens: sampling.maxTokens, sampling: sampling.parameters, stop: sampling.stop,
                ignoreEOS: sampling.ignoreEos)
            let result = try engine.generate(request) { step in
                writeOut(step.text)
                return true
            }
            if chat || !result.text.hasSuffix("\n") { writeOut("\n") }
            log(String(
                format: "prompt tokens: %d, generated tokens: %d, finish: %@, time to first token: %.1f ms, decode: %.1f tokens/s",
                result.promptTokenCount, result.tokens.count, result.finishReason.rawValue,
                result.timeToFirstToken * 1000, result.decodeTokensPerSecond))
        }
    }
}

struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Interactive multi-turn chat; streams replies. /reset clears history, /exit quits.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var sampling: SamplingOptions

    @Option(name: .long, help: "System message.")
    var system: String?

    func run() throws {
        try reportingErrors {
            let engine = try modelOptions.load()
            var messages: [ChatMessage] = []
            func reset() {
                messages = system.map { [ChatMessage(role: "system", content: $0)] } ?? []
            }
            reset()
            let interactive = isatty(STDIN_FILENO) != 0
            if interactive { log("Chatting with \(engine.modelName). /reset clears history, /exit quits.") }
            while true {
                if interactive { writeOut(">>> ") }
                guard let line = readLine() else { break }
                let input = line.trimmingCharacters(in: .whitespaces)
                if input.isEmpty { continue }
                if input == "/exit" || input == "/bye" { break }
                if input == "/reset" {
                    reset()
                    continue
                }
                messages.append(ChatMessage(role: "user", content: input))
                do {
                    let tokens = try engine.chatTokens(messages)
                    let request = GenerationRequest(
                        promptTokens: tokens, maxTokens: min(sampling.maxTokens, max(0, engine.contextLength - tokens.count)),
                        sampling: sampling.parameters, stop: sampling.stop)
                    let result = try engine.generate(request) { step in
                        writeOut(step.text)
                        return true
                    }
                    writeOut("\n")
                    messages.append(ChatMessage(role: "assistant", content: result.text))
                } catch {
                    messages.removeLast()
                    log("error: \(error)")
                }
            }
        }
    }
}

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the token ids of a text (one line).")

    @OptionGroup var modelOptions: ModelOptions

    @Flag(name: .long, help: "Match special tokens such as <|im_start|> written in the text.")
    var parseSpecial = false

    @Flag(name: .long, help: "Do not add BOS/EOS even if the model asks for them.")
    var noAddSpecial = false

    @Argument(help: "The text to tokenize.")
    var text: String

    func run() throws {
        try reportingErrors {
            let path = try ModelStore(directory: modelOptions.modelsDir).resolve(modelOptions.model, log: { log($0) })
            let tokenizer = try Tokenizer(gguf: GGUFFile(path: path))
            let ids = tokenizer.encode(text, addSpecial: !noAddSpecial, parseSpecial: parseSpecial)
            writeOut(ids.map(String.init).joined(separator: " ") + "\n")
        }
    }
}

struct Pull: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Download a known model into the model directory.")

    @Argument(help: "Model name (known: \(ModelStore.knownModels.keys.sorted().joined(separator: ", "))).")
    var name: String = ModelStore.defaultModelName

    @Option(name: .long, help: "Directory for downloaded models.")
    var modelsDir: String?

    @Flag(name: .long, help: "Download again even if present.")
    var force = false

    func run() throws {
        try reportingErrors {
            guard let model = ModelStore.known(name) else { throw EngineError.modelNotFound(name) }
            let url = try ModelStore(directory: modelsDir).pull(model, force: force, log: { log($0) })
            writeOut(url.path + "\n")
        }
    }
}
