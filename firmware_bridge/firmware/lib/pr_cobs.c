/* pr_cobs: COBS encoder and decoder; see pr_cobs.h. */
#include "pr_cobs.h"

size_t pr_cobs_encode(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    size_t i;
    size_t o = 1;        /* next output position */
    size_t code_pos = 0; /* where the current block's length code goes */
    uint8_t code = 1;    /* length code of the current block: 1 + data bytes so far */

    if (cap < PR_COBS_MAX_ENCODED(n)) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (in[i] == 0) {
            out[code_pos] = code;
            code_pos = o++;
            code = 1;
        } else {
            out[o++] = in[i];
            code++;
            if (code == 0xFF) {
                out[code_pos] = code;
                if (i + 1 == n) {
                    /* A full block that ends the input needs no trailing block. */
                    return o;
                }
                code_pos = o++;
                code = 1;
            }
        }
    }
    out[code_pos] = code;
    return o;
}

int pr_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *out_len)
{
    size_t idx = 0;
    size_t o = 0;

    *out_len = 0;
    while (idx < n) {
        uint8_t code = in[idx++];
        size_t end;

        if (code == 0) {
            return -1;
        }
        end = idx + (size_t)code - 1u;
        if (end > n) {
            return -1;
        }
        if (o + (end - idx) > cap) {
            return -1;
        }
        for (; idx < end; idx++) {
            if (in[idx] == 0) {
                return -1;
            }
            out[o++] = in[idx];
        }
        /* Every block but the last and but a full one stands for a zero byte. */
        if (idx < n && code < 0xFF) {
            if (o >= cap) {
                return -1;
            }
            out[o++] = 0;
        }
    }
    *out_len = o;
    return 0;
}
