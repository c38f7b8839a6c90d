/*
 * pr_crc32: CRC-32/ISO-HDLC, the zlib / Ethernet CRC (reflected polynomial 0xEDB88320,
 * init 0xFFFFFFFF, final xor 0xFFFFFFFF; check value crc32("123456789") = 0xCBF43926).
 *
 * Table-driven, one byte per step. The 1 KiB table is const; on AVR it is placed in
 * flash (PROGMEM) so that it costs no RAM.
 */
#ifndef PR_CRC32_H
#define PR_CRC32_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CRC of n bytes, as zlib.crc32(data). */
uint32_t pr_crc32(const uint8_t *data, size_t n);

/*
 * Continue a CRC over more bytes: pr_crc32_update(pr_crc32(a), b) == pr_crc32(a || b),
 * and pr_crc32_update(0, data) == pr_crc32(data), as zlib.crc32(data, value).
 */
uint32_t pr_crc32_update(uint32_t crc, const uint8_t *data, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* PR_CRC32_H */
