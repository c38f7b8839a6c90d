"""`python -m firmware_bridge.replay`: replay a rollout log against the model; the code is firmware_bridge.analysis.replay."""

from firmware_bridge.analysis.replay import main

if __name__ == "__main__":
    main()
