/*
 * pr_host: the reference firmware running on the host, behind a pseudo-terminal, so that the
 * Python bridge deploys against compiled C exactly as against a board.
 *
 * Owns the POSIX side: the pty (raw mode, optional symlink), the real clock, signals, the
 * log on stderr, and a plant in place of hardware: the robot's own MJCF (--model; default
 * the registry's, written into build/host_model.h by the Makefile) stepped by libmujoco on
 * the real clock from rest, its angles quantized as the board's encoders and its velocities
 * estimated by the board's own filter (host/plant.c). Sensors can come from a file instead.
 * The protocol itself is the library's (lib/pr_controller.h), as on the board.
 *
 *   pr_host [--port-link PATH] [--watchdog-ms N] [--name NAME] [--seed N] [--sensor-file PATH]
 *           [--model PATH] [--steps N --command V]
 *
 * First line on stdout: "PORT /dev/pts/N". SIGTERM or SIGINT: safe state, remove the
 * symlink, exit 0. --steps N --command V: no pty, N physics steps printed (host_args.c).
 */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "pr_controller.h"
#include "host_args.h"
#include "plant.h" /* furuta_io.h, robot_spec.h: the spec's numbers (generated) */

#define POLL_TIMEOUT_US 200      /* main loop period bound: watchdog latency is this much */
#define PLANT_MAX_CATCHUP_S 1.0  /* after a stall (process stopped), skip ahead, not replay */
#define FIRMWARE_VERSION {0, 1, 0}

/* ---- The host "board" ------------------------------------------------------------------ */

typedef struct {
    int master;            /* pty master, non-blocking */
    int slave;             /* held open so the master never sees a hang-up between clients */
    char slave_path[128];
    const char *link_path; /* --port-link, or NULL */
    struct timespec t0;

    plant_t plant;
    double volts;          /* applied motor voltage (0 in the safe state) */
    uint64_t plant_us;     /* plant time, on the controller clock */

    float *file_rows;      /* --sensor-file: rows of n_sensors values */
    size_t file_n_rows, file_next;

    uint64_t tx_dropped;   /* bytes the pty would not take (no reader) */
    int disarmed_ignored_logged;
    uint64_t drops_logged;
    uint64_t last_drop_summary_us;
} host_t;

static host_t host;
static pr_controller_t ctl;
static pr_config_t cfg;
static volatile sig_atomic_t stop_signal;

static uint64_t host_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t us = (int64_t)(ts.tv_sec - host.t0.tv_sec) * 1000000 +
                 (int64_t)(ts.tv_nsec - host.t0.tv_nsec) / 1000;
    return us > 0 ? (uint64_t)us : 0u;
}

static void logf_(const char *fmt, ...)
{
    va_list ap;
    uint64_t t = host_now_us();
    fprintf(stderr, "pr_host [%llu.%06llu] ", (unsigned long long)(t / 1000000u),
            (unsigned long long)(t % 1000000u));
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static const char *fault_name(unsigned code)
{
    static const char *const names[] = {"NONE", "WATCHDOG", "BAD_COMMAND", "SENSOR", "LIMIT", "ESTOP"};
    return code < sizeof names / sizeof names[0] ? names[code] : "?";
}

/* Advance the plant to the controller's clock in whole physics steps. */
static void plant_advance(uint64_t now)
{
    if (now > host.plant_us + (uint64_t)(PLANT_MAX_CATCHUP_S * 1e6)) {
        logf_("clock jumped %.3f s ahead: plant skips, not replays",
              (double)(now - host.plant_us) * 1e-6);
        host.plant_us = now;
    }
    while (host.plant_us + host.plant.step_us <= now) {
        plant_step(&host.plant, host.volts);
        host.plant_us += host.plant.step_us;
    }
}

/* ---- HAL ---------------------------------------------------------------------------------- */

static int hal_read_sensors(void *ctx, float *out, uint8_t n)
{
    uint8_t i;
    (void)ctx;
    if (host.file_rows != NULL) {
        const float *row = host.file_rows + host.file_next * n;
        for (i = 0; i < n; i++) out[i] = row[i];
        if (host.file_next + 1u < host.file_n_rows) host.file_next++; /* hold the last row */
        return 0;
    }
    plant_read(&host.plant, out);
    return 0;
}

static void hal_write_actuators(void *ctx, const float *value, uint8_t n)
{
    (void)ctx;
    (void)n;
    host.volts = value[0];
}

static void hal_safe_state(void *ctx)
{
    (void)ctx;
    host.volts = 0.0;
}

static uint64_t hal_micros(void *ctx)
{
    (void)ctx;
    return host_now_us();
}

static void hal_serial_write(void *ctx, const uint8_t *data, size_t n)
{
    size_t done = 0;
    (void)ctx;
    while (done < n) {
        ssize_t w = write(host.master, data + done, n - done);
        if (w > 0) {
            done += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else {
            /* Nobody reads and the pty buffer is full: drop, as a UART with no listener. */
            if (host.tx_dropped == 0) {
                logf_("pty output full (no reader?): dropping output");
            }
            host.tx_dropped += n - done;
            return;
        }
    }
}

static void hal_on_event(void *ctx, const pr_event_t *ev)
{
    (void)ctx;
    switch (ev->kind) {
    case PR_EV_HELLO:
        if (ev->code) {
            logf_("HELLO: INFO sent, streaming STATE at %u Hz", (unsigned)ev->value);
        } else if (ev->value == 0) {
            logf_("HELLO(0): INFO sent, stream stopped");
        } else {
            logf_("HELLO: %u Hz is outside %u..%u Hz: INFO sent, no stream", (unsigned)ev->value,
                  (unsigned)cfg.min_rate_hz, (unsigned)cfg.max_rate_hz);
        }
        host.disarmed_ignored_logged = 0;
        break;
    case PR_EV_ENABLE:
        logf_("ENABLE: actuators armed (watchdog %u ms)", (unsigned)cfg.watchdog_ms);
        host.disarmed_ignored_logged = 0;
        break;
    case PR_EV_ENABLE_REFUSED:
        logf_("ENABLE refused: fault %s latched (DISABLE clears it)", fault_name(ev->code));
        break;
    case PR_EV_DISABLE:
        logf_("DISABLE: actuators safe%s%s", ev->code ? ", cleared fault " : "",
              ev->code ? fault_name(ev->code) : "");
        break;
    case PR_EV_COMMAND_IGNORED:
        if (!host.disarmed_ignored_logged) {
            logf_("COMMAND while disarmed: ignored (logged once until the next ENABLE/HELLO)");
            host.disarmed_ignored_logged = 1;
        }
        break;
    case PR_EV_FAULT:
        if (ev->code == PR_FAULT_WATCHDOG) {
            logf_("watchdog tripped: no valid COMMAND for %.3f ms (limit %u ms): motor cut to 0 V, "
                  "fault WATCHDOG latched",
                  (double)ev->value / 1000.0, (unsigned)cfg.watchdog_ms);
        } else if (ev->code == PR_FAULT_BAD_COMMAND) {
            logf_("fault BAD_COMMAND (actuator %u not finite or outside its limits): motor cut to 0 V",
                  (unsigned)ev->value);
        } else {
            logf_("fault %s: actuators safe", fault_name(ev->code));
        }
        break;
    case PR_EV_RX_DROP:
        host.drops_logged++;
        if (host.drops_logged <= 10u) {
            logf_("dropped a frame (%s); rx_errors %u", pr_err_name((pr_err_t)ev->code),
                  (unsigned)pr_controller_rx_errors(&ctl));
        } else if (ev->t_us - host.last_drop_summary_us >= 1000000u) {
            logf_("rx_errors %u (dropped frames, logged once a second)",
                  (unsigned)pr_controller_rx_errors(&ctl));
            host.last_drop_summary_us = ev->t_us;
        }
        break;
    }
}

/* ---- Setup ---------------------------------------------------------------------------- */

static void on_signal(int sig)
{
    stop_signal = sig;
}

static int open_pty(void)
{
    struct termios tio;
    const char *name;
    int flags;

    host.master = posix_openpt(O_RDWR | O_NOCTTY);
    if (host.master < 0 || grantpt(host.master) != 0 || unlockpt(host.master) != 0) {
        perror("pr_host: posix_openpt");
        return -1;
    }
    name = ptsname(host.master);
    if (name == NULL || strlen(name) >= sizeof host.slave_path) {
        perror("pr_host: ptsname");
        return -1;
    }
    strcpy(host.slave_path, name);
    host.slave = open(host.slave_path, O_RDWR | O_NOCTTY);
    if (host.slave < 0) {
        perror("pr_host: open slave");
        return -1;
    }
    /* Raw 8-bit mode, no echo, no line discipline (cfmakeraw, spelled out for POSIX). */
    if (tcgetattr(host.slave, &tio) != 0) {
        perror("pr_host: tcgetattr");
        return -1;
    }
    tio.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON | IXOFF);
    tio.c_oflag &= ~(tcflag_t)OPOST;
    tio.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    tio.c_cflag &= ~(tcflag_t)(CSIZE | PARENB);
    tio.c_cflag |= CS8 | CLOCAL | CREAD;
    tio.c_cc[VMIN] = 1;
    tio.c_cc[VTIME] = 0;
    if (tcsetattr(host.slave, TCSANOW, &tio) != 0) {
        perror("pr_host: tcsetattr");
        return -1;
    }
    flags = fcntl(host.master, F_GETFL);
    if (flags < 0 || fcntl(host.master, F_SETFL, flags | O_NONBLOCK) != 0) {
        perror("pr_host: fcntl");
        return -1;
    }
    return 0;
}

static int make_link(const char *link_path, const char *target)
{
    struct stat st;
    if (lstat(link_path, &st) == 0) {
        if (!S_ISLNK(st.st_mode)) {
            fprintf(stderr, "pr_host: --port-link %s exists and is not a symlink\n", link_path);
            return -1;
        }
        unlink(link_path); /* a stale link from an earlier run */
    }
    if (symlink(target, link_path) != 0) {
        fprintf(stderr, "pr_host: symlink %s: %s\n", link_path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Remove our symlink, only if it still points at our pty. */
static void remove_link(void)
{
    char buf[sizeof host.slave_path];
    ssize_t n;
    if (host.link_path == NULL) return;
    n = readlink(host.link_path, buf, sizeof buf - 1u);
    if (n > 0) {
        buf[n] = '\0';
        if (strcmp(buf, host.slave_path) == 0) unlink(host.link_path);
    }
}

static int load_sensor_file(const char *path, uint8_t n_sensors)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    size_t cap = 0;
    int lineno = 0;

    if (f == NULL) {
        fprintf(stderr, "pr_host: --sensor-file %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        char *p = line, *end;
        uint8_t i;
        lineno++;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '\n' || *p == '\r' || *p == '\0') continue;
        if (host.file_n_rows == cap) {
            float *grown;
            cap = cap ? 2u * cap : 256u;
            grown = realloc(host.file_rows, cap * n_sensors * sizeof(float));
            if (grown == NULL) {
                fclose(f);
                fprintf(stderr, "pr_host: out of memory reading %s\n", path);
                return -1;
            }
            host.file_rows = grown;
        }
        for (i = 0; i < n_sensors; i++) {
            float v = strtof(p, &end);
            if (end == p) {
                fclose(f);
                fprintf(stderr, "pr_host: %s:%d: expected %u numbers per line\n", path, lineno,
                        (unsigned)n_sensors);
                return -1;
            }
            host.file_rows[host.file_n_rows * n_sensors + i] = v;
            p = end;
        }
        host.file_n_rows++;
    }
    fclose(f);
    if (host.file_n_rows == 0) {
        fprintf(stderr, "pr_host: %s has no rows\n", path);
        return -1;
    }
    return 0;
}

static uint32_t boot_id_from_seed(uint64_t seed)
{
    /* splitmix64: any seed, including 0, gives a well-mixed id */
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (uint32_t)z != 0u ? (uint32_t)z : 1u;
}

/* The plant, or a one-line reason (exit 2: the model is the user's input). */
static int load_plant(const char *model)
{
    char err[1100];
    char *c;
    if (plant_load(&host.plant, model, err, sizeof err) == 0) return 0;
    for (c = err; *c != '\0'; c++) {
        if (*c == '\n' || *c == '\r') *c = ' ';
    }
    fprintf(stderr, "pr_host: %s\n", err);
    return -1;
}

/* --steps N --command V: the plant alone, N physics steps from rest, one line a step. */
static int run_offline(const host_args_t *a)
{
    float r[ROBOT_N_SENSORS];
    unsigned long k;
    uint8_t i;

    for (k = 0; k < a->steps; k++) {
        plant_step(&host.plant, a->command);
        plant_read(&host.plant, r);
        printf("%.17g %.17g %.17g", host.plant.d->time, host.plant.d->sensordata[host.plant.adr_arm],
               host.plant.d->sensordata[host.plant.adr_pend]);
        for (i = 0; i < ROBOT_N_SENSORS; i++) printf(" %.9g", (double)r[i]);
        putchar('\n');
    }
    plant_free(&host.plant);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* Signals, the controller, the pty and its link: 0, or 1 with the reason on stderr. */
static int start_board(const host_args_t *a, const pr_hal_t *hal)
{
    static const uint8_t fw[3] = FIRMWARE_VERSION;
    struct sigaction sa;
    uint64_t seed = a->seed;

    clock_gettime(CLOCK_MONOTONIC, &host.t0);
    if (!a->have_seed) {
        seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)host.t0.tv_nsec;
    }
    /* The Furuta robot, as boards/furuta/furuta.ino configures it: the spec's counts,
     * command limits and sensor envelope (LIMIT outside it while armed, as on the board). */
    robot_spec_config(&cfg);
    cfg.name = a->name;
    cfg.min_rate_hz = 10;
    cfg.max_rate_hz = 2000;
    cfg.watchdog_ms = (uint16_t)a->watchdog_ms;
    memcpy(cfg.firmware_version, fw, sizeof fw);
    cfg.boot_id = boot_id_from_seed(seed);

    host.link_path = a->link_path;
    if (open_pty() != 0) return 1;
    if (host.link_path != NULL && make_link(host.link_path, host.slave_path) != 0) return 1;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    if (pr_controller_init(&ctl, &cfg, hal) != PR_OK) {
        fprintf(stderr, "pr_host: invalid configuration\n");
        remove_link();
        return 1;
    }
    return 0;
}

/* The board's loop: bytes in, the plant brought up to the real clock, the controller polled. */
static void run_board(void)
{
    while (!stop_signal) {
        fd_set rd;
        struct timeval tv = {0, POLL_TIMEOUT_US};
        int r;

        FD_ZERO(&rd);
        FD_SET(host.master, &rd);
        r = select(host.master + 1, &rd, NULL, NULL, &tv);
        if (r < 0 && errno != EINTR) {
            perror("pr_host: select");
            break;
        }
        if (r > 0 && FD_ISSET(host.master, &rd)) {
            uint8_t buf[4096];
            ssize_t n = read(host.master, buf, sizeof buf);
            if (n > 0) {
                plant_advance(host_now_us()); /* the plant is current when a COMMAND lands */
                pr_controller_rx_bytes(&ctl, buf, (size_t)n);
            }
        }
        plant_advance(host_now_us());
        pr_controller_poll(&ctl);
    }
}

int main(int argc, char **argv)
{
    static const pr_hal_t hal = {NULL, hal_read_sensors, hal_write_actuators, hal_safe_state,
                                 hal_micros, hal_serial_write, hal_on_event};
    host_args_t a;
    int r = host_args_parse(&a, argc, argv);

    if (r != 0) return r == 1 ? 0 : 2;
    if (load_plant(a.model) != 0) return 2;
    if (a.steps > 0u) return run_offline(&a);
    if (a.sensor_file != NULL && load_sensor_file(a.sensor_file, ROBOT_N_SENSORS) != 0) {
        return 2;
    }
    if (start_board(&a, &hal) != 0) return 1;

    printf("PORT %s\n", host.slave_path);
    fflush(stdout);
    logf_("ready on %s%s%s: robot %s, 4 sensors, 1 actuator, 10..2000 Hz, watchdog %u ms, "
          "boot_id 0x%08lx, sensors from %s",
          host.slave_path, host.link_path ? ", link " : "", host.link_path ? host.link_path : "",
          a.name, (unsigned)cfg.watchdog_ms, (unsigned long)cfg.boot_id,
          a.sensor_file ? a.sensor_file : "the plant, hanging at rest");
    logf_("plant: %s, %llu us a physics step (mj_step, libmujoco %s)", a.model,
          (unsigned long long)host.plant.step_us, mj_versionString());
    run_board();

    hal_safe_state(NULL);
    logf_("signal %d: actuators safe, %s, exiting (rx_errors %u, %llu output bytes dropped)",
          (int)stop_signal, host.link_path ? "symlink removed" : "no symlink",
          (unsigned)pr_controller_rx_errors(&ctl), (unsigned long long)host.tx_dropped);
    remove_link();
    close(host.slave);
    close(host.master);
    free(host.file_rows);
    plant_free(&host.plant);
    return 0;
}
