/*
 * furuta_io: the Furuta pendulum board's conversions, with no hardware access: quadrature
 * decoding, counts to radians, the velocity estimator, volts to PWM. The sketch
 * (furuta.ino) uses them on the board; the host build (host/pr_host.c) uses the same ones on
 * its simulated encoders, so that what the host sees from the compiled C is what a board
 * would send. Header-only, C99 and C++.
 *
 * Conventions (envs/robots/furuta/furuta.xml): arm angle theta about +z (up), 0 where the arm was
 * at boot; pendulum angle alpha about the arm's axis, 0 hanging straight down, +-pi upright.
 * Both angles are multi-turn (not wrapped), as MuJoCo's joint positions in the simulation.
 */
#ifndef FURUTA_IO_H
#define FURUTA_IO_H

#include <stdint.h>

#include "robot_spec.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Encoder resolution: counts per revolution after x4 quadrature decoding (every edge of
 * both channels counts), from the robot spec (envs/robots/furuta/layout.py, ENCODER_COUNTS; generated
 * into robot_spec.h). 2048 is the QUBE-Servo 2's figure ("2048 counts/rev in quadrature",
 * i.e. a 512-line encoder). A 2048-line (CPR) encoder gives 8192 counts: set 8192 in the
 * spec and generate robot_spec.h again, so that simulation and board agree.
 */
#if ROBOT_ARM_ANGLE_COUNTS_PER_REV != ROBOT_PEND_ANGLE_COUNTS_PER_REV
#error "furuta_io.h converts both encoders with one count per revolution: the spec's differ"
#endif
#define FURUTA_COUNTS_PER_REV ROBOT_ARM_ANGLE_COUNTS_PER_REV

/* Velocity estimator: finite difference every FURUTA_VEL_PERIOD_US (2 kHz, the fastest
 * STATE rate), first-order low-pass at FURUTA_VEL_CUTOFF_HZ. 50 Hz passes the pendulum's
 * dynamics (natural frequency about 1.7 Hz hanging) with about 3 ms of lag, and smooths the
 * steps of the raw difference, where one count per period is 3.07 mrad / 0.5 ms = 6.1 rad/s. */
#ifndef FURUTA_VEL_PERIOD_US
#define FURUTA_VEL_PERIOD_US 500u
#endif
#ifndef FURUTA_VEL_CUTOFF_HZ
#define FURUTA_VEL_CUTOFF_HZ 50.0f
#endif

#define FURUTA_TWO_PI 6.28318530717958647692f

/*
 * Quadrature step from the previous to the current channel state (bit 1 = A, bit 0 = B):
 * +1 when A leads B (00 -> 10 -> 11 -> 01 -> 00), -1 the other way, 0 for no change.
 * Both channels changing at once (00 <-> 11, 01 <-> 10) means an edge was missed: the
 * return is 0 and *invalid is set.
 */
static inline int8_t furuta_quad_step(uint8_t prev, uint8_t cur, uint8_t *invalid)
{
    static const int8_t table[16] = {0, -1, +1, 0, +1, 0, 0, -1, -1, 0, 0, +1, 0, +1, -1, 0};
    uint8_t idx = (uint8_t)(((prev & 3u) << 2) | (cur & 3u));
    if (idx == 3u || idx == 6u || idx == 9u || idx == 12u) {
        *invalid = 1;
    }
    return table[idx];
}

static inline float furuta_counts_to_rad(int32_t counts)
{
    return (float)counts * (FURUTA_TWO_PI / (float)FURUTA_COUNTS_PER_REV);
}

/* One encoder's velocity estimate, in rad/s. Zero-initialize, then update at a fixed period. */
typedef struct {
    int32_t last_counts;
    float velocity;
    uint8_t primed;
} furuta_vel_t;

/* Update with the current count and the time since the last update (dt_s > 0). */
static inline void furuta_vel_update(furuta_vel_t *v, int32_t counts, float dt_s)
{
    const float tau = 1.0f / (FURUTA_TWO_PI * FURUTA_VEL_CUTOFF_HZ);
    float raw;

    if (!v->primed || !(dt_s > 0.0f)) {
        v->last_counts = counts;
        v->primed = 1;
        return;
    }
    raw = furuta_counts_to_rad(counts - v->last_counts) / dt_s;
    v->velocity += (dt_s / (tau + dt_s)) * (raw - v->velocity);
    v->last_counts = counts;
}

/*
 * Motor voltage to H-bridge PWM: duty in [0, pwm_max] for |volts| out of supply_v, rounded,
 * clipped at full duty (a supply below the 10 V limit saturates the command); *dir is +1,
 * -1 or 0 (0 V: bridge off).
 */
static inline uint16_t furuta_volts_to_pwm(float volts, float supply_v, uint16_t pwm_max,
                                           int8_t *dir)
{
    float mag = volts < 0.0f ? -volts : volts;
    float duty = mag / supply_v * (float)pwm_max + 0.5f;

    *dir = volts > 0.0f ? (int8_t)1 : (volts < 0.0f ? (int8_t)-1 : (int8_t)0);
    if (!(duty < (float)pwm_max)) {
        return pwm_max;
    }
    return (uint16_t)duty;
}

#ifdef __cplusplus
}
#endif

#endif /* FURUTA_IO_H */
