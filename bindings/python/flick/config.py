"""Fly's MachineConfig as dataclasses, for those who prefer them to dicts.

    cfg = MachineConfig(image="busybox", guest=Guest(cpus=2, memory_mb=512),
                        init=Init(cmd=["sleep", "60"]), metadata={"role": "worker"})
    host.create_machine(cfg)

Field names are Fly's JSON names. A field left at None (or an empty list or dict) is left out,
so the library's default applies. `extra` is merged into the document last: Fly fields these
classes do not name (checks, dns, ...) go there as they would in the JSON.
`MachineConfig.from_dict` reads a Machine's `config` back (unknown keys land in `extra`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional


def _document(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            if f.name == "extra":
                continue
            value = _document(getattr(obj, f.name))
            if value is not None and value != [] and value != {}:
                out[f.name] = value
        out.update(getattr(obj, "extra", None) or {})
        return out
    if isinstance(obj, (list, tuple)):
        return [_document(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: _document(v) for k, v in obj.items()}
    return obj


@dataclass
class Guest:
    """The VM's size (Fly's guest); kernel, kernel_modules and rootfs_size_mb are flick's
    extensions."""
    cpus: Optional[int] = None
    memory_mb: Optional[int] = None
    cpu_kind: Optional[str] = None  # "shared" or "performance"
    kernel_args: list[str] = field(default_factory=list)
    kernel: Optional[str] = None
    kernel_modules: Optional[str] = None
    rootfs_size_mb: Optional[int] = None  # default: the image's content plus 256 MiB


@dataclass
class Init:
    """Overrides the image's program (Fly's init)."""
    exec: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    tty: Optional[bool] = None
    kernel_args: list[str] = field(default_factory=list)
    user: Optional[str] = None
    workdir: Optional[str] = None


@dataclass
class Restart:
    """Fly's restart policy: "no", "always" or "on-failure"."""
    policy: Optional[str] = None
    max_retries: Optional[int] = None


@dataclass
class StopConfig:
    """How a machine is asked to stop: a signal name ("SIGTERM") and a Go duration ("10s")."""
    signal: Optional[str] = None
    timeout: Optional[str] = None


@dataclass
class Mount:
    """A volume, by id or name, at a path in the guest."""
    volume: str
    path: str


@dataclass
class Port:
    """A port a service publishes on the host (Fly's MachinePort); handlers are kept, not acted
    on. Fly's fields not named here (force_https, tls_options, ...) go in `extra`."""
    port: int
    handlers: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Concurrency:
    """A service's connection limits (Fly's concurrency); 0 or None: no limit."""
    type: Optional[str] = None  # "connections"
    soft_limit: Optional[int] = None
    hard_limit: Optional[int] = None


@dataclass
class Service:
    """One of Fly's services: the guest's internal_port published on the host's ports.
    autostop_idle is flick's extension. Fly's fields not named here go in `extra`."""
    internal_port: int
    protocol: Optional[str] = None  # "tcp" (the default)
    ports: list[Port] = field(default_factory=list)
    autostart: Optional[bool] = None
    autostop: Optional[str] = None  # "off", "stop" or "suspend"
    min_machines_running: Optional[int] = None
    concurrency: Optional[Concurrency] = None
    autostop_idle: Optional[str] = None  # a Go duration ("5m")
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> "Service":
        """One of a config document's services as dataclasses."""
        s = _part(cls, doc)
        if isinstance(s.ports, list):
            s.ports = [_part(Port, p) if isinstance(p, Mapping) else p for p in s.ports]
        if isinstance(s.concurrency, Mapping):
            s.concurrency = _part(Concurrency, s.concurrency)
        return s


@dataclass
class MachineConfig:
    """The part of Fly's MachineConfig flick reads; anything else goes in `extra`."""
    image: str
    env: dict[str, str] = field(default_factory=dict)
    guest: Optional[Guest] = None
    init: Optional[Init] = None
    restart: Optional[Restart] = None
    stop_config: Optional[StopConfig] = None
    metadata: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    auto_destroy: Optional[bool] = None
    start_timeout: Optional[str] = None  # a Go duration ("30s")
    pull: Optional[str] = None  # "always" or "never"; None: pull what the cache lacks
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (a dict) the library and Fly's API take."""
        return _document(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> "MachineConfig":
        """A config document (a Machine's "config") as dataclasses; keys without a field of
        their own go to `extra`."""
        doc = dict(doc)
        parts = {"guest": Guest, "init": Init, "restart": Restart, "stop_config": StopConfig}
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = {}
        for name in known & doc.keys():
            value = doc.pop(name)
            if name in parts and isinstance(value, Mapping):
                value = _part(parts[name], value)
            elif name == "mounts" and isinstance(value, list):
                value = [Mount(volume=m.get("volume", ""), path=m.get("path", "")) for m in value]
            elif name == "services" and isinstance(value, list):
                value = [Service.from_dict(v) if isinstance(v, Mapping) else v for v in value]
            kwargs[name] = value
        if "image" not in kwargs:
            raise ValueError("a MachineConfig needs an image")
        return cls(**kwargs, extra=doc)


def _part(cls: type, doc: Mapping[str, Any]) -> Any:
    """`doc` as a `cls`: keys it has no field for go to its `extra`, if it has one, else are dropped."""
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    kwargs = {k: v for k, v in doc.items() if k in names}
    if "extra" in {f.name for f in dataclasses.fields(cls)}:
        kwargs["extra"] = {k: v for k, v in doc.items() if k not in names}
    return cls(**kwargs)
