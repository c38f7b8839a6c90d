/* pr_protocol: frames, receiver and typed messages of protocol v1; see pr_protocol.h. */
#include "pr_protocol.h"

#include <string.h>

#include "pr_crc32.h"

/* C99 compile-time checks: a negative array size fails the build. */
typedef char pr_assert_float_is_32_bits[(sizeof(float) == 4u) ? 1 : -1];
typedef char pr_assert_state_fits[(PR_HEADER_LEN + PR_STATE_LEN(PR_MAX_SENSORS) <= PR_MAX_BODY) ? 1 : -1];
typedef char pr_assert_command_fits[(PR_HEADER_LEN + PR_COMMAND_LEN(PR_MAX_ACTUATORS) <= PR_MAX_BODY) ? 1 : -1];
typedef char pr_assert_counts_fit_u8[(PR_MAX_SENSORS < 255 && PR_MAX_ACTUATORS < 255) ? 1 : -1];

const char *pr_err_name(pr_err_t err)
{
    switch (err) {
    case PR_OK: return "ok";
    case PR_ERR_LONG: return "overlong";
    case PR_ERR_COBS: return "cobs";
    case PR_ERR_SHORT: return "short";
    case PR_ERR_CRC: return "crc";
    case PR_ERR_VERSION: return "version";
    case PR_ERR_TYPE: return "type";
    case PR_ERR_LENGTH: return "length";
    case PR_ERR_DIRECTION: return "direction";
    case PR_ERR_CAPACITY: return "capacity";
    case PR_ERR_ARG: return "arg";
    }
    return "?";
}

/* ---- Field helpers ---------------------------------------------------------------- */

void pr_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

void pr_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

void pr_put_u64(uint8_t *p, uint64_t v)
{
    pr_put_u32(p, (uint32_t)v);
    pr_put_u32(p + 4, (uint32_t)(v >> 32));
}

void pr_put_f32(uint8_t *p, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    pr_put_u32(p, bits);
}

uint16_t pr_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | ((uint16_t)p[1] << 8));
}

uint32_t pr_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

uint64_t pr_get_u64(const uint8_t *p)
{
    return (uint64_t)pr_get_u32(p) | ((uint64_t)pr_get_u32(p + 4) << 32);
}

float pr_get_f32(const uint8_t *p)
{
    uint32_t bits = pr_get_u32(p);
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

int pr_f32_is_finite(float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return (bits & 0x7F800000u) != 0x7F800000u;
}

float pr_f32_nan(void)
{
    const uint32_t bits = 0x7FC00000u;
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* ---- Length rules ----------------------------------------------------------------- */

int pr_msg_type_known(uint8_t type)
{
    switch (type) {
    case PR_MSG_HELLO:
    case PR_MSG_INFO:
    case PR_MSG_STATE:
    case PR_MSG_COMMAND:
    case PR_MSG_ENABLE:
    case PR_MSG_DISABLE:
    case PR_MSG_ACK:
    case PR_MSG_FAULT:
        return 1;
    default:
        return 0;
    }
}

static int counts_match(uint8_t expected, size_t actual)
{
    return expected == PR_SHAPE_ANY || (size_t)expected == actual;
}

pr_err_t pr_check_payload(uint8_t type, const uint8_t *payload, size_t len,
                          const pr_shape_t *shape)
{
    const pr_shape_t any = {PR_SHAPE_ANY, PR_SHAPE_ANY};

    if (shape == NULL) {
        shape = &any;
    }
    switch (type) {
    case PR_MSG_HELLO:
        return len == PR_HELLO_LEN ? PR_OK : PR_ERR_LENGTH;
    case PR_MSG_INFO:
        if (len < PR_INFO_LEN(0u) || payload[PR_INFO_FIXED_LEN - 1u] > PR_MAX_NAME_LEN ||
            len != PR_INFO_LEN((size_t)payload[PR_INFO_FIXED_LEN - 1u])) {
            return PR_ERR_LENGTH;
        }
        return PR_OK;
    case PR_MSG_STATE:
        if (len < PR_STATE_LEN(0u) || (len - PR_STATE_LEN(0u)) % 4u != 0u ||
            !counts_match(shape->n_sensors, (len - PR_STATE_LEN(0u)) / 4u)) {
            return PR_ERR_LENGTH;
        }
        return PR_OK;
    case PR_MSG_COMMAND:
        if (len < PR_COMMAND_LEN(0u) || (len - PR_COMMAND_LEN(0u)) % 4u != 0u ||
            !counts_match(shape->n_actuators, (len - PR_COMMAND_LEN(0u)) / 4u)) {
            return PR_ERR_LENGTH;
        }
        return PR_OK;
    case PR_MSG_ENABLE:
    case PR_MSG_DISABLE:
        return len == 0u ? PR_OK : PR_ERR_LENGTH;
    case PR_MSG_ACK:
        return len == PR_ACK_LEN ? PR_OK : PR_ERR_LENGTH;
    case PR_MSG_FAULT:
        if (len < PR_FAULT_LEN(0u) || payload[10] > PR_MAX_FAULT_TEXT ||
            len != PR_FAULT_LEN((size_t)payload[10])) {
            return PR_ERR_LENGTH;
        }
        return PR_OK;
    default:
        return PR_ERR_TYPE;
    }
}

/* ---- Frames ----------------------------------------------------------------------- */

static void enc_put_bytes(pr_cobs_enc_t *enc, const uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        pr_cobs_enc_put(enc, p[i]);
    }
}

size_t pr_frame_encode(uint8_t type, uint32_t seq, const uint8_t *payload, size_t len,
                       uint8_t *out, size_t cap)
{
    uint8_t header[PR_HEADER_LEN];
    uint8_t crc_le[PR_CRC_LEN];
    pr_cobs_enc_t enc;
    uint32_t crc;
    size_t n;

    if (len > PR_MAX_PAYLOAD || cap < 1u) {
        return 0;
    }
    header[0] = (uint8_t)PR_PROTOCOL_VERSION;
    header[1] = type;
    pr_put_u32(header + 2, seq);
    crc = pr_crc32(header, sizeof header);
    crc = pr_crc32_update(crc, payload, len);
    pr_put_u32(crc_le, crc);

    /* Stuff straight into out, leaving one byte for the delimiter. */
    pr_cobs_enc_begin(&enc, out, cap - 1u);
    enc_put_bytes(&enc, header, sizeof header);
    enc_put_bytes(&enc, payload, len);
    enc_put_bytes(&enc, crc_le, sizeof crc_le);
    n = pr_cobs_enc_end(&enc);
    if (n == 0u) {
        return 0;
    }
    out[n] = 0x00;
    return n + 1u;
}

/* Validate a COBS-decoded body || crc of n bytes held in buf. */
static pr_err_t check_raw(const uint8_t *buf, size_t n, const pr_shape_t *shape,
                          pr_frame_t *frame)
{
    size_t body_len;
    pr_err_t err;

    /* The order of docs/protocol.md: short, CRC, version, type, length. */
    if (n < PR_HEADER_LEN + PR_CRC_LEN) {
        return PR_ERR_SHORT;
    }
    body_len = n - PR_CRC_LEN;
    if (pr_crc32(buf, body_len) != pr_get_u32(buf + body_len)) {
        return PR_ERR_CRC;
    }
    if (buf[0] != PR_PROTOCOL_VERSION) {
        return PR_ERR_VERSION;
    }
    if (!pr_msg_type_known(buf[1])) {
        return PR_ERR_TYPE;
    }
    if (body_len > PR_MAX_BODY) {
        return PR_ERR_LENGTH;
    }
    err = pr_check_payload(buf[1], buf + PR_HEADER_LEN, body_len - PR_HEADER_LEN, shape);
    if (err != PR_OK) {
        return err;
    }
    frame->header.version = buf[0];
    frame->header.type = buf[1];
    frame->header.seq = pr_get_u32(buf + 2);
    frame->payload = buf + PR_HEADER_LEN;
    frame->payload_len = body_len - PR_HEADER_LEN;
    return PR_OK;
}

pr_err_t pr_frame_decode(const uint8_t *enc, size_t n, uint8_t *buf, size_t cap,
                         const pr_shape_t *shape, pr_frame_t *frame)
{
    pr_cobs_dec_t dec;
    size_t raw_len;
    size_t i;

    if (n > PR_MAX_ENCODED) {
        return PR_ERR_LONG;
    }
    pr_cobs_dec_begin(&dec, buf, cap);
    for (i = 0; i < n; i++) {
        pr_cobs_dec_put(&dec, enc[i]);
    }
    if (dec.error && dec.len >= cap) {
        return PR_ERR_LONG;
    }
    if (pr_cobs_dec_end(&dec, &raw_len) != 0) {
        return PR_ERR_COBS;
    }
    return check_raw(buf, raw_len, shape, frame);
}

/* ---- Receiver --------------------------------------------------------------------- */

void pr_rx_init(pr_rx_t *rx, uint8_t *buf, size_t cap, const pr_shape_t *shape)
{
    rx->buf = buf;
    rx->cap = cap;
    rx->n_in = 0;
    if (shape != NULL) {
        rx->shape = *shape;
    } else {
        rx->shape.n_sensors = PR_SHAPE_ANY;
        rx->shape.n_actuators = PR_SHAPE_ANY;
    }
    memset(&rx->frame, 0, sizeof rx->frame);
    rx->last_err = PR_OK;
    pr_cobs_dec_begin(&rx->dec, buf, cap);
}

pr_rx_event_t pr_rx_push(pr_rx_t *rx, uint8_t byte)
{
    pr_rx_event_t ev;
    size_t raw_len;

    if (byte != 0x00) {
        if (rx->n_in <= PR_MAX_ENCODED) {
            rx->n_in++; /* saturates: only "overlong or not" matters */
        }
        pr_cobs_dec_put(&rx->dec, byte);
        return PR_RX_NONE;
    }
    if (rx->n_in == 0u) {
        return PR_RX_NONE; /* idle line: 0x00 after 0x00 */
    }
    if (rx->n_in > PR_MAX_ENCODED || (rx->dec.error && rx->dec.len >= rx->cap)) {
        rx->last_err = PR_ERR_LONG; /* overlong, or more than the buffer holds */
    } else if (pr_cobs_dec_end(&rx->dec, &raw_len) != 0) {
        rx->last_err = PR_ERR_COBS;
    } else {
        rx->last_err = check_raw(rx->buf, raw_len, &rx->shape, &rx->frame);
    }
    ev = rx->last_err == PR_OK ? PR_RX_FRAME : PR_RX_DROP;
    rx->n_in = 0;
    pr_cobs_dec_begin(&rx->dec, rx->buf, rx->cap);
    return ev;
}

/* ---- Typed messages --------------------------------------------------------------- */

pr_err_t pr_hello_pack(const pr_hello_t *m, uint8_t *out, size_t cap, size_t *len)
{
    if (cap < PR_HELLO_LEN) {
        return PR_ERR_CAPACITY;
    }
    pr_put_u16(out, m->state_rate_hz);
    *len = PR_HELLO_LEN;
    return PR_OK;
}

pr_err_t pr_hello_unpack(const uint8_t *p, size_t len, pr_hello_t *m)
{
    if (len != PR_HELLO_LEN) {
        return PR_ERR_LENGTH;
    }
    m->state_rate_hz = pr_get_u16(p);
    return PR_OK;
}

pr_err_t pr_info_pack(const pr_info_t *m, uint8_t *out, size_t cap, size_t *len)
{
    if (m->name_len > PR_MAX_NAME_LEN) {
        return PR_ERR_ARG;
    }
    if (cap < PR_INFO_LEN((size_t)m->name_len)) {
        return PR_ERR_CAPACITY;
    }
    out[0] = m->protocol_version;
    out[1] = m->firmware_version[0];
    out[2] = m->firmware_version[1];
    out[3] = m->firmware_version[2];
    pr_put_u32(out + 4, m->boot_id);
    out[8] = m->n_sensors;
    out[9] = m->n_actuators;
    pr_put_u16(out + 10, m->min_rate_hz);
    pr_put_u16(out + 12, m->max_rate_hz);
    pr_put_u16(out + 14, m->watchdog_ms);
    out[16] = m->name_len;
    memcpy(out + 17, m->name, m->name_len);
    *len = PR_INFO_LEN((size_t)m->name_len);
    return PR_OK;
}

pr_err_t pr_info_unpack(const uint8_t *p, size_t len, pr_info_t *m)
{
    if (len < PR_INFO_LEN(0u) || p[16] > PR_MAX_NAME_LEN ||
        len != PR_INFO_LEN((size_t)p[16])) {
        return PR_ERR_LENGTH;
    }
    m->protocol_version = p[0];
    m->firmware_version[0] = p[1];
    m->firmware_version[1] = p[2];
    m->firmware_version[2] = p[3];
    m->boot_id = pr_get_u32(p + 4);
    m->n_sensors = p[8];
    m->n_actuators = p[9];
    m->min_rate_hz = pr_get_u16(p + 10);
    m->max_rate_hz = pr_get_u16(p + 12);
    m->watchdog_ms = pr_get_u16(p + 14);
    m->name_len = p[16];
    memcpy(m->name, p + 17, m->name_len);
    return PR_OK;
}

pr_err_t pr_state_pack(const pr_state_t *m, uint8_t *out, size_t cap, size_t *len)
{
    size_t i;

    if (m->n_sensors > PR_MAX_SENSORS) {
        return PR_ERR_ARG;
    }
    if (cap < PR_STATE_LEN((size_t)m->n_sensors)) {
        return PR_ERR_CAPACITY;
    }
    pr_put_u64(out, m->t_us);
    pr_put_u16(out + 8, m->status);
    pr_put_u16(out + 10, m->fault);
    pr_put_u32(out + 12, m->last_cmd_seq);
    pr_put_u16(out + 16, m->rx_errors);
    for (i = 0; i < m->n_sensors; i++) {
        pr_put_f32(out + PR_STATE_LEN(0u) + 4u * i, m->sensors[i]);
    }
    *len = PR_STATE_LEN((size_t)m->n_sensors);
    return PR_OK;
}

pr_err_t pr_state_unpack(const uint8_t *p, size_t len, pr_state_t *m)
{
    size_t n;
    size_t i;

    if (len < PR_STATE_LEN(0u) || (len - PR_STATE_LEN(0u)) % 4u != 0u) {
        return PR_ERR_LENGTH;
    }
    n = (len - PR_STATE_LEN(0u)) / 4u;
    if (n > PR_MAX_SENSORS) {
        return PR_ERR_CAPACITY;
    }
    m->t_us = pr_get_u64(p);
    m->status = pr_get_u16(p + 8);
    m->fault = pr_get_u16(p + 10);
    m->last_cmd_seq = pr_get_u32(p + 12);
    m->rx_errors = pr_get_u16(p + 16);
    m->n_sensors = (uint8_t)n;
    for (i = 0; i < n; i++) {
        m->sensors[i] = pr_get_f32(p + PR_STATE_LEN(0u) + 4u * i);
    }
    return PR_OK;
}

pr_err_t pr_command_pack(const pr_command_t *m, uint8_t *out, size_t cap, size_t *len)
{
    size_t i;

    if (m->n_actuators > PR_MAX_ACTUATORS) {
        return PR_ERR_ARG;
    }
    if (cap < PR_COMMAND_LEN((size_t)m->n_actuators)) {
        return PR_ERR_CAPACITY;
    }
    pr_put_u32(out, m->state_seq);
    for (i = 0; i < m->n_actuators; i++) {
        pr_put_f32(out + 4u + 4u * i, m->value[i]);
    }
    *len = PR_COMMAND_LEN((size_t)m->n_actuators);
    return PR_OK;
}

pr_err_t pr_command_unpack(const uint8_t *p, size_t len, pr_command_t *m)
{
    size_t n;
    size_t i;

    if (len < PR_COMMAND_LEN(0u) || (len - PR_COMMAND_LEN(0u)) % 4u != 0u) {
        return PR_ERR_LENGTH;
    }
    n = (len - PR_COMMAND_LEN(0u)) / 4u;
    if (n > PR_MAX_ACTUATORS) {
        return PR_ERR_CAPACITY;
    }
    m->state_seq = pr_get_u32(p);
    m->n_actuators = (uint8_t)n;
    for (i = 0; i < n; i++) {
        m->value[i] = pr_get_f32(p + 4u + 4u * i);
    }
    return PR_OK;
}

pr_err_t pr_ack_pack(const pr_ack_t *m, uint8_t *out, size_t cap, size_t *len)
{
    if (cap < PR_ACK_LEN) {
        return PR_ERR_CAPACITY;
    }
    pr_put_u32(out, m->acked_seq);
    out[4] = m->acked_type;
    out[5] = m->result;
    *len = PR_ACK_LEN;
    return PR_OK;
}

pr_err_t pr_ack_unpack(const uint8_t *p, size_t len, pr_ack_t *m)
{
    if (len != PR_ACK_LEN) {
        return PR_ERR_LENGTH;
    }
    m->acked_seq = pr_get_u32(p);
    m->acked_type = p[4];
    m->result = p[5];
    return PR_OK;
}

pr_err_t pr_fault_pack(const pr_fault_t *m, uint8_t *out, size_t cap, size_t *len)
{
    if (m->len > PR_MAX_FAULT_TEXT) {
        return PR_ERR_ARG;
    }
    if (cap < PR_FAULT_LEN((size_t)m->len)) {
        return PR_ERR_CAPACITY;
    }
    pr_put_u16(out, m->code);
    pr_put_u64(out + 2, m->t_us);
    out[10] = m->len;
    memcpy(out + 11, m->text, m->len);
    *len = PR_FAULT_LEN((size_t)m->len);
    return PR_OK;
}

pr_err_t pr_fault_unpack(const uint8_t *p, size_t len, pr_fault_t *m)
{
    if (len < PR_FAULT_LEN(0u) || p[10] > PR_MAX_FAULT_TEXT ||
        len != PR_FAULT_LEN((size_t)p[10])) {
        return PR_ERR_LENGTH;
    }
    m->code = pr_get_u16(p);
    m->t_us = pr_get_u64(p + 2);
    m->len = p[10];
    memcpy(m->text, p + 11, m->len);
    return PR_OK;
}
