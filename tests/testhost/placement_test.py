#!/usr/bin/env python3
"""Where KVM tests run, decided on fixture /dev, /proc/cpuinfo and /sys/module trees: one
machine shows only one kind of /dev/kvm, so every kind is made up here."""

from __future__ import annotations

import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import placement  # noqa: E402

CPUINFO = "processor\t: {n}\nvendor_id\t: {vendor}\nflags\t\t: fpu vme de pse tsc msr {extra}\n\n"


def machine(root: Path, *, kvm: bool, modules: tuple[str, ...] = (), flags: str = "") -> Path:
    (root / "dev").mkdir(parents=True)
    (root / "proc").mkdir()
    for m in modules:
        (root / "sys/module" / m / "parameters").mkdir(parents=True)
    if kvm:
        (root / "dev/kvm").touch(mode=0o660)
    (root / "proc/cpuinfo").write_text(
        "".join(CPUINFO.format(n=n, vendor="AuthenticAMD", extra=flags) for n in range(2)))
    return root


class Placement(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name) / "m"

    def tearDown(self) -> None:
        self.tmp.cleanup()

    def where(self, needs: str, override: str = "") -> bool:
        return placement.place(needs, self.root, override=override).in_testhost

    def test_no_dev_kvm_though_the_pvm_module_is_built_in(self) -> None:
        machine(self.root, kvm=False, modules=("kvm", "kvm_pvm"))
        self.assertEqual(placement.kvm_kind(self.root), "none")
        self.assertTrue(self.where("small"))
        self.assertTrue(self.where("linux"))
        self.assertIn("no usable /dev/kvm", placement.place("small", self.root, "").describe())

    def test_no_kvm_at_all(self) -> None:
        machine(self.root, kvm=False)
        self.assertEqual(placement.kvm_kind(self.root), "none")
        self.assertTrue(self.where("small"))

    def test_dangling_dev_kvm_is_none(self) -> None:
        machine(self.root, kvm=False, flags="svm")
        (self.root / "dev/kvm").symlink_to(self.root / "dev/nowhere")
        self.assertEqual(placement.kvm_kind(self.root), "none")

    def test_pvm_runs_small_guests_directly_and_linux_in_the_test_host(self) -> None:
        machine(self.root, kvm=True, modules=("kvm", "kvm_pvm"))
        self.assertEqual(placement.kvm_kind(self.root), "pvm")
        self.assertFalse(self.where("small"))
        self.assertTrue(self.where("linux"))

    def test_pvm_wins_over_cpu_flags(self) -> None:
        machine(self.root, kvm=True, modules=("kvm_pvm",), flags="svm")
        self.assertEqual(placement.kvm_kind(self.root), "pvm")
        self.assertTrue(self.where("linux"))

    def test_amd_v_runs_everything_directly(self) -> None:
        machine(self.root, kvm=True, modules=("kvm", "kvm_amd"), flags="svm npt")
        self.assertEqual(placement.kvm_kind(self.root), "hardware")
        self.assertFalse(self.where("small"))
        self.assertFalse(self.where("linux"))

    def test_vt_x_runs_everything_directly(self) -> None:
        machine(self.root, kvm=True, modules=("kvm", "kvm_intel"), flags="vmx ept")
        self.assertEqual(placement.kvm_kind(self.root), "hardware")
        self.assertFalse(self.where("linux"))

    def test_unknown_kvm_is_trusted_with_small_guests_only(self) -> None:
        machine(self.root, kvm=True, modules=("kvm",))
        self.assertEqual(placement.kvm_kind(self.root), "other")
        self.assertFalse(self.where("small"))
        self.assertTrue(self.where("linux"))

    def test_missing_cpuinfo_is_other(self) -> None:
        machine(self.root, kvm=True)
        (self.root / "proc/cpuinfo").unlink()
        self.assertEqual(placement.kvm_kind(self.root), "other")

    def test_override(self) -> None:
        machine(self.root, kvm=True, flags="vmx")
        self.assertTrue(self.where("small", override="always"))
        machine_none = Path(self.tmp.name) / "none"
        machine(machine_none, kvm=False)
        self.assertFalse(placement.place("linux", machine_none, override="never").in_testhost)
        self.assertIn("FLICK_TESTHOST=never", placement.place("linux", machine_none, "never").why)

    def test_unknown_need_is_an_error(self) -> None:
        machine(self.root, kvm=False)
        with self.assertRaises(ValueError):
            placement.place("big", self.root, "")


if __name__ == "__main__":
    unittest.main()
