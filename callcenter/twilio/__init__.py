"""The hotline on a cloud carrier (Twilio): voice webhooks running the same flows through the same
engine as Asterisk, SMS both ways, signed-webhook checks. README "Running on Twilio"."""
