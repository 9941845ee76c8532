"""Asterisk provisioning and control (`callcenter asterisk ...`): see docs/asterisk.md."""
