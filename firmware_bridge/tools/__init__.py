"""Tools: the fault proxy between host and controller (`faultproxy`: ports, loop and entry
point; `faultproxy_pipe`: one direction's faults; `faultproxy_tap`: what the controller
reported; `faultproxy_settings`: the resolved settings; `faultproxy_config`: the YAML schema).
Imports firmware_bridge.wire and ppo_robot.cli only.
"""
