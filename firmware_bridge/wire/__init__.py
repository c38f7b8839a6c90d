"""The wire: our protocol's frames (COBS + CRC-32), the serial link and the session
(handshake, ENABLE/DISABLE). Imports nothing above it in firmware_bridge; outside it only
the standard library, numpy, pyserial and ppo_robot.cli (errors and exit codes).
"""
