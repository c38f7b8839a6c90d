/*
 * Fuzz test of the receiver and the controller: random valid frames, then corrupted ones
 * (bit flips, a byte changed, truncation, garbage, a body byte changed under a valid COBS,
 * CRC-valid frames with a bad version, type or length, inserted and deleted bytes, overlong
 * runs, two frames glued together), each followed by an intact frame. Run under ASan and
 * UBSan by `make test`, with a timeout that catches a hang.
 *
 * The test knows what it really sent, so it checks:
 *   - the receiver accepts every intact frame, exactly, and nothing else (no false accept);
 *   - every CRC-valid but malformed frame is dropped for its reason;
 *   - a controller fed the same bytes writes actuators only for an intact COMMAND, arms only
 *     on an intact ENABLE, and its own output always parses.
 *
 * Usage: test_fuzz [iterations [seed]]   (default 1,100,000: about 1,000,000 corrupted frames,
 *        each followed by an intact one, plus about 100,000 intact on their own)
 */
#include <stdlib.h>
#include <time.h>

#include "pr_controller.h"
#include "pr_crc32.h"
#include "test_util.h"

/* ---- Random numbers (xorshift64*) ------------------------------------------------- */

static uint64_t rng_s = 0x9E3779B97F4A7C15ull;
static uint64_t rnd64(void)
{
    rng_s ^= rng_s >> 12;
    rng_s ^= rng_s << 25;
    rng_s ^= rng_s >> 27;
    return rng_s * 0x2545F4914F6CDD1Dull;
}
static uint32_t rnd(uint32_t n) /* uniform enough in [0, n) for n > 0 */
{
    return (uint32_t)((rnd64() >> 32) % n);
}

/* ---- Frames ----------------------------------------------------------------------- */

typedef struct {
    uint8_t raw[PR_MAX_RAW + 8u]; /* body || crc */
    size_t raw_len;
    uint8_t enc[PR_MAX_FRAME + 600u]; /* encoded + 0x00, room for mutations */
    size_t enc_len;
} frame_t;

static void finish(frame_t *f, size_t body_len, int fix_crc)
{
    if (fix_crc) {
        pr_put_u32(f->raw + body_len, pr_crc32(f->raw, body_len));
    }
    f->raw_len = body_len + PR_CRC_LEN;
    f->enc_len = pr_cobs_encode(f->raw, f->raw_len, f->enc, sizeof f->enc - 1u);
    f->enc[f->enc_len++] = 0x00;
}

static void random_bytes(uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) p[i] = (uint8_t)rnd64();
}

static void random_f32(uint8_t *p, float lo, float hi)
{
    float v;
    switch (rnd(20)) {
    case 0: pr_put_u32(p, 0x7FC00000u); return;        /* NaN */
    case 1: pr_put_u32(p, 0xFF800000u); return;        /* -inf */
    case 2: pr_put_u32(p, (uint32_t)rnd64()); return;  /* any bits */
    default:
        v = lo + (hi - lo) * (float)rnd(1000001) / 1000000.0f;
        pr_put_f32(p, v);
    }
}

/* A valid frame. Mostly what a host sends the Furuta controller (so the controller's state
 * machine is exercised), else any message of any shape the protocol allows. */
static uint8_t make_valid(frame_t *f)
{
    uint8_t *p = f->raw + PR_HEADER_LEN;
    size_t len = 0;
    size_t i, n;
    uint8_t type;
    uint32_t pick = rnd(100);

    if (pick < 45) {
        type = PR_MSG_COMMAND;
        n = pick < 40 ? 1u : rnd(61);
        random_bytes(p, 4);
        for (i = 0; i < n; i++) random_f32(p + 4 + 4 * i, -12.0f, 12.0f);
        len = PR_COMMAND_LEN(n);
    } else if (pick < 55) {
        type = PR_MSG_ENABLE;
    } else if (pick < 62) {
        type = PR_MSG_DISABLE;
    } else if (pick < 70) {
        type = PR_MSG_HELLO;
        pr_put_u16(p, rnd(4) == 0 ? (uint16_t)rnd64() : (uint16_t)rnd(2500));
        len = PR_HELLO_LEN;
    } else if (pick < 80) {
        type = PR_MSG_STATE;
        n = rnd(57);
        random_bytes(p, PR_STATE_LEN(n));
        len = PR_STATE_LEN(n);
    } else if (pick < 87) {
        type = PR_MSG_INFO;
        n = rnd(PR_MAX_NAME_LEN + 1u);
        random_bytes(p, PR_INFO_LEN(n));
        p[16] = (uint8_t)n;
        len = PR_INFO_LEN(n);
    } else if (pick < 93) {
        type = PR_MSG_ACK;
        random_bytes(p, PR_ACK_LEN);
        len = PR_ACK_LEN;
    } else {
        type = PR_MSG_FAULT;
        n = rnd(PR_MAX_FAULT_TEXT + 1u);
        random_bytes(p, PR_FAULT_LEN(n));
        p[10] = (uint8_t)n;
        len = PR_FAULT_LEN(n);
    }
    f->raw[0] = (uint8_t)PR_PROTOCOL_VERSION;
    f->raw[1] = type;
    random_bytes(f->raw + 2, 4);
    if (rnd(4) == 0) memset(f->raw + 2, 0, 4); /* zeros exercise COBS */
    finish(f, PR_HEADER_LEN + len, 1);
    return type;
}

/* ---- Observers -------------------------------------------------------------------- */

typedef struct {
    /* What the test sent in the current segment. */
    const frame_t *intact; /* the intact frame being pushed, NULL during corrupt bytes */
    /* The generic receiver. */
    pr_rx_t rx;
    uint8_t rx_buf[PR_RX_BUF_FULL];
    long accepted, false_accepts, drops[PR_ERR_ARG + 1];
    /* The controller. */
    pr_controller_t ctl;
    pr_config_t cfg;
    uint64_t now;
    long writes, false_writes, enables, false_enables, faults;
    /* The host side of the controller's output. */
    pr_rx_t out_rx;
    uint8_t out_buf[PR_RX_BUF_FULL];
    long out_frames, out_drops;
} fuzz_t;

static fuzz_t fz;

static int hal_read(void *ctx, float *out, uint8_t n)
{
    uint8_t i;
    (void)ctx;
    for (i = 0; i < n; i++) out[i] = (float)i;
    return 0;
}
static void hal_write(void *ctx, const float *v, uint8_t n)
{
    fuzz_t *z = (fuzz_t *)ctx;
    z->writes++;
    /* Only while pushing an intact COMMAND, and with exactly its value. */
    if (z->intact == NULL || z->intact->raw[1] != PR_MSG_COMMAND || n != 1 ||
        z->intact->raw_len != PR_HEADER_LEN + PR_COMMAND_LEN(1u) + PR_CRC_LEN ||
        memcmp(v, &(float){pr_get_f32(z->intact->raw + PR_HEADER_LEN + 4)}, sizeof *v) != 0) {
        z->false_writes++;
    }
}
static void hal_safe(void *ctx) { (void)ctx; }
static uint64_t hal_micros(void *ctx) { return ((fuzz_t *)ctx)->now; }
static void hal_serial(void *ctx, const uint8_t *p, size_t n)
{
    fuzz_t *z = (fuzz_t *)ctx;
    size_t i;
    for (i = 0; i < n; i++) {
        pr_rx_event_t ev = pr_rx_push(&z->out_rx, p[i]);
        if (ev == PR_RX_FRAME) z->out_frames++;
        if (ev == PR_RX_DROP) z->out_drops++;
    }
}
static void hal_event(void *ctx, const pr_event_t *ev)
{
    fuzz_t *z = (fuzz_t *)ctx;
    if (ev->kind == PR_EV_ENABLE) {
        z->enables++;
        if (z->intact == NULL || z->intact->raw[1] != PR_MSG_ENABLE) z->false_enables++;
    }
    if (ev->kind == PR_EV_FAULT) z->faults++;
}
static const pr_hal_t hal = {&fz, hal_read, hal_write, hal_safe, hal_micros, hal_serial, hal_event};

/* Push bytes into both receivers; return how many frames the generic one accepted and,
 * through *match, whether each accepted one equals `expect` (NULL: nothing may be accepted). */
static int push(const uint8_t *p, size_t n, const frame_t *expect, pr_err_t *last_drop)
{
    int frames = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        pr_rx_event_t ev = pr_rx_push(&fz.rx, p[i]);
        if (ev == PR_RX_FRAME) {
            const pr_frame_t *fr = &fz.rx.frame;
            frames++;
            fz.accepted++;
            if (expect == NULL || fr->payload_len + PR_HEADER_LEN + PR_CRC_LEN != expect->raw_len ||
                memcmp(fz.rx_buf, expect->raw, expect->raw_len) != 0) {
                fz.false_accepts++;
            }
        } else if (ev == PR_RX_DROP) {
            fz.drops[fz.rx.last_err]++;
            if (last_drop != NULL) *last_drop = fz.rx.last_err;
        }
    }
    fz.intact = expect;
    pr_controller_rx_bytes(&fz.ctl, p, n);
    fz.intact = NULL;
    return frames;
}

enum {
    M_INTACT, M_BITFLIP, M_BYTE, M_TRUNCATE, M_GARBAGE, M_STALE_CRC, M_STRUCTURE, M_INSERT,
    M_DELETE, M_OVERLONG, M_GLUED, M_COUNT
};
static const char *const mutation_names[M_COUNT] = {
    "intact", "bit flips", "byte changed", "truncated", "garbage", "body byte, stale CRC",
    "CRC-valid, bad version/type/length", "byte inserted", "byte deleted", "overlong",
    "two frames glued"};

int main(int argc, char **argv)
{
    static frame_t f, g, h;
    long iterations = argc > 1 ? atol(argv[1]) : 1100000L; /* about 1,000,000 corrupted */
    long counts[M_COUNT] = {0};
    long fed = 0, bytes = 0, missed = 0, structure_wrong = 0;
    long it;
    clock_t t0 = clock();
    int m;

    if (argc > 2) rng_s = strtoull(argv[2], NULL, 0) | 1u;
    memset(&fz, 0, sizeof fz);
    pr_rx_init(&fz.rx, fz.rx_buf, sizeof fz.rx_buf, NULL);
    pr_rx_init(&fz.out_rx, fz.out_buf, sizeof fz.out_buf, NULL);
    fz.cfg.name = "furuta";
    fz.cfg.n_sensors = 4;
    fz.cfg.n_actuators = 1;
    fz.cfg.actuator_min[0] = -10.0f;
    fz.cfg.actuator_max[0] = 10.0f;
    fz.cfg.min_rate_hz = 10;
    fz.cfg.max_rate_hz = 2000;
    fz.cfg.watchdog_ms = 50;
    CHECK_EQ(pr_controller_init(&fz.ctl, &fz.cfg, &hal), PR_OK);

    for (it = 0; it < iterations; it++) {
        uint8_t seg[PR_MAX_FRAME * 2u + 600u];
        size_t n = 0, i, k;
        pr_err_t why = PR_OK;
        int mutation = (int)rnd(M_COUNT);

        make_valid(&f);
        switch (mutation) {
        case M_INTACT:
            memcpy(seg, f.enc, f.enc_len);
            n = f.enc_len;
            break;
        case M_BITFLIP:
            memcpy(seg, f.enc, f.enc_len);
            n = f.enc_len;
            for (k = 1 + rnd(3); k > 0; k--) {
                i = rnd((uint32_t)(n - 1u));
                seg[i] ^= (uint8_t)(1u << rnd(8));
            }
            if (memcmp(seg, f.enc, n) == 0) seg[0] ^= 0x80; /* two flips that cancel */
            break;
        case M_BYTE:
            memcpy(seg, f.enc, f.enc_len);
            n = f.enc_len;
            i = rnd((uint32_t)(n - 1u));
            seg[i] = (uint8_t)(seg[i] + 1u + rnd(255));
            break;
        case M_TRUNCATE:
            n = rnd((uint32_t)(f.enc_len - 1u));
            memcpy(seg, f.enc, n);
            seg[n++] = 0x00;
            break;
        case M_GARBAGE:
            n = 1u + rnd(300);
            random_bytes(seg, n);
            seg[n++] = 0x00;
            break;
        case M_STALE_CRC:
            g = f;
            i = rnd((uint32_t)(g.raw_len - PR_CRC_LEN));
            g.raw[i] = (uint8_t)(g.raw[i] + 1u + rnd(255));
            finish(&g, g.raw_len - PR_CRC_LEN, 0);
            memcpy(seg, g.enc, g.enc_len);
            n = g.enc_len;
            break;
        case M_STRUCTURE: {
            /* Correct CRC, so only the structural checks stand between it and acceptance. */
            size_t body = f.raw_len - PR_CRC_LEN;
            g = f;
            switch (rnd(3)) {
            case 0:
                g.raw[0] = (uint8_t)(2u + rnd(254)); /* version 2..255 */
                break;
            case 1:
                do g.raw[1] = (uint8_t)rnd(256); while (pr_msg_type_known(g.raw[1]));
                break;
            default:
                /* one to three bytes more or fewer than its type allows */
                if (rnd(2) == 0 || body == PR_HEADER_LEN) {
                    k = 1u + rnd(3);
                    random_bytes(g.raw + body, k);
                    body += k;
                } else {
                    body -= 1u + rnd((uint32_t)(body - PR_HEADER_LEN < 3u ? body - PR_HEADER_LEN : 3u));
                }
                if (pr_check_payload(g.raw[1], g.raw + PR_HEADER_LEN, body - PR_HEADER_LEN, NULL) == PR_OK) {
                    /* the new length happens to be valid (e.g. STATE + 4): make it odd */
                    g.raw[body] = 0x5A;
                    body += 1u;
                    if (pr_check_payload(g.raw[1], g.raw + PR_HEADER_LEN, body - PR_HEADER_LEN, NULL) == PR_OK) {
                        g.raw[body] = 0x5A;
                        body += 1u;
                    }
                }
                break;
            }
            finish(&g, body, 1);
            memcpy(seg, g.enc, g.enc_len);
            n = g.enc_len;
            break;
        }
        case M_INSERT:
            i = rnd((uint32_t)(f.enc_len - 1u));
            memcpy(seg, f.enc, i);
            seg[i] = (uint8_t)(1u + rnd(255));
            memcpy(seg + i + 1, f.enc + i, f.enc_len - i);
            n = f.enc_len + 1u;
            break;
        case M_DELETE:
            i = rnd((uint32_t)(f.enc_len - 1u));
            memcpy(seg, f.enc, i);
            memcpy(seg + i, f.enc + i + 1, f.enc_len - i - 1u);
            n = f.enc_len - 1u;
            break;
        case M_OVERLONG:
            n = PR_MAX_ENCODED + 1u + rnd(300);
            for (i = 0; i < n; i++) seg[i] = (uint8_t)(1u + rnd(255));
            seg[n++] = 0x00;
            break;
        case M_GLUED:
            make_valid(&h);
            memcpy(seg, f.enc, f.enc_len - 1u); /* its delimiter lost */
            memcpy(seg + f.enc_len - 1u, h.enc, h.enc_len);
            n = f.enc_len - 1u + h.enc_len;
            break;
        }
        counts[mutation]++;
        fed++;
        bytes += (long)n;
        if (mutation == M_INTACT) {
            if (push(seg, n, &f, NULL) != 1) missed++;
        } else {
            (void)push(seg, n, NULL, &why);
            if (mutation == M_STRUCTURE && why != PR_ERR_VERSION && why != PR_ERR_TYPE &&
                why != PR_ERR_LENGTH && !(why == PR_ERR_LONG && n - 1u > PR_MAX_ENCODED)) {
                structure_wrong++;
            }
            /* Resync: the next intact frame gets through. */
            make_valid(&g);
            fed++;
            bytes += (long)g.enc_len;
            if (push(g.enc, g.enc_len, &g, NULL) != 1) missed++;
        }
        /* The controller's clock runs; its watchdog and stream run too. */
        fz.now += 50u + rnd(400);
        pr_controller_poll(&fz.ctl);
    }

    printf("test_fuzz: %ld frames fed (%ld corrupted, %ld intact), %ld bytes, %.1f s\n", fed,
           iterations - counts[M_INTACT], fed - (iterations - counts[M_INTACT]), bytes,
           (double)(clock() - t0) / CLOCKS_PER_SEC);
    for (m = 0; m < M_COUNT; m++) {
        printf("  %-36s %8ld\n", mutation_names[m], counts[m]);
    }
    printf("  receiver: %ld accepted, %ld false accepts, %ld intact frames missed\n",
           fz.accepted, fz.false_accepts, missed);
    printf("  drops:");
    for (m = PR_ERR_LONG; m <= PR_ERR_LENGTH; m++) {
        printf(" %s %ld", pr_err_name((pr_err_t)m), fz.drops[m]);
    }
    printf("\n  controller: %ld actuator writes (%ld not from an intact COMMAND), %ld enables "
           "(%ld not from an intact ENABLE), %ld faults, rx_errors %u; its %ld frames out, "
           "%ld unparsable\n",
           fz.writes, fz.false_writes, fz.enables, fz.false_enables, fz.faults,
           (unsigned)pr_controller_rx_errors(&fz.ctl), fz.out_frames, fz.out_drops);

    CHECK_EQ(fz.false_accepts, 0);
    CHECK_EQ(missed, 0);
    CHECK_EQ(structure_wrong, 0);
    CHECK_EQ(fz.false_writes, 0);
    CHECK_EQ(fz.false_enables, 0);
    CHECK_EQ(fz.out_drops, 0);
    /* The test must have exercised what it claims to. */
    CHECK(iterations < 1000 || (fz.writes > 0 && fz.enables > 0 && fz.faults > 0));
    for (m = 0; m < M_COUNT; m++) CHECK(iterations < 1000 || counts[m] > 0);
    TEST_MAIN_END("test_fuzz");
}
