/*
 * Unit tests of pr_protocol: each message against exact frame bytes, the length rules,
 * the byte-wise receiver and its drop reasons.
 *
 * The expected frames were computed independently of this code, in Python with
 * zlib.crc32 and the `cobs` package (struct.pack with the field tables of protocol.md).
 */
#include "pr_protocol.h"
#include "pr_crc32.h"
#include "test_util.h"

#define FRAME(s) (const uint8_t *)(s), (sizeof(s) - 1u)

static const char HELLO_500[] = "\x03\x01\x01\x01\x01\x01\x07\xf4\x01\x6c\xc0\x28\x08\x00";
static const char INFO_FURUTA[] =
    "\x04\x01\x02\x01\x01\x01\x02\x01\x0a\x03\x01\x78\x56\x34\x12\x04\x01\x0a\x04\xd0\x07\x32"
    "\x0c\x06\x66\x75\x72\x75\x74\x61\x04\x75\x33\xee\x00";
static const char STATE_4[] =
    "\x04\x01\x10\x02\x01\x01\x04\x40\x42\x0f\x01\x01\x01\x01\x02\x09\x01\x01\x06\xff\xff\xff"
    "\xff\x03\x01\x01\x01\x01\x05\xdb\x0f\x49\x40\x01\x03\xc0\xbf\x01\x01\x06\x40\x7a\x0c\x20"
    "\x3c\x00";
static const char COMMAND_1[] =
    "\x04\x01\x20\x07\x01\x01\x02\x02\x01\x01\x01\x01\x07\x20\xc0\xa4\xdb\x97\xc7\x00";
static const char ENABLE[] = "\x0b\x01\x30\x04\x03\x02\x01\x9a\xb1\xaa\x13\x00";
static const char DISABLE[] = "\x0b\x01\x31\xff\xff\xff\xff\xd3\xc3\x64\x38\x00";
static const char ACK[] = "\x04\x01\x32\x03\x01\x01\x06\x04\x03\x02\x01\x30\x05\x57\x6f\xfd\xd3\x00";
static const char FAULT[] =
    "\x04\x01\x40\x04\x01\x01\x02\x01\x13\x08\x07\x06\x05\x04\x03\x02\x01\x05\x77\x64\x6f\x67"
    "\x21\xb8\xcf\x34\x25\x00";

/* Encode (type, seq, payload) and compare with the expected frame; decode it back. */
static void check_frame(uint8_t type, uint32_t seq, const uint8_t *payload, size_t len,
                        const uint8_t *want, size_t want_len, pr_frame_t *decoded,
                        uint8_t *buf)
{
    uint8_t out[PR_MAX_FRAME];
    size_t n = pr_frame_encode(type, seq, payload, len, out, sizeof out);

    CHECK_BYTES(out, n, want, want_len);
    CHECK_EQ(pr_frame_decode(want, want_len - 1u, buf, PR_MAX_RAW, NULL, decoded), PR_OK);
    CHECK_EQ(decoded->header.version, 1);
    CHECK_EQ(decoded->header.type, type);
    CHECK_EQ(decoded->header.seq, seq);
    CHECK_BYTES(decoded->payload, decoded->payload_len, payload, len);
}

static int same_float_bits(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

static void test_messages_exact(void)
{
    uint8_t p[PR_MAX_PAYLOAD];
    uint8_t buf[PR_MAX_RAW];
    pr_frame_t fr;
    size_t len = 0;

    {
        pr_hello_t m = {500}, back;
        CHECK_EQ(pr_hello_pack(&m, p, sizeof p, &len), PR_OK);
        check_frame(PR_MSG_HELLO, 0, p, len, FRAME(HELLO_500), &fr, buf);
        CHECK_EQ(pr_hello_unpack(fr.payload, fr.payload_len, &back), PR_OK);
        CHECK_EQ(back.state_rate_hz, 500);
    }
    {
        pr_info_t m, back;
        memset(&m, 0, sizeof m);
        m.protocol_version = 1;
        m.firmware_version[0] = 0;
        m.firmware_version[1] = 3;
        m.firmware_version[2] = 1;
        m.boot_id = 0x12345678u;
        m.n_sensors = 4;
        m.n_actuators = 1;
        m.min_rate_hz = 10;
        m.max_rate_hz = 2000;
        m.watchdog_ms = 50;
        m.name_len = 6;
        memcpy(m.name, "furuta", 6);
        CHECK_EQ(pr_info_pack(&m, p, sizeof p, &len), PR_OK);
        CHECK_EQ(len, PR_INFO_LEN(6u));
        check_frame(PR_MSG_INFO, 1, p, len, FRAME(INFO_FURUTA), &fr, buf);
        CHECK_EQ(pr_info_unpack(fr.payload, fr.payload_len, &back), PR_OK);
        CHECK_EQ(back.boot_id, 0x12345678u);
        CHECK_EQ(back.firmware_version[1], 3);
        CHECK_EQ(back.n_sensors, 4);
        CHECK_EQ(back.max_rate_hz, 2000);
        CHECK_EQ(back.watchdog_ms, 50);
        CHECK_BYTES(back.name, back.name_len, "furuta", 6);
    }
    {
        pr_state_t m, back;
        memset(&m, 0, sizeof m);
        m.t_us = 1000000u;
        m.status = PR_STATUS_ENABLED | PR_STATUS_STREAMING;
        m.last_cmd_seq = PR_NO_COMMAND_SEQ;
        m.rx_errors = 3;
        m.n_sensors = 4;
        m.sensors[0] = 0.0f;
        m.sensors[1] = 3.14159274f;
        m.sensors[2] = -1.5f;
        m.sensors[3] = 2.0f;
        CHECK_EQ(pr_state_pack(&m, p, sizeof p, &len), PR_OK);
        CHECK_EQ(len, PR_STATE_LEN(4u));
        check_frame(PR_MSG_STATE, 2, p, len, FRAME(STATE_4), &fr, buf);
        CHECK_EQ(pr_state_unpack(fr.payload, fr.payload_len, &back), PR_OK);
        CHECK_EQ(back.t_us, 1000000u);
        CHECK_EQ(back.status, 0x9);
        CHECK_EQ(back.last_cmd_seq, 0xFFFFFFFFu);
        CHECK_EQ(back.rx_errors, 3);
        CHECK_EQ(back.n_sensors, 4);
        CHECK(same_float_bits(back.sensors[1], 3.14159274f));
        CHECK(same_float_bits(back.sensors[2], -1.5f));
    }
    {
        pr_command_t m, back;
        memset(&m, 0, sizeof m);
        m.state_seq = 2;
        m.n_actuators = 1;
        m.value[0] = -2.5f;
        CHECK_EQ(pr_command_pack(&m, p, sizeof p, &len), PR_OK);
        check_frame(PR_MSG_COMMAND, 7, p, len, FRAME(COMMAND_1), &fr, buf);
        CHECK_EQ(pr_command_unpack(fr.payload, fr.payload_len, &back), PR_OK);
        CHECK_EQ(back.state_seq, 2);
        CHECK_EQ(back.n_actuators, 1);
        CHECK(same_float_bits(back.value[0], -2.5f));
    }
    check_frame(PR_MSG_ENABLE, 0x01020304u, p, 0, FRAME(ENABLE), &fr, buf);
    check_frame(PR_MSG_DISABLE, 0xFFFFFFFFu, p, 0, FRAME(DISABLE), &fr, buf);
    {
        pr_ack_t m = {0x01020304u, PR_MSG_ENABLE, 0}, back;
        CHECK_EQ(pr_ack_pack(&m, p, sizeof p, &len), PR_OK);
        check_frame(PR_MSG_ACK, 3, p, len, FRAME(ACK), &fr, buf);
        CHECK_EQ(pr_ack_unpack(fr.payload, fr.payload_len, &back), PR_OK);
        CHECK_EQ(back.acked_seq, 0x01020304u);
        CHECK_EQ(back.acked_type, PR_MSG_ENABLE);
        CHECK_EQ(back.result, 0);
    }
    {
        pr_fault_t m, back;
        memset(&m, 0, sizeof m);
        m.code = PR_FAULT_WATCHDOG;
        m.t_us = 0x0102030405060708ull;
        m.len = 5;
        memcpy(m.text, "wdog!", 5);
        CHECK_EQ(pr_fault_pack(&m, p, sizeof p, &len), PR_OK);
        check_frame(PR_MSG_FAULT, 4, p, len, FRAME(FAULT), &fr, buf);
        CHECK_EQ(pr_fault_unpack(fr.payload, fr.payload_len, &back), PR_OK);
        CHECK_EQ(back.code, 1);
        CHECK_EQ(back.t_us, 0x0102030405060708ull);
        CHECK_BYTES(back.text, back.len, "wdog!", 5);
    }
}

static void test_pack_limits(void)
{
    uint8_t p[PR_MAX_PAYLOAD];
    uint8_t big[PR_MAX_PAYLOAD] = {0};
    size_t len = 0;
    pr_info_t info;
    pr_state_t st;
    pr_command_t cmd;
    pr_fault_t fault;

    memset(&info, 0, sizeof info);
    info.name_len = PR_MAX_NAME_LEN + 1u;
    CHECK_EQ(pr_info_pack(&info, p, sizeof p, &len), PR_ERR_ARG);
    info.name_len = 3;
    CHECK_EQ(pr_info_pack(&info, p, PR_INFO_LEN(3u) - 1u, &len), PR_ERR_CAPACITY);
    CHECK_EQ(pr_info_pack(&info, p, PR_INFO_LEN(3u), &len), PR_OK);

    memset(&st, 0, sizeof st);
    st.n_sensors = PR_MAX_SENSORS + 1;
    CHECK_EQ(pr_state_pack(&st, p, sizeof p, &len), PR_ERR_ARG);
    /* A STATE with more sensors than the struct holds is valid on the wire, not here. */
    CHECK_EQ(pr_state_unpack(big, PR_STATE_LEN(PR_MAX_SENSORS + 1u), &st), PR_ERR_CAPACITY);
    CHECK_EQ(pr_state_unpack(big, PR_STATE_LEN(PR_MAX_SENSORS), &st), PR_OK);
    CHECK_EQ(pr_state_unpack(big, PR_STATE_LEN(1u) + 1u, &st), PR_ERR_LENGTH);

    memset(&cmd, 0, sizeof cmd);
    cmd.n_actuators = PR_MAX_ACTUATORS + 1;
    CHECK_EQ(pr_command_pack(&cmd, p, sizeof p, &len), PR_ERR_ARG);
    CHECK_EQ(pr_command_unpack(big, PR_COMMAND_LEN(PR_MAX_ACTUATORS + 1u), &cmd), PR_ERR_CAPACITY);
    CHECK_EQ(pr_command_unpack(big, 3, &cmd), PR_ERR_LENGTH);

    memset(&fault, 0, sizeof fault);
    fault.len = PR_MAX_FAULT_TEXT + 1u;
    CHECK_EQ(pr_fault_pack(&fault, p, sizeof p, &len), PR_ERR_ARG);
    fault.len = PR_MAX_FAULT_TEXT;
    CHECK_EQ(pr_fault_pack(&fault, p, sizeof p, &len), PR_OK);
    CHECK_EQ(len, 59);
}

static void test_length_rules(void)
{
    uint8_t p[PR_MAX_PAYLOAD] = {0};
    const pr_shape_t furuta = {4, 1};

    CHECK_EQ(pr_check_payload(PR_MSG_HELLO, p, 2, NULL), PR_OK);
    CHECK_EQ(pr_check_payload(PR_MSG_HELLO, p, 1, NULL), PR_ERR_LENGTH);
    CHECK_EQ(pr_check_payload(PR_MSG_HELLO, p, 3, NULL), PR_ERR_LENGTH);
    CHECK_EQ(pr_check_payload(PR_MSG_ENABLE, p, 0, NULL), PR_OK);
    CHECK_EQ(pr_check_payload(PR_MSG_ENABLE, p, 1, NULL), PR_ERR_LENGTH);
    CHECK_EQ(pr_check_payload(PR_MSG_DISABLE, p, 0, NULL), PR_OK);
    CHECK_EQ(pr_check_payload(PR_MSG_DISABLE, p, 4, NULL), PR_ERR_LENGTH);
    CHECK_EQ(pr_check_payload(PR_MSG_ACK, p, 6, NULL), PR_OK);
    CHECK_EQ(pr_check_payload(PR_MSG_ACK, p, 5, NULL), PR_ERR_LENGTH);
    /* STATE: 18 + 4 n, and n must match a given shape. */
    CHECK_EQ(pr_check_payload(PR_MSG_STATE, p, 18, NULL), PR_OK);
    CHECK_EQ(pr_check_payload(PR_MSG_STATE, p, 34, NULL), PR_OK);
    CHECK_EQ(pr_check_payload(PR_MSG_STATE, p, 34, &furuta), PR_OK);
    CHECK_EQ(pr_check_payload(PR_MSG_STATE, p, 30, &furuta), PR_ERR_LENGTH);
    CHECK_EQ(pr_check_payload(PR_MSG_STATE, p, 17, NULL), PR_ERR_LENGTH);
    CHECK_EQ(pr_check_payload(PR_MSG_STATE, p, 19, NULL), PR_ERR_LENGTH);
    /* COMMAND: 4 + 4 n. */
    CHECK_EQ(pr_check_payload(PR_MSG_COMMAND, p, 8, &furuta), PR_OK);
    CHECK_EQ(pr_check_payload(PR_MSG_COMMAND, p, 12, &furuta), PR_ERR_LENGTH);
    CHECK_EQ(pr_check_payload(PR_MSG_COMMAND, p, 12, NULL), PR_OK);
    CHECK_EQ(pr_check_payload(PR_MSG_COMMAND, p, 4, NULL), PR_OK);
    CHECK_EQ(pr_check_payload(PR_MSG_COMMAND, p, 3, NULL), PR_ERR_LENGTH);
    CHECK_EQ(pr_check_payload(PR_MSG_COMMAND, p, 9, NULL), PR_ERR_LENGTH);
    /* INFO: 17 + name_len, name_len <= 32, read from the payload. */
    p[16] = 6;
    CHECK_EQ(pr_check_payload(PR_MSG_INFO, p, 23, NULL), PR_OK);
    CHECK_EQ(pr_check_payload(PR_MSG_INFO, p, 22, NULL), PR_ERR_LENGTH);
    CHECK_EQ(pr_check_payload(PR_MSG_INFO, p, 16, NULL), PR_ERR_LENGTH);
    p[16] = 33;
    CHECK_EQ(pr_check_payload(PR_MSG_INFO, p, 50, NULL), PR_ERR_LENGTH);
    /* FAULT: 11 + len, len <= 48. */
    p[10] = 48;
    CHECK_EQ(pr_check_payload(PR_MSG_FAULT, p, 59, NULL), PR_OK);
    p[10] = 49;
    CHECK_EQ(pr_check_payload(PR_MSG_FAULT, p, 60, NULL), PR_ERR_LENGTH);
    p[10] = 0;
    CHECK_EQ(pr_check_payload(PR_MSG_FAULT, p, 11, NULL), PR_OK);
    CHECK_EQ(pr_check_payload(PR_MSG_FAULT, p, 10, NULL), PR_ERR_LENGTH);
    /* Unknown types. */
    CHECK_EQ(pr_check_payload(0x00, p, 0, NULL), PR_ERR_TYPE);
    CHECK_EQ(pr_check_payload(0x03, p, 0, NULL), PR_ERR_TYPE);
    CHECK_EQ(pr_check_payload(0xFF, p, 0, NULL), PR_ERR_TYPE);
}

static void test_frame_sizes(void)
{
    uint8_t p[PR_MAX_PAYLOAD + 1u];
    uint8_t out[PR_MAX_FRAME + 8u];
    uint8_t buf[PR_MAX_RAW];
    pr_frame_t fr;
    size_t n;

    memset(p, 0x11, sizeof p);
    /* The longest body encodes; one more payload byte does not. */
    n = pr_frame_encode(PR_MSG_COMMAND, 0x01010101u, p, PR_MAX_PAYLOAD, out, sizeof out);
    CHECK(n > 0 && n <= PR_MAX_FRAME);
    CHECK_EQ(pr_frame_decode(out, n - 1u, buf, sizeof buf, NULL, &fr), PR_OK);
    CHECK_EQ(fr.payload_len, PR_MAX_PAYLOAD);
    CHECK_EQ(pr_frame_encode(PR_MSG_COMMAND, 0, p, PR_MAX_PAYLOAD + 1u, out, sizeof out), 0);
    /* Output capacity: PR_FRAME_CAP is enough, a frame never writes past cap. */
    n = pr_frame_encode(PR_MSG_ENABLE, 0, p, 0, out, PR_FRAME_CAP(PR_HEADER_LEN));
    CHECK_EQ(n, 12);
    CHECK_EQ(pr_frame_encode(PR_MSG_ENABLE, 0, p, 0, out, 11), 0);
    CHECK_EQ(pr_frame_encode(PR_MSG_ENABLE, 0, p, 0, out, 12), 12);
    /* A too-small decode buffer reports LONG, not a crash. */
    n = pr_frame_encode(PR_MSG_COMMAND, 1, p, 40, out, sizeof out);
    CHECK_EQ(pr_frame_decode(out, n - 1u, buf, 20, NULL, &fr), PR_ERR_LONG);
}

/* Push bytes; return the number of frames accepted, and the last event. */
static int push_all(pr_rx_t *rx, const uint8_t *p, size_t n, int *drops)
{
    int frames = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        pr_rx_event_t ev = pr_rx_push(rx, p[i]);
        if (ev == PR_RX_FRAME) frames++;
        if (ev == PR_RX_DROP) (*drops)++;
    }
    return frames;
}

/* Build a frame from an arbitrary body (valid CRC), e.g. with a bad version. */
static size_t frame_from_body(const uint8_t *body, size_t n, uint8_t *out, size_t cap)
{
    uint8_t raw[PR_MAX_RAW + 16u];
    size_t len;
    memcpy(raw, body, n);
    pr_put_u32(raw + n, pr_crc32(body, n));
    len = pr_cobs_encode(raw, n + 4u, out, cap - 1u);
    out[len] = 0;
    return len + 1u;
}

static void test_receiver(void)
{
    uint8_t buf[PR_RX_BUF_FULL];
    uint8_t small[PR_HEADER_LEN + PR_COMMAND_LEN(2u) + PR_CRC_LEN]; /* fits a 2-actuator COMMAND */
    uint8_t f[PR_MAX_FRAME + 16u];
    uint8_t body[PR_MAX_BODY + 8u];
    pr_rx_t rx;
    int drops = 0;
    size_t n;
    const pr_shape_t furuta = {4, 1};

    pr_rx_init(&rx, buf, sizeof buf, NULL);
    /* A valid frame, its fields visible until the next push. */
    CHECK_EQ(push_all(&rx, FRAME(COMMAND_1), &drops), 1);
    CHECK_EQ(rx.frame.header.type, PR_MSG_COMMAND);
    CHECK_EQ(rx.frame.header.seq, 7);
    CHECK_EQ(rx.frame.payload_len, 8);
    CHECK_EQ(drops, 0);
    /* Idle zeros are not drops. */
    CHECK_EQ(push_all(&rx, (const uint8_t *)"\x00\x00\x00", 3, &drops), 0);
    CHECK_EQ(drops, 0);
    /* Back to back, and a leading 0x00 is harmless. */
    CHECK_EQ(push_all(&rx, (const uint8_t *)"\x00", 1, &drops), 0);
    CHECK_EQ(push_all(&rx, FRAME(ENABLE), &drops) + push_all(&rx, FRAME(DISABLE), &drops), 2);
    CHECK_EQ(drops, 0);
    /* Garbage, delimited: one drop, then resync. */
    CHECK_EQ(push_all(&rx, (const uint8_t *)"\x12\x34\x56\x00", 4, &drops), 0);
    CHECK_EQ(drops, 1);
    CHECK_EQ(rx.last_err, PR_ERR_COBS);
    CHECK_EQ(push_all(&rx, FRAME(HELLO_500), &drops), 1);
    /* Garbage glued to a frame (no delimiter between): both lost as one drop. */
    drops = 0;
    CHECK_EQ(push_all(&rx, (const uint8_t *)"\x05\x05", 2, &drops), 0);
    CHECK_EQ(push_all(&rx, FRAME(HELLO_500), &drops), 0);
    CHECK_EQ(drops, 1);
    /* Corrupt CRC. */
    drops = 0;
    memcpy(f, ENABLE, sizeof ENABLE - 1u);
    f[8] ^= 0x40;
    CHECK_EQ(push_all(&rx, f, sizeof ENABLE - 1u, &drops), 0);
    CHECK_EQ(rx.last_err, PR_ERR_CRC);
    /* Too short: a 9-byte raw body + crc. */
    n = pr_cobs_encode((const uint8_t *)"\x01\x30\x01\x02\x03\x04\x05\x06\x07", 9, f, sizeof f);
    f[n] = 0;
    CHECK_EQ(push_all(&rx, f, n + 1u, &drops), 0);
    CHECK_EQ(rx.last_err, PR_ERR_SHORT);
    /* Version 2, unknown type, wrong length: all CRC-valid, all dropped. */
    memcpy(body, "\x02\x30\x00\x00\x00\x00", 6);
    n = frame_from_body(body, 6, f, sizeof f);
    CHECK_EQ(push_all(&rx, f, n, &drops), 0);
    CHECK_EQ(rx.last_err, PR_ERR_VERSION);
    memcpy(body, "\x01\x7f\x00\x00\x00\x00", 6);
    n = frame_from_body(body, 6, f, sizeof f);
    CHECK_EQ(push_all(&rx, f, n, &drops), 0);
    CHECK_EQ(rx.last_err, PR_ERR_TYPE);
    memcpy(body, "\x01\x30\x00\x00\x00\x00\x00", 7);
    n = frame_from_body(body, 7, f, sizeof f);
    CHECK_EQ(push_all(&rx, f, n, &drops), 0);
    CHECK_EQ(rx.last_err, PR_ERR_LENGTH);
    /* A body of 251 bytes with a valid CRC, 256 bytes encoded: a length error. */
    memset(body, 0x00, sizeof body);
    body[0] = 1;
    body[1] = PR_MSG_COMMAND;
    n = frame_from_body(body, PR_MAX_BODY + 1u, f, sizeof f);
    CHECK_EQ(n, PR_MAX_FRAME);
    CHECK_EQ(push_all(&rx, f, n, &drops), 0);
    CHECK_EQ(rx.last_err, PR_ERR_LENGTH);
    /* Without zeros the same body needs 257 encoded bytes: overlong, before any decoding. */
    memset(body, 0x01, sizeof body);
    body[1] = PR_MSG_COMMAND;
    n = frame_from_body(body, PR_MAX_BODY + 1u, f, sizeof f);
    CHECK_EQ(n, PR_MAX_FRAME + 1u);
    CHECK_EQ(push_all(&rx, f, n, &drops), 0);
    CHECK_EQ(rx.last_err, PR_ERR_LONG);
    /* 1000 non-zero bytes then 0x00: one drop, no overrun. */
    drops = 0;
    memset(body, 0x01, sizeof body);
    for (n = 0; n < 4; n++) {
        CHECK_EQ(push_all(&rx, body, 250, &drops), 0);
    }
    CHECK_EQ(push_all(&rx, (const uint8_t *)"\x00", 1, &drops), 0);
    CHECK_EQ(drops, 1);
    CHECK_EQ(push_all(&rx, FRAME(HELLO_500), &drops), 1);

    /* A shaped receiver with a small buffer: the wrong counts and long frames drop. */
    pr_rx_init(&rx, small, sizeof small, &furuta);
    drops = 0;
    CHECK_EQ(push_all(&rx, FRAME(COMMAND_1), &drops), 1);
    CHECK_EQ(push_all(&rx, FRAME(STATE_4), &drops), 0); /* 4 + 46 bytes > small */
    CHECK_EQ(rx.last_err, PR_ERR_LONG);
    memset(body, 0, sizeof body);
    body[0] = 1;
    body[1] = PR_MSG_COMMAND;
    n = frame_from_body(body, PR_HEADER_LEN + PR_COMMAND_LEN(2u), f, sizeof f);
    CHECK_EQ(push_all(&rx, f, n, &drops), 0);
    CHECK_EQ(rx.last_err, PR_ERR_LENGTH);
    CHECK_EQ(push_all(&rx, FRAME(ENABLE), &drops), 1);
}

int main(void)
{
    test_messages_exact();
    test_pack_limits();
    test_length_rules();
    test_frame_sizes();
    test_receiver();
    TEST_MAIN_END("test_protocol");
}
