"""flick.MachineConfig and its parts: the dataclass form of Fly's MachineConfig."""

from __future__ import annotations

import json

import pytest

import flick


def test_to_dict_leaves_out_what_is_unset_and_merges_extra() -> None:
    cfg = flick.MachineConfig(
        image="busybox",
        guest=flick.Guest(cpus=2, memory_mb=512),
        init=flick.Init(cmd=["sleep", "60"]),
        restart=flick.Restart(policy="on-failure", max_retries=3),
        mounts=[flick.Mount(volume="data", path="/data")],
        metadata={"role": "web"},
        extra={"services": [{"internal_port": 8080}]},
    )
    assert cfg.to_dict() == {
        "image": "busybox",
        "guest": {"cpus": 2, "memory_mb": 512},
        "init": {"cmd": ["sleep", "60"]},
        "restart": {"policy": "on-failure", "max_retries": 3},
        "mounts": [{"volume": "data", "path": "/data"}],
        "metadata": {"role": "web"},
        "services": [{"internal_port": 8080}],
    }
    assert flick.MachineConfig(image="x").to_dict() == {"image": "x"}
    # 0 and False are values, not "unset"
    assert flick.MachineConfig(image="x", auto_destroy=False, guest=flick.Guest(cpus=0)).to_dict() == {
        "image": "x", "auto_destroy": False, "guest": {"cpus": 0}}


def test_from_dict_reads_a_document_back() -> None:
    doc = {"image": "busybox", "guest": {"cpus": 1, "memory_mb": 256, "cpu_kind": "shared"},
           "init": {"cmd": ["sh"]}, "stop_config": {"signal": "SIGINT", "timeout": "5s"},
           "mounts": [{"volume": "v", "path": "/v"}], "checks": {"alive": {"type": "tcp"}}}
    cfg = flick.MachineConfig.from_dict(doc)
    assert cfg.guest == flick.Guest(cpus=1, memory_mb=256, cpu_kind="shared")
    assert cfg.stop_config == flick.StopConfig(signal="SIGINT", timeout="5s")
    assert cfg.mounts == [flick.Mount(volume="v", path="/v")]
    assert cfg.extra == {"checks": {"alive": {"type": "tcp"}}}
    assert cfg.to_dict() == doc
    with pytest.raises(ValueError, match="image"):
        flick.MachineConfig.from_dict({"guest": {"cpus": 1}})


def test_a_dataclass_config_makes_and_updates_a_machine(host: flick.Host, busybox_layout: str) -> None:
    cfg = flick.MachineConfig(image=busybox_layout, guest=flick.Guest(cpus=2, memory_mb=384),
                              init=flick.Init(cmd=["sleep", "60"]), env={"MODE": "blue"})
    with host.create_machine(cfg, skip_launch=True) as m:
        got = m.machine_config()
        assert got.guest is not None and (got.guest.cpus, got.guest.memory_mb) == (2, 384)
        assert got.init is not None and got.init.cmd == ["sleep", "60"]
        assert got.env == {"MODE": "blue"}
        got.env["MODE"] = "green"
        m.update(got, skip_launch=True)
        assert m.config["env"] == {"MODE": "green"}
        bad = flick.MachineConfig(image=busybox_layout, guest=flick.Guest(memory_mb=-1))
        with pytest.raises(flick.InvalidArgument) as e:
            m.update(bad, skip_launch=True)
        assert "guest.memory_mb" in str(e.value)
        m.destroy()


def test_services_round_trip(host: flick.Host, busybox_layout: str) -> None:
    web = flick.Service(internal_port=8080, protocol="tcp",
                        ports=[flick.Port(port=18080), flick.Port(port=18443, handlers=["tls", "http"])],
                        autostart=True, autostop="suspend", min_machines_running=1,
                        concurrency=flick.Concurrency(type="connections", soft_limit=20, hard_limit=25),
                        autostop_idle="2m", extra={"checks": [{"type": "tcp"}]})
    doc = {"internal_port": 8080, "protocol": "tcp",
           "ports": [{"port": 18080}, {"port": 18443, "handlers": ["tls", "http"]}],
           "autostart": True, "autostop": "suspend", "min_machines_running": 1,
           "concurrency": {"type": "connections", "soft_limit": 20, "hard_limit": 25},
           "autostop_idle": "2m", "checks": [{"type": "tcp"}]}
    cfg = flick.MachineConfig(image=busybox_layout, services=[web])
    assert cfg.to_dict()["services"] == [doc]
    assert flick.MachineConfig.from_dict(cfg.to_dict()) == cfg
    with host.create_machine(cfg, skip_launch=True) as m:
        assert m.config["services"] == [doc]  # as given: Fly's fields flick does not read are kept
        assert m.machine_config().services == [web]
        bad = flick.MachineConfig(image=busybox_layout, services=[flick.Service(internal_port=80,
                                                                               ports=[flick.Port(port=70000)])])
        with pytest.raises(flick.InvalidArgument, match=r"services\[0\]\.ports\[0\]\.port: 70000 is not in 1\.\.65535"):
            m.update(bad, skip_launch=True)
        m.destroy()


def test_anything_else_is_refused_before_the_c_call(host: flick.Host) -> None:
    with pytest.raises(flick.InvalidArgument, match="MachineConfig"):
        host.create_machine(42, skip_launch=True)  # type: ignore[arg-type]
    assert json.loads(flick.machine.config_json(flick.MachineConfig(image="x"))) == {"image": "x"}
