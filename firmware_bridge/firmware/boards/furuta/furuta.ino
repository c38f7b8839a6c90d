/*
 * furuta.ino: the rotary (Furuta) pendulum controller, on the ppo-robot wire protocol.
 *
 * Owns the hardware side of the board: two quadrature encoders read by interrupts, the
 * velocity estimator, a TB6612FNG H-bridge driven by PWM and two direction pins, the
 * e-stop input and the clock. Everything the protocol requires (framing, HELLO / INFO /
 * STATE, ENABLE / DISABLE, COMMAND checks, watchdog, faults) is the library's
 * (firmware_bridge/firmware/lib, pr_controller.h); this file only fills in its HAL.
 *
 * Robot "furuta": 4 sensors, in order arm_angle (rad), pend_angle (rad, 0 hanging down,
 * +-pi upright), arm_velocity (rad/s), pend_velocity (rad/s); 1 actuator, motor_voltage
 * (V, -10..10). STATE rates 10..2000 Hz, watchdog 50 ms.
 *
 * Reference board: Arduino Mega 2560 (4 external interrupt pins for the 4 encoder channels).
 * Pin map and wiring: README.md next to this file. Build: see firmware_bridge/firmware/README.md
 * (arduino-cli with --library pointing at ../../lib, or `make avr`).
 */
#include <Arduino.h>
#include <string.h>

#include "pr_controller.h"
#include "furuta_io.h" /* and robot_spec.h, the spec's numbers (generated) */

/* ---- Pin map (README.md) -------------------------------------------------------------- */

#define PIN_ARM_A 2    /* arm encoder channel A, INT4 on the Mega */
#define PIN_ARM_B 3    /* arm encoder channel B, INT5 */
#define PIN_PEND_A 18  /* pendulum encoder channel A, INT3 */
#define PIN_PEND_B 19  /* pendulum encoder channel B, INT2 */
#define PIN_MOTOR_PWM 9 /* TB6612FNG PWMA (Timer2 on the Mega, set to 31.4 kHz) */
#define PIN_MOTOR_IN1 7 /* TB6612FNG AIN1 */
#define PIN_MOTOR_IN2 8 /* TB6612FNG AIN2 */
#define PIN_MOTOR_STBY 6 /* TB6612FNG STBY: low puts the bridge in standby (outputs off) */
#define PIN_LED 13      /* on while the actuators are armed */

/* E-stop: a normally-closed switch from this pin to GND. Open (pressed, or a broken wire)
 * reads HIGH through the pull-up and raises the ESTOP fault. No e-stop: a jumper to GND,
 * or -1 here. */
#ifndef FURUTA_PIN_ESTOP
#define FURUTA_PIN_ESTOP 4
#endif

/* ---- Board figures -------------------------------------------------------------------- */

#define SERIAL_BAUD 1000000UL /* 2000 Hz of 46-byte STATE frames needs 920 kbit/s */
#define MOTOR_SUPPLY_V 12.0f  /* the H-bridge's motor supply (VM); volts map to duty by it */
#define PWM_MAX 255u          /* analogWrite range */
#define FIRMWARE_VERSION_MAJOR 0
#define FIRMWARE_VERSION_MINOR 1
#define FIRMWARE_VERSION_PATCH 0

/* ---- Encoders (interrupts) ------------------------------------------------------------ */

typedef struct {
    uint8_t pin_a, pin_b;
    volatile int32_t counts;
    volatile uint8_t state;   /* last (A << 1) | B */
    volatile uint8_t invalid; /* a missed edge since the last read */
} encoder_t;

static encoder_t enc_arm = {PIN_ARM_A, PIN_ARM_B, 0, 0, 0};
static encoder_t enc_pend = {PIN_PEND_A, PIN_PEND_B, 0, 0, 0};

static uint8_t encoder_pins(const encoder_t *e)
{
    return (uint8_t)((digitalRead(e->pin_a) == HIGH ? 2u : 0u) | (digitalRead(e->pin_b) == HIGH ? 1u : 0u));
}

/* On every edge of either channel: x4 decoding. */
static void encoder_edge(encoder_t *e)
{
    uint8_t cur = encoder_pins(e);
    uint8_t invalid = 0;
    e->counts = e->counts + furuta_quad_step(e->state, cur, &invalid);
    e->state = cur;
    if (invalid) {
        e->invalid = 1;
    }
}

static void isr_arm(void) { encoder_edge(&enc_arm); }
static void isr_pend(void) { encoder_edge(&enc_pend); }

/* Copy a count out of the ISR's reach (32 bits are not atomic on AVR). */
static int32_t encoder_read(encoder_t *e, uint8_t *invalid)
{
    int32_t c;
    noInterrupts();
    c = e->counts;
    *invalid |= e->invalid;
    e->invalid = 0;
    interrupts();
    return c;
}

/* ---- Clock ------------------------------------------------------------------------------ */

static uint32_t clock_last;
static uint32_t clock_high;

/* micros() wraps every 71.6 minutes; extend it to 64 bits. Called on every loop pass. */
static uint64_t board_micros64(void)
{
    uint32_t now = micros();
    if (now < clock_last) {
        clock_high++;
    }
    clock_last = now;
    return ((uint64_t)clock_high << 32) | now;
}

/* ---- Velocity estimator (loop, fixed period) ---------------------------------------- */

static furuta_vel_t vel_arm;
static furuta_vel_t vel_pend;
static uint64_t vel_last_us;
static uint8_t encoder_fault; /* a missed edge seen by the estimator, reported at the next read */

static void update_velocities(uint64_t now)
{
    float dt;
    if (now - vel_last_us < FURUTA_VEL_PERIOD_US) {
        return;
    }
    dt = (float)(uint32_t)(now - vel_last_us) * 1e-6f;
    vel_last_us = now;
    furuta_vel_update(&vel_arm, encoder_read(&enc_arm, &encoder_fault), dt);
    furuta_vel_update(&vel_pend, encoder_read(&enc_pend, &encoder_fault), dt);
}

/* ---- HAL for the controller --------------------------------------------------------- */

static int hal_read_sensors(void *ctx, float *out, uint8_t n)
{
    uint8_t invalid = encoder_fault;
    int32_t arm = encoder_read(&enc_arm, &invalid);
    int32_t pend = encoder_read(&enc_pend, &invalid);
    (void)ctx;
    (void)n; /* always 4: the config says so */
    encoder_fault = 0;
    out[0] = furuta_counts_to_rad(arm);
    out[1] = furuta_counts_to_rad(pend);
    out[2] = vel_arm.velocity;
    out[3] = vel_pend.velocity;
    /* A missed edge leaves the angle wrong for the rest of the run: a failed read. */
    return invalid ? -1 : 0;
}

static void hal_safe_state(void *ctx)
{
    (void)ctx;
    analogWrite(PIN_MOTOR_PWM, 0);
    digitalWrite(PIN_MOTOR_IN1, LOW);
    digitalWrite(PIN_MOTOR_IN2, LOW);
    digitalWrite(PIN_MOTOR_STBY, LOW); /* outputs off: zero current, the motor coasts */
}

static void hal_write_actuators(void *ctx, const float *value, uint8_t n)
{
    int8_t dir = 0;
    uint16_t duty = furuta_volts_to_pwm(value[0], MOTOR_SUPPLY_V, PWM_MAX, &dir);
    (void)ctx;
    (void)n;
    if (dir == 0) {
        hal_safe_state(NULL);
        return;
    }
    /* Positive volts turn the arm towards +theta (IN1 high); swap the motor leads if not. */
    digitalWrite(PIN_MOTOR_IN1, dir > 0 ? HIGH : LOW);
    digitalWrite(PIN_MOTOR_IN2, dir > 0 ? LOW : HIGH);
    digitalWrite(PIN_MOTOR_STBY, HIGH);
    analogWrite(PIN_MOTOR_PWM, (int)duty);
}

static uint64_t hal_micros(void *ctx)
{
    (void)ctx;
    return board_micros64();
}

static void hal_serial_write(void *ctx, const uint8_t *data, size_t n)
{
    (void)ctx;
    Serial.write(data, n);
}

/* ---- Boot id ---------------------------------------------------------------------------- */

/* Random per boot: the noise of a floating analog input and the time setup took, mixed by
 * a 32-bit FNV-1a. A counter in EEPROM is the alternative where an input is not floating. */
static uint32_t board_boot_id(void)
{
    uint32_t h = 2166136261u;
    uint8_t i;
    for (i = 0; i < 32; i++) {
        uint32_t sample = (uint32_t)analogRead(A0) ^ (micros() << 8);
        h = (h ^ (sample & 0xFFu)) * 16777619u;
        h = (h ^ ((sample >> 8) & 0xFFu)) * 16777619u;
    }
    return h != 0u ? h : 1u;
}

/* ---- Controller ------------------------------------------------------------------------- */

static pr_controller_t ctl;
static pr_config_t cfg;
static pr_hal_t hal;

void setup()
{
    /* Start from a known state even if setup() runs again without a reset (the host test
     * of this sketch boots it several times). */
    clock_last = 0;
    clock_high = 0;
    enc_arm.counts = 0;
    enc_arm.invalid = 0;
    enc_pend.counts = 0;
    enc_pend.invalid = 0;
    memset(&vel_arm, 0, sizeof vel_arm);
    memset(&vel_pend, 0, sizeof vel_pend);
    encoder_fault = 0;
    memset(&cfg, 0, sizeof cfg);

    /* Actuators safe before anything else can happen. */
    pinMode(PIN_MOTOR_PWM, OUTPUT);
    pinMode(PIN_MOTOR_IN1, OUTPUT);
    pinMode(PIN_MOTOR_IN2, OUTPUT);
    pinMode(PIN_MOTOR_STBY, OUTPUT);
    hal_safe_state(NULL);
    pinMode(PIN_LED, OUTPUT);
    digitalWrite(PIN_LED, LOW);
#if defined(__AVR_ATmega2560__)
    /* Timer2 (pins 9, 10) without prescaler: 31.4 kHz phase-correct PWM, above hearing. */
    TCCR2B = (uint8_t)((TCCR2B & 0xF8u) | 0x01u);
#endif
#if FURUTA_PIN_ESTOP >= 0
    pinMode(FURUTA_PIN_ESTOP, INPUT_PULLUP);
#endif

    pinMode(PIN_ARM_A, INPUT_PULLUP);
    pinMode(PIN_ARM_B, INPUT_PULLUP);
    pinMode(PIN_PEND_A, INPUT_PULLUP);
    pinMode(PIN_PEND_B, INPUT_PULLUP);
    enc_arm.state = encoder_pins(&enc_arm);
    enc_pend.state = encoder_pins(&enc_pend);
    attachInterrupt(digitalPinToInterrupt(PIN_ARM_A), isr_arm, CHANGE);
    attachInterrupt(digitalPinToInterrupt(PIN_ARM_B), isr_arm, CHANGE);
    attachInterrupt(digitalPinToInterrupt(PIN_PEND_A), isr_pend, CHANGE);
    attachInterrupt(digitalPinToInterrupt(PIN_PEND_B), isr_pend, CHANGE);

    /* Name, counts, command limits and each sensor's safe envelope (LIMIT outside it while
     * armed: the arm beyond its travel, a runaway velocity) from the robot spec. */
    robot_spec_config(&cfg);
    cfg.min_rate_hz = 10;
    cfg.max_rate_hz = 2000;
    cfg.watchdog_ms = 50;
    cfg.firmware_version[0] = FIRMWARE_VERSION_MAJOR;
    cfg.firmware_version[1] = FIRMWARE_VERSION_MINOR;
    cfg.firmware_version[2] = FIRMWARE_VERSION_PATCH;
    cfg.boot_id = board_boot_id();

    hal.ctx = NULL;
    hal.read_sensors = hal_read_sensors;
    hal.write_actuators = hal_write_actuators;
    hal.safe_state = hal_safe_state;
    hal.micros = hal_micros;
    hal.serial_write = hal_serial_write;
    hal.on_event = NULL;

    Serial.begin(SERIAL_BAUD);
    vel_last_us = board_micros64();
    if (pr_controller_init(&ctl, &cfg, &hal) != PR_OK) {
        /* A config the protocol cannot describe: stay safe, LED on, never arm. */
        digitalWrite(PIN_LED, HIGH);
    }
}

void loop()
{
    uint8_t buf[64];
    size_t n = 0;

    while (n < sizeof buf && Serial.available() > 0) {
        buf[n++] = (uint8_t)Serial.read();
    }
    if (n > 0) {
        pr_controller_rx_bytes(&ctl, buf, n);
    }
    update_velocities(board_micros64());
#if FURUTA_PIN_ESTOP >= 0
    if (digitalRead(FURUTA_PIN_ESTOP) == HIGH) {
        pr_controller_fault(&ctl, PR_FAULT_ESTOP, "e-stop open", 0); /* once per latch */
    }
#endif
    pr_controller_poll(&ctl);
    digitalWrite(PIN_LED, (pr_controller_status(&ctl) & PR_STATUS_ENABLED) ? HIGH : LOW);
}
