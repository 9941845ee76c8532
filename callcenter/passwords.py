"""Password rules for staff accounts: long enough, not the user name, not a common password.

The length follows the install's policy (`accounts.password_min_length`, at least 8); the list is
short on purpose (NIST SP 800-63B: refuse the passwords guessed first, do not demand character
classes) and holds the ones most tried against Chinese services and this hotline itself.
"""
from __future__ import annotations

from ticketing.errors import InvalidInput

MAX_LENGTH = 200  # argon2 hashes any length; a bound keeps request bodies and hashing cheap

COMMON = frozenset("""
00000000 11111111 12121212 11223344 12341234 12344321 123123123 12345678 123456789 1234567890
0123456789 1234qwer 1q2w3e4r 1q2w3e4r5t 1qaz2wsx 1qaz2wsx3edc 2wsx3edc 5201314520 52013145
66666666 88888888 99999999 87654321 987654321 a1234567 a12345678 a123456789 aa123456 aa12345678
abc12345 abc123456 abcd1234 abcdefgh admin123 admin1234 admin12345 administrator asdfghjk
asdf1234 baseball dragon123 football iloveyou letmein1 password password1 password123 passw0rd
p@ssw0rd p@ssword qazwsxedc qwer1234 qwerty123 qwertyui qwertyuiop sunshine superman
woaini1314 woaini520 zxcvbnm123 zxcvbnmm changeme welcome1 welcome123 trustno1 iloveyou1
12345hotline hotline12345 hotline123 12345rexian rexian12345 yixing12345 yixing123
12345678a 123456abc 123456qq qq123456 zhang123456 wang123456 li123456 root1234 test1234
test12345 user1234 guest123 monkey123 master123 shadow123 computer 1234abcd
""".split())


def check_password(password: str, *, username: str, min_length: int = 8) -> None:
    """Raise InvalidInput (rule 'passwords') naming what is wrong; say nothing of the password."""
    if len(password) < min_length:
        raise InvalidInput("passwords", f"a password has at least {min_length} characters")
    if len(password) > MAX_LENGTH:
        raise InvalidInput("passwords", f"a password has at most {MAX_LENGTH} characters")
    folded = password.casefold()
    name = username.casefold()
    if len(name) >= 3 and (name in folded or folded in name or folded == name[::-1]):
        raise InvalidInput("passwords", "a password may not contain the user name")
    if folded in COMMON or len(set(folded)) <= 2:
        raise InvalidInput("passwords", "this password is among the most common ones; choose another")


__all__ = ["COMMON", "MAX_LENGTH", "check_password"]
