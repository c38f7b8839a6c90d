"""The calibration file the file and map tests load (tests/test_calibration_file.py,
tests/test_calibration_map.py): a real arm's, byte for byte as LeRobot writes it."""

# A real SO-101 follower's file from `lerobot-calibrate` (matrix97317/UniRobot,
# unirobot/robot/motor/so_arm101_calib.py), in the layout LeRobot writes (draccus, indent 4).
LEROBOT_FILE = """{
    "shoulder_pan": {
        "id": 1,
        "drive_mode": 0,
        "homing_offset": -1365,
        "range_min": 746,
        "range_max": 3477
    },
    "shoulder_lift": {
        "id": 2,
        "drive_mode": 0,
        "homing_offset": -1200,
        "range_min": 822,
        "range_max": 3211
    },
    "elbow_flex": {
        "id": 3,
        "drive_mode": 0,
        "homing_offset": -986,
        "range_min": 901,
        "range_max": 3110
    },
    "wrist_flex": {
        "id": 4,
        "drive_mode": 0,
        "homing_offset": -1696,
        "range_min": 849,
        "range_max": 3216
    },
    "wrist_roll": {
        "id": 5,
        "drive_mode": 0,
        "homing_offset": -375,
        "range_min": 135,
        "range_max": 3984
    },
    "gripper": {
        "id": 6,
        "drive_mode": 0,
        "homing_offset": 1871,
        "range_min": 1975,
        "range_max": 3565
    }
}"""
