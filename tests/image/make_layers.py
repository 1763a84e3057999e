#!/usr/bin/env python3
"""Writes the layer tars the image tests apply, with Python's tarfile (PAX format, so xattrs
travel as SCHILY.xattr.* records). Usage: make_layers.py OUTDIR"""
import io
import os
import sys
import tarfile

out = sys.argv[1]
os.makedirs(out, exist_ok=True)


def add(tf, name, kind=tarfile.REGTYPE, data=b"", mode=0o644, uid=0, gid=0, link="",
        xattrs=None, devmajor=0, devminor=0, mtime=1700000000):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.uid, ti.gid = uid, gid
    ti.mtime = mtime
    ti.linkname = link
    ti.devmajor, ti.devminor = devmajor, devminor
    if xattrs:
        ti.pax_headers = {"SCHILY.xattr." + k: v for k, v in xattrs.items()}
    if kind == tarfile.REGTYPE:
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    else:
        tf.addfile(ti)


def layer(name, entries):
    with tarfile.open(os.path.join(out, name), "w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            add(tf, **e)


D, L, H, C, B, F = (tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
                    tarfile.BLKTYPE, tarfile.FIFOTYPE)

# Layer 1: every entry type, owners, special mode bits and xattrs.
layer("base.tar", [
    dict(name="./", kind=D, mode=0o755),
    dict(name="etc", kind=D, mode=0o755),
    dict(name="etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n"),
    dict(name="etc/motd", data=b"hello from layer 1\n" * 100),
    dict(name="etc/xattr-file", data=b"x", xattrs={"user.flick": "yes", "user.empty": "",
                                                  "trusted.overlay.test": "t"}),
    dict(name="bin", kind=D, mode=0o755),
    dict(name="bin/su", data=b"\x7fELF" + bytes(range(256)) * 40, mode=0o4755),
    dict(name="bin/wall", data=b"wall", mode=0o2755, gid=5),
    dict(name="bin/sh", kind=L, link="busybox"),
    dict(name="bin/busybox", data=b"busybox" * 1000, mode=0o755),
    dict(name="bin/ash", kind=H, link="bin/busybox"),
    dict(name="bin/sh-again", kind=H, link="bin/sh"),  # a hardlink to a symlink
    dict(name="tmp", kind=D, mode=0o1777),
    dict(name="home", kind=D, mode=0o755),
    dict(name="home/user", kind=D, mode=0o700, uid=1000, gid=1000),
    dict(name="home/user/notes", data=b"notes\n", mode=0o600, uid=1000, gid=1000),
    dict(name="home/big-ids", data=b"ids", uid=100000, gid=200000),
    dict(name="dev", kind=D, mode=0o755),
    dict(name="dev/null", kind=C, mode=0o666, devmajor=1, devminor=3),
    dict(name="dev/sda", kind=B, mode=0o660, gid=6, devmajor=8, devminor=0),
    dict(name="dev/big", kind=C, mode=0o600, devmajor=300, devminor=70000),
    dict(name="dev/initctl", kind=F, mode=0o600),
    dict(name="lib", kind=D, mode=0o755),
    dict(name="lib/abs-link", kind=L, link="/etc/passwd"),
    dict(name="lib/long-link", kind=L, link="a/" * 60 + "target"),
    dict(name="lib/dangling", kind=L, link="../nowhere"),
    dict(name="gone", kind=D, mode=0o755),
    dict(name="gone/file", data=b"will be whited out"),
    dict(name="opaque", kind=D, mode=0o755),
    dict(name="opaque/old1", data=b"old"),
    dict(name="opaque/olddir", kind=D),
    dict(name="opaque/olddir/deep", data=b"deep"),
    dict(name="replace-me", data=b"file in layer 1"),
    dict(name="dir-to-file", kind=D),
    dict(name="dir-to-file/child", data=b"child"),
    dict(name="link-to-file", kind=L, link="etc/motd"),
    dict(name="shared", data=b"shared content across layers\n"),
    dict(name="wide", kind=D),
] + [dict(name="wide/entry-with-a-longish-name-%04d" % i, data=b"%d" % i) for i in range(700)])

# Layer 2: whiteouts, opaque directory, replacement of every kind, hardlinks to layer 1.
layer("changes.tar", [
    dict(name="etc/.wh.motd"),
    dict(name=".wh.gone"),
    dict(name="opaque/.wh..wh..opq"),
    dict(name="opaque/new", data=b"new in layer 2"),
    dict(name="replace-me", kind=D, mode=0o750),
    dict(name="replace-me/inside", data=b"now a directory"),
    dict(name="dir-to-file", data=b"now a file"),
    dict(name="link-to-file", data=b"symlink replaced by a file"),
    dict(name="shared-link", kind=H, link="shared"),
    dict(name="bin/busybox-again", kind=H, link="bin/busybox"),
    dict(name="etc/passwd", data=b"root:x:0:0:root:/root:/bin/ash\nuser:x:1000:1000::/home/user:/bin/sh\n"),
    dict(name="tmp", kind=D, mode=0o1777, mtime=1700000500),
    dict(name="home/user", kind=D, mode=0o750, uid=1000, gid=1000),
    dict(name="lib/through", kind=L, link="/home"),
    dict(name="etc/ssl", kind=D, xattrs={"user.dir": "attr on a directory"}),
])

# Layer 3: writes through a symlinked parent from layer 2 stay inside the image.
layer("through.tar", [
    dict(name="lib/through/via-symlink", data=b"written through lib/through -> /home"),
])

# Hostile layers.
layer("dotdot.tar", [dict(name="../escape", data=b"x")])
layer("dotdot-inner.tar", [dict(name="etc/../../escape", data=b"x")])
layer("absolute.tar", [dict(name="/etc/evil", data=b"x")])
layer("symlink-root.tar", [
    dict(name="evil", kind=L, link="/"),
    dict(name="evil/etc", kind=D),
    dict(name="evil/etc/flick-escape-probe", data=b"must land inside the image"),
    dict(name="up", kind=L, link="../../../../.."),
    dict(name="up/flick-escape-probe2", data=b"must land inside the image too"),
])
layer("hardlink-outside.tar", [dict(name="passwd", kind=H, link="../../../etc/passwd")])
layer("hardlink-missing.tar", [dict(name="passwd", kind=H, link="etc/shadow")])
layer("symlink-loop.tar", [
    dict(name="a", kind=L, link="b"),
    dict(name="b", kind=L, link="a"),
    dict(name="a/file", data=b"x"),
])
