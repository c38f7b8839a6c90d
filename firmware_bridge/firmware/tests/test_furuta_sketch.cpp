/*
 * The Furuta sketch (boards/furuta/furuta.ino), compiled for the host against the Arduino
 * shim (tests/arduino_shim) and driven like the board: encoder edges through the attached
 * interrupts, bytes on the serial port, a clock. Checks the pin setup, the INFO it sends,
 * angles and velocities in STATE, volts to PWM and direction pins, the watchdog cutting the
 * motor, and the board's faults (arm travel LIMIT, missed encoder edge, e-stop).
 */
#include <math.h>
#include <stdlib.h>

#include "Arduino.h"
#include "pr_protocol.h"
#include "test_util.h"

void setup();
void loop();

/* Pins, as the README's pin map. */
enum { ARM_A = 2, ARM_B = 3, PEND_A = 18, PEND_B = 19, PWM = 9, IN1 = 7, IN2 = 8, STBY = 6,
       ESTOP = 4, LED = 13 };

static uint32_t host_seq;
static pr_rx_t rx;
static uint8_t rx_buf[PR_RX_BUF_FULL];
static int n_info, n_ack, n_fault, rx_drops;
static pr_state_t last_state;
static pr_info_t last_info;
static pr_fault_t last_fault;
static pr_ack_t last_ack;

/* Read what the sketch wrote to Serial. */
static void drain(void)
{
    uint8_t buf[4096];
    size_t n, i;
    while ((n = shim::tx_take(buf, sizeof buf)) > 0) {
        for (i = 0; i < n; i++) {
            pr_rx_event_t ev = pr_rx_push(&rx, buf[i]);
            if (ev == PR_RX_DROP) rx_drops++;
            if (ev != PR_RX_FRAME) continue;
            const pr_frame_t *f = &rx.frame;
            switch (f->header.type) {
            case PR_MSG_INFO: n_info++; CHECK_EQ(pr_info_unpack(f->payload, f->payload_len, &last_info), PR_OK); break;
            case PR_MSG_STATE: CHECK_EQ(pr_state_unpack(f->payload, f->payload_len, &last_state), PR_OK); break;
            case PR_MSG_ACK: n_ack++; CHECK_EQ(pr_ack_unpack(f->payload, f->payload_len, &last_ack), PR_OK); break;
            case PR_MSG_FAULT: n_fault++; CHECK_EQ(pr_fault_unpack(f->payload, f->payload_len, &last_fault), PR_OK); break;
            default: break;
            }
        }
    }
}

static void send(uint8_t type, const uint8_t *payload, size_t len)
{
    uint8_t f[PR_MAX_FRAME];
    size_t n = pr_frame_encode(type, host_seq++, payload, len, f, sizeof f);
    shim::rx_push(f, n);
}
static void send_hello(uint16_t rate)
{
    uint8_t p[2];
    pr_put_u16(p, rate);
    send(PR_MSG_HELLO, p, 2);
}
static void send_command(float volts)
{
    uint8_t p[8];
    pr_put_u32(p, 0);
    pr_put_f32(p + 4, volts);
    send(PR_MSG_COMMAND, p, 8);
}

/* Run loop() for us microseconds of board time, in steps. */
static void run(uint32_t us, uint32_t step = 50)
{
    uint32_t end = shim::now_us + us;
    while ((int32_t)(end - shim::now_us) > 0) {
        shim::now_us += step;
        loop();
        drain();
    }
}

/* Quadrature: + is A leading B, 00 -> 10 -> 11 -> 01. Phase p of an encoder in 0..3. */
static int phase[2];
static void encoder_step(int which, int dir)
{
    static const int seq[4][2] = {{0, 0}, {1, 0}, {1, 1}, {0, 1}};
    int a = which == 0 ? ARM_A : PEND_A;
    int b = which == 0 ? ARM_B : PEND_B;
    int from = phase[which];
    int to = (from + (dir > 0 ? 1 : 3)) % 4;
    /* exactly one channel changes per step */
    if (seq[from][0] != seq[to][0]) shim::set_input((uint8_t)a, seq[to][0]);
    if (seq[from][1] != seq[to][1]) shim::set_input((uint8_t)b, seq[to][1]);
    phase[which] = to;
}

/* Turn an encoder by counts at a steady rate (counts/s), running loop() meanwhile. */
static void spin(int which, long counts, double counts_per_s)
{
    double t = (double)shim::now_us, interval = 1.0e6 / counts_per_s;
    long done = 0;
    long total = labs(counts);
    while (done < total) {
        t += interval;
        while ((double)shim::now_us < t + 0.5) { /* loop in 50 us passes until the edge */
            shim::now_us += 50;
            loop();
            drain();
        }
        encoder_step(which, counts > 0 ? 1 : -1);
        done++;
    }
}

static void boot(void)
{
    shim::reset();
    memset(phase, 0, sizeof phase);
    pr_rx_init(&rx, rx_buf, sizeof rx_buf, NULL);
    n_info = n_ack = n_fault = rx_drops = 0;
    host_seq = 0;
    shim::set_input(ESTOP, LOW); /* the e-stop switch is closed */
    shim::set_input(ARM_A, LOW);  /* both encoders at rest in phase 00 */
    shim::set_input(ARM_B, LOW);
    shim::set_input(PEND_A, LOW);
    shim::set_input(PEND_B, LOW);
    shim::now_us = 1000;
    setup();
    drain();
}

static void test_setup_and_info(void)
{
    boot();
    CHECK_EQ(shim::baud, 1000000u);
    CHECK_EQ(shim::mode[PWM], OUTPUT);
    CHECK_EQ(shim::pwm[PWM], 0); /* safe before anything else */
    CHECK_EQ(shim::level[STBY], LOW);
    CHECK_EQ(shim::level[IN1], LOW);
    CHECK_EQ(shim::level[IN2], LOW);
    CHECK_EQ(shim::irq_mode[ARM_A], CHANGE);
    CHECK_EQ(shim::irq_mode[ARM_B], CHANGE);
    CHECK_EQ(shim::irq_mode[PEND_A], CHANGE);
    CHECK_EQ(shim::irq_mode[PEND_B], CHANGE);
    CHECK_EQ(shim::mode[ESTOP], INPUT_PULLUP);

    send_hello(100);
    run(20000);
    CHECK_EQ(n_info, 1);
    CHECK_BYTES(last_info.name, last_info.name_len, "furuta", 6);
    CHECK_EQ(last_info.n_sensors, 4);
    CHECK_EQ(last_info.n_actuators, 1);
    CHECK_EQ(last_info.min_rate_hz, 10);
    CHECK_EQ(last_info.max_rate_hz, 2000);
    CHECK_EQ(last_info.watchdog_ms, 50);
    CHECK(last_info.boot_id != 0u);
    CHECK_EQ(last_state.n_sensors, 4);
    CHECK_EQ(last_state.status, PR_STATUS_STREAMING);
    CHECK(last_state.sensors[0] == 0.0f && last_state.sensors[1] == 0.0f);
    CHECK_EQ(shim::interrupts_off, 0);
    CHECK_EQ(rx_drops, 0);
}

static void test_angles_and_velocities(void)
{
    boot();
    send_hello(200);
    run(10000);
    /* One arm revolution forward: 2048 counts = 2 pi; the pendulum a quarter turn back. */
    spin(0, 2048, 20000.0);
    spin(1, -512, 20000.0);
    run(20000);
    CHECK(fabs(last_state.sensors[0] - 2.0 * M_PI) < 1e-5);
    CHECK(fabs(last_state.sensors[1] + M_PI / 2.0) < 1e-5);
    /* Multi-turn, not wrapped: another half turn of the pendulum back is -pi upright... */
    spin(1, -1024, 20000.0);
    run(20000);
    CHECK(fabs(last_state.sensors[1] + 1.5 * M_PI) < 1e-5);

    /* Velocity: the pendulum at 5 rev/s (10240 counts/s) for 0.2 s, far past the filter's
     * 3.2 ms time constant; one count more or less per 0.5 ms period moves the estimate by
     * 6.1 rad/s x 0.136 = 0.84 rad/s, under 3 % of 31.4 rad/s. */
    spin(1, 2048, 10240.0);
    CHECK(fabs(last_state.sensors[3] - 10.0 * M_PI) < 0.05 * 10.0 * M_PI);
    CHECK(fabs(last_state.sensors[2]) < 1e-3); /* the arm is still */
    /* The arm at -2.5 rev/s. */
    spin(0, -1024, 5120.0);
    CHECK(fabs(last_state.sensors[2] + 5.0 * M_PI) < 0.05 * 5.0 * M_PI);
    /* Stopped: the estimate decays to zero within a few filter time constants. */
    run(100000);
    CHECK(fabs(last_state.sensors[2]) < 1e-3 && fabs(last_state.sensors[3]) < 1e-3);
    CHECK_EQ(n_fault, 0);
}

static void test_motor(void)
{
    boot();
    send_hello(100);
    run(5000);
    /* Disarmed: a COMMAND leaves the bridge off. */
    send_command(5.0f);
    run(1000);
    CHECK_EQ(shim::pwm[PWM], 0);
    CHECK_EQ(shim::level[STBY], LOW);

    send(PR_MSG_ENABLE, NULL, 0);
    run(1000);
    CHECK_EQ(n_ack, 1);
    CHECK_EQ(last_ack.result, 0);
    CHECK_EQ(shim::level[LED], HIGH);
    send_command(6.0f); /* 6 V of a 12 V supply: half duty */
    run(1000);
    CHECK_EQ(shim::pwm[PWM], 128);
    CHECK_EQ(shim::level[IN1], HIGH);
    CHECK_EQ(shim::level[IN2], LOW);
    CHECK_EQ(shim::level[STBY], HIGH);
    send_command(-3.0f);
    run(1000);
    CHECK_EQ(shim::pwm[PWM], 64);
    CHECK_EQ(shim::level[IN1], LOW);
    CHECK_EQ(shim::level[IN2], HIGH);
    send_command(10.0f);
    run(1000);
    CHECK_EQ(shim::pwm[PWM], 213);
    send_command(0.0f);
    run(1000);
    CHECK_EQ(shim::pwm[PWM], 0);
    CHECK_EQ(shim::level[STBY], LOW);
    /* Out of range: BAD_COMMAND, bridge off. */
    send_command(7.0f);
    run(1000);
    CHECK_EQ(shim::pwm[PWM], 149);
    send_command(10.5f);
    run(1000);
    CHECK_EQ(shim::pwm[PWM], 0);
    CHECK_EQ(shim::level[STBY], LOW);
    CHECK_EQ(n_fault, 1);
    CHECK_EQ(last_fault.code, PR_FAULT_BAD_COMMAND);
    CHECK_EQ(shim::level[LED], LOW);
}

static void test_watchdog_cuts_motor(void)
{
    uint32_t t_cmd;

    boot();
    send_hello(500);
    run(5000);
    send(PR_MSG_ENABLE, NULL, 0);
    send_command(8.0f);
    run(100);
    t_cmd = shim::now_us;
    CHECK(shim::pwm[PWM] > 0);
    run(49000, 10);
    CHECK(shim::pwm[PWM] > 0); /* 49 ms: still driving */
    run(1100, 10);
    CHECK_EQ(shim::pwm[PWM], 0); /* by 50 ms (+ one loop pass): cut */
    CHECK_EQ(shim::level[STBY], LOW);
    CHECK_EQ(n_fault, 1);
    CHECK_EQ(last_fault.code, PR_FAULT_WATCHDOG);
    CHECK(last_fault.t_us - (uint64_t)t_cmd <= 50000u + 10u);
    CHECK(last_fault.t_us - (uint64_t)t_cmd >= 50000u - 100u);
}

static void test_board_faults(void)
{
    int i;

    /* Arm past its travel (the spec's envelope, robot_spec.h: 2 rad = 652 counts) while
     * armed: LIMIT. */
    boot();
    send_hello(200);
    send(PR_MSG_ENABLE, NULL, 0);
    for (i = 0; i < 40; i++) {
        send_command(1.0f);
        spin(0, 20, 20000.0);
    }
    CHECK_EQ(n_fault, 1);
    CHECK_EQ(last_fault.code, PR_FAULT_LIMIT);
    CHECK_EQ(shim::pwm[PWM], 0);

    /* A missed edge (both channels at once): SENSOR. */
    boot();
    send_hello(200);
    run(10000);
    shim::set_input(PEND_A, HIGH); /* 00 -> 10: +1 */
    shim::set_input(PEND_B, HIGH); /* 10 -> 11: +1 */
    shim::set_input(PEND_A, LOW);  /* 11 -> 01: +1 */
    run(10000);
    CHECK_EQ(n_fault, 0);
    {
        /* ... but 01 -> 10 with one interrupt is two edges at once. */
        shim::level[PEND_A] = HIGH;
        shim::set_input(PEND_B, LOW);
    }
    run(10000);
    CHECK_EQ(n_fault, 1);
    CHECK_EQ(last_fault.code, PR_FAULT_SENSOR);

    /* E-stop: the switch opens; FAULT once, then DISABLE clears it and it comes back. */
    boot();
    send_hello(100);
    send(PR_MSG_ENABLE, NULL, 0);
    send_command(4.0f);
    run(2000);
    CHECK(shim::pwm[PWM] > 0);
    shim::set_input(ESTOP, HIGH);
    run(5000);
    CHECK_EQ(shim::pwm[PWM], 0);
    CHECK_EQ(n_fault, 1);
    CHECK_EQ(last_fault.code, PR_FAULT_ESTOP);
    CHECK_BYTES(last_fault.text, last_fault.len, "e-stop open", 11);
    send(PR_MSG_ENABLE, NULL, 0);
    run(2000);
    CHECK_EQ(last_ack.result, PR_FAULT_ESTOP);
    shim::set_input(ESTOP, LOW);
    send(PR_MSG_DISABLE, NULL, 0);
    send(PR_MSG_ENABLE, NULL, 0);
    run(2000);
    CHECK_EQ(last_ack.result, 0);
    CHECK_EQ(rx_drops, 0);
}

static void test_clock_wrap(void)
{
    /* micros() wraps at 2^32 us (71.6 min); the controller's clock must not go back. */
    uint64_t before;
    boot();
    send_hello(1000);
    shim::now_us = 0xFFFFFFFFu - 20000u;
    run(10000);
    before = last_state.t_us;
    run(20000);
    CHECK(last_state.t_us > before);
    CHECK(last_state.t_us >= 0x100000000ull);
}

int main(void)
{
    test_setup_and_info();
    test_angles_and_velocities();
    test_motor();
    test_watchdog_cuts_motor();
    test_board_faults();
    test_clock_wrap();
    TEST_MAIN_END("test_furuta_sketch");
}
