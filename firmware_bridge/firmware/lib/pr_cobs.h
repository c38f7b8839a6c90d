/*
 * pr_cobs: Consistent Overhead Byte Stuffing (Cheshire and Baker, 1999).
 *
 * Owns the byte stuffing of the wire protocol (docs/protocol.md, "Framing"). The output
 * is byte-identical to the Python `cobs` package that the host uses: in particular a
 * message that ends exactly on a full 254-byte block gets no trailing 0x01 block, and
 * the decoder accepts exactly the inputs that `cobs.cobs.decode` accepts.
 *
 * Both directions exist in a streaming form (one byte at a time, no intermediate buffer:
 * the frame receiver decodes as bytes arrive and the frame encoder stuffs as it builds)
 * and in a whole-buffer form built on it. Nothing here writes or expects the 0x00 frame
 * delimiter.
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

/* Streaming encoder. Fields are private. */
typedef struct {
    uint8_t *out;
    size_t cap;
    size_t len;      /* bytes written so far */
    size_t code_pos; /* where the open block's length code goes */
    uint8_t code;    /* 1 + data bytes in the open block */
    uint8_t open;    /* a block is open */
    uint8_t final;   /* an empty block must close the output (input empty or ended in 0) */
    uint8_t overflow;
} pr_cobs_enc_t;

void pr_cobs_enc_begin(pr_cobs_enc_t *enc, uint8_t *out, size_t cap);
void pr_cobs_enc_put(pr_cobs_enc_t *enc, uint8_t byte);
/* Finish; returns the encoded length, or 0 when the output did not fit in cap. */
size_t pr_cobs_enc_end(pr_cobs_enc_t *enc);

/* Streaming decoder. Fields are private. */
typedef struct {
    uint8_t *out;
    size_t cap;
    size_t len;        /* bytes decoded so far */
    uint8_t code;      /* length code of the current block */
    uint8_t remaining; /* data bytes still expected in the current block */
    uint8_t started;   /* at least one block seen */
    uint8_t error;     /* zero byte seen, or output past cap */
} pr_cobs_dec_t;

void pr_cobs_dec_begin(pr_cobs_dec_t *dec, uint8_t *out, size_t cap);
void pr_cobs_dec_put(pr_cobs_dec_t *dec, uint8_t byte);
/* Finish; returns 0 and the decoded length in *out_len, or -1 when the input was invalid
 * (a zero byte, a length code running past the end) or the output exceeded cap. */
int pr_cobs_dec_end(pr_cobs_dec_t *dec, size_t *out_len);

/*
 * Encode n bytes of in into out (capacity cap). Returns the encoded length, or 0 when
 * the encoding does not fit in cap (a valid encoding is never empty). PR_COBS_MAX_ENCODED(n)
 * is always enough. in and out must not overlap.
 */
size_t pr_cobs_encode(const uint8_t *in, size_t n, uint8_t *out, size_t cap);

/*
 * Decode n bytes of in into out (capacity cap), storing the decoded length in *out_len.
 * Returns 0 on success, -1 when the input holds a zero byte, a length code runs past the
 * end of the input, or the output would exceed cap. Empty input decodes to empty output.
 * out may equal in (decoding in place); otherwise they must not overlap.
 */
int pr_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *out_len);

#ifdef __cplusplus
}
#endif

#endif /* PR_COBS_H */
