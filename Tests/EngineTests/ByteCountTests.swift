import Engine
import Testing

@Suite struct ByteCountTests {
    @Test func unitsArePowersOf1000Or1024() {
        #expect(ByteCount.parse("536870912") == 536_870_912)
        #expect(ByteCount.parse("512MB") == 512_000_000)
        #expect(ByteCount.parse(" 2 GiB ") == 2 << 30)
        #expect(ByteCount.parse("1.5kib") == 1536)
        #expect(ByteCount.parse("32B") == 32)
    }

    @Test func nonsenseIsRefused() {
        for text in ["", "lots", "MB", "-1MB", "0", "nan", "inf", "1e20", "12 parsecs"] {
            #expect(ByteCount.parse(text) == nil, "\(text)")
        }
    }
}
