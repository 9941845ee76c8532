"""`callcenter doctor` against the install's real Asterisk: version, modules and AMI login."""
from __future__ import annotations

from callcenter.ops import doctor


def test_doctor_finds_asterisk_22_with_its_modules_and_ami(asterisk):
    findings = doctor.check_asterisk(asterisk)
    assert [f.level for f in findings] == [doctor.OK] * 3, findings
    version, modules, ami = (f.message for f in findings)
    assert version.startswith("Asterisk 22.")
    assert modules == f"running, {len(doctor.REQUIRED_MODULES)} required modules loaded"
    assert ami == f"AMI login at {asterisk.ami_host}:{asterisk.ami_port}"
