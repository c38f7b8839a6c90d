/*
 * test_util: the few assertion macros the C tests share. A failed check prints where and
 * what, counts, and the test goes on; TEST_MAIN_END returns nonzero if anything failed.
 */
#ifndef TEST_UTIL_H
#define TEST_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int g_checks;
static int g_failures;

/* Only the first failures are printed in full; all are counted. */
#define TEST_MAX_REPORTED 25
#define TEST_REPORT (g_failures <= TEST_MAX_REPORTED)

#define CHECK(cond)                                                                     \
    do {                                                                                \
        g_checks++;                                                                     \
        if (!(cond)) {                                                                  \
            g_failures++;                                                               \
            if (TEST_REPORT)                                                            \
                fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                               \
    } while (0)

#define CHECK_EQ(a, b)                                                                  \
    do {                                                                                \
        unsigned long long va_ = (unsigned long long)(a);                               \
        unsigned long long vb_ = (unsigned long long)(b);                               \
        g_checks++;                                                                     \
        if (va_ != vb_) {                                                               \
            g_failures++;                                                               \
            if (TEST_REPORT)                                                            \
                fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (0x%llx != 0x%llx)\n", \
                        __FILE__, __LINE__, #a, #b, va_, vb_);                          \
        }                                                                               \
    } while (0)

#define CHECK_BYTES(got, got_len, want, want_len)                                       \
    do {                                                                                \
        g_checks++;                                                                     \
        if ((size_t)(got_len) != (size_t)(want_len) ||                                  \
            memcmp((got), (want), (size_t)(want_len)) != 0) {                           \
            g_failures++;                                                               \
            if (TEST_REPORT) {                                                          \
                fprintf(stderr, "%s:%d: CHECK_BYTES failed: %s\n", __FILE__, __LINE__, #got); \
                test_dump("  got ", (const uint8_t *)(got), (size_t)(got_len));         \
                test_dump("  want", (const uint8_t *)(want), (size_t)(want_len));       \
            }                                                                           \
        }                                                                               \
    } while (0)

#if defined(__GNUC__)
__attribute__((unused))
#endif
static void test_dump(const char *label, const uint8_t *p, size_t n)
{
    size_t i;
    fprintf(stderr, "%s (%zu):", label, n);
    for (i = 0; i < n && i < 64; i++) {
        fprintf(stderr, " %02x", p[i]);
    }
    fprintf(stderr, "%s\n", n > 64 ? " ..." : "");
}

#define TEST_MAIN_END(name)                                                             \
    do {                                                                                \
        printf("%s: %d checks, %d failures\n", (name), g_checks, g_failures);           \
        return g_failures == 0 ? 0 : 1;                                                 \
    } while (0)

#endif /* TEST_UTIL_H */
