"""The controller stand-in: `sim_robot` on the one plant (`plant`, on the real clock of
`realtime`, on a `port`), as the Python controller (the firmware's twin, `robot` +
`controller`) or, for a servo-bus robot, as its emulated Feetech STS servos (`bus_robot` on
`feetech_servos`); and simulated episodes written as deploy logs. Imports
firmware_bridge.wire and .logs, envs and ppo_robot (cli, checkpoint); never .host,
.analysis or .tools.
"""
