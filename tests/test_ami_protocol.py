"""AMI wire format: incremental parsing and safe serialization (callcenter.ami.protocol)."""
from __future__ import annotations

import pytest

from callcenter.ami import ActionEncodingError, AMIProtocolError, Message, Parser, encode_action, redacted

# Captured shape of an Asterisk 22 session: banner, login answer, FullyBooted, a Command with several
# Output lines, an event with ChanVariable lines and Chinese text, an OriginateResponse.
STREAM = (
    "Asterisk Call Manager/9.0.0\r\n"
    "Response: Success\r\nActionID: a-1\r\nMessage: Authentication accepted\r\n\r\n"
    "Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n"
    "Response: Success\r\nActionID: a-2\r\nMessage: Command output follows\r\n"
    "Output: Asterisk 22.10.1 built by debian\r\nOutput: \r\nOutput: line three: with colon\r\n\r\n"
    "Event: Newchannel\r\nChannel: Local/s@test-citizen-00000001;1\r\nCallerIDName: 张三\r\n"
    "ChanVariable: CASE_ID=C-1\r\nChanVariable: LANG=zh\r\nUniqueid: 1732547203.45\r\n\r\n"
    "Event: OriginateResponse\r\nActionID: a-3\r\nResponse: Failure\r\nReason: 0\r\n\r\n"
).encode("utf-8")


def _names(messages: list[Message]) -> list[str]:
    return [m.name or f"response:{m.action_id}" for m in messages]


def test_parses_banner_and_messages_in_one_read():
    parser = Parser()
    messages = parser.feed(STREAM)
    assert parser.banner == "Asterisk Call Manager/9.0.0"
    assert parser.version == "9.0.0"
    assert _names(messages) == ["response:a-1", "FullyBooted", "response:a-2", "Newchannel", "OriginateResponse"]


def test_any_split_of_the_stream_gives_the_same_messages():
    """Reads end anywhere: inside CRLF, inside a key, inside a UTF-8 character of a Chinese name."""
    whole = Parser().feed(STREAM)
    for cut in range(1, len(STREAM)):
        parser = Parser()
        got = parser.feed(STREAM[:cut]) + parser.feed(STREAM[cut:])
        assert got == whole, f"split at byte {cut}"
    parser = Parser()
    byte_by_byte = [m for i in range(len(STREAM)) for m in parser.feed(STREAM[i:i + 1])]
    assert byte_by_byte == whole


def test_repeated_keys_are_kept_in_order_as_lists():
    messages = Parser().feed(STREAM)
    command = messages[2]
    # Asterisk 22 sends each CLI output line as its own Output: header.
    assert command.get("Output") == ["Asterisk 22.10.1 built by debian", "", "line three: with colon"]
    assert command.get_all("output") == command.get("Output")
    newchannel = messages[3]
    assert newchannel.get("ChanVariable") == ["CASE_ID=C-1", "LANG=zh"]
    assert newchannel.chan_variables() == {"CASE_ID": "C-1", "LANG": "zh"}
    assert newchannel.get("CallerIDName") == "张三"
    assert newchannel.get_all("Channel") == ["Local/s@test-citizen-00000001;1"]


def test_event_vs_response_and_action_id():
    login, booted, _, _, originate = Parser().feed(STREAM)
    assert login.is_response and not login.is_event and login.success and login.action_id == "a-1"
    assert booted.is_event and not booted.is_response and booted.action_id is None
    # OriginateResponse carries a Response: header but is an event.
    assert originate.is_event and not originate.is_response
    assert originate.response == "Failure" and originate.action_id == "a-3"
    assert originate.get("actionid") == "a-3"  # keys are case-insensitive, like Asterisk's
    with pytest.raises(KeyError):
        originate["Missing"]
    assert originate.get("Missing", "x") == "x"


def test_garbage_lines_without_colon_are_kept_aside_and_parsing_goes_on():
    data = (
        b"Asterisk Call Manager/9.0.0\r\n"
        b"Response: Follows\r\nActionID: x\r\nsome raw CLI output\r\n--END COMMAND--\r\n\r\n"
        b"\r\n"  # stray blank line between messages
        b"Event: Hangup\nCause: 16\n\n"  # bare LF line ends
    )
    parser = Parser()
    follows, hangup = parser.feed(data)
    assert follows.action_id == "x"
    assert follows.unparsed == ("some raw CLI output", "--END COMMAND--")
    assert parser.garbage_lines == 2
    assert hangup.name == "Hangup" and hangup.get("Cause") == "16"


def test_first_line_that_is_not_a_banner_is_parsed_as_data():
    parser = Parser()
    (msg,) = parser.feed(b"Event: Foo\r\n\r\n")
    assert parser.banner is None and parser.banner_checked
    assert msg.name == "Foo"


def test_endless_message_is_refused():
    parser = Parser(max_message_bytes=1000)
    parser.feed(b"Asterisk Call Manager/9.0.0\r\n")
    with pytest.raises(AMIProtocolError):
        for _ in range(100):
            parser.feed(b"Output: " + b"x" * 50 + b"\r\n")


def test_encode_action_puts_action_first_and_repeats_variables():
    data = encode_action(
        {"Channel": "Local/s@test-citizen", "Action": "Originate", "Variable": {"CASE_ID": "C-7", "LANG": "zh"},
         "Async": True, "Account": None, "Codecs": ["ulaw", "alaw"]}
    )
    assert data == (
        b"Action: Originate\r\nChannel: Local/s@test-citizen\r\nVariable: CASE_ID=C-7\r\nVariable: LANG=zh\r\n"
        b"Async: true\r\nCodecs: ulaw\r\nCodecs: alaw\r\n\r\n"
    )
    # Round trip through our own parser, as the fake server does.
    (parsed,) = Parser(expect_banner=False).feed(data)
    assert parsed.get("Variable") == ["CASE_ID=C-7", "LANG=zh"]
    assert encode_action({"Action": "Ping", "Variable": ["A=1", "B=2"]}).count(b"Variable: ") == 2


@pytest.mark.parametrize(
    "action",
    [
        {"Action": "Originate", "Channel": "Local/s@x\r\nAction: Command\r\nCommand: core stop now"},
        {"Action": "Originate", "CallerID": "evil\nAction: Logoff"},
        {"Action": "Originate", "Channel": "x\rY"},
        {"Action": "Originate", "Variable": {"NAME": "a\r\n\r\nAction: Command"}},
        {"Action": "Originate", "Variable": {"BAD\r\nNAME": "a"}},
        {"Action": "Originate", "Variable": ["A=1", "B=2\nAction: Hangup"]},
        {"Action": "Originate", "Bad: Key": "x"},
        {"Action": "Ping\r\nAction: Command"},
        {"Action": "Originate", "Channel": "x\0y"},
    ],
)
def test_line_breaks_in_values_are_rejected_as_injection(action):
    with pytest.raises(ActionEncodingError) as info:
        encode_action(action)
    assert isinstance(info.value, ValueError)
    # The offending value is not echoed (it may be a secret or hostile).
    assert "core stop now" not in str(info.value) and "Logoff" not in str(info.value)


def test_action_without_name_or_with_duplicate_keys_is_rejected():
    with pytest.raises(ActionEncodingError):
        encode_action({"Channel": "x"})
    with pytest.raises(ActionEncodingError):
        encode_action({"Action": "Ping", "ActionID": "1", "actionid": "2"})


def test_repr_and_redacted_hide_secret_and_mask_numbers():
    msg = Message.from_mapping({"Action": "Login", "Username": "callcenter", "Secret": "hunter2",
                                "CallerIDNum": "13812345678"})
    text = repr(msg)
    assert "hunter2" not in text and "13812345678" not in text and "138****5678" in text
    shown = redacted({"Action": "Originate", "Secret": "hunter2", "Channel": "PJSIP/13812345678@t",
                      "Variable": {"CALLER": "13912345678"}})
    assert shown["Secret"] == "***"
    assert shown["Channel"] == "PJSIP/138****5678@t"
    assert shown["Variable"] == {"CALLER": "139****5678"}
    # Ids stay in clear even when they are long digit runs: callers reconcile with them.
    ids = redacted({"Action": "Originate", "ActionID": "cc-12345678", "ChannelId": "cc-o12345678"})
    assert ids["ActionID"] == "cc-12345678" and ids["ChannelId"] == "cc-o12345678"


def test_parsed_message_keeps_header_order_and_spelling():
    (msg,) = Parser(expect_banner=False).feed(
        b"Response: Success\r\nActionID: 7\r\nOutput: a\r\nmessage: x\r\nOutput: b\r\nno colon here\r\n\r\n"
    )
    assert msg.items() == [("Response", "Success"), ("ActionID", "7"), ("Output", "a"), ("message", "x"),
                           ("Output", "b")]
    assert msg.keys() == ["Response", "ActionID", "Output", "message"]
    assert msg.as_dict() == {"Response": "Success", "ActionID": "7", "Output": ["a", "b"], "message": "x"}
    assert msg.get("MESSAGE") == "x" and len(msg) == 5 and "output" in msg
    assert msg == Message([("Response", "Success"), ("ActionID", "7"), ("Output", "a"), ("message", "x"),
                           ("Output", "b")], ["no colon here"])
