"""The bridge between an exported policy and the robot's microcontroller.

The wire protocol (`protocol`), the serial link (`link`), and the pieces built on them.
The protocol itself is specified in docs/protocol.md.
"""
