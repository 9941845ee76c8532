"""Running the hotline for real: systemd units (`services`) and the install's health check (`doctor`)."""
