"""A servo arm's counts <-> rad map: a factory servo's identity calibration, by hand,
against LeRobot's DEGREES formula, in place without allocating, and hypothesis round trips
within half a count."""

from __future__ import annotations

import json
import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from envs.robots.so101.layout import (
    JOINT_RANGE,
    JOINTS,
    LOAD_FULL_SCALE,
    SERVO_IDS,
    STALL_TORQUE,
    layout,
)
from firmware_bridge.wire.servo_calibration import COUNT, Calibration, JointCalibration
from tests.lerobot_calibration import LEROBOT_FILE

CENTERS = [a.center for a in layout().actuators]


def _map(cal: Calibration, center=None):
    return cal.servo_map(
        load_full_scale=LOAD_FULL_SCALE, stall_torque=STALL_TORQUE, center_rad=center
    )


def test_identity_is_a_factory_servo():
    cal = Calibration.identity(JOINTS, SERVO_IDS, JOINT_RANGE)
    m = _map(cal, CENTERS)
    for j, (lo, hi) in JOINT_RANGE.items():
        c = cal[j]
        assert (c.drive_mode, c.homing_offset) == (0, 0)
        assert c.range_min + c.range_max == 4096  # mid 2048
        assert c.range_max - c.range_min == pytest.approx((hi - lo) / COUNT, abs=1)
    # a factory servo at rest reads 2048: the middle of every joint's range
    assert m.to_rad(np.full(6, 2048)) == pytest.approx(CENTERS)
    full = Calibration.identity(JOINTS, SERVO_IDS)
    assert {(c.range_min, c.range_max) for c in full.motors} == {(0, 4095)}


# ------------------------------------------------------------------------------ the map


def _cal(drive_modes=(0,) * 6, lo=1000, hi=3000) -> Calibration:
    return Calibration(
        JOINTS, tuple(JointCalibration(i + 1, d, 0, lo, hi) for i, d in enumerate(drive_modes))
    )


def test_map_by_hand():
    m = _map(_cal(drive_modes=(0, 1, 0, 0, 0, 0)))  # mid 2000
    rad = m.to_rad(np.array([2000, 2100, 1900, 2000 + 1024, 2000 - 2048, 3000]))
    assert rad == pytest.approx(
        [0, -100 * COUNT, -100 * COUNT, math.pi / 2, -math.pi, 1000 * COUNT]
    )
    assert math.isclose(100 * COUNT, 0.153398, abs_tol=1e-6)  # 100 counts = 8.79 deg
    goals = m.to_counts(np.array([0.0, 100 * COUNT, 0.4 * COUNT, 0.6 * COUNT, 9.0, -9.0]))
    assert goals.tolist() == [2000, 1900, 2000, 2001, 3000, 1000]  # rounded; clamped to range
    assert m.speed_to_rad_s(np.array([10, 10, 0, 0, 0, 0]))[:2] == pytest.approx(
        [10 * COUNT, -10 * COUNT]
    )
    load = m.load_to_torque(np.array([1000, 500, -250, 0, 0, 0]))
    assert load[:3] == pytest.approx([STALL_TORQUE, -STALL_TORQUE / 2, -STALL_TORQUE / 4])
    assert m.torque_to_load(np.array([9.0, 1.47, -1.47, 0, 0, 0])).tolist()[:3] == [
        1000,
        -500,
        -500,
    ]
    assert m.rad_s_to_speed(np.array([COUNT * 7.4, COUNT * 3] + [0] * 4)).tolist()[:2] == [7, -3]


def test_center_puts_the_middle_of_the_range_at_the_model_middle():
    """wrist_roll's and the gripper's model ranges are not centred on zero."""
    cal = Calibration.from_dict(json.loads(LEROBOT_FILE), JOINTS, SERVO_IDS)
    m = _map(cal, CENTERS)
    mids = np.array([(c.range_min + c.range_max) / 2 for c in cal.motors])
    assert m.to_rad(mids) == pytest.approx(CENTERS)
    assert CENTERS[4] == pytest.approx(0.5 * (-2.74385 + 2.84121))
    assert CENTERS[5] == pytest.approx(0.5 * (-0.174533 + 1.745329))
    assert m.to_counts(np.array(CENTERS)).tolist() == np.rint(mids).tolist()


def test_present_counts_wrap_and_are_not_clamped():
    m = _map(_cal())
    got = m.to_present(np.array([0.0, 1200 * COUNT, -2100 * COUNT, 0, 0, 0]))
    assert got.tolist()[:3] == [2000, 3200, (2000 - 2100) % 4096]


def test_out_arrays_are_filled_in_place():
    m = _map(_cal(), CENTERS)
    counts = np.array([1000, 1500, 2000, 2500, 3000, 2222], np.int64)
    rad = np.empty(6)
    goal = np.empty(6, np.int32)
    assert m.to_rad(counts, out=rad) is rad
    assert m.to_counts(rad, out=goal) is goal
    assert goal.tolist() == counts.tolist()
    speed = np.empty(6)
    assert m.speed_to_rad_s(counts, out=speed) is speed
    assert m.load_to_torque(counts, out=speed) is speed
    batch = m.to_rad(np.tile(counts, (4, 1)))  # a batch over a leading axis
    assert batch.shape == (4, 6) and batch[3] == pytest.approx(rad)


def test_per_tick_methods_allocate_nothing_given_out():
    """The host converts each tick's sync read with these: with out= they fill it and
    allocate no array (a temporary the size of the input would show as n * 8 bytes)."""
    n = 4096
    cal = Calibration(
        tuple(f"j{i}" for i in range(n)),
        tuple(JointCalibration(i + 1, i % 2, 0, 1000, 3000) for i in range(n)),
    )
    m = cal.servo_map(load_full_scale=1000, stall_torque=2.94, center_rad=np.linspace(-1, 1, n))
    counts = np.arange(n, dtype=np.int64) % 2000 + 1000  # integers, as the bus decodes them
    calls = [
        (m.to_rad, counts, np.empty(n)),
        (m.speed_to_rad_s, counts, np.empty(n)),
        (m.load_to_torque, counts, np.empty(n)),
        (m.to_counts, m.to_rad(counts), np.empty(n, np.int32)),
        (m.to_counts, m.to_rad(counts), np.empty(n, np.int64)),
    ]
    for f, x, out in calls:
        want = f(x)  # the allocating form, for the values
        f(x, out=out)  # warm up
        tracemalloc.start()
        try:
            start, _ = tracemalloc.get_traced_memory()
            for _ in range(20):
                got = f(x, out=out)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert got is out, f.__name__
        assert peak - start < n, f"{f.__name__} allocated {peak - start} bytes"
        assert np.array_equal(out, want), f.__name__


def test_a_nan_angle_is_refused_not_sent():
    m = _map(_cal())
    with pytest.raises(ValueError, match="not finite"):
        m.to_counts(np.array([0.0, math.nan, 0, 0, 0, 0]))


def test_map_agrees_with_lerobot_degrees_mode():
    """LeRobot's DEGREES: (counts - mid) * 360 / 4095 (motors_bus.py _normalize); ours is
    360 / 4096 per count, 0.024 % apart."""
    cal = Calibration.from_dict(json.loads(LEROBOT_FILE), JOINTS, SERVO_IDS)
    m = _map(cal)
    counts = np.array([746, 1100, 2000, 3000, 3984, 3565])
    mids = np.array([(c.range_min + c.range_max) / 2 for c in cal.motors])
    lerobot_deg = (counts - mids) * 360 / 4095
    assert np.degrees(m.to_rad(counts)) == pytest.approx(lerobot_deg, rel=3e-4)


motor = st.tuples(st.integers(0, 4094), st.integers(1, 4095), st.sampled_from([0, 1])).filter(
    lambda t: t[0] < t[1]
)


@given(st.lists(motor, min_size=6, max_size=6), st.lists(st.floats(0, 1), min_size=6, max_size=6))
def test_rad_to_counts_to_rad_within_half_a_count(motors, fractions):
    cal = Calibration(
        JOINTS,
        tuple(JointCalibration(i + 1, d, 0, lo, hi) for i, (lo, hi, d) in enumerate(motors)),
    )
    m = _map(cal, CENTERS)
    lo = m.to_rad(np.array([c.range_min for c in cal.motors]))
    hi = m.to_rad(np.array([c.range_max for c in cal.motors]))
    rad = lo + np.array(fractions) * (hi - lo)  # inside the calibrated range
    back = m.to_rad(m.to_counts(rad))
    assert np.all(np.abs(back - rad) <= COUNT / 2 + 1e-12)
    counts = m.to_counts(rad)
    assert np.array_equal(m.to_counts(m.to_rad(counts)), counts)  # counts survive exactly
