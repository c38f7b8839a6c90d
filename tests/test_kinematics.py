"""The batched chain kinematics agree with MuJoCo's own (`mj_kinematics`)."""

import mujoco
import numpy as np
import pytest

from envs.kinematics import ChainKinematics

ARM = """
<mujoco>
  <worldbody>
    <body name="base" pos="0.1 -0.2 0.05" quat="0.9239 0 0 0.3827">
      <joint name="j1" type="hinge" axis="0 0 1" pos="0.01 0 0"/>
      <geom type="capsule" size="0.02" fromto="0 0 0 0 0 0.1"/>
      <body name="upper" pos="0 0.02 0.1" quat="0.7071 0.7071 0 0">
        <joint name="j2" type="hinge" axis="1 1 0" pos="0 0 -0.01"/>
        <geom type="capsule" size="0.02" fromto="0 0 0 0.12 0 0"/>
        <body name="welded" pos="0.12 0 0" euler="0.3 0.2 0.1">
          <geom type="sphere" size="0.01"/>
          <body name="lower" pos="0.03 0 0.01">
            <joint name="j3" type="hinge" axis="0 1 0"/>
            <geom type="capsule" size="0.015" fromto="0 0 0 0.1 0 0"/>
            <site name="tip" pos="0.1 0.01 -0.02"/>
          </body>
        </body>
      </body>
    </body>
  </worldbody>
</mujoco>
"""


def test_chain_matches_mj_kinematics():
    model = mujoco.MjModel.from_xml_string(ARM)
    fk = ChainKinematics(model, "tip", ("j1", "j2", "j3"))
    rng = np.random.default_rng(0)
    q = rng.uniform(-3, 3, size=(64, 3))
    got = fk.position(q)
    data = mujoco.MjData(model)
    want = np.zeros_like(got)
    for i, row in enumerate(q):
        data.qpos[:] = row
        mujoco.mj_kinematics(model, data)
        want[i] = data.site_xpos[0]
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert fk.position(q.reshape(8, 8, 3)).shape == (8, 8, 3)


def test_joint_order_is_the_callers():
    model = mujoco.MjModel.from_xml_string(ARM)
    q = np.array([[0.3, -0.7, 1.1]])
    a = ChainKinematics(model, "tip", ("j1", "j2", "j3")).position(q)
    b = ChainKinematics(model, "tip", ("j3", "j1", "j2")).position(q[:, [2, 0, 1]])
    np.testing.assert_allclose(a, b, atol=1e-15)


def test_refuses_what_it_cannot_compute():
    model = mujoco.MjModel.from_xml_string(ARM)
    with pytest.raises(ValueError, match="no site 'nose'"):
        ChainKinematics(model, "nose", ("j1", "j2", "j3"))
    with pytest.raises(ValueError, match="'j3' is on the chain but not in"):
        ChainKinematics(model, "tip", ("j1", "j2"))
