"""The hotline on a cloud carrier (Twilio): voice webhooks running the same flows through the same
engine as Asterisk, SMS both ways, signed-webhook checks, call control through conferences, recordings
fetched into the recording store, and the callback runner's originate port. README "Running on Twilio"."""
