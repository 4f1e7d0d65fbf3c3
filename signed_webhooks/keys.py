"""The signing keys and app secrets: which are set, and the rules each follows.

config.py reads them through these functions for every environment it judges. Each key or
secret must be pasted alone (no whitespace or quotes around it), must not be one anyone can
sign with (a published development key, unless ALLOW_PUBLIC_DEV_KEYS=1 says this is a local
test), and must be as long as the provider's real ones: a shorter one is a placeholder or a
guessable word. Every message names the variable and the rule, never the value.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from collections.abc import Mapping

MIN_QSTASH_KEY_LENGTH = 20  # real keys are `sig_` + 28 characters; placeholders are shorter
MIN_SOKETI_SECRET_LENGTH = 20  # Pusher's app secrets are 20 characters; shorter ones are guessed
QSTASH_KEY_NAMES = ("QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY")
SOKETI_SECRET_NAMES = ("SOKETI_SECRET", "SOKETI_NEXT_SECRET")
REGION_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")  # of a key set's prefix

# The QStash CLI dev server signs with these published keys, and soketi's default app secret
# is in its docs: anyone can sign with them, so a deployed function refuses them unless
# ALLOW_PUBLIC_DEV_KEYS=1 says this is a local test.
PUBLIC_DEV_KEYS = frozenset({
    "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r",  # QStash dev server, current
    "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs",  # QStash dev server, next
    "app-secret",  # soketi's default SOKETI_DEFAULT_APP_SECRET
})


def read_allow_dev_keys(environ: Mapping[str, str], errors: list[str]) -> bool:
    """ALLOW_PUBLIC_DEV_KEYS: whether the published development keys are allowed here."""
    value = environ.get("ALLOW_PUBLIC_DEV_KEYS", "").lower()
    if value not in ("", "0", "false", "no", "1", "true", "yes"):
        errors.append("ALLOW_PUBLIC_DEV_KEYS must be unset (or 1, in make serve and the tests "
                      "only)")
    return value in ("1", "true", "yes")


def read_qstash_keys(environ: Mapping[str, str], allow_dev_keys: bool,
                     errors: list[str]) -> dict[str, tuple[str, str]]:
    """Each QStash key set: its prefix ("" for the plain set, "US_EAST_1" for
    `US_EAST_1_QSTASH_CURRENT_SIGNING_KEY` and its next key) -> (current, next). A set with
    one of its pair missing is left out; its problem goes to `errors`."""
    key_sets = {}
    for prefix in qstash_key_set_prefixes(environ):
        names = [prefix + "_" + name if prefix else name for name in QSTASH_KEY_NAMES]
        pair = [environ.get(name, "") for name in names]
        missing = [name for name, key in zip(names, pair) if not key]
        if missing:
            errors.append("%s is not set: QStash keys come in pairs (current and next), "
                          "copy both from the console" % " and ".join(missing))
            continue
        for name, key in zip(names, pair):
            errors += secret_errors(name, key, MIN_QSTASH_KEY_LENGTH, "QStash key",
                                    allow_dev_keys)
        key_sets[prefix] = (pair[0], pair[1])
    return key_sets


def qstash_key_set_prefixes(environ: Mapping[str, str]) -> list[str]:
    """"" for the plain set when either of its keys is set, and each region whose
    `REGION_QSTASH_..._SIGNING_KEY` is set, in a stable order."""
    prefixes = set()
    for name, value in environ.items():
        if not value:
            continue
        if name in QSTASH_KEY_NAMES:
            prefixes.add("")
            continue
        region = region_of(name)
        if region:
            prefixes.add(region)
    return sorted(prefixes)


def region_of(name: str) -> str:
    """REGION, for a variable named `REGION_QSTASH_CURRENT_SIGNING_KEY` or
    `REGION_QSTASH_NEXT_SIGNING_KEY` where REGION is upper-case letters, digits and _;
    else ""."""
    for key_name in QSTASH_KEY_NAMES:
        if name.endswith("_" + key_name):
            region = name[:-len(key_name) - 1]
            if region and set(region) <= REGION_CHARACTERS:
                return region
    return ""


def read_soketi_secrets(environ: Mapping[str, str], allow_dev_keys: bool,
                        errors: list[str]) -> list[str]:
    """SOKETI_SECRET, then SOKETI_NEXT_SECRET while rotating: those set."""
    current_secret = environ.get("SOKETI_SECRET", "")
    next_secret = environ.get("SOKETI_NEXT_SECRET", "")
    if next_secret and not current_secret:
        errors.append("SOKETI_NEXT_SECRET is set but SOKETI_SECRET is not")
    secrets = []
    for name, secret in zip(SOKETI_SECRET_NAMES, (current_secret, next_secret)):
        if secret:
            errors += secret_errors(name, secret, MIN_SOKETI_SECRET_LENGTH,
                                    "Pusher or soketi app secret", allow_dev_keys)
            secrets.append(secret)
    return secrets


def read_soketi_key(environ: Mapping[str, str], errors: list[str]) -> str | None:
    """SOKETI_KEY, the app key X-Pusher-Key must equal, or None. Public (clients hold it), so
    published ones are allowed."""
    soketi_key = environ.get("SOKETI_KEY", "")
    if not soketi_key:
        return None
    errors += secret_errors("SOKETI_KEY", soketi_key, 1, "app key", allow_dev_keys=True)
    return soketi_key


def secret_errors(name: str, value: str, min_length: int, kind: str,
                  allow_dev_keys: bool) -> list[str]:
    """The first rule the key or secret in variable `name` breaks, as a one-item list. A
    published development key is judged as one: refused, or allowed by
    ALLOW_PUBLIC_DEV_KEYS=1 whatever its length (soketi's `app-secret` is 10 characters)."""
    if value != value.strip() or value[:1] in "\"'" or value[-1:] in "\"'":
        return ["%s has leading or trailing whitespace or quotes: paste the key alone" % name]
    if value in PUBLIC_DEV_KEYS:
        if allow_dev_keys:
            return []
        return ["%s is a published development key that anyone can sign with: use your own "
                "key" % name]
    if len(value) < min_length:
        return ["%s is shorter than %d characters: not a real %s (placeholder?)"
                % (name, min_length, kind)]
    return []
