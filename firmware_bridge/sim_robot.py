"""`python -m firmware_bridge.sim_robot`: the simulated controller on a pseudo-terminal; the code is firmware_bridge.sim.robot."""

from firmware_bridge.sim.robot import main
from firmware_bridge.sim.robot_config import SimRobotConfig
from ppo_robot.cli import register_schema

# sim/robot.py's main() calls run_app("sim_robot", serve) without its schema; registered
# here until it passes SimRobotConfig itself (sim/ is another helper's in this round).
register_schema("sim_robot", SimRobotConfig)

if __name__ == "__main__":
    main()
