/*
 * The shared test vectors (test_vectors.txt, written from the Python implementation by
 * make_vectors.py) against the C implementation. Usage: test_vectors PATH.
 *
 * Each `ok` row: encoding (type, seq, payload) gives frame_hex byte for byte; decoding
 * frame_hex (whole, and byte by byte through the receiver) gives type, seq and payload back;
 * for the typed messages (HELLO, INFO, STATE, COMMAND, ACK, FAULT) unpacking the payload and
 * packing it again gives the same bytes. Each `reject` row: the receiver drops it, once, for
 * the reason its name starts with, and a controller counts it without acting on it.
 *
 * Built with PR_MAX_SENSORS=56 and PR_MAX_ACTUATORS=60 (the protocol's maxima), so that
 * every frame the protocol allows has a typed struct to round-trip through.
 */
#include <ctype.h>
#include <stdlib.h>

#include "pr_controller.h"
#include "test_util.h"

#define MAX_LINE 4096

typedef struct {
    int ok_rows;
    int reject_rows;
    int typed;
    int types_seen[256];
} tally_t;

static int hex_decode(const char *hex, uint8_t *out, size_t cap, size_t *len)
{
    size_t n = strlen(hex);
    size_t i;

    *len = 0;
    if (strcmp(hex, "-") == 0) {
        return 0;
    }
    if (n % 2u != 0u || n / 2u > cap) {
        return -1;
    }
    for (i = 0; i < n; i += 2) {
        unsigned v;
        if (!isxdigit((unsigned char)hex[i]) || !isxdigit((unsigned char)hex[i + 1]) ||
            sscanf(hex + i, "%2x", &v) != 1) {
            return -1;
        }
        out[(*len)++] = (uint8_t)v;
    }
    return 0;
}

/* Unpack the payload into its typed struct, pack it again: the same bytes. */
static int typed_round_trip(const char *name, uint8_t type, const uint8_t *p, size_t len)
{
    uint8_t again[PR_MAX_PAYLOAD];
    size_t n = 0;
    pr_err_t e1 = PR_OK, e2 = PR_OK;

    switch (type) {
    case PR_MSG_HELLO: {
        pr_hello_t m;
        e1 = pr_hello_unpack(p, len, &m);
        if (e1 == PR_OK) e2 = pr_hello_pack(&m, again, sizeof again, &n);
        break;
    }
    case PR_MSG_INFO: {
        pr_info_t m;
        e1 = pr_info_unpack(p, len, &m);
        if (e1 == PR_OK) e2 = pr_info_pack(&m, again, sizeof again, &n);
        break;
    }
    case PR_MSG_STATE: {
        pr_state_t m;
        e1 = pr_state_unpack(p, len, &m);
        if (e1 == PR_OK) e2 = pr_state_pack(&m, again, sizeof again, &n);
        break;
    }
    case PR_MSG_COMMAND: {
        pr_command_t m;
        e1 = pr_command_unpack(p, len, &m);
        if (e1 == PR_OK) e2 = pr_command_pack(&m, again, sizeof again, &n);
        break;
    }
    case PR_MSG_ACK: {
        pr_ack_t m;
        e1 = pr_ack_unpack(p, len, &m);
        if (e1 == PR_OK) e2 = pr_ack_pack(&m, again, sizeof again, &n);
        break;
    }
    case PR_MSG_FAULT: {
        pr_fault_t m;
        e1 = pr_fault_unpack(p, len, &m);
        if (e1 == PR_OK) e2 = pr_fault_pack(&m, again, sizeof again, &n);
        break;
    }
    default:
        return 0; /* ENABLE, DISABLE: no payload, no struct */
    }
    if (e1 != PR_OK || e2 != PR_OK) {
        fprintf(stderr, "%s: typed round trip failed (%s, %s)\n", name, pr_err_name(e1),
                pr_err_name(e2));
    }
    CHECK_EQ(e1, PR_OK);
    CHECK_EQ(e2, PR_OK);
    CHECK_BYTES(again, n, p, len);
    return 1;
}

static void check_ok(const char *name, const char *type_s, const char *seq_s,
                     const char *payload_s, const uint8_t *frame, size_t frame_len, tally_t *t)
{
    uint8_t payload[PR_MAX_PAYLOAD + 1u];
    uint8_t out[PR_MAX_FRAME];
    uint8_t buf[PR_RX_BUF_FULL];
    size_t payload_len = 0;
    size_t n, i;
    unsigned long type = strtoul(type_s, NULL, 16);
    unsigned long long seq = strtoull(seq_s, NULL, 10);
    pr_frame_t fr;
    pr_rx_t rx;
    int frames = 0;

    if (hex_decode(payload_s, payload, sizeof payload, &payload_len) != 0 || type > 0xFFu ||
        seq > 0xFFFFFFFFull || frame_len < 2u || frame[frame_len - 1u] != 0x00) {
        fprintf(stderr, "%s: malformed ok row\n", name);
        CHECK(0);
        return;
    }
    t->ok_rows++;
    t->types_seen[type]++;

    /* Encoding. */
    n = pr_frame_encode((uint8_t)type, (uint32_t)seq, payload, payload_len, out, sizeof out);
    if (n != frame_len || memcmp(out, frame, n) != 0) {
        fprintf(stderr, "%s: encoding differs\n", name);
    }
    CHECK_BYTES(out, n, frame, frame_len);

    /* Decoding the whole frame. */
    CHECK_EQ(pr_frame_decode(frame, frame_len - 1u, buf, sizeof buf, NULL, &fr), PR_OK);
    CHECK_EQ(fr.header.type, type);
    CHECK_EQ(fr.header.seq, seq);
    CHECK_BYTES(fr.payload, fr.payload_len, payload, payload_len);

    /* Decoding byte by byte, with a line-idle 0x00 before it. */
    pr_rx_init(&rx, buf, sizeof buf, NULL);
    (void)pr_rx_push(&rx, 0x00);
    for (i = 0; i < frame_len; i++) {
        pr_rx_event_t ev = pr_rx_push(&rx, frame[i]);
        CHECK(ev != PR_RX_DROP);
        if (ev == PR_RX_FRAME) {
            frames++;
            CHECK_EQ(rx.frame.header.type, type);
            CHECK_EQ(rx.frame.header.seq, seq);
            CHECK_BYTES(rx.frame.payload, rx.frame.payload_len, payload, payload_len);
        }
    }
    CHECK_EQ(frames, 1);

    t->typed += typed_round_trip(name, (uint8_t)type, payload, payload_len);
}

/* The receiver's reason for each name prefix of the reject rows. */
static int expected_reason(const char *name, pr_err_t *reason)
{
    static const struct {
        const char *prefix;
        pr_err_t err;
    } map[] = {
        {"overlong_", PR_ERR_LONG}, {"cobs_", PR_ERR_COBS},       {"short_", PR_ERR_SHORT},
        {"crc_", PR_ERR_CRC},       {"version_", PR_ERR_VERSION}, {"type_", PR_ERR_TYPE},
        {"length_", PR_ERR_LENGTH},
    };
    size_t i;
    for (i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strncmp(name, map[i].prefix, strlen(map[i].prefix)) == 0) {
            *reason = map[i].err;
            return 1;
        }
    }
    return 0;
}

/* A controller for the reject rows: counts must rise, nothing may be acted on. */
static int ctl_actions;
static int hal_read(void *ctx, float *out, uint8_t n) { (void)ctx; memset(out, 0, n * sizeof *out); return 0; }
static void hal_write(void *ctx, const float *v, uint8_t n) { (void)ctx; (void)v; (void)n; ctl_actions++; }
static void hal_safe(void *ctx) { (void)ctx; }
static uint64_t hal_micros(void *ctx) { (void)ctx; return 1000; }
static void hal_serial(void *ctx, const uint8_t *p, size_t n) { (void)ctx; (void)p; (void)n; ctl_actions++; }

static void check_reject(const char *name, const uint8_t *frame, size_t frame_len, tally_t *t)
{
    static const pr_hal_t hal = {NULL, hal_read, hal_write, hal_safe, hal_micros, hal_serial, NULL};
    static pr_controller_t ctl;
    pr_config_t cfg;
    uint8_t buf[PR_RX_BUF_FULL];
    pr_rx_t rx;
    pr_err_t want = PR_OK;
    int frames = 0, drops = 0;
    size_t i;

    t->reject_rows++;
    if (!expected_reason(name, &want)) {
        fprintf(stderr, "%s: reject row name has no known reason prefix\n", name);
        CHECK(0);
    }
    pr_rx_init(&rx, buf, sizeof buf, NULL);
    for (i = 0; i <= frame_len; i++) {
        /* A trailing 0x00 after the row ends any frame the row left open. */
        pr_rx_event_t ev = pr_rx_push(&rx, i < frame_len ? frame[i] : 0x00);
        if (ev == PR_RX_FRAME) frames++;
        if (ev == PR_RX_DROP) {
            drops++;
            if (rx.last_err != want) {
                fprintf(stderr, "%s: dropped as %s\n", name, pr_err_name(rx.last_err));
            }
            CHECK_EQ(rx.last_err, want);
        }
    }
    if (frames != 0) fprintf(stderr, "%s: accepted\n", name);
    CHECK_EQ(frames, 0);
    CHECK_EQ(drops, 1);

    /* The controller (Furuta shape) drops it too, without answering or acting. */
    memset(&cfg, 0, sizeof cfg);
    cfg.name = "furuta";
    cfg.n_sensors = 4;
    cfg.n_actuators = 1;
    cfg.actuator_min[0] = -10.0f;
    cfg.actuator_max[0] = 10.0f;
    cfg.min_rate_hz = 10;
    cfg.max_rate_hz = 2000;
    cfg.watchdog_ms = 50;
    CHECK_EQ(pr_controller_init(&ctl, &cfg, &hal), PR_OK);
    ctl_actions = 0;
    pr_controller_rx_bytes(&ctl, frame, frame_len);
    pr_controller_rx_bytes(&ctl, (const uint8_t *)"", 1);
    CHECK_EQ(pr_controller_rx_errors(&ctl), 1);
    CHECK_EQ(ctl_actions, 0);
}

int main(int argc, char **argv)
{
    static char line[MAX_LINE];
    static uint8_t frame[MAX_LINE / 2];
    tally_t t;
    FILE *f;
    int lineno = 0;
    int type;

    if (argc != 2) {
        fprintf(stderr, "usage: %s test_vectors.txt\n", argv[0]);
        return 2;
    }
    f = fopen(argv[1], "r");
    if (f == NULL) {
        perror(argv[1]);
        return 2;
    }
    memset(&t, 0, sizeof t);
    while (fgets(line, sizeof line, f) != NULL) {
        char *field[7];
        int nf = 0;
        char *p = line;
        size_t frame_len = 0;

        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0') {
            continue;
        }
        /* Single-space separated: split on ' ' exactly. */
        while (nf < 7) {
            field[nf++] = p;
            p = strchr(p, ' ');
            if (p == NULL) break;
            *p++ = '\0';
        }
        if (nf != 6 || hex_decode(field[5], frame, sizeof frame, &frame_len) != 0) {
            fprintf(stderr, "%s:%d: malformed line\n", argv[1], lineno);
            CHECK(0);
            continue;
        }
        if (strcmp(field[1], "ok") == 0) {
            check_ok(field[0], field[2], field[3], field[4], frame, frame_len, &t);
        } else if (strcmp(field[1], "reject") == 0) {
            CHECK(strcmp(field[2], "-") == 0 && strcmp(field[3], "-") == 0 &&
                  strcmp(field[4], "-") == 0);
            check_reject(field[0], frame, frame_len, &t);
        } else {
            fprintf(stderr, "%s:%d: unknown kind %s\n", argv[1], lineno, field[1]);
            CHECK(0);
        }
    }
    fclose(f);

    /* A vector file that tests nothing is a failure: every type, and rejects. */
    for (type = 0; type < 256; type++) {
        if (pr_msg_type_known((uint8_t)type) && t.types_seen[type] == 0) {
            fprintf(stderr, "no ok vector for type 0x%02x\n", type);
            CHECK(0);
        }
    }
    CHECK(t.reject_rows > 0);
    printf("test_vectors: %s: %d ok rows (%d typed round trips), %d reject rows\n", argv[1],
           t.ok_rows, t.typed, t.reject_rows);
    TEST_MAIN_END("test_vectors");
}
