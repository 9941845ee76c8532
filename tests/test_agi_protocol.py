"""FastAGI wire format: header parsing, response parsing, argument quoting, masking."""
from __future__ import annotations

import pytest

from agi.protocol import (
    MAX_COMMAND_BYTES,
    CommandTooLong,
    HeaderError,
    ProtocolError,
    escape_app_arg,
    format_command,
    parse_header_block,
    parse_header_line,
    parse_header_lines,
    parse_header_text,
    parse_response,
    quote_arg,
)
from agi.testing import make_header


def asterisk_parse_args(line: str) -> list[str]:
    """res_agi.c parse_args(), transcribed: how Asterisk splits a command line."""
    argv: list[list[str]] = []
    quoted = escaped = False
    whitespace = True
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:
                argv.append([])
                whitespace = False
            escaped = False
            continue
        if ch in " \t" and not quoted and not escaped:
            whitespace = True
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if whitespace:
            argv.append([])
            whitespace = False
        argv[-1].append(ch)
        escaped = False
    return ["".join(a) for a in argv]


def asterisk_app_args(data: str) -> list[str]:
    """app.c __ast_app_separate_args(delim=',', remove_chars=1), transcribed."""
    out, cur, paren, quote = [], [], 0, False
    i = 0
    while i < len(data):
        ch = data[i]
        if ch == "(":
            paren += 1
            cur.append(ch)
        elif ch == ")":
            paren = max(0, paren - 1)
            cur.append(ch)
        elif ch == '"':
            quote = not quote
        elif ch == "\\":
            i += 1
            if i < len(data):
                cur.append(data[i])
        elif ch == "," and not paren and not quote:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def test_header_block_gives_script_query_args_and_env():
    block = make_header(
        "/ivr/main/",
        query={"lang": "zh", "retry": "2"},
        args=["first arg", "", "x,y"],
        callerid="13812345678",
        uniqueid="1732512345.7",
    ).decode()
    req = parse_header_block(block)
    assert req.script == "ivr/main"
    assert req.query == {"lang": "zh", "retry": "2"}
    assert req.args == ("first arg", "", "x,y")
    assert req.caller_id == "13812345678"
    assert req.unique_id == "1732512345.7"
    assert req.env["agi_accountcode"] == ""  # "agi_accountcode: " with empty value
    assert req.get("context") == "citizen-in" == req.get("agi_context")
    assert req.caller_id_name is None  # Asterisk sends "unknown"


def test_args_are_ordered_numerically_past_nine():
    block = make_header("ivr/main", args=[str(i) for i in range(1, 13)]).decode()
    assert parse_header_block(block).args == tuple(str(i) for i in range(1, 13))


def test_script_falls_back_to_request_url_without_network_script():
    block = "agi_request: agi://127.0.0.1/callback/survey?case=12\nagi_channel: Local/s@x-1;2\n\n"
    req = parse_header_block(block)
    assert req.script == "callback/survey"
    assert req.query == {"case": "12"}


@pytest.mark.parametrize(
    "line",
    ["callerid: 138", "agi_callerid 138", "AGI-foo: x", "200 result=1", " agi_x: y", "agi_: x"],
)
def test_malformed_header_lines_are_rejected(line):
    with pytest.raises(HeaderError) as info:
        parse_header_line(line)
    assert info.value.kind == "malformed_header"


@pytest.mark.parametrize("block", [
    make_header("ivr/main", args=["1732512345.20", "", "a b"]).decode(),
    "agi_accountcode: \nagi_x:\nagi_y: a: b\n\n",  # empty values, a colon inside a value
    "agi_callerid: 138\r\nagi_network: yes\r\n\n",  # CRs go the line-by-line way
    "agi_x: 1\nagi_x: 2\n\n",  # a repeated name: the last one counts
])
def test_whole_block_parse_equals_the_line_by_line_parse(block):
    lines = block.split("\n")[:-2]
    assert parse_header_text(block, len(lines)) == parse_header_lines(lines)


@pytest.mark.parametrize("block", ["agi_network: yes\nnot a header\n\n", "agi_x:y\n\n", "agi_: v\n\n"])
def test_whole_block_parse_rejects_a_bad_line(block):
    with pytest.raises(HeaderError) as info:
        parse_header_text(block, block.count("\n") - 1)
    assert info.value.kind == "malformed_header"


def test_empty_header_block_is_rejected():
    with pytest.raises(HeaderError):
        parse_header_block("\n")


def test_unterminated_header_block_is_rejected():
    with pytest.raises(HeaderError) as info:
        parse_header_block("agi_network: yes\nagi_channel: x\n")
    assert info.value.kind == "client_vanished"


@pytest.mark.parametrize(
    "line, code, raw, data, endpos",
    [
        ("200 result=1", 200, "1", None, None),
        ("200 result=0 endpos=12345", 200, "0", None, 12345),
        ("200 result=-1 endpos=0", 200, "-1", None, 0),
        ("200 result=0123 (timeout)", 200, "0123", "timeout", None),
        ("200 result= (timeout)", 200, "", "timeout", None),
        ("200 result=1 (hello world)", 200, "1", "hello world", None),
        ("200 result=1 (a (nested) value)", 200, "1", "a (nested) value", None),
        ("200 result=35 (dtmf) endpos=16000", 200, "35", "dtmf", 16000),
        ("200 result=-1 (hangup) endpos=800", 200, "-1", "hangup", 800),
        ("200 result=1 ()", 200, "1", "", None),
    ],
)
def test_parse_200_responses(line, code, raw, data, endpos):
    r = parse_response([line])
    assert (r.code, r.result_raw, r.data, r.endpos) == (code, raw, data, endpos)


def test_result_keeps_leading_zero_digits_as_text():
    r = parse_response(["200 result=0123 (timeout)"])
    assert r.result_raw == "0123" and r.result == 123


def test_parse_error_codes():
    assert parse_response(["510 Invalid or unknown command"]).code == 510
    assert parse_response(["511 Command Not Permitted on a dead channel or intercept routine"]).code == 511


def test_parse_multiline_520_usage():
    lines = [
        "520-Invalid command syntax.  Proper usage follows:",
        " Usage: GET DATA <file to be streamed> [timeout] [maxdigits]",
        "",
        "  Stream the given file.",
        "520 End of proper usage.",
    ]
    r = parse_response(lines)
    assert r.code == 520
    assert r.usage == " Usage: GET DATA <file to be streamed> [timeout] [maxdigits]\n\n  Stream the given file."


def test_parse_520_end_glued_to_usage_text():
    # res_agi sends the usage with "%s", without a newline of its own
    lines = ["520-Invalid command syntax.  Proper usage follows:", "Returns the digits.520 End of proper usage."]
    assert parse_response(lines).usage == "Returns the digits."


def test_parse_rejects_non_response():
    with pytest.raises(ProtocolError):
        parse_response(["hello"])


@pytest.mark.parametrize(
    "value",
    ["plain", "", "two words", 'say "hi"', "back\\slash", 'tricky \\" mix', "\\", '"', "tab\there", "中文 提示", "  lead"],
)
def test_quote_arg_round_trips_through_asterisk_parser(value):
    line = format_command("SET VARIABLE", "NAME", value)
    assert asterisk_parse_args(line) == ["SET", "VARIABLE", "NAME", value]


def test_plain_words_are_sent_bare():
    assert format_command("SET VARIABLE", "IVR_NEXT", "queue") == "SET VARIABLE IVR_NEXT queue"
    assert format_command("STREAM FILE", "welcome", "") == 'STREAM FILE welcome ""'


def test_quote_arg_rejects_line_breaks():
    with pytest.raises(ValueError):
        quote_arg("a\nSET VARIABLE X y")


def test_command_longer_than_asterisk_buffer_is_refused():
    format_command("VERBOSE", "x" * (MAX_COMMAND_BYTES - len("VERBOSE ")))
    with pytest.raises(CommandTooLong):
        format_command("VERBOSE", "x" * (MAX_COMMAND_BYTES - len("VERBOSE ") + 1))
    with pytest.raises(CommandTooLong):
        format_command("VERBOSE", "中" * 700)  # 2100 bytes in UTF-8


@pytest.mark.parametrize("value", ["a,b", "x(y", "(z)", 'q"q', "back\\", "Key: v,w", "plain"])
def test_app_arg_escaping_survives_both_parsers(value):
    data = ",".join([escape_app_arg("first"), escape_app_arg(value)])
    line = format_command("EXEC", "UserEvent", data)
    argv = asterisk_parse_args(line)
    assert argv[:2] == ["EXEC", "UserEvent"]
    assert asterisk_app_args(argv[2]) == ["first", value]
