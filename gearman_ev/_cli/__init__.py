"""The ``gearman-ev`` command line (API.md 13): argument parsing and dispatch.

One subcommand per module: _submit (submit), _work (work), _admin (status,
workers, version, maxqueue, shutdown, ping), _top (top); _servers turns
``-s`` / GEARMAN_SERVERS into connections.

What must stay true here:
- Exit status 0 on success, 1 on a job or server error (said on stderr), 2 on
  bad usage, always with a usage line (argparse's ``error()``), whichever
  layer found the problem.
- Everything after ``work FUNC ... --`` is the command, untouched by this
  parser (argparse alone mangles ``--`` followed by options).
- Every command and the program itself answer ``--help``.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Callable

from . import _admin, _submit, _top, _work
from ._servers import DEFAULT_SERVER, UsageError, say, server_specs, set_tls

__all__ = ["main", "build_parser"]

SERVERS_HELP = (f"a gearmand to use, host:port, [v6addr]:port, host (port 4730) or "
                f"unix:/path; repeat it (or separate by commas) for several; default "
                f"$GEARMAN_SERVERS (comma-separated), else {DEFAULT_SERVER}")

EPILOG = """\
exit status: 0 success, 1 a job or server error (said on stderr), 2 bad usage.

examples:
  gearman-ev submit reverse hello            # prints "olleh"
  gearman-ev submit --bg mail < msg.eml      # prints the job handle
  gearman-ev work reverse -- rev             # a worker running rev(1) per job
  gearman-ev -s gm1:4730 -s gm2:4730 top     # a live table of both servers
"""


class _Formatter(argparse.HelpFormatter):
    """Wraps prose paragraphs; keeps paragraphs with indented lines (the
    examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.split("\n\n"):
            lines = paragraph.splitlines()
            if any(line.startswith("  ") for line in lines):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(super()._fill_text(paragraph, width, indent))
        return "\n\n".join(paragraphs)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gearman-ev",
        description="Gearman from the shell: submit jobs, run a command as a worker, "
                    "query and watch job servers.",
        epilog=EPILOG, formatter_class=_Formatter)
    parser.add_argument("-s", "--server", dest="servers_top", action="append",
                        metavar="SERVER", help=SERVERS_HELP)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-s", "--server", dest="servers", action="append",
                        metavar="SERVER", help=SERVERS_HELP)
    for p in (parser, common):
        # Top-level and per-command spellings both work; SUPPRESS keeps a
        # command's absent flag from hiding the top-level one.
        p.add_argument("--ssl", action="store_true", default=argparse.SUPPRESS,
                       help="talk TLS to the servers (e.g. a terminator in front of gearmand); "
                            "certificates checked against the system CAs or --ssl-ca")
        p.add_argument("--ssl-ca", metavar="FILE", default=argparse.SUPPRESS,
                       help="CA certificates (PEM) to check the servers' against; implies --ssl")
        p.add_argument("--server-hostname", metavar="NAME", default=argparse.SUPPRESS,
                       help="the name the servers' certificates must carry (default: each "
                            "server's host)")
    commands = parser.add_subparsers(dest="command_name", metavar="COMMAND", required=True)

    def command(name: str, run: Callable[[argparse.Namespace, list[str]], int], help: str,
                description: str | None = None,
                epilog: str | None = None) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help,
                                  description=description or help, epilog=epilog,
                                  formatter_class=_Formatter)
        sub.set_defaults(run=run, parser=sub)
        return sub

    sub = command(
        "submit", _submit.run, "submit a job and print its result",
        "Submit a job to FUNCTION and print its result bytes to stdout, unchanged. "
        "The workload is WORKLOAD, or stdin (read to its end) when WORKLOAD is left out.",
        "examples:\n"
        "  gearman-ev submit reverse hello\n"
        "  gearman-ev submit resize < in.png > out.png\n"
        "  gearman-ev submit -n 1000 echo ping | sort | uniq -c")
    sub.add_argument("function", metavar="FUNCTION")
    sub.add_argument("workload", metavar="WORKLOAD", nargs="?",
                     help="the workload (default: stdin)")
    sub.add_argument("--bg", action="store_true",
                     help="background job: print its handle and do not wait for it")
    level = sub.add_mutually_exclusive_group()
    level.add_argument("--high", action="store_true", help="high priority")
    level.add_argument("--low", action="store_true", help="low priority")
    sub.add_argument("--unique", metavar="U",
                     help="unique key: jobs with the same key run once")
    sub.add_argument("--timeout", metavar="S", type=_seconds,
                     help="give up after S seconds (a foreground job's whole run; "
                          "also the connect and each server reply)")
    sub.add_argument("--status", action="store_true",
                     help="print the worker's progress reports to stderr")
    sub.add_argument("-n", metavar="N", type=_positive_int, default=1,
                     help="submit N copies at once, pipelined (spread round-robin over the "
                          "servers); print one result (or handle) per line, in order")

    sub = command(
        "work", _work.run, "serve a function, running a command per job",
        "Serve FUNCTION. Each job's workload goes to COMMAND's stdin and its stdout is "
        "the result; a non-zero exit fails the job. Without COMMAND each job's result "
        "is its workload (an echo worker). Registers on every server given. "
        "SIGTERM or Ctrl-C: take no more jobs, finish the running ones, exit; "
        "a second one stops at once (the server requeues what was running).",
        "examples:\n"
        "  gearman-ev work reverse -- rev\n"
        "  gearman-ev work --concurrency 8 thumbnail -- convert - -resize 64x64 png:-\n"
        "  gearman-ev work --stream --max-jobs 1 logs -- tail -n 100 /var/log/syslog")
    sub.add_argument("function", metavar="FUNCTION")
    sub.add_argument("--concurrency", metavar="N", type=_positive_int, default=1,
                     help="run up to N jobs at once (default 1)")
    sub.add_argument("--max-jobs", metavar="N", type=_count, default=0,
                     help="exit after N jobs (default 0: serve until a signal)")
    sub.add_argument("--stream", action="store_true",
                     help="send each chunk of COMMAND's stdout as it comes (WORK_DATA), "
                          "then an empty result")
    # Shown in the usage line; the words after "--" are split off in main().
    sub.add_argument("command_usage", metavar="-- COMMAND [ARG ...]", nargs="?",
                     help="the command to run per job")

    sub = command("status", _admin.run_status,
                  "functions with their queued and running jobs and workers")
    sub.add_argument("--json", action="store_true",
                     help='JSON: {"server": [{"function", "queued", "running", "workers"}]}')

    sub = command("workers", _admin.run_workers,
                  "connected workers and the functions they serve")
    sub.add_argument("--json", action="store_true",
                     help='JSON: {"server": [{"fd", "address", "client_id", "functions"}]}')

    sub = command("version", _admin.run_version, "the server's version")
    sub.add_argument("--json", action="store_true", help='JSON: {"server": "version"}')

    sub = command("maxqueue", _admin.run_maxqueue,
                  "cap the number of queued jobs of a function (0: no cap)")
    sub.add_argument("function", metavar="FUNCTION")
    sub.add_argument("size", metavar="N", type=_count)

    sub = command("shutdown", _admin.run_shutdown,
                  "ask the server to shut down (gearmand before 1.1.15 only)")
    sub.add_argument("--graceful", action="store_true",
                     help="finish the running jobs first")

    command("ping", _admin.run_ping, "the round trip of an ECHO to each server")

    sub = command(
        "top", _top.run, "a live table of every server's functions",
        "A live table per server and function: QUEUED, RUNNING, WORKERS and JOBS/S, "
        "redrawn in place on a terminal (q or Ctrl-C quits), printed as plain lines "
        "otherwise. JOBS/S comes from successive polls: how many jobs per second left "
        "the function's backlog (queued + running) since the previous poll; negative "
        "while the backlog grows.")
    sub.add_argument("--interval", metavar="S", type=_seconds, default=1.0,
                     help="seconds between polls (default 1)")
    sub.add_argument("--once", action="store_true", help="print one table and exit")
    return parser


def _split_work_command(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """``[..., "work", ..., "--", *command]`` -> (the part before "--", command)."""
    i = 0
    while i < len(argv):  # skip the program's own options to find the command name
        if argv[i] in ("-s", "--server"):
            i += 2
        elif argv[i].startswith("-"):
            i += 1
        else:
            break
    if i < len(argv) and argv[i] == "work" and "--" in argv[i + 1:]:
        cut = argv.index("--", i + 1)
        return argv[:cut], argv[cut + 1:]
    return argv, None


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    argv, command = _split_work_command(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    sub: argparse.ArgumentParser = args.parser  # the command's own, for its usage line
    if args.command_name == "work":
        if args.command_usage is not None:
            sub.error(f"unexpected {args.command_usage!r}: put the command after --")
        args.command = command or []
    try:
        specs = server_specs((args.servers_top or []) + (args.servers or []))
        set_tls(getattr(args, "ssl", False), getattr(args, "ssl_ca", None),
                getattr(args, "server_hostname", None))
        status: int = args.run(args, specs)
        return status
    except UsageError as exc:
        sub.error(str(exc))
    except KeyboardInterrupt:
        say("interrupted")
        return 1
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, and keep Python's
        # exit-time flush from failing on the same pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
