"""`python -m firmware_bridge.sim_robot`: the simulated controller on a pseudo-terminal; the code is firmware_bridge.sim.robot."""

from firmware_bridge.sim.robot import main

if __name__ == "__main__":
    main()
