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
        if not settings.twilio_operator_number:
            voice.agents = agents_for(app)
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

        def room_of(sid: str) -> str | None:
            from sqlalchemy import select

            from ticketing.carrier_model import CarrierCall

            with sessions() as s:
                return s.execute(select(CarrierCall.room).where(CarrierCall.call_sid == sid,
                                                                CarrierCall.queue_state == "connected")).scalar()

        control = app.state.twilio_transfers = CallControl(TwilioPbx(
            client_for(app), public_url=settings.twilio_public_url, from_number=settings.twilio_from_number,
            hold_music_url=hold_music(settings), note_room=note_room, room_of=room_of), clock=app.state.domain.clock)
    return control


def hold_music(settings) -> str:
    return settings.twilio_prompt_url.rstrip("/") + "/hold.wav" if settings.twilio_prompt_url else ""


def agents_for(app):
    """The operators' queue on Twilio (agents.py), sharing call control's Twilio rooms; its
    screen-pops go to the operators' feed of the AMI link when this process has one."""
    agents = getattr(app.state, "twilio_agents", None)
    if agents is None:
        from callcenter.callcontrol.screenpop import ScreenPop

        from .agents import TwilioQueue

        settings = app.state.settings
        link = getattr(getattr(app.state, "callcontrol", None), "link", None)
        pop = app.state.twilio_screenpop = ScreenPop(None, app.state.session_factory, app.state.domain,
                                                     publish=link.publish if link is not None else None)

        async def screen_pop(extension: str, sid: str, leg: str, held: float) -> None:
            await pop.pop(extension, caller_uniqueid=sid, linkedid=sid, operator_uniqueid=leg, holdtime=str(held))
        agents = app.state.twilio_agents = TwilioQueue(
            app.state.session_factory, transfers_for(app).pbx, queue=settings.twilio_queue,
            public_url=settings.twilio_public_url, clock=app.state.domain.clock,
            addresses=settings.twilio_operators, hold_music_url=hold_music(settings), pop=screen_pop)
    return agents


def supervision_for(app):
    """Listen / whisper / barge on operators' Twilio calls: the same Supervision as on Asterisk."""
    supervision = getattr(app.state, "twilio_supervision", None)
    if supervision is None:
        from callcenter.callcontrol.supervise import Supervision

        from .supervise import TwilioSpyPbx

        control = transfers_for(app)
        supervision = app.state.twilio_supervision = Supervision(
            TwilioSpyPbx(control.pbx, agents_for(app).operator_room, control), clock=app.state.domain.clock)
    return supervision


def recordings_for(app):
    recordings = getattr(app.state, "twilio_recordings", None)
    if recordings is None:
        from .recordings import TwilioRecordings

        recordings = app.state.twilio_recordings = TwilioRecordings(
            app.state.session_factory, client_for(app), app.state.settings, app.state.domain.clock)
    return recordings


async def close(app) -> None:
    """Give back the voice menu's own database connections (agi.loopdb), if it ran."""
    voice = getattr(app.state, "twilio_voice", None)
    if voice is not None:
        await voice.hotline.close()
