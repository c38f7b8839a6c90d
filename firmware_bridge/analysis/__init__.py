"""Analysis of logs: replay against the model, policy re-check, identification and the
report. Imports firmware_bridge.logs, .host (the loop's tick model) and .sim (simulated
episodes), envs, export.runtime and ppo_robot; never .tools.
"""
