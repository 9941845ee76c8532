"""The Twilio driver's parts built once per app from its settings and state: the hotline (the flows and
the actions agi/ runs for Asterisk, with the callback ledger for the survey), the voice webhooks' work,
SMS both ways and the REST client. `app.state.twilio_http_client` (tests: a recording fake carrier)
is the REST client's transport when set."""
from __future__ import annotations

from ivr_flows import PROMPTS_PATH
from ivr_flows.engine import load_prompts

from .twiml import Speaker
from .voice import TwilioVoice, VoiceConfig


def rest_client(settings, http_client=None):
    """twilio.rest.Client with the install's credentials (environment or var/secrets.env)."""
    from twilio.rest import Client

    return Client(settings.twilio_account_sid, settings.twilio_auth_token, http_client=http_client)


def voice_for(app) -> TwilioVoice:
    voice = getattr(app.state, "twilio_voice", None)
    if voice is None:
        from agi.hotline import Hotline
        from callback import attempts
        from callcenter.pbx.root import RECORDINGS_DIR

        settings = app.state.settings
        hotline = Hotline.create(app.state.domain, app.state.session_factory, RECORDINGS_DIR, inline_sqlite=False,
                                 survey=attempts)
        speaker = Speaker(load_prompts(PROMPTS_PATH), settings.twilio_prompt_url)
        voice = app.state.twilio_voice = TwilioVoice(hotline, VoiceConfig(
            public_url=settings.twilio_public_url, queue=settings.twilio_queue,
            operator_number=settings.twilio_operator_number), speaker)
    return voice


def client_for(app):
    client = getattr(app.state, "twilio_client", None)
    if client is None:
        client = app.state.twilio_client = rest_client(app.state.settings,
                                                       getattr(app.state, "twilio_http_client", None))
    return client


def sms_for(app):
    sms = getattr(app.state, "twilio_sms", None)
    if sms is None:
        from .sms import TwilioSms

        settings = app.state.settings
        sms = app.state.twilio_sms = TwilioSms(
            app.state.domain, app.state.session_factory, client_for(app), from_number=settings.twilio_from_number,
            status_url=settings.twilio_public_url.rstrip("/") + "/twilio/sms/status")
    return sms


def sms_sender(settings, domain, session_factory, http_client=None):
    """The citizens' notices' SMS port (callback/notify_sms.py) outside the web app: the callback
    scheduler's process, with the install's credentials."""
    from .sms import TwilioSms

    return TwilioSms(domain, session_factory, rest_client(settings, http_client), from_number=settings.twilio_from_number,
                     status_url=settings.twilio_public_url.rstrip("/") + "/twilio/sms/status")


def callback_port(settings, session_factory, http_client=None):
    """The callback runner's originate port on Twilio (outbound.py): the runner's own exactly-once
    machinery places 回访 calls through the REST API (CALLCENTER_CALLBACK_DRIVER=twilio)."""
    from .outbound import TwilioCallbackPbx

    return TwilioCallbackPbx(rest_client(settings, http_client), session_factory,
                             public_url=settings.twilio_public_url, from_number=settings.twilio_from_number)


def transfers_for(app):
    """Call control of the calls Twilio carries: the same CallControl (transfers, three-way calls) as
    Asterisk's, over the conferences of conference.py."""
    control = getattr(app.state, "twilio_transfers", None)
    if control is None:
        from callcenter.callcontrol.transfer import CallControl

        from .conference import TwilioPbx

        settings, sessions = app.state.settings, app.state.session_factory

        def note_room(sid: str, twiml: str) -> None:
            from sqlalchemy import update

            from ticketing.carrier_model import CarrierCall
            from ticketing.store import session_scope

            with session_scope(sessions) as s:
                s.execute(update(CarrierCall).where(CarrierCall.call_sid == sid).values(room_twiml=twiml))

        hold = settings.twilio_prompt_url.rstrip("/") + "/hold.wav" if settings.twilio_prompt_url else ""
        control = app.state.twilio_transfers = CallControl(TwilioPbx(
            client_for(app), public_url=settings.twilio_public_url, from_number=settings.twilio_from_number,
            hold_music_url=hold, note_room=note_room), clock=app.state.domain.clock)
    return control


def recordings_for(app):
    recordings = getattr(app.state, "twilio_recordings", None)
    if recordings is None:
        from .recordings import TwilioRecordings

        recordings = app.state.twilio_recordings = TwilioRecordings(
            app.state.session_factory, client_for(app), app.state.settings, app.state.domain.clock)
    return recordings


def close(app) -> None:
    """Give back the connections the voice menu's worker threads hold (agi.loopdb, on PostgreSQL)."""
    voice = getattr(app.state, "twilio_voice", None)
    if voice is not None and voice.hotline.direct_db is not None:
        voice.hotline.direct_db.close()
