"""Forward kinematics of a serial chain of hinge joints, batched in numpy.

A reach task needs the tool tip's position from the joint angles the bus reports: for the
reward of 256 simulated envs each step, and for the success test of a deployed run's
logged readings. `mj_kinematics` does it for one MjData at a time (a Python loop over
envs); this reads the chain once from the MjModel (each body's offset and orientation in
its parent, its hinge joint's axis and anchor) and then maps (N, n_joints) angles to (N, 3)
positions with a few vectorized matrix products. `tests/test_kinematics.py` checks it
against `mj_kinematics`.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np


def quat_to_mat(q: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) -> 3x3 rotation matrix."""
    m = np.zeros(9)
    mujoco.mju_quat2Mat(m, np.asarray(q, np.float64))
    return m.reshape(3, 3)


def axis_rotations(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotations by `angle` (N,) about the unit `axis` (3,) -> (N, 3, 3) (Rodrigues)."""
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    s, c = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3) + s * k + (1.0 - c) * (k @ k)


@dataclass(frozen=True)
class _Link:
    pos: np.ndarray
    """(3,) body origin in its parent's frame."""
    rot: np.ndarray
    """(3, 3) body orientation in its parent's frame."""
    axis: np.ndarray | None
    """(3,) hinge axis in the body frame; None for a body without a joint."""
    anchor: np.ndarray | None
    """(3,) hinge anchor in the body frame."""
    column: int
    """Column of the joint in the angles passed to `position` (-1: no joint)."""


class ChainKinematics:
    """Position of a site at the end of a serial chain of hinge joints (or welded bodies)."""

    def __init__(self, model: mujoco.MjModel, site: str, joints: tuple[str, ...]) -> None:
        """`joints`: the chain's hinge joints, in the order their angles are given."""
        sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, site)
        if sid < 0:
            raise ValueError(f"model has no site '{site}'")
        jid = {
            int(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j)): k
            for k, j in enumerate(joints)
        }
        if -1 in jid:
            raise ValueError(f"model lacks one of the joints {joints}")
        self.site_pos = np.array(model.site_pos[sid])
        chain, body = [], int(model.site_bodyid[sid])
        while body != 0:
            chain.append(self._link(model, body, jid))
            body = int(model.body_parentid[body])
        self.links = tuple(reversed(chain))
        missing = set(jid.values()) - {lk.column for lk in self.links}
        if missing:
            raise ValueError(
                f"joints {[joints[k] for k in missing]} are not on the chain to '{site}'"
            )

    @staticmethod
    def _link(model: mujoco.MjModel, body: int, jid: dict[int, int]) -> _Link:
        n, adr = int(model.body_jntnum[body]), int(model.body_jntadr[body])
        pos, rot = np.array(model.body_pos[body]), quat_to_mat(model.body_quat[body])
        if n == 0:
            return _Link(pos, rot, None, None, -1)
        if n > 1 or int(model.jnt_type[adr]) != int(mujoco.mjtJoint.mjJNT_HINGE):
            raise ValueError(f"body {body}: only one hinge joint per body is supported")
        if adr not in jid:
            name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, adr)
            raise ValueError(f"joint '{name}' is on the chain but not in `joints`")
        axis = np.array(model.jnt_axis[adr]) / np.linalg.norm(model.jnt_axis[adr])
        return _Link(pos, rot, axis, np.array(model.jnt_pos[adr]), jid[adr])

    def position(self, angles: np.ndarray) -> np.ndarray:
        """Joint angles (..., n_joints) -> site positions (..., 3) in the world frame."""
        a = np.asarray(angles, np.float64)
        flat = a.reshape(-1, a.shape[-1])
        n = flat.shape[0]
        rot = np.broadcast_to(np.eye(3), (n, 3, 3))
        pos = np.zeros((n, 3))
        for lk in self.links:
            pos = pos + np.einsum("nij,j->ni", rot, lk.pos)
            rot = rot @ lk.rot
            if lk.axis is not None:
                r = axis_rotations(lk.axis, flat[:, lk.column])
                # rotation about the axis through the anchor: p -> anchor + R (p - anchor)
                shift = lk.anchor - np.einsum("nij,j->ni", r, lk.anchor)
                pos = pos + np.einsum("nij,nj->ni", rot, shift)
                rot = rot @ r
        out = pos + np.einsum("nij,j->ni", rot, self.site_pos)
        return out.reshape(*a.shape[:-1], 3)
