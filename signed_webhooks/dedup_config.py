"""The deduplication table's settings: DEDUP_TABLE and DEDUP_TTL, and what reaching the
table needs (the credentials and region Lambda sets, the AWS SDKs' endpoint variables), judged.

Part of the configuration: config.py's `judge` calls `read` and `window_errors` here with the
environment it judges (nothing here reads `os.environ`), and reports their problems with all
the others. Imported only when DEDUP_TABLE or DEDUP_TTL is set: the default configuration
compiles none of it.
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from collections.abc import Mapping
    from urllib.parse import SplitResult

QSTASH_TOKEN_LIFETIME = 300  # seconds from iat to exp in every token QStash signs
DEDUP_TTL = 7 * 24 * 3600  # seconds a completed message is remembered (DEDUP_TTL); QStash
# retries for up to about 6 hours by default, and for days with custom retry settings
DEDUP_TTL_MIN = 3600  # a shorter memory than QStash's retry schedule would run handle twice
DEDUP_TTL_MAX = 366 * 86400

DEDUP_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")
ENDPOINT_NAMES = ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL")  # the SDKs' order
ENDPOINT_RULE = (" must be https://host[:port] (http:// only to a loopback address, for a local "
                 "store), without path, query, fragment or user name")
ENDPOINT_HOST = re.compile(r"[a-z0-9._:-]+")  # a DNS name, or an IP address without brackets


class DedupSettings:
    """Where the deduplication table is and how to reach it (DEDUP_TABLE is set). endpoint:
    the URL, checked and taken apart, or None when the endpoint variable in use is refused
    (`endpoint_problem` then names it)."""

    def __init__(self, environ: Mapping[str, str], table: str, ttl: int) -> None:
        self.table = table
        self.ttl = ttl
        # What Lambda sets: the function's credentials and region; the endpoint variables are
        # the AWS SDKs' own (AWS_ENDPOINT_URL_DYNAMODB first), for local stores.
        self.region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or \
            "us-east-1"
        self.endpoint: SplitResult | None = urlsplit("https://dynamodb.%s.amazonaws.com"
                                                     % self.region)
        self.endpoint_problem: str | None = None
        for name in ENDPOINT_NAMES:  # the first one set is the one in use
            if environ.get(name):
                self.endpoint = checked_endpoint(environ[name])
                if self.endpoint is None:
                    self.endpoint_problem = name + ENDPOINT_RULE
                break
        self.access_key_id = environ.get("AWS_ACCESS_KEY_ID")
        self.secret_access_key = environ.get("AWS_SECRET_ACCESS_KEY")
        self.session_token = environ.get("AWS_SESSION_TOKEN")


def checked_endpoint(url: str) -> SplitResult | None:
    """The URL's parts, or None when ENDPOINT_RULE refuses it. The scheme is compared
    without case (`HTTPS://` is TLS); plain http would carry the session token in clear
    text, so it may only reach this machine."""
    try:
        parts = urlsplit(url)  # lowercases the scheme and the host
        if parts.port == 0:  # reading the port raises ValueError when it is out of range
            return None
    except ValueError:
        return None
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not ENDPOINT_HOST.fullmatch(host):
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        return None
    if parts.scheme == "http" and not _is_loopback(host):
        return None
    return parts


def _is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    import ipaddress  # only when an endpoint variable asks for plain http

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def read(environ: Mapping[str, str], errors: list[str]) -> DedupSettings | None:
    """The table's settings, or None without DEDUP_TABLE; each problem goes to `errors`
    (DEDUP_TTL is judged even without a table: a value set is a value meant)."""
    table = environ.get("DEDUP_TABLE", "")
    if table and not DEDUP_TABLE_NAME.fullmatch(table):
        errors.append("DEDUP_TABLE must be a DynamoDB table name: 3 to 255 of "
                      "a-z, A-Z, 0-9, _ . -")
    text = environ.get("DEDUP_TTL", "")
    ttl = DEDUP_TTL
    if text:
        # no more digits than the largest value has: int() of a long string costs more
        whole_seconds = text.isascii() and text.isdigit() and len(text) <= len(str(DEDUP_TTL_MAX))
        if whole_seconds and DEDUP_TTL_MIN <= int(text) <= DEDUP_TTL_MAX:
            ttl = int(text)
        else:
            errors.append("DEDUP_TTL must be whole seconds from %d to %d"
                          % (DEDUP_TTL_MIN, DEDUP_TTL_MAX))
    if not table:
        return None
    settings = DedupSettings(environ, table, ttl)
    if settings.endpoint_problem:
        errors.append(settings.endpoint_problem)
    return settings


def window_errors(ttl: int, *, qstash: bool, clock_tolerance: float, soketi: bool,
                  soketi_max_age: float) -> list[str]:
    """With DEDUP_TABLE, a message's record must outlive every copy of it that can still
    verify, or a copy presented after the record expired runs `handle` again. Checked for
    each verifier configured (a tolerance no verifier uses lets nothing through).

    QStash: a token verifies while iat - tolerance <= now < exp + tolerance (verify's
    lifetime checks), so from its first possible use, at iat - tolerance, it stays usable for
    QSTASH_TOKEN_LIFETIME + 2 x QSTASH_CLOCK_TOLERANCE seconds. soketi: a webhook verifies
    while |now - time_ms| <= SOKETI_MAX_AGE, for 2 x SOKETI_MAX_AGE seconds, and forever
    when SOKETI_MAX_AGE is 0 (no age check)."""
    errors = []
    qstash_window = QSTASH_TOKEN_LIFETIME + 2 * clock_tolerance
    if qstash and ttl < qstash_window:
        errors.append("DEDUP_TTL is shorter than QStash's token lifetime (%d s) plus twice "
                      "QSTASH_CLOCK_TOLERANCE (%g s in all): a token verifies that long from "
                      "the first moment it can, and would run handle again once its record "
                      "expired; raise DEDUP_TTL or lower QSTASH_CLOCK_TOLERANCE"
                      % (QSTASH_TOKEN_LIFETIME, qstash_window))
    if soketi and not soketi_max_age:
        errors.append("SOKETI_MAX_AGE is 0 (no age check) with DEDUP_TABLE set: a soketi "
                      "webhook then verifies forever and would run handle again once its "
                      "record expired (DEDUP_TTL); set SOKETI_MAX_AGE to at most half of "
                      "DEDUP_TTL")
    soketi_window = 2 * soketi_max_age
    if soketi and ttl < soketi_window:
        errors.append("DEDUP_TTL is shorter than twice SOKETI_MAX_AGE (%g s): a soketi "
                      "webhook verifies that long from the first moment it can, and would run "
                      "handle again once its record expired; raise DEDUP_TTL or lower "
                      "SOKETI_MAX_AGE" % soketi_window)
    return errors
