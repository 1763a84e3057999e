"""A machine's lifecycle through the binding, without booting: create (skip_launch), get, list
filters, metadata, lease, cordon, update, clone, destroy; apps and volumes."""

from __future__ import annotations

import gc
from typing import Any

import pytest

import flick


def config(image: str, **extra: Any) -> dict[str, Any]:
    return {"image": image, "init": {"cmd": ["sleep", "60"]}, "metadata": {"role": "web"}, **extra}


def test_create_get_list_update_clone_and_destroy(host: flick.Host, busybox_layout: str) -> None:
    with host.create_machine(config(busybox_layout), name="web-1", skip_launch=True) as m:
        assert m.state == "created"
        got = m.get()
        assert got["id"] == m.id
        assert got["name"] == "web-1" == m.name
        assert got["state"] == "created"
        assert got["config"]["init"]["cmd"] == ["sleep", "60"]
        assert m.config["metadata"] == {"role": "web"}
        events = list(m.events())
        assert events and all("type" in e for e in events)

        ids = [x["id"] for x in host.machines()]
        assert ids == [m.id]
        assert [x["id"] for x in host.machines(state="created")] == [m.id]
        assert host.machines(state=["started", "stopped"]) == []
        assert [x["id"] for x in host.machines(metadata={"role": "web"})] == [m.id]
        assert host.machines(metadata={"role": "db"}) == []
        assert [x["id"] for x in host.machines(app="default")] == [m.id]

        version = m.get()["version"]
        m.update(config(busybox_layout, env={"MODE": "blue"}), skip_launch=True)
        assert m.config["env"] == {"MODE": "blue"}
        assert m.get()["version"] != version
        with pytest.raises(flick.InvalidArgument) as e:
            m.update(config(busybox_layout, guest={"memory_mb": -1}), skip_launch=True)
        assert "guest.memory_mb" in str(e.value)

        with m.clone(name="web-2", skip_launch=True) as c:
            assert c.id != m.id
            clone_id = c.id
            assert c.name == "web-2"
            assert c.config["env"] == {"MODE": "blue"}
            assert sorted(x["name"] for x in host.machines()) == ["web-1", "web-2"]
            c.destroy()
            assert c.state == "destroyed"
            with pytest.raises(flick.NotFound):
                c.get()

        same = host.machine("web-1")
        assert same.id == m.id
        same.close()
        same.close()
        with pytest.raises(flick.InvalidArgument):
            same.get()

        m.destroy()
        assert m.state == "destroyed"
        m.destroy()  # destroying a destroyed machine succeeds
        assert host.machines() == []
        assert {x["id"] for x in host.machines(include_deleted=True)} == {m.id, clone_id}
        with pytest.raises(flick.NotFound):
            m.metadata()


def test_metadata_get_set_delete(host: flick.Host, busybox_layout: str) -> None:
    m = host.create_machine(config(busybox_layout), skip_launch=True)
    assert m.metadata() == {"role": "web"}
    m.set_metadata("tier", "gold")
    assert m.get_metadata("tier") == "gold"
    assert m.metadata() == {"role": "web", "tier": "gold"}
    assert [x["id"] for x in host.machines(metadata={"tier": "gold", "role": "web"})] == [m.id]
    m.delete_metadata("tier")
    assert m.get_metadata("tier") is None
    assert m.get_metadata("tier", "none") == "none"
    m.destroy()
    with pytest.raises(flick.NotFound):
        m.get_metadata("role")  # a destroyed machine's keys are not "missing": it is gone


def test_leases_keep_other_handles_out(host: flick.Host, busybox_layout: str) -> None:
    m = host.create_machine(config(busybox_layout), skip_launch=True)
    assert m.lease() is None
    lease = m.acquire_lease(ttl=60, description="deploy")
    assert lease["nonce"] and lease["description"] == "deploy"
    assert m.lease() is not None

    # Another handle (as another process would have) is held back until it carries the nonce.
    other = host.machine(m.id)
    with pytest.raises(flick.LeaseHeld) as e:
        other.cordon()
    assert e.value.code == flick.Code.ELEASE
    assert "lease" in e.value.message
    m.cordon()  # the holder may
    other.use_lease(lease["nonce"])
    other.uncordon()
    assert m.get()["cordoned"] is False

    with pytest.raises(flick.Error):
        m.release_lease("0" * 32)
    m.release_lease()
    assert m.lease() is None
    with pytest.raises(flick.InvalidArgument):
        m.release_lease()  # this handle holds none now
    other.use_lease(None)
    other.cordon()
    other.close()
    m.destroy()


def test_cordon_and_a_start_that_cannot_boot(host: flick.Host, busybox_layout: str) -> None:
    m = host.create_machine(config(busybox_layout), skip_launch=True)
    m.cordon()
    assert m.get()["cordoned"] is True
    m.uncordon()
    assert m.get()["cordoned"] is False
    with pytest.raises(flick.Error):
        m.start()  # no flick-vmm and no /dev/kvm here: an error, not a crash
    with pytest.raises(flick.InvalidArgument):
        m.wait("asleep")
    m.destroy(force=True)


def test_machine_handles_are_freed_when_collected(host: flick.Host, busybox_layout: str) -> None:
    m = host.create_machine(config(busybox_layout), skip_launch=True)
    machine_id = m.id
    handles = [host.machine(machine_id).handle for _ in range(3)]
    gc.collect()
    # The handles were freed as their objects went: the library refuses them now.
    import ctypes
    from flick import _lib
    for h in handles:
        state = ctypes.c_int()
        assert _lib.lib().flick_machine_get_state(ctypes.byref(state), h) == flick.Code.EINVAL
    m.destroy()


def test_machines_outlive_a_closed_host(host_options: dict[str, Any], busybox_layout: str) -> None:
    h = flick.Host(**host_options)
    m = h.create_machine(config(busybox_layout), skip_launch=True)
    h.close()
    assert m.state == "created"
    with flick.Host(**host_options) as again:
        assert [x["id"] for x in again.machines()] == [m.id]
        m.destroy()


def test_apps_and_volumes(host: flick.Host, busybox_layout: str) -> None:
    app = host.create_app("shop")
    assert app["name"] == "shop"
    assert {"default", "shop"} <= {a["name"] for a in host.apps()}
    with pytest.raises(flick.AlreadyExists):
        host.create_app("shop")
    m = host.create_machine(config(busybox_layout), app="shop", skip_launch=True)
    assert [x["id"] for x in host.machines(app="shop")] == [m.id]
    assert host.machines(app="default") == []
    with pytest.raises(flick.Busy):
        host.destroy_app("shop")

    vol = host.create_volume("data", 1, app="shop")
    assert vol["name"] == "data" and vol["size_gb"] == 1
    assert [v["id"] for v in host.volumes(app="shop")] == [vol["id"]]
    assert host.extend_volume("data", 2, app="shop")["size_gb"] == 2
    host.destroy_volume(vol["id"], app="shop")
    assert host.volumes(app="shop") == []
    with pytest.raises(flick.NotFound):
        host.destroy_volume("data", app="shop")

    host.destroy_app("shop", force=True)
    assert "shop" not in {a["name"] for a in host.apps()}
    assert m.state == "destroyed"


def test_a_machine_destroyed_by_another_host_is_not_found_not_a_crash(
        host: flick.Host, host_options: dict[str, Any], busybox_layout: str) -> None:
    m = host.create_machine(config(busybox_layout), skip_launch=True)
    with flick.Host(**host_options) as elsewhere:  # another process's view of the same state dir
        elsewhere.machine(m.id).destroy()
    assert m.state == "destroyed"
    with pytest.raises(flick.NotFound):
        m.get()
    with pytest.raises(flick.NotFound):
        m.set_metadata("k", "v")
    m.wait("destroyed", timeout=1)
    m.destroy()
