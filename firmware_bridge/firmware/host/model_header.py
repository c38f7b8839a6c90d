"""Write build/host_model.h: what pr_host takes from the robot registry, so the C side
names no MJCF path and no sensor or actuator of its own.

    python firmware_bridge/firmware/host/model_header.py ROBOT OUT

Run by the firmware Makefile with the repository root on PYTHONPATH; OUT is rewritten only
when its text changes, so make rebuilds pr_host only then.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from envs.robots import get_robot
from envs.spec import SpecError


def header(robot: str) -> str:
    spec = get_robot(robot)

    def names(items) -> str:
        return "{" + ", ".join(json.dumps(x.name) for x in items) + "}"

    return (
        f"/* host_model.h: robot {spec.name!r} from the registry (host/model_header.py). */\n"
        f"#define PR_HOST_MODEL_DEFAULT {json.dumps(str(spec.xml_path))}\n"
        f"#define PR_HOST_SENSOR_NAMES {names(spec.sensors)}\n"
        f"#define PR_HOST_ACTUATOR_NAMES {names(spec.actuators)}\n"
    )


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(f"usage: model_header.py ROBOT OUT\n\n{__doc__.strip()}")
        return 0
    if len(argv) != 2:
        print("usage: model_header.py ROBOT OUT", file=sys.stderr)
        return 2
    robot, out = argv
    try:
        text = header(robot)
    except SpecError as e:
        print(f"model_header: {e}", file=sys.stderr)
        return 2
    path = Path(out)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
