"""The render section of `firmware_bridge.replay` (`render=true`): the replay as a video,
the logged pose (left) beside the simulated pose (right), as MP4 where imageio-ffmpeg is
installed, else as an animated GIF at 10 fps. No OpenGL backend: the summary says so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ppo_robot.cli import one_line


def render(cfg, ctx, out: Path) -> dict[str, Any]:
    """The replay as a video: logged pose (left) and simulated pose (right)."""
    import mujoco

    sim, rp = ctx["sim"], ctx["replay"]
    w, h = int(cfg.render_width), int(cfg.render_height)
    try:
        renderer = mujoco.Renderer(sim.model, h, w)
    except Exception as e:  # no GL backend: mujoco raises several types
        return {
            "render": f"unavailable: no OpenGL backend (MUJOCO_GL={os.environ.get('MUJOCO_GL')}): {one_line(e)[:160]}"
        }
    fps = max(1, int(cfg.render_fps))
    frames_t = np.arange(0.0, rp.grid_t[-1], 1.0 / fps)
    gi = np.clip(np.searchsorted(rp.grid_t, frames_t), 0, rp.grid_t.size - 1)
    li = np.clip(np.searchsorted(rp.t, frames_t, side="right") - 1, 0, rp.t.size - 1)
    logged_q = sim.map.states(rp.logged[li], frames_t)[
        :, sim.map.qpos_at : sim.map.qpos_at + sim.model.nq
    ]
    d = mujoco.MjData(sim.model)
    cam = _camera(sim.model, d)

    def frame(q: np.ndarray, label: str) -> np.ndarray:
        d.qpos[:] = q
        mujoco.mj_forward(sim.model, d)
        renderer.update_scene(d, cam)
        return _label(renderer.render(), label)

    path, writer, step, note = _writer(out, fps)
    gi, logged_q = gi[::step], logged_q[::step]
    with writer:
        for k in range(gi.size):
            t = rp.grid_t[gi[k]]
            img = np.concatenate(
                [frame(logged_q[k], f"logged  t={t:5.2f} s"), frame(rp.qpos[gi[k]], "simulated")],
                axis=1,
            )
            writer.append_data(img)
    renderer.close()
    res: dict[str, Any] = {"render": str(path), "render_frames": int(gi.size)}
    if note:
        res["render_note"] = note
    return res


def _camera(model, d):
    """A free camera framing the moving bodies (not the static base): their centre, 3x
    their reach, seen from slightly above; the headlight's ambient raised for contrast."""
    import mujoco

    cam = mujoco.MjvCamera()
    mujoco.mjv_defaultFreeCamera(model, cam)
    mujoco.mj_forward(model, d)
    moving = np.flatnonzero(model.body_weldid != 0)
    if moving.size:
        cam.lookat[:] = d.xpos[moving].mean(axis=0)
        cam.distance = 3.0 * max(0.05, float(model.stat.extent) * 0.5)
    cam.elevation = -15.0
    cam.azimuth = 150.0
    model.vis.headlight.ambient[:] = 0.4
    return cam


def _writer(out: Path, fps: int) -> tuple[Path, Any, int, str | None]:
    """The video file and its writer, the frame step (1 for MP4; a GIF keeps ~10 fps) and
    a note where the MP4 writer is not installed."""
    try:
        import imageio_ffmpeg  # noqa: F401  (imageio's MP4 writer)

        has_mp4 = True
    except ImportError:
        has_mp4 = False
    import imageio.v2 as imageio

    if has_mp4:
        path = out / "replay.mp4"
        writer = imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=8)
        return path, writer, 1, None
    path = out / "replay.gif"
    step = max(1, fps // 10)
    writer = imageio.get_writer(path, mode="I", duration=1000 * step / fps, loop=0)
    note = (
        "MP4 needs imageio-ffmpeg, which is not installed: wrote an animated GIF at 10 fps instead"
    )
    return path, writer, step, note


def _label(img: np.ndarray, text: str) -> np.ndarray:
    """The frame with `text` written at its top left."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(img)
    ImageDraw.Draw(im).text((6, 4), text, fill=(255, 255, 255))
    return np.asarray(im)
