/*
 * robot_spec.h: robot "furuta" (spec version 1), generated from
 * its robot spec by `python -m firmware_bridge.firmware.gen_spec furuta`.
 * Do not edit: change the spec and generate again (tests/test_firmware.py fails
 * while the two disagree).
 */
#ifndef ROBOT_SPEC_H
#define ROBOT_SPEC_H

#define ROBOT_NAME "furuta"
#define ROBOT_N_SENSORS 4
#define ROBOT_N_ACTUATORS 1

/* Sensors, in STATE order. */
#define ROBOT_SENSOR_ARM_ANGLE 0 /* rad */
#define ROBOT_SENSOR_PEND_ANGLE 1 /* rad */
#define ROBOT_SENSOR_ARM_VELOCITY 2 /* rad/s */
#define ROBOT_SENSOR_PEND_VELOCITY 3 /* rad/s */
/* Safe envelope of each sensor: LIMIT outside [min, max] while armed. */
#define ROBOT_SENSOR_MIN {-2.0f, -1000000.0f, -100.0f, -200.0f}
#define ROBOT_SENSOR_MAX {2.0f, 1000000.0f, 100.0f, 200.0f}
#define ROBOT_ARM_ANGLE_COUNTS_PER_REV 2048
#define ROBOT_PEND_ANGLE_COUNTS_PER_REV 2048

/* Actuators, in COMMAND order. */
#define ROBOT_ACTUATOR_MOTOR 0 /* V */
/* Commands outside [min, max] are refused with BAD_COMMAND. */
#define ROBOT_ACTUATOR_MIN {-10.0f}
#define ROBOT_ACTUATOR_MAX {10.0f}

#ifdef PR_CONTROLLER_H
/* The robot's part of a controller config: name, counts, sensor envelope, command
 * limits (the board sets rates, watchdog, versions and boot id). */
static inline void robot_spec_config(pr_config_t *cfg)
{
    static const float s_min[ROBOT_N_SENSORS] = ROBOT_SENSOR_MIN;
    static const float s_max[ROBOT_N_SENSORS] = ROBOT_SENSOR_MAX;
    static const float a_min[ROBOT_N_ACTUATORS] = ROBOT_ACTUATOR_MIN;
    static const float a_max[ROBOT_N_ACTUATORS] = ROBOT_ACTUATOR_MAX;
    uint8_t i;

    cfg->name = ROBOT_NAME;
    cfg->n_sensors = ROBOT_N_SENSORS;
    cfg->n_actuators = ROBOT_N_ACTUATORS;
    for (i = 0; i < ROBOT_N_SENSORS; i++) {
        cfg->sensor_min[i] = s_min[i];
        cfg->sensor_max[i] = s_max[i];
    }
    for (i = 0; i < ROBOT_N_ACTUATORS; i++) {
        cfg->actuator_min[i] = a_min[i];
        cfg->actuator_max[i] = a_max[i];
    }
}
#endif /* PR_CONTROLLER_H */

#endif /* ROBOT_SPEC_H */
