"""Logs: the MCAP rollout log every deployed or simulated run writes, with one clock.
Imports firmware_bridge.wire (message layouts) and nothing above it.
"""
