// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Swiftlet",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "swiftlet", targets: ["swiftlet"]),
        .library(name: "Engine", targets: ["Engine"]),
        .library(name: "Server", targets: ["Server"]),
        .library(name: "Platform", targets: ["Platform"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        // Server: HTTP, lifecycle, logging, metrics. Hummingbird's default traits (swift-configuration,
        // full Foundation coders) are not needed: the server decodes JSON itself.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        // The HTTP/1 parts that Hummingbird's channel carries, for answering parser errors in OpenAI's shape.
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.34.1"),
        // Platform: deployments config, gateway proxying to workers, keys and usage ledger.
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        // Layer 1: GGUF file format.
        .target(name: "GGUF"),
        // Layer 2: tensor kernels (C for SIMD with runtime dispatch) and their Swift face.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "Kernels", dependencies: ["CKernels", "GGUF"]),
        // Layer 3: tokenizers and chat templates.
        .target(name: "Tokenizer", dependencies: ["GGUF", .product(name: "HeapModule", package: "swift-collections")]),
        .target(name: "Templates"),
        // Layer 3b: structured output (JSON Schema to a token-masking automaton over the vocabulary).
        .target(name: "Grammar", dependencies: ["Tokenizer"]),
        // Layer 4: model architectures.
        .target(name: "Models", dependencies: ["GGUF", "Kernels"]),
        // Layer 5: sequences, sampling, generation, model store.
        .target(name: "Engine", dependencies: [
            "Models", "Kernels", "CKernels", "Tokenizer", "Templates", "GGUF", "Grammar",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "DequeModule", package: "swift-collections"),
        ]),
        // The web console: static HTML/CSS/JS (resources) and the live metrics feed, served by both
        // `serve` and the gateway.
        .target(name: "Console", dependencies: [
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
        ], resources: [.copy("Resources")]),
        // Layer 6: the OpenAI-compatible HTTP server.
        .target(name: "Server", dependencies: [
            "Engine", "Templates", "Tokenizer", "Grammar", "Console",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
        ]),
        // Layer 7: the platform: deployments, gateway, replicas, autoscaler, keys, usage and costs.
        .target(name: "Platform", dependencies: [
            "Server", "Engine", "Console",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
        ]),
        .executableTarget(name: "swiftlet", dependencies: [
            "Engine", "GGUF", "Kernels", "Tokenizer", "Templates", "Server", "Grammar", "Platform",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Shared test support: locates the real model and fixtures.
        .target(name: "SwiftletTesting", dependencies: ["Engine", "Models"], path: "Sources/SwiftletTesting"),

        .testTarget(name: "GGUFTests", dependencies: ["GGUF"]),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels", "CKernels", "GGUF"], resources: [.copy("Fixtures")]),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer", "GGUF", "SwiftletTesting"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "GrammarTests", dependencies: ["Grammar", "Tokenizer", "Engine", "SwiftletTesting"]),
        .testTarget(name: "TemplatesTests", dependencies: ["Templates"], resources: [.copy("Fixtures")]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "Engine", "SwiftletTesting"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "Models", "SwiftletTesting"]),
        .testTarget(name: "ServerTests", dependencies: [
            "Server", "Engine", "Templates", "Grammar", "SwiftletTesting",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
        ]),
        .testTarget(name: "ConsoleTests", dependencies: [
            "Console",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
        ]),
        .testTarget(name: "PlatformTests", dependencies: [
            "Platform", "Server", "Engine", "Console",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "NIOCore", package: "swift-nio"),
        ]),
    ]
)

// Fuzzing (Tests/Fuzz, scripts/fuzz): with SWIFTLET_FUZZ=1 the modules under test are built with
// libFuzzer's coverage instrumentation and AddressSanitizer, and one libFuzzer executable per target is
// added. Without it (every normal build) the package above is unchanged. In that mode build only the
// fuzz-* products: the other executables are not linked with the fuzzer runtime.
if Context.environment["SWIFTLET_FUZZ"] == "1" {
    let instrument: [SwiftSetting] = [.unsafeFlags(["-sanitize=fuzzer,address", "-enable-testing"])]
    for target in package.targets where ["GGUF", "Tokenizer", "Templates", "Grammar", "Server"].contains(target.name) {
        target.swiftSettings = (target.swiftSettings ?? []) + instrument
    }
    let link: [LinkerSetting] = [.unsafeFlags(["-sanitize=fuzzer,address", "-use-ld=lld"])]
    package.targets += [
        .target(name: "FuzzDriver", path: "Tests/Fuzz/Sources/FuzzDriver"),
        .target(name: "FuzzSupport", dependencies: ["FuzzDriver"], path: "Tests/Fuzz/Sources/FuzzSupport"),
        .executableTarget(name: "fuzz-gguf", dependencies: ["FuzzSupport", "GGUF", "Tokenizer"],
                          path: "Tests/Fuzz/Sources/fuzz-gguf", linkerSettings: link),
        .executableTarget(name: "fuzz-tokenizer", dependencies: ["FuzzSupport", "GGUF", "Tokenizer"],
                          path: "Tests/Fuzz/Sources/fuzz-tokenizer", linkerSettings: link),
        .executableTarget(name: "fuzz-templates", dependencies: ["FuzzSupport", "Templates"],
                          path: "Tests/Fuzz/Sources/fuzz-templates", linkerSettings: link),
        .executableTarget(name: "fuzz-grammar", dependencies: ["FuzzSupport", "Grammar"],
                          path: "Tests/Fuzz/Sources/fuzz-grammar", linkerSettings: link),
        .executableTarget(name: "fuzz-requests", dependencies: ["FuzzSupport", "Server", "Grammar"],
                          path: "Tests/Fuzz/Sources/fuzz-requests", linkerSettings: link),
    ]
}
