/* host_args: pr_host's command line, parsed and checked (usage text included). */
#ifndef PR_HOST_ARGS_H
#define PR_HOST_ARGS_H

#include <stdint.h>
#include <stdio.h>

typedef struct {
    const char *link_path;   /* --port-link, or NULL */
    const char *name;        /* --name */
    const char *sensor_file; /* --sensor-file, or NULL */
    const char *model;       /* --model: the robot's MJCF */
    unsigned long watchdog_ms;
    uint64_t seed;
    int have_seed;
    unsigned long steps;     /* --steps: offline mode when > 0 */
    double command;          /* --command: the offline mode's motor command */
    int have_command;
} host_args_t;

/* 0: parsed; 1: --help printed, exit 0; 2: bad arguments, reason on stderr, exit 2. */
int host_args_parse(host_args_t *a, int argc, char **argv);
void host_args_usage(FILE *to);

#endif /* PR_HOST_ARGS_H */
