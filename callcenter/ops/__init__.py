"""Running the hotline for real: systemd units (`services`), the install's health check (`doctor`),
backup and restore, readiness (`health`) and Prometheus metrics (`metrics`)."""
