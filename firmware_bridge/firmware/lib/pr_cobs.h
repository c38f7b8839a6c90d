/*
 * pr_cobs: Consistent Overhead Byte Stuffing (Cheshire and Baker, 1999).
 *
 * Owns the byte stuffing of the wire protocol (docs/protocol.md, "Framing"). The output
 * is byte-identical to the Python `cobs` package that the host uses: in particular a
 * message that ends exactly on a full 254-byte block gets no trailing 0x01 block, and
 * the decoder accepts the same inputs that `cobs.cobs.decode` accepts.
 *
 * Neither function writes the 0x00 frame delimiter nor expects it in its input.
 */
#ifndef PR_COBS_H
#define PR_COBS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Worst-case encoded size of n input bytes (without the delimiter). */
#define PR_COBS_MAX_ENCODED(n) ((n) + (n) / 254u + 1u)

/*
 * Encode n bytes of in into out (capacity cap). Returns the encoded length, or 0 when
 * cap is smaller than PR_COBS_MAX_ENCODED(n) (a valid encoding is never empty).
 * in and out must not overlap.
 */
size_t pr_cobs_encode(const uint8_t *in, size_t n, uint8_t *out, size_t cap);

/*
 * Decode n bytes of in into out (capacity cap), storing the decoded length in *out_len.
 * Returns 0 on success, -1 when the input holds a zero byte, a length code runs past
 * the end of the input, or the output would exceed cap. Empty input decodes to empty
 * output. in and out must not overlap.
 */
int pr_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *out_len);

#ifdef __cplusplus
}
#endif

#endif /* PR_COBS_H */
