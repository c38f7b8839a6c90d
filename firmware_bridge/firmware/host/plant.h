/*
 * plant: the robot's own MJCF, loaded and stepped by libmujoco, in place of the hardware.
 *
 * The angles come from the model's sensors (looked up by the spec's names), quantized as the
 * board's encoders count them; the velocities are the board's own filter over those counts
 * (boards/furuta/furuta_io.h). No robot figure is written here: they are all in the MJCF.
 */
#ifndef PR_HOST_PLANT_H
#define PR_HOST_PLANT_H

#include <stddef.h>
#include <stdint.h>

#include <mujoco/mujoco.h>

#include "furuta_io.h"

typedef struct {
    mjModel *m;
    mjData *d;
    int act;               /* actuator driven by the COMMAND */
    int adr_arm, adr_pend; /* sensordata addresses of the two encoder angles */
    uint64_t step_us;      /* the model's timestep, us */
    uint64_t t_us;         /* plant time */
    uint64_t vel_us;       /* last velocity update, plant time */
    furuta_vel_t vel_arm, vel_pend;
} plant_t;

/* Load the MJCF at path, at rest (qpos0). 0, or -1 with a one-line reason in err. */
int plant_load(plant_t *p, const char *path, char *err, size_t err_len);
void plant_free(plant_t *p);

/* One physics step (mj_step) at motor command volts, then the board's velocity filter. */
void plant_step(plant_t *p, double volts);

/* The board's readings, in STATE order: encoder angles, filtered velocities. */
void plant_read(const plant_t *p, float out[ROBOT_N_SENSORS]);

/* An angle as the encoder counts it. */
int32_t plant_encoder_counts(double angle);

#endif /* PR_HOST_PLANT_H */
