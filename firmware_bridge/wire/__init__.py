"""The wire: our protocol's frames (COBS + CRC-32), the serial link and the session
(handshake, ENABLE/DISABLE); and the smart-servo bus spoken directly from the host
(`servo_bus`: the vendor-free contract and budget; `feetech`, `feetech_table`: Feetech
STS). Imports nothing above it in firmware_bridge; outside it only the standard library,
numpy, pyserial and ppo_robot.cli (errors and exit codes).
"""
