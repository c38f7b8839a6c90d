/*
 * pr_protocol: the ppo-robot wire protocol, version 1 (docs/protocol.md).
 *
 * Owns the frame layer (header, CRC, COBS, the 0x00 delimiter), the byte-wise frame
 * receiver with its drop reasons, the payload length rules of each message type, and
 * the typed messages with their exact byte layout. It does not decide what a message
 * means: that is pr_controller's job (or the host's).
 *
 * No dynamic allocation and no floating-point formatting: floats travel as their
 * IEEE-754 binary32 bits, copied, never converted.
 */
#ifndef PR_PROTOCOL_H
#define PR_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "pr_cobs.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Sizes ------------------------------------------------------------------------ */

#define PR_PROTOCOL_VERSION 1u
#define PR_HEADER_LEN 6u
#define PR_CRC_LEN 4u
#define PR_MAX_BODY 250u                                  /* header + payload */
#define PR_MAX_PAYLOAD (PR_MAX_BODY - PR_HEADER_LEN)       /* 244 */
#define PR_MAX_RAW (PR_MAX_BODY + PR_CRC_LEN)              /* 254: what COBS stuffs */
/* The longest frame a receiver accepts: 256 encoded bytes + 0x00. Our encoder (as Python's
 * `cobs`) needs at most 255 + 0x00 (len(body) + 6 on the wire); 256 admits encoders that end
 * a full block with an empty 0x01 block. Anything longer is dropped as overlong. */
#define PR_MAX_ENCODED PR_COBS_MAX_ENCODED(PR_MAX_RAW)     /* 256, without delimiter */
#define PR_MAX_FRAME (PR_MAX_ENCODED + 1u)                 /* 257, with the 0x00 */
/* A receive buffer this size (the most 256 encoded bytes decode to) classifies every drop
 * exactly as docs/protocol.md orders the checks; PR_MAX_RAW is enough to accept any frame. */
#define PR_RX_BUF_FULL (PR_MAX_ENCODED - 1u)               /* 255 */

/* Encoded size (with delimiter) that is always enough for a body of body_len bytes. */
#define PR_FRAME_CAP(body_len) (PR_COBS_MAX_ENCODED((body_len) + PR_CRC_LEN) + 1u)

/* Compile-time capacities of the typed messages; a board may lower them (-D) to save RAM. */
#ifndef PR_MAX_SENSORS
#define PR_MAX_SENSORS 16
#endif
#ifndef PR_MAX_ACTUATORS
#define PR_MAX_ACTUATORS 16
#endif
#define PR_MAX_NAME_LEN 32u
#define PR_MAX_FAULT_TEXT 48u

/*
 * Payload lengths per type. INFO and STATE follow the field tables of docs/protocol.md
 * (17 and 18 fixed bytes); the prose formulas there ("15 + name_len", "20 + 4 * n_sensors")
 * disagree with those tables, see the README.
 */
#define PR_HELLO_LEN 2u
#define PR_INFO_FIXED_LEN 17u
#define PR_INFO_LEN(name_len) (PR_INFO_FIXED_LEN + (name_len))
#define PR_STATE_FIXED_LEN 18u
#define PR_STATE_LEN(n_sensors) (PR_STATE_FIXED_LEN + 4u * (n_sensors))
#define PR_COMMAND_LEN(n_actuators) (4u + 4u * (n_actuators))
#define PR_ACK_LEN 6u
#define PR_FAULT_LEN(text_len) (11u + (text_len))

/* ---- Enumerations ----------------------------------------------------------------- */

typedef enum {
    PR_MSG_HELLO = 0x01,   /* host -> controller */
    PR_MSG_INFO = 0x02,    /* controller -> host */
    PR_MSG_STATE = 0x10,   /* controller -> host */
    PR_MSG_COMMAND = 0x20, /* host -> controller */
    PR_MSG_ENABLE = 0x30,  /* host -> controller */
    PR_MSG_DISABLE = 0x31, /* host -> controller */
    PR_MSG_ACK = 0x32,     /* controller -> host */
    PR_MSG_FAULT = 0x40    /* controller -> host */
} pr_msg_type_t;

typedef enum {
    PR_FAULT_NONE = 0,
    PR_FAULT_WATCHDOG = 1,    /* ENABLED and no valid COMMAND for watchdog_ms */
    PR_FAULT_BAD_COMMAND = 2, /* a COMMAND value not finite or outside the limits */
    PR_FAULT_SENSOR = 3,      /* a sensor read failed */
    PR_FAULT_LIMIT = 4,       /* a sensor left its safe range */
    PR_FAULT_ESTOP = 5        /* an emergency stop input on the board */
} pr_fault_code_t;

/* STATE.status bits. */
#define PR_STATUS_ENABLED 0x0001u
#define PR_STATUS_WATCHDOG 0x0002u
#define PR_STATUS_FAULTED 0x0004u
#define PR_STATUS_STREAMING 0x0008u

#define PR_NO_COMMAND_SEQ 0xFFFFFFFFu /* STATE.last_cmd_seq before the first COMMAND */

/* Why something failed; PR_OK is 0. A receiver checks in the order of docs/protocol.md
 * (overlong, COBS, short, CRC, version, type, length) and counts every drop. */
typedef enum {
    PR_OK = 0,
    PR_ERR_LONG,      /* overlong: more than PR_MAX_ENCODED bytes before the 0x00, or more
                         than the receiver's buffer holds */
    PR_ERR_COBS,      /* invalid COBS (a length code past the end) */
    PR_ERR_SHORT,     /* shorter than header + CRC */
    PR_ERR_CRC,       /* CRC mismatch */
    PR_ERR_VERSION,   /* protocol version other than PR_PROTOCOL_VERSION */
    PR_ERR_TYPE,      /* unknown message type */
    PR_ERR_LENGTH,    /* body over PR_MAX_BODY, or a payload length other than its type's */
    PR_ERR_DIRECTION, /* a known message this receiver does not take (e.g. STATE at the controller) */
    PR_ERR_CAPACITY,  /* does not fit the output buffer or the typed message's arrays */
    PR_ERR_ARG        /* invalid argument (a field beyond the protocol's limits) */
} pr_err_t;

/* A short constant name for an error ("crc", "cobs", ...), for logs. */
const char *pr_err_name(pr_err_t err);

/* ---- Frame layer ------------------------------------------------------------------ */

typedef struct {
    uint8_t version;
    uint8_t type;
    uint32_t seq;
} pr_header_t;

/* A decoded frame: the header and a view of the payload (into the decoder's buffer). */
typedef struct {
    pr_header_t header;
    const uint8_t *payload;
    size_t payload_len;
} pr_frame_t;

/*
 * The message counts a receiver expects, for the length rules of STATE and COMMAND.
 * PR_SHAPE_ANY accepts any count the frame size allows. A NULL shape means both ANY.
 */
#define PR_SHAPE_ANY 0xFFu
typedef struct {
    uint8_t n_sensors;
    uint8_t n_actuators;
} pr_shape_t;

/* Whether type is one of the eight message types of protocol v1. */
int pr_msg_type_known(uint8_t type);

/*
 * Check a payload's length against its type: PR_OK, PR_ERR_TYPE (unknown type) or
 * PR_ERR_LENGTH. INFO and FAULT carry their own text length, so the payload is read.
 */
pr_err_t pr_check_payload(uint8_t type, const uint8_t *payload, size_t len,
                          const pr_shape_t *shape);

/*
 * Build the frame COBS(header || payload || crc32_le) || 0x00 into out (capacity cap).
 * Returns the frame length including the delimiter, or 0 when the body would exceed
 * PR_MAX_BODY or the frame does not fit cap (PR_FRAME_CAP(6 + len) always fits).
 * The payload is not checked against its type, so tests can build malformed frames.
 */
size_t pr_frame_encode(uint8_t type, uint32_t seq, const uint8_t *payload, size_t len,
                       uint8_t *out, size_t cap);

/*
 * Decode one frame given without its 0x00 delimiter. buf (capacity cap; PR_MAX_RAW takes
 * any valid frame, PR_RX_BUF_FULL gives the exact drop reasons) receives body and CRC; on
 * PR_OK, frame->payload points into it.
 */
pr_err_t pr_frame_decode(const uint8_t *enc, size_t n, uint8_t *buf, size_t cap,
                         const pr_shape_t *shape, pr_frame_t *frame);

/* ---- Byte-wise receiver ----------------------------------------------------------- */

typedef enum {
    PR_RX_NONE = 0, /* no frame ended with this byte */
    PR_RX_FRAME,    /* a valid frame ended: rx->frame holds it until the next push */
    PR_RX_DROP      /* a frame ended and was dropped: rx->last_err says why */
} pr_rx_event_t;

/*
 * Decodes COBS as bytes arrive, straight into a buffer the owner provides, so that a
 * controller that only takes short messages can give it a short buffer (a longer frame
 * is dropped as PR_ERR_LONG). Resynchronizes at every 0x00. An empty frame (0x00 right
 * after 0x00) is line idle, not a drop: hosts may send a 0x00 to flush line noise.
 * Fields are private but for frame and last_err.
 */
typedef struct {
    pr_cobs_dec_t dec;
    uint8_t *buf;
    size_t cap;
    size_t n_in;   /* encoded bytes of the current frame so far */
    pr_shape_t shape;
    pr_frame_t frame;
    pr_err_t last_err;
} pr_rx_t;

/* buf: PR_MAX_RAW takes any valid frame, PR_RX_BUF_FULL also gives the exact drop reasons,
 * less drops longer frames as PR_ERR_LONG. shape NULL: any counts. */
void pr_rx_init(pr_rx_t *rx, uint8_t *buf, size_t cap, const pr_shape_t *shape);
pr_rx_event_t pr_rx_push(pr_rx_t *rx, uint8_t byte);

/* ---- Typed messages --------------------------------------------------------------- */

typedef struct {
    uint16_t state_rate_hz;
} pr_hello_t;

typedef struct {
    uint8_t protocol_version;
    uint8_t firmware_version[3]; /* major, minor, patch */
    uint32_t boot_id;
    uint8_t n_sensors;
    uint8_t n_actuators;
    uint16_t min_rate_hz;
    uint16_t max_rate_hz;
    uint16_t watchdog_ms;
    uint8_t name_len;
    char name[PR_MAX_NAME_LEN]; /* name_len bytes of ASCII, not NUL-terminated */
} pr_info_t;

typedef struct {
    uint64_t t_us;
    uint16_t status;
    uint16_t fault;
    uint32_t last_cmd_seq;
    uint16_t rx_errors;
    uint8_t n_sensors;
    float sensors[PR_MAX_SENSORS];
} pr_state_t;

typedef struct {
    uint32_t state_seq;
    uint8_t n_actuators;
    float value[PR_MAX_ACTUATORS];
} pr_command_t;

typedef struct {
    uint32_t acked_seq;
    uint8_t acked_type;
    uint8_t result; /* 0 ok, else the fault code that refused it */
} pr_ack_t;

typedef struct {
    uint16_t code;
    uint64_t t_us;
    uint8_t len;
    char text[PR_MAX_FAULT_TEXT]; /* len bytes of ASCII, not NUL-terminated */
} pr_fault_t;

/*
 * pack: write the payload into out (capacity cap), its length into *len. PR_ERR_ARG when
 * a count or text length is beyond the protocol's limits, PR_ERR_CAPACITY when out is
 * too small.
 * unpack: read a payload; PR_ERR_LENGTH when len is not the type's length, PR_ERR_CAPACITY
 * when a count exceeds the struct's arrays (PR_MAX_SENSORS, PR_MAX_ACTUATORS).
 */
pr_err_t pr_hello_pack(const pr_hello_t *m, uint8_t *out, size_t cap, size_t *len);
pr_err_t pr_hello_unpack(const uint8_t *p, size_t len, pr_hello_t *m);
pr_err_t pr_info_pack(const pr_info_t *m, uint8_t *out, size_t cap, size_t *len);
pr_err_t pr_info_unpack(const uint8_t *p, size_t len, pr_info_t *m);
pr_err_t pr_state_pack(const pr_state_t *m, uint8_t *out, size_t cap, size_t *len);
pr_err_t pr_state_unpack(const uint8_t *p, size_t len, pr_state_t *m);
pr_err_t pr_command_pack(const pr_command_t *m, uint8_t *out, size_t cap, size_t *len);
pr_err_t pr_command_unpack(const uint8_t *p, size_t len, pr_command_t *m);
pr_err_t pr_ack_pack(const pr_ack_t *m, uint8_t *out, size_t cap, size_t *len);
pr_err_t pr_ack_unpack(const uint8_t *p, size_t len, pr_ack_t *m);
pr_err_t pr_fault_pack(const pr_fault_t *m, uint8_t *out, size_t cap, size_t *len);
pr_err_t pr_fault_unpack(const uint8_t *p, size_t len, pr_fault_t *m);

/* ---- Little-endian field helpers (also used by the controller and the tests) -------- */

void pr_put_u16(uint8_t *p, uint16_t v);
void pr_put_u32(uint8_t *p, uint32_t v);
void pr_put_u64(uint8_t *p, uint64_t v);
void pr_put_f32(uint8_t *p, float v);
uint16_t pr_get_u16(const uint8_t *p);
uint32_t pr_get_u32(const uint8_t *p);
uint64_t pr_get_u64(const uint8_t *p);
float pr_get_f32(const uint8_t *p);

/* Whether a float is finite, from its bits (immune to -ffast-math). */
int pr_f32_is_finite(float v);
/* A quiet NaN, built from its bits. */
float pr_f32_nan(void);

#ifdef __cplusplus
}
#endif

#endif /* PR_PROTOCOL_H */
