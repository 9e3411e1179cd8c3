// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Swiftlet",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "swiftlet", targets: ["swiftlet"]),
        .library(name: "Engine", targets: ["Engine"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
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
        // Layer 4: model architectures.
        .target(name: "Models", dependencies: ["GGUF", "Kernels"]),
        // Layer 5: sequences, sampling, generation, model store.
        .target(name: "Engine", dependencies: [
            "Models", "Tokenizer", "Templates", "GGUF",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .executableTarget(name: "swiftlet", dependencies: [
            "Engine", "GGUF", "Kernels", "Tokenizer", "Templates",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Shared test support: locates the real model and fixtures.
        .target(name: "SwiftletTesting", dependencies: ["Engine"], path: "Sources/SwiftletTesting"),

        .testTarget(name: "GGUFTests", dependencies: ["GGUF"]),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels", "CKernels"]),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer", "GGUF", "SwiftletTesting"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "TemplatesTests", dependencies: ["Templates"], resources: [.copy("Fixtures")]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "Engine", "SwiftletTesting"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "Models", "SwiftletTesting"]),
    ]
)
