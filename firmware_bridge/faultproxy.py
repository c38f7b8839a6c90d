"""`python -m firmware_bridge.faultproxy`: the fault-injecting proxy; the code is firmware_bridge.tools.faultproxy."""

from firmware_bridge.tools.faultproxy import main

if __name__ == "__main__":
    main()
