"""Plumbing shared by every command: options defined once, error translation, output.

The library never prints and never imports click; this module is where its return
values and errors meet the terminal.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import traceback

import click

from imgkit.errors import ImgkitError


class CommandError(click.ClickException):
    """A library error shown as one line, with the library's exit code (1, or 3)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def is_verbose(ctx: click.Context | None = None) -> bool:
    ctx = ctx or click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    if root is not None and isinstance(root.obj, dict) and root.obj.get("verbose"):
        return True
    return os.environ.get("IMGKIT_VERBOSE") == "1"


@contextlib.contextmanager
def translate_errors(ctx: click.Context):
    """Turn an ImgkitError into a one-line CommandError; keep tracebacks for --verbose."""
    try:
        yield
    except ImgkitError as e:
        if is_verbose(ctx):
            traceback.print_exc(file=sys.stderr)
        raise CommandError(str(e), getattr(e, "exit_code", 1)) from e
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        raise click.exceptions.Exit(130) from None
    except BrokenPipeError:
        # `imgkit predict ... | head` closes the pipe early: a normal way to stop
        # reading, not an error. Point stdout at devnull so the flush at exit does not
        # raise again, and end with status 0. (click's own main() would exit 1.)
        _silence_stdout()
        raise click.exceptions.Exit(0) from None
    except OSError as e:
        # A full disk, a read-only or forbidden folder, a file where a folder should be:
        # the user's to fix, so one line naming the path, as for any other bad input.
        if is_verbose(ctx):
            traceback.print_exc(file=sys.stderr)
        raise CommandError(os_error_message(e), 1) from e


def lock_output(folder) -> None:
    """Hold ``folder``'s lock (:mod:`imgkit.locks`) until the command ends."""
    from imgkit.locks import output_lock

    click.get_current_context().with_resource(output_lock(folder, say=warn))


def os_error_message(error: OSError) -> str:
    """One line for an OS error: the path, what went wrong, and what helps."""
    hints = {
        errno.ENOSPC: "no space left on the device; free some or write elsewhere",
        errno.EDQUOT: "disk quota exceeded; free some space or write elsewhere",
        errno.EROFS: "read-only file system; write elsewhere",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.ENOTDIR: "a file stands where a folder is needed",
        errno.EISDIR: "a folder stands where a file is needed",
    }
    what = hints.get(error.errno, error.strerror or str(error))
    if error.errno == errno.EEXIST and error.filename and os.path.isfile(error.filename):
        what = hints[errno.ENOTDIR]  # mkdir met a file on the way
    where = error.filename if error.filename is not None else None
    return f"{where}: {what}" if where is not None else f"{what} ({error})"


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError, ValueError):
        os.dup2(devnull, sys.stdout.fileno())


def run_cli(group: click.Group, argv=None) -> int:
    """Run ``group`` as a program and return its exit code.

    ``imgkit predict ... | head`` closes the pipe early: that is a normal way to stop
    reading, not an error, so a broken pipe ends quietly with status 0.
    """
    try:
        group.main(args=argv, prog_name="imgkit", standalone_mode=False)
        return 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except BrokenPipeError:
        _silence_stdout()
        return 0


# --- options defined once -------------------------------------------------------------

seed_option = click.option(
    "--seed", type=int, default=0, show_default=True, help="Random seed (splits, shuffling, init)."
)


def batch_size_option(default: int | None = None, help_text: str = "Images per batch."):
    return click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=default,
        show_default=default is not None,
        help=help_text,
    )


def output_option(required: bool = False, help_text: str = "Output path (- for stdout)."):
    return click.option("-o", "--output", required=required, help=help_text)


# Off by default: a bundle's Lambda layers are Python code that runs on loading, so
# only someone who trusts where the bundle came from should turn this on. Commands pass
# ``trust=trust_code or None`` to load_bundle: without the flag, None lets
# IMGKIT_TRUST_CODE decide there.
trust_code_option = click.option(
    "--trust-code",
    "trust_code",
    is_flag=True,
    default=False,
    help="Load a bundle whose model contains code (Lambda layers), which runs as it loads. "
    "Without it such a bundle is refused; use it only for bundles you trust. "
    "IMGKIT_TRUST_CODE=1 does the same.",
)


def stderr_console():
    """A rich console on stderr (tables and logs never mix with data on stdout)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def show_progress() -> bool:
    """Progress bars only when a person is watching stderr (never in CI logs or pipes)."""
    return sys.stderr.isatty() and not os.environ.get("CI")


def info(message: str) -> None:
    """One line of information on stderr."""
    click.echo(message, err=True)


def warn(message: str) -> None:
    """One warning line on stderr."""
    click.echo(f"warning: {message}", err=True)


def parse_key_values(pairs, what: str) -> dict[str, float]:
    """Parse ``NAME=VALUE`` pairs (``--fail-under accuracy=0.9``) into a dict."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r}: expected NAME=VALUE", param_hint=what)
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise click.BadParameter(
                f"{pair!r}: {value!r} is not a number", param_hint=what
            ) from None
    return out


def unique_png_name(stem: str, taken: set[str]) -> str:
    """``stem.png``, or ``stem-2.png`` ... when another input had the same stem (a warning
    says so); the name is added to ``taken``."""
    name, k = f"{stem}.png", 2
    while name in taken:
        name, k = f"{stem}-{k}.png", k + 1
    if k > 2:
        warn(f"two inputs are named {stem}: this one's output is {name}")
    taken.add(name)
    return name
