/*
 * Tests of pr_controller's behaviour, on a fake clock with a capture HAL: everything the
 * controller sends is decoded by an independent receiver, every actuator write and safe
 * state is recorded.
 */
#include <stdlib.h>

#include "pr_controller.h"
#include "test_util.h"

#define MAX_MSGS 4096

typedef struct {
    uint8_t type;
    uint32_t seq;
    uint8_t payload[PR_MAX_PAYLOAD];
    size_t len;
} msg_t;

typedef struct {
    uint64_t now;
    float sensors[PR_MAX_SENSORS];
    int sensor_fail;
    float written[PR_MAX_ACTUATORS];
    int n_writes;
    int n_safe;
    pr_rx_t rx;
    uint8_t rx_buf[PR_MAX_RAW];
    int rx_drops;
    msg_t msgs[MAX_MSGS];
    int n_msgs;
    int n_events[PR_EV_RX_DROP + 1];
    pr_event_t last_event[PR_EV_RX_DROP + 1];
} cap_t;

static cap_t cap;
static pr_controller_t ctl;
static pr_config_t cfg;
static uint32_t host_seq;

static int hal_read(void *ctx, float *out, uint8_t n)
{
    cap_t *c = (cap_t *)ctx;
    memcpy(out, c->sensors, n * sizeof(float));
    return c->sensor_fail;
}
static void hal_write(void *ctx, const float *v, uint8_t n)
{
    cap_t *c = (cap_t *)ctx;
    memcpy(c->written, v, n * sizeof(float));
    c->n_writes++;
}
static void hal_safe(void *ctx)
{
    ((cap_t *)ctx)->n_safe++;
}
static uint64_t hal_micros(void *ctx)
{
    return ((cap_t *)ctx)->now;
}
static void hal_serial(void *ctx, const uint8_t *p, size_t n)
{
    cap_t *c = (cap_t *)ctx;
    size_t i;
    for (i = 0; i < n; i++) {
        pr_rx_event_t ev = pr_rx_push(&c->rx, p[i]);
        if (ev == PR_RX_DROP) {
            c->rx_drops++;
        } else if (ev == PR_RX_FRAME && c->n_msgs < MAX_MSGS) {
            msg_t *m = &c->msgs[c->n_msgs++];
            m->type = c->rx.frame.header.type;
            m->seq = c->rx.frame.header.seq;
            m->len = c->rx.frame.payload_len;
            memcpy(m->payload, c->rx.frame.payload, m->len);
        }
    }
}
static void hal_event(void *ctx, const pr_event_t *ev)
{
    cap_t *c = (cap_t *)ctx;
    c->n_events[ev->kind]++;
    c->last_event[ev->kind] = *ev;
}

static const pr_hal_t hal = {&cap, hal_read, hal_write, hal_safe, hal_micros, hal_serial, hal_event};

/* A fresh controller: the Furuta's shape, 10..2000 Hz, watchdog 50 ms. */
static void setup(void)
{
    memset(&cap, 0, sizeof cap);
    pr_rx_init(&cap.rx, cap.rx_buf, sizeof cap.rx_buf, NULL);
    cap.now = 1000; /* not zero, so that "0" is never an accidental match */
    memset(&cfg, 0, sizeof cfg);
    cfg.name = "furuta";
    cfg.n_sensors = 4;
    cfg.n_actuators = 1;
    cfg.actuator_min[0] = -10.0f;
    cfg.actuator_max[0] = 10.0f;
    cfg.min_rate_hz = 10;
    cfg.max_rate_hz = 2000;
    cfg.watchdog_ms = 50;
    cfg.firmware_version[0] = 0;
    cfg.firmware_version[1] = 1;
    cfg.firmware_version[2] = 0;
    cfg.boot_id = 0xB007B007u;
    host_seq = 100;
    CHECK_EQ(pr_controller_init(&ctl, &cfg, &hal), PR_OK);
}

static void send(uint8_t type, const uint8_t *payload, size_t len)
{
    uint8_t f[PR_MAX_FRAME];
    size_t n = pr_frame_encode(type, host_seq++, payload, len, f, sizeof f);
    CHECK(n > 0);
    pr_controller_rx_bytes(&ctl, f, n);
}
static void send_hello(uint16_t rate)
{
    uint8_t p[2];
    pr_put_u16(p, rate);
    send(PR_MSG_HELLO, p, 2);
}
static void send_command(float v)
{
    uint8_t p[8];
    pr_put_u32(p, 0);
    pr_put_f32(p + 4, v);
    send(PR_MSG_COMMAND, p, 8);
}
static uint32_t send_simple(uint8_t type)
{
    uint32_t seq = host_seq;
    send(type, NULL, 0);
    return seq;
}

static const msg_t *last_msg(uint8_t type)
{
    int i;
    for (i = cap.n_msgs - 1; i >= 0; i--) {
        if (cap.msgs[i].type == type) return &cap.msgs[i];
    }
    return NULL;
}
static int count_msgs(uint8_t type)
{
    int i, n = 0;
    for (i = 0; i < cap.n_msgs; i++) n += cap.msgs[i].type == type;
    return n;
}
static void check_ack(uint32_t seq, uint8_t type, uint8_t result)
{
    const msg_t *m = last_msg(PR_MSG_ACK);
    pr_ack_t ack;
    CHECK(m != NULL);
    if (m == NULL) return;
    CHECK_EQ(pr_ack_unpack(m->payload, m->len, &ack), PR_OK);
    CHECK_EQ(ack.acked_seq, seq);
    CHECK_EQ(ack.acked_type, type);
    CHECK_EQ(ack.result, result);
}
static pr_state_t last_state(void)
{
    pr_state_t st;
    const msg_t *m = last_msg(PR_MSG_STATE);
    memset(&st, 0, sizeof st);
    CHECK(m != NULL);
    if (m != NULL) CHECK_EQ(pr_state_unpack(m->payload, m->len, &st), PR_OK);
    return st;
}
/* Advance the fake clock in steps, polling after each. */
static void run_for(uint64_t us, uint64_t step)
{
    uint64_t end = cap.now + us;
    while (cap.now < end) {
        cap.now += step;
        pr_controller_poll(&ctl);
    }
}
static void enable_ok(void)
{
    uint32_t seq = send_simple(PR_MSG_ENABLE);
    check_ack(seq, PR_MSG_ENABLE, 0);
    CHECK(pr_controller_status(&ctl) & PR_STATUS_ENABLED);
}

static void test_boot_and_hello(void)
{
    const msg_t *m;
    pr_info_t info;
    int i;

    setup();
    CHECK_EQ(cap.n_safe, 1); /* init applies the safe state */
    CHECK_EQ(cap.n_msgs, 0);
    pr_controller_poll(&ctl);
    CHECK_EQ(cap.n_msgs, 0); /* nothing until a HELLO */
    CHECK_EQ(pr_controller_status(&ctl), 0);

    send_hello(100);
    CHECK_EQ(cap.n_msgs, 1);
    m = last_msg(PR_MSG_INFO);
    CHECK(m != NULL && m->seq == 0); /* our first frame after boot has seq 0 */
    CHECK_EQ(pr_info_unpack(m->payload, m->len, &info), PR_OK);
    CHECK_EQ(info.protocol_version, 1);
    CHECK_EQ(info.boot_id, 0xB007B007u);
    CHECK_EQ(info.n_sensors, 4);
    CHECK_EQ(info.n_actuators, 1);
    CHECK_EQ(info.min_rate_hz, 10);
    CHECK_EQ(info.max_rate_hz, 2000);
    CHECK_EQ(info.watchdog_ms, 50);
    CHECK_EQ(info.firmware_version[1], 1);
    CHECK_BYTES(info.name, info.name_len, "furuta", 6);
    CHECK_EQ(pr_controller_status(&ctl), PR_STATUS_STREAMING);
    /* A HELLO never arms. */
    CHECK_EQ(cap.n_events[PR_EV_ENABLE], 0);

    /* The first STATE follows the INFO at the next poll; seq counts up by one per frame. */
    pr_controller_poll(&ctl);
    CHECK_EQ(count_msgs(PR_MSG_STATE), 1);
    run_for(100000, 100);
    for (i = 0; i < cap.n_msgs; i++) {
        CHECK_EQ(cap.msgs[i].seq, (uint32_t)i);
    }
    CHECK_EQ(cap.rx_drops, 0);
}

/*
 * STATE at exactly the requested rate: STATE k is due at t0 + floor(k * 1e6 / rate) (t0 the
 * HELLO) and is sampled at the first poll at or after that, so its t_us is known exactly.
 */
static void check_rate(uint16_t rate, uint64_t seconds, uint64_t step)
{
    int first, i;
    uint64_t k = 0;
    uint64_t t0, t_end;

    setup();
    cfg.min_rate_hz = 1; /* the config is read through its pointer: widen for slow rates */
    send_hello(rate);
    t0 = cap.now;
    first = cap.n_msgs;
    run_for(seconds * 1000000u, step);
    t_end = cap.now;
    for (i = first; i < cap.n_msgs; i++) {
        pr_state_t st;
        uint64_t due = t0 + (k * 1000000u) / rate;
        uint64_t want = due <= t0 + step ? t0 + step : t0 + ((due - t0 + step - 1u) / step) * step;
        if (cap.msgs[i].type != PR_MSG_STATE) continue;
        CHECK_EQ(pr_state_unpack(cap.msgs[i].payload, cap.msgs[i].len, &st), PR_OK);
        CHECK_EQ(st.t_us, want);
        k++;
    }
    /* Every due time up to the last poll was served, and no more. */
    CHECK_EQ(k, ((t_end - t0) * rate) / 1000000u + 1u);
    CHECK(k >= seconds * rate);
}

static void test_stream_rates(void)
{
    int n;

    check_rate(100, 2, 100);
    check_rate(2000, 1, 10);
    check_rate(10, 3, 1000);
    check_rate(3, 3, 1000);  /* 333333.33 us: the remainder must not drift */
    check_rate(1999, 1, 7);  /* neither the period nor the poll step divide evenly */
    check_rate(777, 2, 13);

    /* A stall of many periods does not make a burst: one STATE, then the rate again. */
    setup();
    send_hello(1000);
    run_for(10000, 100);
    n = count_msgs(PR_MSG_STATE);
    cap.now += 50000;
    pr_controller_poll(&ctl);
    pr_controller_poll(&ctl);
    CHECK_EQ(count_msgs(PR_MSG_STATE), n + 1);
    run_for(10000, 100);
    CHECK_EQ(count_msgs(PR_MSG_STATE), n + 1 + 10);
}

static void test_hello_rates_and_stop(void)
{
    int before;

    setup();
    send_hello(5); /* below the range: INFO, no stream */
    CHECK_EQ(count_msgs(PR_MSG_INFO), 1);
    run_for(500000, 1000);
    CHECK_EQ(count_msgs(PR_MSG_STATE), 0);
    send_hello(2001); /* above */
    CHECK_EQ(count_msgs(PR_MSG_INFO), 2);
    run_for(500000, 1000);
    CHECK_EQ(count_msgs(PR_MSG_STATE), 0);
    CHECK_EQ(pr_controller_status(&ctl) & PR_STATUS_STREAMING, 0);
    send_hello(50);
    run_for(100000, 1000);
    CHECK_EQ(count_msgs(PR_MSG_STATE), 6); /* at 0, 20, ..., 100 ms */
    send_hello(0); /* stop */
    CHECK_EQ(count_msgs(PR_MSG_INFO), 4);
    before = count_msgs(PR_MSG_STATE);
    run_for(500000, 1000);
    CHECK_EQ(count_msgs(PR_MSG_STATE), before);
}

static void test_enable_only_after_enable(void)
{
    pr_state_t st;

    setup();
    send_hello(100);
    send_command(1.0f); /* disabled: ignored, no fault */
    CHECK_EQ(cap.n_writes, 0);
    CHECK_EQ(cap.n_events[PR_EV_COMMAND_IGNORED], 1);
    CHECK_EQ(pr_controller_fault_code(&ctl), 0);
    run_for(200000, 100); /* no watchdog while disabled */
    CHECK_EQ(count_msgs(PR_MSG_FAULT), 0);
    st = last_state();
    CHECK_EQ(st.status, PR_STATUS_STREAMING);
    CHECK_EQ(st.last_cmd_seq, PR_NO_COMMAND_SEQ);

    enable_ok();
    send_command(1.5f);
    CHECK_EQ(cap.n_writes, 1);
    CHECK(cap.written[0] == 1.5f);
    run_for(10000, 100);
    st = last_state();
    CHECK_EQ(st.status, PR_STATUS_STREAMING | PR_STATUS_ENABLED);
    CHECK_EQ(st.last_cmd_seq, host_seq - 1u);
    /* Limits are inclusive. */
    send_command(10.0f);
    send_command(-10.0f);
    CHECK_EQ(cap.n_writes, 3);
    CHECK(cap.written[0] == -10.0f);
    /* ENABLE is idempotent. */
    enable_ok();
    CHECK_EQ(cap.n_events[PR_EV_ENABLE], 1);
    /* DISABLE disarms and is idempotent. */
    {
        int safe = cap.n_safe;
        uint32_t seq = send_simple(PR_MSG_DISABLE);
        check_ack(seq, PR_MSG_DISABLE, 0);
        CHECK_EQ(cap.n_safe, safe + 1);
        seq = send_simple(PR_MSG_DISABLE);
        check_ack(seq, PR_MSG_DISABLE, 0);
        CHECK_EQ(pr_controller_status(&ctl) & PR_STATUS_ENABLED, 0);
    }
    send_command(2.0f);
    CHECK_EQ(cap.n_writes, 3);
}

static void test_watchdog_exact(void)
{
    uint64_t t_cmd;
    int safe;
    const msg_t *m;
    pr_fault_t fault;
    pr_state_t st;

    setup();
    send_hello(100);
    enable_ok();
    cap.now += 20000;
    send_command(0.5f);
    t_cmd = cap.now;
    safe = cap.n_safe;
    /* One microsecond before watchdog_ms: still armed. */
    cap.now = t_cmd + 50000u - 1u;
    pr_controller_poll(&ctl);
    CHECK(pr_controller_status(&ctl) & PR_STATUS_ENABLED);
    CHECK_EQ(cap.n_safe, safe);
    /* At exactly watchdog_ms: tripped. */
    cap.now = t_cmd + 50000u;
    pr_controller_poll(&ctl);
    CHECK_EQ(pr_controller_status(&ctl) & PR_STATUS_ENABLED, 0);
    CHECK_EQ(cap.n_safe, safe + 1);
    CHECK_EQ(pr_controller_fault_code(&ctl), PR_FAULT_WATCHDOG);
    CHECK_EQ(count_msgs(PR_MSG_FAULT), 1);
    m = last_msg(PR_MSG_FAULT);
    CHECK(m != NULL);
    if (m != NULL) {
        CHECK_EQ(pr_fault_unpack(m->payload, m->len, &fault), PR_OK);
        CHECK_EQ(fault.code, PR_FAULT_WATCHDOG);
        CHECK_EQ(fault.t_us, t_cmd + 50000u);
        CHECK_BYTES(fault.text, fault.len, "no valid COMMAND for 50 ms", 26);
    }
    CHECK_EQ(cap.last_event[PR_EV_FAULT].value, 50000u);
    /* Once: more polls send nothing more. */
    run_for(200000, 100);
    CHECK_EQ(count_msgs(PR_MSG_FAULT), 1);
    st = last_state();
    CHECK_EQ(st.status, PR_STATUS_STREAMING | PR_STATUS_WATCHDOG | PR_STATUS_FAULTED);
    CHECK_EQ(st.fault, PR_FAULT_WATCHDOG);
    /* A COMMAND now is not applied. */
    send_command(0.5f);
    CHECK_EQ(cap.n_writes, 1);

    /* The watchdog counts from the ENABLE when no COMMAND comes at all. */
    send_simple(PR_MSG_DISABLE);
    enable_ok();
    t_cmd = cap.now;
    /* A repeated ENABLE does not feed it. */
    cap.now = t_cmd + 30000u;
    enable_ok();
    cap.now = t_cmd + 50000u;
    pr_controller_poll(&ctl);
    CHECK_EQ(pr_controller_fault_code(&ctl), PR_FAULT_WATCHDOG);
}

static void test_late_command_does_not_rescue(void)
{
    uint64_t t_cmd;

    setup();
    enable_ok();
    send_command(1.0f);
    t_cmd = cap.now;
    /* No poll in between: the COMMAND arrives after the deadline. */
    cap.now = t_cmd + 60000u;
    send_command(2.0f);
    CHECK_EQ(cap.n_writes, 1);
    CHECK_EQ(pr_controller_fault_code(&ctl), PR_FAULT_WATCHDOG);
    CHECK_EQ(cap.last_event[PR_EV_FAULT].value, 60000u);
}

static void test_fault_latch(void)
{
    uint32_t seq;
    pr_state_t st;

    setup();
    send_hello(100);
    enable_ok();
    cap.now += 60000;
    pr_controller_poll(&ctl); /* watchdog */
    /* ENABLE refused with the latched code. */
    seq = send_simple(PR_MSG_ENABLE);
    check_ack(seq, PR_MSG_ENABLE, PR_FAULT_WATCHDOG);
    CHECK_EQ(pr_controller_status(&ctl) & PR_STATUS_ENABLED, 0);
    CHECK_EQ(cap.n_events[PR_EV_ENABLE_REFUSED], 1);
    /* HELLO does not clear it. */
    send_hello(100);
    CHECK_EQ(pr_controller_fault_code(&ctl), PR_FAULT_WATCHDOG);
    /* DISABLE clears it; the WATCHDOG bit stays until the next ENABLE. */
    seq = send_simple(PR_MSG_DISABLE);
    check_ack(seq, PR_MSG_DISABLE, 0);
    CHECK_EQ(pr_controller_fault_code(&ctl), 0);
    run_for(20000, 100);
    st = last_state();
    CHECK_EQ(st.status, PR_STATUS_STREAMING | PR_STATUS_WATCHDOG);
    CHECK_EQ(st.fault, 0);
    enable_ok();
    run_for(10000, 100);
    send_command(0.0f);
    st = last_state();
    CHECK_EQ(st.status, PR_STATUS_STREAMING | PR_STATUS_ENABLED);
}

static void check_bad_command(float v, const char *text)
{
    const msg_t *m;
    pr_fault_t fault;
    int writes = cap.n_writes;
    int safe = cap.n_safe;
    int faults = count_msgs(PR_MSG_FAULT);

    enable_ok();
    send_command(v);
    CHECK_EQ(cap.n_writes, writes);
    CHECK_EQ(cap.n_safe, safe + 1);
    CHECK_EQ(pr_controller_status(&ctl) & PR_STATUS_ENABLED, 0);
    CHECK_EQ(pr_controller_fault_code(&ctl), PR_FAULT_BAD_COMMAND);
    CHECK_EQ(count_msgs(PR_MSG_FAULT), faults + 1);
    m = last_msg(PR_MSG_FAULT);
    if (m != NULL) {
        CHECK_EQ(pr_fault_unpack(m->payload, m->len, &fault), PR_OK);
        CHECK_EQ(fault.code, PR_FAULT_BAD_COMMAND);
        CHECK_BYTES(fault.text, fault.len, text, strlen(text));
    }
    send_simple(PR_MSG_DISABLE);
}

static float float_from_bits(uint32_t bits)
{
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static void test_bad_command(void)
{
    setup();
    send_hello(100);
    check_bad_command(pr_f32_nan(), "actuator 0 not finite");
    check_bad_command(float_from_bits(0x7F800001u), "actuator 0 not finite"); /* signalling NaN */
    check_bad_command(float_from_bits(0xFFC00000u), "actuator 0 not finite"); /* negative NaN */
    check_bad_command(float_from_bits(0x7F800000u), "actuator 0 not finite"); /* +inf */
    check_bad_command(float_from_bits(0xFF800000u), "actuator 0 not finite"); /* -inf */
    check_bad_command(10.001f, "actuator 0 outside its limits");
    check_bad_command(-10.5f, "actuator 0 outside its limits");
    check_bad_command(3.4e38f, "actuator 0 outside its limits");
    /* While disabled a bad value is ignored, not a fault. */
    send_command(pr_f32_nan());
    CHECK_EQ(pr_controller_fault_code(&ctl), 0);
}

static void test_hello_disarms(void)
{
    int safe;
    int acks;

    setup();
    send_hello(100);
    enable_ok();
    send_command(3.0f);
    safe = cap.n_safe;
    acks = count_msgs(PR_MSG_ACK);
    send_hello(200);
    CHECK_EQ(pr_controller_status(&ctl) & PR_STATUS_ENABLED, 0);
    CHECK_EQ(cap.n_safe, safe + 1);
    CHECK_EQ(count_msgs(PR_MSG_ACK), acks); /* answered by INFO, not ACK */
    CHECK_EQ(cap.msgs[cap.n_msgs - 1].type, PR_MSG_INFO);
    CHECK_EQ(pr_controller_fault_code(&ctl), 0);
    send_command(3.0f);
    CHECK_EQ(cap.n_writes, 1);
    /* No watchdog after a HELLO disarmed. */
    run_for(200000, 100);
    CHECK_EQ(count_msgs(PR_MSG_FAULT), 0);
}

static void test_rx_errors(void)
{
    pr_state_t st;
    uint8_t f[PR_MAX_FRAME];
    size_t n;
    int i;
    uint8_t p[PR_MAX_PAYLOAD] = {0};

    setup();
    send_hello(100);
    /* Garbage between frames: each delimited chunk is one drop. */
    pr_controller_rx_bytes(&ctl, (const uint8_t *)"\x11\x22\x33\x00", 4);
    pr_controller_rx_bytes(&ctl, (const uint8_t *)"\x00\x00", 2); /* idle: not counted */
    pr_controller_rx_bytes(&ctl, (const uint8_t *)"\xff\xfe\x00", 3);
    CHECK_EQ(pr_controller_rx_errors(&ctl), 2);
    CHECK_EQ(cap.n_events[PR_EV_RX_DROP], 2);
    send_hello(100); /* and a valid frame still gets through */
    CHECK_EQ(count_msgs(PR_MSG_INFO), 2);
    /* A STATE (controller -> host) is not for us; a COMMAND for 2 actuators is the wrong size. */
    n = pr_frame_encode(PR_MSG_STATE, 1, p, PR_STATE_LEN(4u), f, sizeof f);
    pr_controller_rx_bytes(&ctl, f, n);
    CHECK_EQ(cap.last_event[PR_EV_RX_DROP].code, PR_ERR_DIRECTION);
    enable_ok();
    n = pr_frame_encode(PR_MSG_COMMAND, 1, p, PR_COMMAND_LEN(2u), f, sizeof f);
    pr_controller_rx_bytes(&ctl, f, n);
    CHECK_EQ(cap.n_writes, 0);
    CHECK_EQ(pr_controller_rx_errors(&ctl), 4);
    /* A corrupt COMMAND is never acted on. */
    n = pr_frame_encode(PR_MSG_COMMAND, 1, p, PR_COMMAND_LEN(1u), f, sizeof f);
    f[n - 3] ^= 0x01;
    pr_controller_rx_bytes(&ctl, f, n);
    CHECK_EQ(cap.n_writes, 0);
    CHECK_EQ(pr_controller_rx_errors(&ctl), 5);
    run_for(20000, 100);
    st = last_state();
    CHECK_EQ(st.rx_errors, 5);
    /* Saturates at 65535. */
    for (i = 0; i < 70000; i++) {
        pr_controller_rx_bytes(&ctl, (const uint8_t *)"\x05\x00", 2);
    }
    CHECK_EQ(pr_controller_rx_errors(&ctl), 65535);
    run_for(20000, 100);
    st = last_state();
    CHECK_EQ(st.rx_errors, 65535);
}

static void test_sensor_faults(void)
{
    pr_state_t st;
    int i;

    setup();
    cap.sensors[0] = 0.25f;
    cap.sensors[1] = -3.0f;
    send_hello(100);
    run_for(10000, 100);
    st = last_state();
    CHECK_EQ(st.n_sensors, 4);
    CHECK(st.sensors[0] == 0.25f && st.sensors[1] == -3.0f);

    /* A failed read: SENSOR fault, NaN values, once. */
    enable_ok();
    send_command(1.0f);
    cap.sensor_fail = 1;
    run_for(30000, 100);
    CHECK_EQ(pr_controller_fault_code(&ctl), PR_FAULT_SENSOR);
    CHECK_EQ(count_msgs(PR_MSG_FAULT), 1);
    st = last_state();
    CHECK(st.status & PR_STATUS_FAULTED);
    for (i = 0; i < 4; i++) CHECK(!pr_f32_is_finite(st.sensors[i]));

    /* LIMIT: a sensor outside its configured range while enabled. */
    setup();
    cfg.sensor_min[0] = -6.0f;
    cfg.sensor_max[0] = 6.0f;
    send_hello(100);
    cap.sensors[0] = 7.0f; /* outside, but disabled: no fault */
    run_for(30000, 100);
    CHECK_EQ(pr_controller_fault_code(&ctl), 0);
    cap.sensors[0] = 5.0f;
    enable_ok();
    send_command(1.0f);
    run_for(20000, 100);
    CHECK_EQ(pr_controller_fault_code(&ctl), 0);
    cap.sensors[0] = -6.5f;
    send_command(1.0f);
    run_for(20000, 100);
    CHECK_EQ(pr_controller_fault_code(&ctl), PR_FAULT_LIMIT);
    CHECK_EQ(cap.last_event[PR_EV_FAULT].value, 0);
    CHECK_EQ(pr_controller_status(&ctl) & PR_STATUS_ENABLED, 0);
}

static void test_board_fault(void)
{
    int i;
    pr_fault_t fault;

    setup();
    send_hello(100);
    enable_ok();
    /* A held e-stop raises on every pass: one FAULT, one latch. */
    for (i = 0; i < 100; i++) {
        pr_controller_fault(&ctl, PR_FAULT_ESTOP, "e-stop pressed", 0);
    }
    CHECK_EQ(count_msgs(PR_MSG_FAULT), 1);
    CHECK_EQ(pr_controller_fault_code(&ctl), PR_FAULT_ESTOP);
    CHECK_EQ(pr_fault_unpack(last_msg(PR_MSG_FAULT)->payload, last_msg(PR_MSG_FAULT)->len, &fault), PR_OK);
    CHECK_BYTES(fault.text, fault.len, "e-stop pressed", 14);
    /* A second, different fault is reported but the first stays latched. */
    pr_controller_fault(&ctl, PR_FAULT_LIMIT, NULL, 2);
    CHECK_EQ(count_msgs(PR_MSG_FAULT), 2);
    CHECK_EQ(pr_controller_fault_code(&ctl), PR_FAULT_ESTOP);
    /* After DISABLE the still-held e-stop is reported again. */
    send_simple(PR_MSG_DISABLE);
    pr_controller_fault(&ctl, PR_FAULT_ESTOP, "e-stop pressed", 0);
    CHECK_EQ(count_msgs(PR_MSG_FAULT), 3);
    /* Long texts are cut at 48 characters. */
    send_simple(PR_MSG_DISABLE);
    pr_controller_fault(&ctl, PR_FAULT_SENSOR,
                        "0123456789012345678901234567890123456789012345678901234567890", 0);
    CHECK_EQ(pr_fault_unpack(last_msg(PR_MSG_FAULT)->payload, last_msg(PR_MSG_FAULT)->len, &fault), PR_OK);
    CHECK_EQ(fault.len, 48);
    CHECK_EQ(cap.rx_drops, 0);
}

static void test_bad_config(void)
{
    pr_config_t bad;

    setup();
    bad = cfg;
    bad.n_sensors = PR_MAX_SENSORS + 1;
    CHECK_EQ(pr_controller_init(&ctl, &bad, &hal), PR_ERR_ARG);
    bad = cfg;
    bad.name = "a-name-that-is-longer-than-32-chars";
    CHECK_EQ(pr_controller_init(&ctl, &bad, &hal), PR_ERR_ARG);
    bad = cfg;
    bad.min_rate_hz = 0;
    CHECK_EQ(pr_controller_init(&ctl, &bad, &hal), PR_ERR_ARG);
    bad = cfg;
    bad.watchdog_ms = 0;
    CHECK_EQ(pr_controller_init(&ctl, &bad, &hal), PR_ERR_ARG);
    bad = cfg;
    bad.actuator_min[0] = 1.0f;
    bad.actuator_max[0] = -1.0f;
    CHECK_EQ(pr_controller_init(&ctl, &bad, &hal), PR_ERR_ARG);
    /* Inert after a failed init. */
    send_hello(100);
    pr_controller_poll(&ctl);
    CHECK_EQ(cap.n_msgs, 0);
    bad = cfg;
    bad.name = "0123456789abcdef0123456789abcdef"; /* exactly 32 */
    CHECK_EQ(pr_controller_init(&ctl, &bad, &hal), PR_OK);
}

int main(void)
{
    test_boot_and_hello();
    test_stream_rates();
    test_hello_rates_and_stop();
    test_enable_only_after_enable();
    test_watchdog_exact();
    test_late_command_does_not_rescue();
    test_fault_latch();
    test_bad_command();
    test_hello_disarms();
    test_rx_errors();
    test_sensor_faults();
    test_board_fault();
    test_bad_config();
    TEST_MAIN_END("test_controller");
}
