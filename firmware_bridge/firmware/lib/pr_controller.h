/*
 * pr_controller: the controller side of the wire protocol, as a state machine.
 *
 * Owns what the controller does with each message and with time: the frame receiver and
 * its drop count, HELLO -> INFO and the STATE stream, ENABLE / DISABLE / ACK, applying
 * COMMANDs (only while enabled, only finite and in-limit values), the watchdog, fault
 * latching and FAULT messages. It owns no hardware: a board hands it a pr_hal_t (sensors,
 * actuators, safe state, clock, serial output) and a pr_config_t, and calls
 *
 *     pr_controller_init(&ctl, &cfg, &hal);          once, at boot
 *     pr_controller_rx_bytes(&ctl, buf, n);          with every byte read from the link
 *     pr_controller_poll(&ctl);                      as often as possible (each loop pass)
 *
 * all from one context (the main loop, not an interrupt). The watchdog and the STATE
 * stream run in pr_controller_poll on the HAL clock, so the watchdog resolution is the
 * poll period. No dynamic allocation: pr_controller_t holds every buffer, sized at
 * compile time from PR_MAX_SENSORS and PR_MAX_ACTUATORS.
 */
#ifndef PR_CONTROLLER_H
#define PR_CONTROLLER_H

#include <stddef.h>
#include <stdint.h>

#include "pr_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the robot is; fixed for the controller's lifetime (the controller keeps a pointer). */
typedef struct {
    const char *name;            /* robot name, ASCII, at most PR_MAX_NAME_LEN, NUL-terminated */
    uint8_t n_sensors;           /* float values in STATE, at most PR_MAX_SENSORS */
    uint8_t n_actuators;         /* float values in COMMAND, at most PR_MAX_ACTUATORS */
    float actuator_min[PR_MAX_ACTUATORS]; /* inclusive limits; a COMMAND outside is BAD_COMMAND */
    float actuator_max[PR_MAX_ACTUATORS];
    /* Optional safe range per sensor, checked at each STATE sample while ENABLED: outside it
     * the controller raises LIMIT. A sensor is unchecked when its min is not below its max
     * (so a zero-initialized config checks nothing). */
    float sensor_min[PR_MAX_SENSORS];
    float sensor_max[PR_MAX_SENSORS];
    uint16_t min_rate_hz;        /* STATE rates a HELLO may ask for, inclusive, >= 1 */
    uint16_t max_rate_hz;
    uint16_t watchdog_ms;        /* > 0 */
    uint8_t firmware_version[3]; /* major, minor, patch */
    uint32_t boot_id;            /* random or counted per boot: a change tells the host we reset */
} pr_config_t;

/* Things a board or a host build may want to log or show; the protocol does not need them. */
typedef enum {
    PR_EV_HELLO,            /* value: requested rate; code: 1 if now streaming, else 0 */
    PR_EV_ENABLE,           /* actuators armed */
    PR_EV_ENABLE_REFUSED,   /* code: the latched fault that refused it */
    PR_EV_DISABLE,          /* code: the latched fault it cleared (0 if none); value: 1 if it disarmed */
    PR_EV_COMMAND_IGNORED,  /* a valid COMMAND while not enabled */
    PR_EV_FAULT,            /* code: fault code; value: see pr_controller_fault / the code */
    PR_EV_RX_DROP           /* code: the pr_err_t of the dropped frame */
} pr_event_kind_t;

typedef struct {
    pr_event_kind_t kind;
    uint16_t code;
    uint32_t value; /* WATCHDOG: microseconds since the last valid COMMAND (or the ENABLE);
                       BAD_COMMAND: actuator index; LIMIT: sensor index */
    uint64_t t_us;  /* controller clock */
} pr_event_t;

/* The board's side. Every function but on_event is required; ctx is passed back to each. */
typedef struct {
    void *ctx;
    /* Fill out[0..n) in the robot's sensor units; return 0, or nonzero when the read
     * failed (the controller then raises SENSOR and sends NaN for this sample). */
    int (*read_sensors)(void *ctx, float *out, uint8_t n);
    /* Apply n actuator values, already checked finite and within the limits. */
    void (*write_actuators)(void *ctx, const float *value, uint8_t n);
    /* Put the actuators in their safe state (zero voltage, torque off, ...). Idempotent. */
    void (*safe_state)(void *ctx);
    /* Monotonic microseconds since boot, never wrapping (extend a 32-bit timer). */
    uint64_t (*micros)(void *ctx);
    /* Queue n bytes for the link. Called with whole frames. */
    void (*serial_write)(void *ctx, const uint8_t *data, size_t n);
    /* Optional (may be NULL). */
    void (*on_event)(void *ctx, const pr_event_t *ev);
} pr_hal_t;

/* The controller only takes host -> controller messages; its longest is a COMMAND. */
#define PR_CTL_RX_CAP (PR_HEADER_LEN + PR_COMMAND_LEN(PR_MAX_ACTUATORS) + PR_CRC_LEN)
/* Its longest message out is STATE or FAULT (or INFO), whichever is longer. */
#define PR_CTL_MAX3(a, b, c) ((a) > (b) ? ((a) > (c) ? (a) : (c)) : ((b) > (c) ? (b) : (c)))
#define PR_CTL_TX_PAYLOAD_CAP                                                              \
    PR_CTL_MAX3(PR_STATE_LEN(PR_MAX_SENSORS), PR_FAULT_LEN(PR_MAX_FAULT_TEXT),              \
                PR_INFO_LEN(PR_MAX_NAME_LEN))
#define PR_CTL_TX_FRAME_CAP PR_FRAME_CAP(PR_HEADER_LEN + PR_CTL_TX_PAYLOAD_CAP)

/* All state; allocate it statically. Fields are private: use the functions below. */
typedef struct {
    const pr_config_t *cfg;
    const pr_hal_t *hal;
    int ready;                 /* init succeeded */

    pr_rx_t rx;
    uint8_t rx_buf[PR_CTL_RX_CAP];
    uint16_t rx_errors;        /* frames dropped since boot, saturating */

    uint8_t tx_payload[PR_CTL_TX_PAYLOAD_CAP];
    uint8_t tx_frame[PR_CTL_TX_FRAME_CAP];
    uint32_t tx_seq;           /* seq of the next frame we send */

    uint8_t enabled;
    uint8_t watchdog_tripped;  /* since the last ENABLE */
    uint16_t fault;            /* latched fault code, 0 if none: the first one raised */
    uint16_t faults_sent;      /* bit per code already reported by FAULT since the last DISABLE */

    uint8_t streaming;
    uint16_t rate_hz;
    uint64_t next_state_us;    /* when the next STATE is due */
    uint32_t period_us;        /* 1e6 / rate, integer part ... */
    uint32_t period_rem;       /* ... and remainder, accumulated in phase_acc */
    uint32_t phase_acc;

    uint64_t last_cmd_us;      /* last valid COMMAND applied, or the ENABLE */
    uint32_t last_cmd_seq;     /* header seq of the last COMMAND applied */

    float sensors[PR_MAX_SENSORS];
} pr_controller_t;

/*
 * Check cfg and hal, keep pointers to both, put the actuators in their safe state.
 * Returns PR_OK, or PR_ERR_ARG for a config the protocol cannot describe (then the
 * controller stays inert: rx_bytes and poll do nothing).
 */
pr_err_t pr_controller_init(pr_controller_t *ctl, const pr_config_t *cfg, const pr_hal_t *hal);

/* Feed bytes received from the link; acts on each complete frame. */
void pr_controller_rx_bytes(pr_controller_t *ctl, const uint8_t *data, size_t n);

/* Run the watchdog and send STATE when due. Call it often: it bounds the watchdog latency. */
void pr_controller_poll(pr_controller_t *ctl);

/*
 * Raise a fault from the board (LIMIT, ESTOP, SENSOR ...): safe state, disarm, latch the
 * code unless one is latched already, and send FAULT with text (ASCII, NULL for none,
 * cut at PR_MAX_FAULT_TEXT) unless that code was already reported since the last
 * DISABLE, so a held e-stop may call this on every loop pass. value goes to the event.
 */
void pr_controller_fault(pr_controller_t *ctl, uint16_t code, const char *text, uint32_t value);

/* STATE.status bits right now (PR_STATUS_*). */
uint16_t pr_controller_status(const pr_controller_t *ctl);
/* The latched fault code, 0 if none. */
uint16_t pr_controller_fault_code(const pr_controller_t *ctl);
/* Frames dropped since boot (saturates at 65535). */
uint16_t pr_controller_rx_errors(const pr_controller_t *ctl);
/* Time of the last valid COMMAND applied (or of the ENABLE), on the HAL clock. */
uint64_t pr_controller_last_command_us(const pr_controller_t *ctl);

#ifdef __cplusplus
}
#endif

#endif /* PR_CONTROLLER_H */
