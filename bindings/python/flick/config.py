"""Fly's MachineConfig as dataclasses, for those who prefer them to dicts.

    cfg = MachineConfig(image="busybox", guest=Guest(cpus=2, memory_mb=512),
                        init=Init(cmd=["sleep", "60"]), metadata={"role": "worker"})
    host.create_machine(cfg)

Field names are Fly's JSON names. A field left at None (or an empty list or dict) is left out,
so the library's default applies. `extra` is merged into the document last: Fly fields these
classes do not name (services, checks, ...) go there as they would in the JSON.
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
            kwargs[name] = value
        if "image" not in kwargs:
            raise ValueError("a MachineConfig needs an image")
        return cls(**kwargs, extra=doc)


def _part(cls: type, doc: Mapping[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in doc.items() if k in names})
