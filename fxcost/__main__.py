"""``python -m fxcost`` and the ``fxcost`` command (:func:`run`).

From its first line a Ctrl-C or SIGTERM ends the command with one line and its exit code (130,
143): until the command's work begins, by exiting at once (nothing is written yet; torch, imported
meanwhile, may swallow an exception raised into its imports), then by raising where the work is,
so that what it was writing is removed (:func:`fxcost.cli.main`).
"""

import signal


def _stop_now(signum: int, frame: object) -> None:
    import os

    os.write(2, b"fxcost: interrupted\n" if signum == signal.SIGINT else b"fxcost: terminated\n")
    os._exit(130 if signum == signal.SIGINT else 143)


def run() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # a shell's background job ignores SIGINT: it still does
            signal.signal(sig, _stop_now)
    from fxcost.cli import entry

    entry()


if __name__ == "__main__":
    run()
