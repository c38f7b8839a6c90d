/* pr_cobs: COBS encoder and decoder; see pr_cobs.h. */
#include "pr_cobs.h"

void pr_cobs_enc_begin(pr_cobs_enc_t *enc, uint8_t *out, size_t cap)
{
    enc->out = out;
    enc->cap = cap;
    enc->len = 0;
    enc->code_pos = 0;
    enc->code = 1;
    enc->open = 0;
    enc->final = 1;
    enc->overflow = 0;
}

static void enc_emit(pr_cobs_enc_t *enc, uint8_t byte)
{
    if (enc->len >= enc->cap) {
        enc->overflow = 1;
        return;
    }
    enc->out[enc->len++] = byte;
}

void pr_cobs_enc_put(pr_cobs_enc_t *enc, uint8_t byte)
{
    if (enc->overflow) {
        return;
    }
    /* Blocks open lazily, so that input ending on a full block needs no empty block. */
    if (!enc->open) {
        enc->code_pos = enc->len;
        enc_emit(enc, 0); /* placeholder for the length code */
        enc->code = 1;
        enc->open = 1;
    }
    if (byte == 0) {
        if (!enc->overflow) {
            enc->out[enc->code_pos] = enc->code;
        }
        enc->open = 0;
        enc->final = 1;
        return;
    }
    enc_emit(enc, byte);
    enc->code++;
    if (enc->code == 0xFF) {
        if (!enc->overflow) {
            enc->out[enc->code_pos] = 0xFF;
        }
        enc->open = 0;
        enc->final = 0;
    }
}

size_t pr_cobs_enc_end(pr_cobs_enc_t *enc)
{
    if (enc->open) {
        if (!enc->overflow) {
            enc->out[enc->code_pos] = enc->code;
        }
        enc->open = 0;
    } else if (enc->final) {
        enc_emit(enc, 1);
        enc->final = 0;
    }
    return enc->overflow ? 0 : enc->len;
}

void pr_cobs_dec_begin(pr_cobs_dec_t *dec, uint8_t *out, size_t cap)
{
    dec->out = out;
    dec->cap = cap;
    dec->len = 0;
    dec->code = 0;
    dec->remaining = 0;
    dec->started = 0;
    dec->error = 0;
}

void pr_cobs_dec_put(pr_cobs_dec_t *dec, uint8_t byte)
{
    if (dec->error) {
        return;
    }
    if (byte == 0) {
        dec->error = 1;
        return;
    }
    if (dec->remaining == 0) {
        /* A length code. The block before it stood for a zero unless it was full. */
        if (dec->started && dec->code < 0xFF) {
            if (dec->len >= dec->cap) {
                dec->error = 1;
                return;
            }
            dec->out[dec->len++] = 0;
        }
        dec->code = byte;
        dec->remaining = (uint8_t)(byte - 1u);
        dec->started = 1;
        return;
    }
    if (dec->len >= dec->cap) {
        dec->error = 1;
        return;
    }
    dec->out[dec->len++] = byte;
    dec->remaining--;
}

int pr_cobs_dec_end(pr_cobs_dec_t *dec, size_t *out_len)
{
    if (dec->error || dec->remaining != 0) {
        *out_len = 0;
        return -1;
    }
    *out_len = dec->len;
    return 0;
}

size_t pr_cobs_encode(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    pr_cobs_enc_t enc;
    size_t i;

    pr_cobs_enc_begin(&enc, out, cap);
    for (i = 0; i < n; i++) {
        pr_cobs_enc_put(&enc, in[i]);
    }
    return pr_cobs_enc_end(&enc);
}

int pr_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *out_len)
{
    pr_cobs_dec_t dec;
    size_t i;

    /* In place is safe: the decoder never writes ahead of the byte it reads. */
    pr_cobs_dec_begin(&dec, out, cap);
    for (i = 0; i < n; i++) {
        pr_cobs_dec_put(&dec, in[i]);
    }
    return pr_cobs_dec_end(&dec, out_len);
}
