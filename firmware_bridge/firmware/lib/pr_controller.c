/* pr_controller: the controller state machine; see pr_controller.h. */
#include "pr_controller.h"

#include <string.h>

/* ---- Small helpers ---------------------------------------------------------------- */

static void emit_event(pr_controller_t *ctl, pr_event_kind_t kind, uint16_t code,
                       uint32_t value, uint64_t t_us)
{
    pr_event_t ev;

    if (ctl->hal->on_event == NULL) {
        return;
    }
    ev.kind = kind;
    ev.code = code;
    ev.value = value;
    ev.t_us = t_us;
    ctl->hal->on_event(ctl->hal->ctx, &ev);
}

static uint64_t now_us(const pr_controller_t *ctl)
{
    return ctl->hal->micros(ctl->hal->ctx);
}

/* Frame tx_payload[0..len) and hand it to the link; seq counts every frame sent. */
static void send_payload(pr_controller_t *ctl, uint8_t type, size_t len)
{
    size_t n = pr_frame_encode(type, ctl->tx_seq, ctl->tx_payload, len, ctl->tx_frame,
                               sizeof ctl->tx_frame);
    if (n == 0u) {
        return; /* cannot happen: the buffers are sized for our longest message */
    }
    ctl->hal->serial_write(ctl->hal->ctx, ctl->tx_frame, n);
    ctl->tx_seq++;
}

/* Append a NUL-free ASCII string into text[*pos..cap), cutting at cap. */
static void text_append(char *text, size_t *pos, size_t cap, const char *s)
{
    while (*s != '\0' && *pos < cap) {
        text[(*pos)++] = *s++;
    }
}

/* Append v in decimal (no printf on the controller). */
static void text_append_u32(char *text, size_t *pos, size_t cap, uint32_t v)
{
    char digits[10];
    size_t n = 0;

    do {
        digits[n++] = (char)('0' + (v % 10u));
        v /= 10u;
    } while (v != 0u);
    while (n > 0u && *pos < cap) {
        text[(*pos)++] = digits[--n];
    }
}

static void disarm(pr_controller_t *ctl)
{
    ctl->hal->safe_state(ctl->hal->ctx);
    ctl->enabled = 0;
}

/* Raise with a text already built (len bytes). */
static void raise_fault(pr_controller_t *ctl, uint16_t code, const char *text, size_t len,
                        uint32_t value, uint64_t t_us)
{
    uint16_t bit = (uint16_t)(1u << (code < 15u ? code : 15u));
    pr_fault_t msg;
    size_t plen;

    disarm(ctl);
    if (code == PR_FAULT_WATCHDOG) {
        ctl->watchdog_tripped = 1;
    }
    if (ctl->fault == PR_FAULT_NONE) {
        ctl->fault = code; /* the first fault is the root cause: keep it */
    }
    if (ctl->faults_sent & bit) {
        return;
    }
    ctl->faults_sent |= bit;
    msg.code = code;
    msg.t_us = t_us;
    msg.len = (uint8_t)(len < PR_MAX_FAULT_TEXT ? len : PR_MAX_FAULT_TEXT);
    memcpy(msg.text, text, msg.len);
    if (pr_fault_pack(&msg, ctl->tx_payload, sizeof ctl->tx_payload, &plen) == PR_OK) {
        send_payload(ctl, PR_MSG_FAULT, plen);
    }
    emit_event(ctl, PR_EV_FAULT, code, value, t_us);
}

static void send_ack(pr_controller_t *ctl, const pr_header_t *hdr, uint8_t result)
{
    pr_ack_t ack;
    size_t plen;

    ack.acked_seq = hdr->seq;
    ack.acked_type = hdr->type;
    ack.result = result;
    if (pr_ack_pack(&ack, ctl->tx_payload, sizeof ctl->tx_payload, &plen) == PR_OK) {
        send_payload(ctl, PR_MSG_ACK, plen);
    }
}

static void send_info(pr_controller_t *ctl)
{
    const pr_config_t *cfg = ctl->cfg;
    pr_info_t info;
    size_t plen;

    info.protocol_version = (uint8_t)PR_PROTOCOL_VERSION;
    memcpy(info.firmware_version, cfg->firmware_version, sizeof info.firmware_version);
    info.boot_id = cfg->boot_id;
    info.n_sensors = cfg->n_sensors;
    info.n_actuators = cfg->n_actuators;
    info.min_rate_hz = cfg->min_rate_hz;
    info.max_rate_hz = cfg->max_rate_hz;
    info.watchdog_ms = cfg->watchdog_ms;
    info.name_len = 0;
    while (info.name_len < PR_MAX_NAME_LEN && cfg->name[info.name_len] != '\0') {
        info.name[info.name_len] = cfg->name[info.name_len];
        info.name_len++;
    }
    if (pr_info_pack(&info, ctl->tx_payload, sizeof ctl->tx_payload, &plen) == PR_OK) {
        send_payload(ctl, PR_MSG_INFO, plen);
    }
}

/* ---- Watchdog and stream ---------------------------------------------------------- */

static void check_watchdog(pr_controller_t *ctl, uint64_t now)
{
    uint64_t limit_us = (uint64_t)ctl->cfg->watchdog_ms * 1000u;
    uint64_t elapsed;
    char text[PR_MAX_FAULT_TEXT];
    size_t len = 0;

    if (!ctl->enabled) {
        return;
    }
    elapsed = now > ctl->last_cmd_us ? now - ctl->last_cmd_us : 0u;
    if (elapsed < limit_us) {
        return;
    }
    text_append(text, &len, sizeof text, "no valid COMMAND for ");
    text_append_u32(text, &len, sizeof text, (uint32_t)(elapsed / 1000u));
    text_append(text, &len, sizeof text, " ms");
    raise_fault(ctl, PR_FAULT_WATCHDOG, text, len,
                elapsed > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)elapsed, now);
}

static void start_stream(pr_controller_t *ctl, uint16_t rate_hz, uint64_t now)
{
    ctl->streaming = 1;
    ctl->rate_hz = rate_hz;
    ctl->period_us = 1000000u / rate_hz;
    ctl->period_rem = 1000000u % rate_hz;
    ctl->phase_acc = 0;
    ctl->next_state_us = now; /* first STATE on the next poll, right after the INFO */
}

/* Advance the due time by exactly 1e6 / rate on average (integer part + remainder). */
static void advance_schedule(pr_controller_t *ctl, uint64_t now)
{
    ctl->next_state_us += ctl->period_us;
    ctl->phase_acc += ctl->period_rem;
    if (ctl->phase_acc >= ctl->rate_hz) {
        ctl->phase_acc -= ctl->rate_hz;
        ctl->next_state_us += 1u;
    }
    if (ctl->next_state_us <= now) {
        /* We missed a whole period (a stall): restart the schedule, do not burst. */
        ctl->next_state_us = now + ctl->period_us;
        ctl->phase_acc = 0;
    }
}

static void check_sensor_limits(pr_controller_t *ctl, uint64_t t_us)
{
    const pr_config_t *cfg = ctl->cfg;
    uint8_t i;

    for (i = 0; i < cfg->n_sensors; i++) {
        float lo = cfg->sensor_min[i];
        float hi = cfg->sensor_max[i];
        float v = ctl->sensors[i];
        char text[PR_MAX_FAULT_TEXT];
        size_t len = 0;

        if (!(lo < hi) || (v >= lo && v <= hi)) {
            continue;
        }
        text_append(text, &len, sizeof text, "sensor ");
        text_append_u32(text, &len, sizeof text, i);
        text_append(text, &len, sizeof text, " outside its safe range");
        raise_fault(ctl, PR_FAULT_LIMIT, text, len, i, t_us);
        return;
    }
}

static void send_state(pr_controller_t *ctl)
{
    pr_state_t st;
    size_t plen;
    uint8_t i;
    uint64_t t_us = now_us(ctl);
    uint8_t n = ctl->cfg->n_sensors;

    if (ctl->hal->read_sensors(ctl->hal->ctx, ctl->sensors, n) != 0) {
        static const char text[] = "sensor read failed";
        for (i = 0; i < n; i++) {
            ctl->sensors[i] = pr_f32_nan();
        }
        raise_fault(ctl, PR_FAULT_SENSOR, text, sizeof text - 1u, 0, t_us);
    } else if (ctl->enabled) {
        check_sensor_limits(ctl, t_us);
    }
    st.t_us = t_us;
    st.status = pr_controller_status(ctl);
    st.fault = ctl->fault;
    st.last_cmd_seq = ctl->last_cmd_seq;
    st.rx_errors = ctl->rx_errors;
    st.n_sensors = n;
    for (i = 0; i < n; i++) {
        st.sensors[i] = ctl->sensors[i];
    }
    if (pr_state_pack(&st, ctl->tx_payload, sizeof ctl->tx_payload, &plen) == PR_OK) {
        send_payload(ctl, PR_MSG_STATE, plen);
    }
}

/* ---- Message handlers ------------------------------------------------------------- */

static void on_hello(pr_controller_t *ctl, const pr_frame_t *fr, uint64_t now)
{
    pr_hello_t hello;
    const pr_config_t *cfg = ctl->cfg;

    (void)pr_hello_unpack(fr->payload, fr->payload_len, &hello); /* length already checked */
    if (ctl->enabled) {
        disarm(ctl); /* a new host session starts disarmed */
    }
    send_info(ctl);
    if (hello.state_rate_hz != 0u && hello.state_rate_hz >= cfg->min_rate_hz &&
        hello.state_rate_hz <= cfg->max_rate_hz) {
        start_stream(ctl, hello.state_rate_hz, now);
    } else {
        /* 0 stops the stream; a rate out of range gets INFO only (the host refuses). */
        ctl->streaming = 0;
        ctl->rate_hz = 0;
    }
    emit_event(ctl, PR_EV_HELLO, ctl->streaming, hello.state_rate_hz, now);
}

static void on_enable(pr_controller_t *ctl, const pr_frame_t *fr, uint64_t now)
{
    if (ctl->fault != PR_FAULT_NONE) {
        send_ack(ctl, &fr->header, (uint8_t)(ctl->fault > 0xFFu ? 0xFFu : ctl->fault));
        emit_event(ctl, PR_EV_ENABLE_REFUSED, ctl->fault, 0, now);
        return;
    }
    if (!ctl->enabled) {
        ctl->enabled = 1;
        ctl->watchdog_tripped = 0;
        ctl->last_cmd_us = now; /* the host has watchdog_ms for its first COMMAND */
        emit_event(ctl, PR_EV_ENABLE, 0, 0, now);
    }
    /* Idempotent: a repeated ENABLE does not feed the watchdog, only COMMANDs do. */
    send_ack(ctl, &fr->header, 0);
}

static void on_disable(pr_controller_t *ctl, const pr_frame_t *fr, uint64_t now)
{
    uint16_t cleared = ctl->fault;
    uint8_t was_enabled = ctl->enabled;

    disarm(ctl);
    ctl->fault = PR_FAULT_NONE;
    ctl->faults_sent = 0;
    send_ack(ctl, &fr->header, 0);
    emit_event(ctl, PR_EV_DISABLE, cleared, was_enabled, now);
}

static void on_command(pr_controller_t *ctl, const pr_frame_t *fr, uint64_t now)
{
    const pr_config_t *cfg = ctl->cfg;
    pr_command_t cmd;
    uint8_t i;

    if (!ctl->enabled) {
        emit_event(ctl, PR_EV_COMMAND_IGNORED, 0, fr->header.seq, now);
        return;
    }
    (void)pr_command_unpack(fr->payload, fr->payload_len, &cmd); /* length already checked */
    for (i = 0; i < cfg->n_actuators; i++) {
        float v = cmd.value[i];
        char text[PR_MAX_FAULT_TEXT];
        size_t len = 0;

        if (pr_f32_is_finite(v) && v >= cfg->actuator_min[i] && v <= cfg->actuator_max[i]) {
            continue;
        }
        text_append(text, &len, sizeof text, "actuator ");
        text_append_u32(text, &len, sizeof text, i);
        text_append(text, &len, sizeof text,
                    pr_f32_is_finite(v) ? " outside its limits" : " not finite");
        raise_fault(ctl, PR_FAULT_BAD_COMMAND, text, len, i, now);
        return;
    }
    ctl->hal->write_actuators(ctl->hal->ctx, cmd.value, cfg->n_actuators);
    ctl->last_cmd_seq = fr->header.seq;
    ctl->last_cmd_us = now;
}

static void count_drop(pr_controller_t *ctl, pr_err_t why)
{
    if (ctl->rx_errors < 0xFFFFu) {
        ctl->rx_errors++;
    }
    emit_event(ctl, PR_EV_RX_DROP, (uint16_t)why, 0, now_us(ctl));
}

static void on_frame(pr_controller_t *ctl, const pr_frame_t *fr)
{
    uint64_t now = now_us(ctl);

    /* A COMMAND that arrives after the deadline must not rescue an expired watchdog. */
    check_watchdog(ctl, now);
    switch (fr->header.type) {
    case PR_MSG_HELLO:
        on_hello(ctl, fr, now);
        break;
    case PR_MSG_ENABLE:
        on_enable(ctl, fr, now);
        break;
    case PR_MSG_DISABLE:
        on_disable(ctl, fr, now);
        break;
    case PR_MSG_COMMAND:
        on_command(ctl, fr, now);
        break;
    default:
        /* INFO, STATE, ACK, FAULT travel the other way: not a frame we can act on. */
        count_drop(ctl, PR_ERR_DIRECTION);
        break;
    }
}

/* ---- Public API ------------------------------------------------------------------- */

pr_err_t pr_controller_init(pr_controller_t *ctl, const pr_config_t *cfg, const pr_hal_t *hal)
{
    pr_shape_t shape;
    size_t name_len = 0;
    uint8_t i;

    memset(ctl, 0, sizeof *ctl);
    if (cfg == NULL || hal == NULL || cfg->name == NULL || hal->read_sensors == NULL ||
        hal->write_actuators == NULL || hal->safe_state == NULL || hal->micros == NULL ||
        hal->serial_write == NULL) {
        return PR_ERR_ARG;
    }
    while (name_len <= PR_MAX_NAME_LEN && cfg->name[name_len] != '\0') {
        name_len++;
    }
    if (name_len > PR_MAX_NAME_LEN || cfg->n_sensors > PR_MAX_SENSORS ||
        cfg->n_actuators > PR_MAX_ACTUATORS || cfg->min_rate_hz == 0u ||
        cfg->min_rate_hz > cfg->max_rate_hz || cfg->watchdog_ms == 0u) {
        return PR_ERR_ARG;
    }
    for (i = 0; i < cfg->n_actuators; i++) {
        if (!(cfg->actuator_min[i] <= cfg->actuator_max[i])) {
            return PR_ERR_ARG;
        }
    }
    ctl->cfg = cfg;
    ctl->hal = hal;
    shape.n_sensors = cfg->n_sensors;
    shape.n_actuators = cfg->n_actuators;
    pr_rx_init(&ctl->rx, ctl->rx_buf, sizeof ctl->rx_buf, &shape);
    ctl->last_cmd_seq = PR_NO_COMMAND_SEQ;
    ctl->ready = 1;
    hal->safe_state(hal->ctx); /* actuators start disarmed */
    return PR_OK;
}

void pr_controller_rx_bytes(pr_controller_t *ctl, const uint8_t *data, size_t n)
{
    size_t i;

    if (!ctl->ready) {
        return;
    }
    for (i = 0; i < n; i++) {
        switch (pr_rx_push(&ctl->rx, data[i])) {
        case PR_RX_FRAME:
            on_frame(ctl, &ctl->rx.frame);
            break;
        case PR_RX_DROP:
            count_drop(ctl, ctl->rx.last_err);
            break;
        case PR_RX_NONE:
            break;
        }
    }
}

void pr_controller_poll(pr_controller_t *ctl)
{
    uint64_t now;

    if (!ctl->ready) {
        return;
    }
    now = now_us(ctl);
    check_watchdog(ctl, now);
    if (ctl->streaming && now >= ctl->next_state_us) {
        send_state(ctl);
        advance_schedule(ctl, now);
    }
}

void pr_controller_fault(pr_controller_t *ctl, uint16_t code, const char *text, uint32_t value)
{
    size_t len = 0;

    if (!ctl->ready || code == PR_FAULT_NONE) {
        return;
    }
    if (text != NULL) {
        while (len < PR_MAX_FAULT_TEXT && text[len] != '\0') {
            len++;
        }
    }
    raise_fault(ctl, code, text != NULL ? text : "", len, value, now_us(ctl));
}

uint16_t pr_controller_status(const pr_controller_t *ctl)
{
    uint16_t s = 0;

    if (ctl->enabled) {
        s |= PR_STATUS_ENABLED;
    }
    if (ctl->watchdog_tripped) {
        s |= PR_STATUS_WATCHDOG;
    }
    if (ctl->fault != PR_FAULT_NONE) {
        s |= PR_STATUS_FAULTED;
    }
    if (ctl->streaming) {
        s |= PR_STATUS_STREAMING;
    }
    return s;
}

uint16_t pr_controller_fault_code(const pr_controller_t *ctl)
{
    return ctl->fault;
}

uint16_t pr_controller_rx_errors(const pr_controller_t *ctl)
{
    return ctl->rx_errors;
}

uint64_t pr_controller_last_command_us(const pr_controller_t *ctl)
{
    return ctl->last_cmd_us;
}
