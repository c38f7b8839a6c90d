/* Unit tests of pr_cobs and pr_crc32: edge cases with exact bytes, round trips, rejects. */
#include <stdlib.h>

#include "pr_cobs.h"
#include "pr_crc32.h"
#include "test_util.h"

static uint32_t rng_state = 12345u;
static uint32_t rnd(void)
{
    /* xorshift32: deterministic, good enough to pick test data */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static void check_encode(const uint8_t *in, size_t n, const uint8_t *want, size_t want_len)
{
    uint8_t out[1024];
    uint8_t back[1024];
    size_t len = pr_cobs_encode(in, n, out, sizeof out);
    size_t back_len = 0;

    CHECK_BYTES(out, len, want, want_len);
    CHECK_EQ(pr_cobs_decode(out, len, back, sizeof back, &back_len), 0);
    CHECK_BYTES(back, back_len, in, n);
}

static void test_cobs_exact(void)
{
    uint8_t in[600];
    uint8_t want[700];
    size_t i;

    check_encode((const uint8_t *)"", 0, (const uint8_t *)"\x01", 1);
    check_encode((const uint8_t *)"\x00", 1, (const uint8_t *)"\x01\x01", 2);
    check_encode((const uint8_t *)"\x00\x00", 2, (const uint8_t *)"\x01\x01\x01", 3);
    check_encode((const uint8_t *)"\x11\x22\x00\x33", 4, (const uint8_t *)"\x03\x11\x22\x02\x33", 5);
    check_encode((const uint8_t *)"\x11\x22\x33\x44", 4, (const uint8_t *)"\x05\x11\x22\x33\x44", 5);
    check_encode((const uint8_t *)"\x11\x00\x00\x00", 4, (const uint8_t *)"\x02\x11\x01\x01\x01", 5);

    /* 253 non-zero bytes: one block, code 0xFE. */
    for (i = 0; i < 253; i++) in[i] = (uint8_t)(i % 255 + 1);
    want[0] = 0xFE;
    memcpy(want + 1, in, 253);
    check_encode(in, 253, want, 254);

    /* 254 non-zero bytes: one full block and no trailing 0x01 (as Python's cobs). */
    for (i = 0; i < 254; i++) in[i] = (uint8_t)(i % 255 + 1);
    want[0] = 0xFF;
    memcpy(want + 1, in, 254);
    check_encode(in, 254, want, 255);

    /* 255 non-zero bytes: a full block then a block of one. */
    for (i = 0; i < 255; i++) in[i] = 0x42;
    want[0] = 0xFF;
    memset(want + 1, 0x42, 254);
    want[255] = 0x02;
    want[256] = 0x42;
    check_encode(in, 255, want, 257);

    /* 254 non-zero then a zero: the zero needs its own (empty) block at the end. */
    for (i = 0; i < 254; i++) in[i] = 0x07;
    in[254] = 0x00;
    want[0] = 0xFF;
    memset(want + 1, 0x07, 254);
    want[255] = 0x01;
    want[256] = 0x01;
    check_encode(in, 255, want, 257);

    /* A zero then 254 non-zero. */
    in[0] = 0x00;
    for (i = 1; i < 255; i++) in[i] = 0x09;
    want[0] = 0x01;
    want[1] = 0xFF;
    memset(want + 2, 0x09, 254);
    check_encode(in, 255, want, 256);

    /* 508 non-zero: two full blocks, nothing after. */
    for (i = 0; i < 508; i++) in[i] = 0x33;
    want[0] = 0xFF;
    memset(want + 1, 0x33, 254);
    want[255] = 0xFF;
    memset(want + 256, 0x33, 254);
    check_encode(in, 508, want, 510);

    /* All zeros: n + 1 bytes of 0x01. */
    memset(in, 0, 300);
    memset(want, 0x01, 301);
    check_encode(in, 300, want, 301);
}

static void test_cobs_round_trip(void)
{
    uint8_t in[700];
    uint8_t enc[800];
    uint8_t dec[800];
    size_t n;
    int trial;

    for (trial = 0; trial < 3000; trial++) {
        size_t len;
        size_t dec_len = 0;
        size_t i;
        uint32_t zero_every = 1u + rnd() % 300u; /* from dense zeros to none */
        int has_zero = 0;

        n = rnd() % 600u;
        for (i = 0; i < n; i++) {
            in[i] = (rnd() % zero_every == 0u) ? 0 : (uint8_t)(1u + rnd() % 255u);
        }
        len = pr_cobs_encode(in, n, enc, sizeof enc);
        CHECK(len > 0 && len <= PR_COBS_MAX_ENCODED(n));
        for (i = 0; i < len; i++) {
            has_zero |= enc[i] == 0;
        }
        CHECK(!has_zero);
        CHECK_EQ(pr_cobs_decode(enc, len, dec, sizeof dec, &dec_len), 0);
        CHECK_BYTES(dec, dec_len, in, n);
        /* In place. */
        CHECK_EQ(pr_cobs_decode(enc, len, enc, sizeof enc, &dec_len), 0);
        CHECK_BYTES(enc, dec_len, in, n);
    }
}

static void test_cobs_rejects(void)
{
    uint8_t out[600];
    uint8_t in[600] = {0};
    size_t len = 99;
    size_t i;

    /* Empty input decodes to nothing (the receiver treats it as line idle). */
    CHECK_EQ(pr_cobs_decode(in, 0, out, sizeof out, &len), 0);
    CHECK_EQ(len, 0);
    /* A length code past the end. */
    CHECK_EQ(pr_cobs_decode((const uint8_t *)"\x05\x01\x02", 3, out, sizeof out, &len), -1);
    CHECK_EQ(pr_cobs_decode((const uint8_t *)"\x02", 1, out, sizeof out, &len), -1);
    /* A zero byte inside. */
    CHECK_EQ(pr_cobs_decode((const uint8_t *)"\x03\x01\x00", 3, out, sizeof out, &len), -1);
    CHECK_EQ(pr_cobs_decode((const uint8_t *)"\x00", 1, out, sizeof out, &len), -1);
    /* What Python's decoder accepts, we accept: a trailing empty block after a full one. */
    in[0] = 0xFF;
    memset(in + 1, 0x05, 254);
    in[255] = 0x01;
    CHECK_EQ(pr_cobs_decode(in, 256, out, sizeof out, &len), 0);
    CHECK_EQ(len, 254);
    /* "\x01" alone is the empty message; "\x02\x01\x01" is 01 00. */
    CHECK_EQ(pr_cobs_decode((const uint8_t *)"\x01", 1, out, sizeof out, &len), 0);
    CHECK_EQ(len, 0);
    CHECK_EQ(pr_cobs_decode((const uint8_t *)"\x02\x01\x01", 3, out, sizeof out, &len), 0);
    CHECK_BYTES(out, len, "\x01\x00", 2);
    /* Capacity: one byte short fails on both sides, exact fits. */
    for (i = 0; i < 10; i++) in[i] = (uint8_t)(i + 1);
    CHECK_EQ(pr_cobs_encode(in, 10, out, 10), 0);
    CHECK_EQ(pr_cobs_encode(in, 10, out, 11), 11);
    CHECK_EQ(pr_cobs_decode(out, 11, in + 100, 9, &len), -1);
    CHECK_EQ(pr_cobs_decode(out, 11, in + 100, 10, &len), 0);
    CHECK_EQ(pr_cobs_decode((const uint8_t *)"\x01\x01", 2, out, 0, &len), -1);
}

static uint32_t crc32_bitwise(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    size_t i;
    int k;

    for (i = 0; i < n; i++) {
        crc ^= p[i];
        for (k = 0; k < 8; k++) {
            crc = (crc & 1u) ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
        }
    }
    return crc ^ 0xFFFFFFFFu;
}

static void test_crc32(void)
{
    static const char fox[] = "The quick brown fox jumps over the lazy dog";
    uint8_t buf[512] = {0};
    size_t i;
    int trial;

    CHECK_EQ(pr_crc32((const uint8_t *)"123456789", 9), 0xCBF43926u);
    CHECK_EQ(pr_crc32(buf, 0), 0u);
    CHECK_EQ(pr_crc32((const uint8_t *)fox, sizeof fox - 1u), 0x414FA339u);
    CHECK_EQ(pr_crc32((const uint8_t *)"\x00", 1), 0xD202EF8Du);
    /* The table against the bitwise definition, on every single byte and random data. */
    for (i = 0; i < 256; i++) {
        buf[0] = (uint8_t)i;
        CHECK_EQ(pr_crc32(buf, 1), crc32_bitwise(buf, 1));
    }
    for (trial = 0; trial < 200; trial++) {
        size_t n = rnd() % sizeof buf;
        size_t cut = n == 0 ? 0 : rnd() % n;
        for (i = 0; i < n; i++) buf[i] = (uint8_t)rnd();
        CHECK_EQ(pr_crc32(buf, n), crc32_bitwise(buf, n));
        CHECK_EQ(pr_crc32_update(pr_crc32(buf, cut), buf + cut, n - cut), pr_crc32(buf, n));
    }
}

int main(void)
{
    test_cobs_exact();
    test_cobs_round_trip();
    test_cobs_rejects();
    test_crc32();
    TEST_MAIN_END("test_cobs_crc");
}
