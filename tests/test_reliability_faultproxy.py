"""The fault injector the reliability tests rely on, `firmware_bridge.faultproxy`: its
settings per direction from the config, and its counts exact, alone between two
pseudo-terminals."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import numpy as np
import pytest

from firmware_bridge.tools.faultproxy import FaultProxy, ProxySettings, Rates
from firmware_bridge.wire.protocol import FrameParser


def test_proxy_settings_resolve_per_direction():
    """Top-level settings apply to both directions, `h2c.`/`c2h.` override one."""
    from hydra import compose, initialize_config_dir

    from firmware_bridge.tools.faultproxy import settings_from_config
    from firmware_bridge.tools.faultproxy_config import FaultProxyConfig
    from ppo_robot.cli import CONFIG_DIR, register_schema

    register_schema("faultproxy", FaultProxyConfig)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "faultproxy",
            overrides=["upstream=x", "corrupt=0.01", "c2h.corrupt=0.2", "h2c.drop=0.5"],
        )
    st = settings_from_config(cfg)
    assert st.h2c == replace(Rates(), corrupt=0.01, drop=0.5)
    assert st.c2h == replace(Rates(), corrupt=0.2)


def test_every_rate_is_a_per_direction_key():
    """The `h2c` / `c2h` section is generated from Rates: each of its fields is a key there,
    typed as in Rates (a list for the tuple), and a wrong type is refused naming the key."""
    from dataclasses import fields

    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    from firmware_bridge.tools.faultproxy import settings_from_config
    from firmware_bridge.tools.faultproxy_config import FaultProxyConfig
    from ppo_robot.cli import CONFIG_DIR, register_schema

    given = {f.name: 0.125 for f in fields(Rates)}
    given.update(delay_ms=7.5, stall_ms=9.5, garbage_bytes=3, stall_at_s=(1.0, 2.5))
    assert set(given) == {f.name for f in fields(Rates)}
    register_schema("faultproxy", FaultProxyConfig)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        over = [f"h2c.{k}={list(v) if k == 'stall_at_s' else v}" for k, v in given.items()]
        cfg = compose("faultproxy", overrides=["upstream=x", *over])
        with pytest.raises(ConfigCompositionException, match="h2c.garbage_bytes=1.5"):
            compose("faultproxy", overrides=["upstream=x", "h2c.garbage_bytes=1.5"])
    st = settings_from_config(cfg)
    assert st.h2c == Rates(**given) and st.c2h == Rates()


def test_proxy_counts_every_fault_exactly():
    """The proxy alone, between two pseudo-terminals this test holds: each corrupted frame
    costs the receiver exactly one dropped frame, each garbage frame one more, duplicates
    arrive twice, and everything else arrives intact and in order."""
    import tty

    from firmware_bridge.wire.protocol import Command, State, encode

    ctl_master, ctl_slave = os.openpty()
    tty.setraw(ctl_slave)
    os.set_blocking(ctl_master, False)
    settings = ProxySettings(
        h2c=Rates(corrupt=0.1, garbage=0.05),
        c2h=Rates(corrupt=0.1, duplicate=0.05),
        seed=5,
    )
    proxy = FaultProxy(os.ttyname(ctl_slave), settings).start()
    host = os.open(proxy.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(host)
    got = {"h2c": bytearray(), "c2h": bytearray()}

    def drain() -> None:
        for fd, d in ((ctl_master, "h2c"), (host, "c2h")):
            try:
                while chunk := os.read(fd, 65536):
                    got[d] += chunk
            except (BlockingIOError, OSError):
                pass

    n = 400
    try:
        for i in range(n):
            os.write(host, encode(Command(i, np.array([0.5 * i], np.float32)), i))
            os.write(ctl_master, encode(State(i, 9, 0, i, 0, np.full(4, i, np.float32)), i))
            if i % 8 == 7:
                time.sleep(0.003)
                drain()
        time.sleep(0.2)
        drain()
    finally:
        summary = proxy.stop()
        os.close(host)
        os.close(ctl_master)
        os.close(ctl_slave)
    inj = summary["injected"]
    for d, n_dup in (("h2c", 0), ("c2h", inj["c2h"].get("duplicate", 0))):
        parser = FrameParser()
        msgs = parser.feed(bytes(got[d]))
        hit = {r.seq for r in proxy.records if r.direction == d and r.kind == "corrupt"}
        assert inj[d]["corrupt"] == len(hit) > 0
        assert parser.stats.dropped_total == inj[d]["corrupt"] + inj[d].get("garbage", 0)
        seqs = [seq for seq, _ in msgs]
        assert len(seqs) == n - len(hit) + n_dup
        assert sorted(set(seqs)) == sorted(set(range(n)) - hit)
        assert seqs == sorted(seqs)  # in order (a duplicate right after its original)
        for seq, m in msgs:  # intact values
            v = m.values if d == "h2c" else m.sensors
            assert np.all(v == (0.5 * seq if d == "h2c" else seq))
    assert inj["h2c"]["garbage"] > 0 and inj["c2h"]["duplicate"] > 0
