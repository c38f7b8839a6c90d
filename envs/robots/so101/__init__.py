"""The SO-101 arm (TheRobotStudio, six STS3215 servos): layout.py, so101.xml, README.md here.

The registry entry (`ROBOT`) joins when the arm's tasks do; the hardware is `layout.layout()`.
"""
