"""What a long step says before it starts, and when it ends: a build from source, a large
download, an install that takes minutes. Without it a first `make test` sits silent at 99%
for ten minutes, and a first `make template` for three.

`step()` announces the step and how long it usually takes, then how long it took. The words
go to stderr; under pytest, tests/conftest.py sends them to the terminal instead (`send_to`),
past pytest's output capture, which would otherwise hold them until the test ended and show
them only if it failed.
"""
import contextlib
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
_destination = None  # a function taking one line of text; None: stderr


def say(text):
    """One line for the person waiting, where they can see it now."""
    if _destination is None:
        print(text, file=sys.stderr, flush=True)
    else:
        _destination(text)


def send_to(destination):
    """Send every line `say` gets to `destination` (a function taking one line of text)
    from now on; None sends them to stderr again."""
    global _destination
    _destination = destination


@contextlib.contextmanager
def step(doing, usually):
    """Say what is `doing` and how long it `usually` takes; on leaving, how long it took
    (or that it failed, and after how long)."""
    say("%s (once; %s)..." % (doing, usually))
    started = time.monotonic()
    try:
        yield
    except BaseException:
        say("  ...failed after %s" % duration(time.monotonic() - started))
        raise
    say("  ...done in %s" % duration(time.monotonic() - started))


def shown(path):
    """A path as the person in the project's folder reads it: relative to it when inside."""
    path = pathlib.Path(path)
    if path.is_relative_to(ROOT):
        return str(path.relative_to(ROOT))
    return str(path)


def duration(seconds):
    """"45 s" or "3 min 05 s": how people read a wait."""
    whole = int(round(seconds))
    if whole < 60:
        return "%d s" % whole
    minutes = whole // 60
    return "%d min %02d s" % (minutes, whole % 60)
