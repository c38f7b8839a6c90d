"""`python -m firmware_bridge.calibrate`: record a servo arm's calibration (LeRobot's file); the code is firmware_bridge.host.calibrate."""

from firmware_bridge.host.calibrate import main

if __name__ == "__main__":
    main()
