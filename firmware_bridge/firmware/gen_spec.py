"""Writes boards/<robot>/robot_spec.h, the robot spec's numbers as the C firmware needs them:
name, sensor and actuator counts and indices, each sensor's safe envelope (the controller
raises LIMIT outside it while armed), each actuator's command limits, and the encoder
counts per revolution of every angle sensor quantized to 2 pi / counts; and, where
pr_controller.h is included first, `robot_spec_config()` filling those into a `pr_config_t`.

The spec (envs/) is the one source; the header is generated from it, never edited. Run from
the repository root after changing a robot's layout:

    python -m firmware_bridge.firmware.gen_spec furuta            # rewrite the header
    python -m firmware_bridge.firmware.gen_spec furuta --check    # exit 1 if it is stale

tests/test_firmware.py fails while a committed header and its spec disagree.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

BOARDS = Path(__file__).resolve().parent / "boards"


def _c_float(x: float) -> str:
    """A float literal C and C++ read back as the same float32 (repr keeps every digit)."""
    text = repr(float(x))
    return (text if ("." in text or "e" in text) else text + ".0") + "f"


def _macro(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).upper()


def counts_per_rev(resolution: float) -> int | None:
    """Encoder counts per revolution of a resolution of 2 pi / counts; None if it is not."""
    if resolution <= 0:
        return None
    counts = 2 * math.pi / resolution
    return int(round(counts)) if abs(counts - round(counts)) < 1e-6 else None


def check_expressible(spec) -> None:
    """SpecError unless the C firmware can do what the spec asks. The header carries no
    safe state: the board's `safe_state` hook applies its fixed safe command, so only
    safe_mode 'value' is expressible ('hold' needs the measured pose, 'off' a torque-off
    the header cannot ask for)."""
    from envs.spec import SpecError

    for a in spec.actuators:
        if a.safe_mode != "value":
            raise SpecError(
                f"gen_spec: robot '{spec.name}' actuator '{a.name}' has safe_mode "
                f"'{a.safe_mode}', which the C firmware header cannot express (only 'value')"
            )


def header(spec) -> str:
    """The text of robot_spec.h for one robot spec (SpecError if it cannot be expressed)."""
    check_expressible(spec)
    s_min = ", ".join(_c_float(s.low) for s in spec.sensors)
    s_max = ", ".join(_c_float(s.high) for s in spec.sensors)
    a_min = ", ".join(_c_float(a.low) for a in spec.actuators)
    a_max = ", ".join(_c_float(a.high) for a in spec.actuators)
    lines = [
        "/*",
        f' * robot_spec.h: robot "{spec.name}" (spec version {spec.version}), generated from',
        f" * its robot spec by `python -m firmware_bridge.firmware.gen_spec {spec.name}`.",
        " * Do not edit: change the spec and generate again (tests/test_firmware.py fails",
        " * while the two disagree).",
        " */",
        "#ifndef ROBOT_SPEC_H",
        "#define ROBOT_SPEC_H",
        "",
        f'#define ROBOT_NAME "{spec.name}"',
        f"#define ROBOT_N_SENSORS {spec.n_sensors}",
        f"#define ROBOT_N_ACTUATORS {spec.n_actuators}",
        "",
        "/* Sensors, in STATE order. */",
    ]
    for i, s in enumerate(spec.sensors):
        lines.append(f"#define ROBOT_SENSOR_{_macro(s.name)} {i} /* {s.unit} */")
    lines += [
        "/* Safe envelope of each sensor: LIMIT outside [min, max] while armed. */",
        f"#define ROBOT_SENSOR_MIN {{{s_min}}}",
        f"#define ROBOT_SENSOR_MAX {{{s_max}}}",
    ]
    for s in spec.sensors:
        counts = counts_per_rev(s.resolution) if s.unit == "rad" else None
        if counts is not None:
            lines.append(f"#define ROBOT_{_macro(s.name)}_COUNTS_PER_REV {counts}")
    lines += ["", "/* Actuators, in COMMAND order. */"]
    for i, a in enumerate(spec.actuators):
        lines.append(f"#define ROBOT_ACTUATOR_{_macro(a.name)} {i} /* {a.unit} */")
    lines += [
        "/* Commands outside [min, max] are refused with BAD_COMMAND. */",
        f"#define ROBOT_ACTUATOR_MIN {{{a_min}}}",
        f"#define ROBOT_ACTUATOR_MAX {{{a_max}}}",
        "",
        *_CONFIG_HELPER,
        "",
        "#endif /* ROBOT_SPEC_H */",
        "",
    ]
    return "\n".join(lines)


_CONFIG_HELPER = (
    "#ifdef PR_CONTROLLER_H",
    "/* The robot's part of a controller config: name, counts, sensor envelope, command",
    " * limits (the board sets rates, watchdog, versions and boot id). */",
    "static inline void robot_spec_config(pr_config_t *cfg)",
    "{",
    "    static const float s_min[ROBOT_N_SENSORS] = ROBOT_SENSOR_MIN;",
    "    static const float s_max[ROBOT_N_SENSORS] = ROBOT_SENSOR_MAX;",
    "    static const float a_min[ROBOT_N_ACTUATORS] = ROBOT_ACTUATOR_MIN;",
    "    static const float a_max[ROBOT_N_ACTUATORS] = ROBOT_ACTUATOR_MAX;",
    "    uint8_t i;",
    "",
    "    cfg->name = ROBOT_NAME;",
    "    cfg->n_sensors = ROBOT_N_SENSORS;",
    "    cfg->n_actuators = ROBOT_N_ACTUATORS;",
    "    for (i = 0; i < ROBOT_N_SENSORS; i++) {",
    "        cfg->sensor_min[i] = s_min[i];",
    "        cfg->sensor_max[i] = s_max[i];",
    "    }",
    "    for (i = 0; i < ROBOT_N_ACTUATORS; i++) {",
    "        cfg->actuator_min[i] = a_min[i];",
    "        cfg->actuator_max[i] = a_max[i];",
    "    }",
    "}",
    "#endif /* PR_CONTROLLER_H */",
)


def header_path(robot: str) -> Path:
    return BOARDS / robot / "robot_spec.h"


def main(argv: list[str] | None = None) -> int:
    from envs.robots import get_robot
    from envs.spec import SpecError

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("robot", help="a shipped robot with a board folder, e.g. furuta")
    ap.add_argument("--check", action="store_true", help="exit 1 if the header is stale")
    args = ap.parse_args(argv)
    try:
        text = header(get_robot(args.robot))
    except SpecError as e:
        print(str(e), file=sys.stderr)
        return 2
    path = header_path(args.robot)
    if args.check:
        current = path.read_text() if path.is_file() else ""
        if current != text:
            print(f"{path} is stale: run gen_spec {args.robot}", file=sys.stderr)
            return 1
        return 0
    path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
