"""`python -m firmware_bridge.deploy`: deploy a policy (or an excitation) against a controller; the code is firmware_bridge.host.deploy."""

from firmware_bridge.host.deploy import main

if __name__ == "__main__":
    main()
