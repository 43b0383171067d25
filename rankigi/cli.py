"""The ``rankigi`` command: list, verify, export and serve a local ledger.

Exit status: 0 on success, 1 when ``verify`` finds a broken chain, and 2 for a
usage error or a ledger that is missing or cannot be read. This module imports
only the ledger, not the HTTP client, so that the command starts quickly.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import sys
from collections.abc import Iterator
from typing import Any, Callable, Optional, TextIO

from rankigi.ledger import (
    Ledger,
    LedgerError,
    LedgerNotFoundError,
    NotALedgerError,
    VerifyResult,
)

__all__ = [
    "DEFAULT_LEDGER_PATH",
    "LEDGER_PATH_ENV",
    "SUBCOMMANDS",
    "main",
    "positive_int",
]

LEDGER_PATH_ENV = "RANKIGI_LEDGER_PATH"
DEFAULT_LEDGER_PATH = os.path.join(".rankigi", "ledger.db")

EXIT_OK = 0
EXIT_BROKEN = 1
EXIT_ERROR = 2

_EXPORT_PAGE_SIZE = 1000
_MAX_CELL_WIDTH = 36
_HASH_PREFIX = 12
# C0 and C1 control characters, which could move the cursor or recolour the
# terminal if an agent put them in a name.
_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")

Handler = Callable[[argparse.Namespace], int]
# A builder adds one subcommand to ``subparsers``. It passes ``common`` as a
# parent parser, so the subcommand gets --ledger, and sets ``handler``.
SubcommandBuilder = Callable[
    ["argparse._SubParsersAction[argparse.ArgumentParser]", argparse.ArgumentParser],
    None,
]


class CommandError(Exception):
    """An expected failure: main() prints the message and exits with status 2."""


def main(argv: Optional[list[str]] = None) -> int:
    """Run the command and return its exit status.

    ``argv`` defaults to ``sys.argv[1:]``.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        # argparse exits after --help (0) and on usage errors (2).
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    handler: Handler = args.handler
    try:
        return handler(args)
    except LedgerNotFoundError as exc:
        return _fail(
            f"no ledger at {exc.path}; run an agent first so that it records "
            "events there, or pass --ledger PATH"
        )
    except NotALedgerError as exc:
        return _fail(
            f"{exc.path} is not a rankigi ledger ({exc.reason}); "
            "pass --ledger with the path of a ledger file"
        )
    except (LedgerError, CommandError) as exc:
        return _fail(str(exc))
    except BrokenPipeError:
        return _stdout_closed()


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every subcommand in ``SUBCOMMANDS``."""
    parser = argparse.ArgumentParser(
        prog="rankigi",
        description="Inspect the local RANKIGI ledger of hash-chained agent events.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--ledger",
        metavar="PATH",
        help=(
            f"ledger file (default: ${LEDGER_PATH_ENV}, "
            f"else {DEFAULT_LEDGER_PATH} in the working directory)"
        ),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for build in SUBCOMMANDS.values():
        build(subparsers, common)
    return parser


def ledger_path(args: argparse.Namespace) -> str:
    """Return the ledger path from --ledger, the environment or the default."""
    path: str | None = args.ledger or os.environ.get(LEDGER_PATH_ENV)
    return path or DEFAULT_LEDGER_PATH


def open_ledger(args: argparse.Namespace) -> Ledger:
    """Open the existing ledger that the arguments name."""
    return Ledger(ledger_path(args), create=False, readonly=True)


def _add_events(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    parser = subparsers.add_parser(
        "events",
        parents=[common],
        help="list recent events, newest first",
        description="List recent events, newest first.",
    )
    parser.add_argument("--agent", help="only events of this agent id")
    parser.add_argument("--action", help="only events with this action")
    parser.add_argument("--tool", help="only events that invoked this tool")
    parser.add_argument(
        "--severity",
        choices=("info", "warn", "critical"),
        help="only events with this severity",
    )
    parser.add_argument(
        "--limit",
        type=positive_int,
        default=20,
        metavar="N",
        help="maximum number of events to list (default: 20)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON Lines instead of a table"
    )
    parser.set_defaults(handler=_run_events)


def _add_verify(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    parser = subparsers.add_parser(
        "verify",
        parents=[common],
        help="check every agent's hash chain",
        description=(
            "Check each agent's hash chain and print one line per agent. "
            "Exits with status 1 when any chain is broken."
        ),
    )
    parser.add_argument("--agent", help="check only this agent id")
    parser.add_argument(
        "--expect-head",
        metavar="HASH",
        help=(
            "with --agent: the head hash recorded earlier (at least 12 hex "
            "digits); a chain that ends elsewhere counts as broken, which "
            "catches events cut from its end"
        ),
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per agent"
    )
    parser.set_defaults(handler=_run_verify)


def _add_export(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    parser = subparsers.add_parser(
        "export",
        parents=[common],
        help="write stored events as JSON Lines",
        description="Write stored events as JSON Lines, each chain in order.",
    )
    parser.add_argument("--agent", help="export only this agent id")
    parser.add_argument(
        "--output", metavar="FILE", help="write to FILE instead of standard output"
    )
    parser.set_defaults(handler=_run_export)


def _add_serve(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    # Imported here because rankigi.server._cli imports this module. It
    # imports the web stack only when `serve` runs, so that the other
    # subcommands stay fast to start and work without the server extra.
    from rankigi.server._cli import add_serve

    add_serve(subparsers, common)


# The subcommands, in help order.
SUBCOMMANDS: dict[str, SubcommandBuilder] = {
    "events": _add_events,
    "verify": _add_verify,
    "export": _add_export,
    "serve": _add_serve,
}


def _run_events(args: argparse.Namespace) -> int:
    with open_ledger(args) as ledger:
        records = ledger.events(
            args.agent,
            action=args.action,
            tool=args.tool,
            severity=args.severity,
            limit=args.limit,
            newest_first=True,
        )
        path = ledger.path
    if args.json:
        for record in records:
            print(_json_line(record))
    elif records:
        print(_format_table(records))
    else:
        filtered = any((args.agent, args.action, args.tool, args.severity))
        print(f"no events{' match the filters' if filtered else ''} in {path}")
    return EXIT_OK


def _run_verify(args: argparse.Namespace) -> int:
    expected = _expected_head(args)
    status = EXIT_OK
    with open_ledger(args) as ledger:
        known = ledger.agents()
        if args.agent is not None and args.agent not in known:
            raise CommandError(
                f"agent {_printable(args.agent)} has no chain in {ledger.path}; "
                f"agents there: {', '.join(map(_printable, known)) or 'none'}"
            )
        agents = [args.agent] if args.agent is not None else known
        if not agents and not args.json:
            print(f"no events in {ledger.path}")
        for agent_id in agents:
            result = ledger.verify(agent_id)
            if expected is not None:
                result = _check_expected_head(result, expected)
            if args.json:
                print(json.dumps(result.as_dict()))
            else:
                print(_verify_line(result))
            if not result.valid:
                status = EXIT_BROKEN
    return status


def _expected_head(args: argparse.Namespace) -> str | None:
    expected = args.expect_head
    if expected is None:
        return None
    if args.agent is None:
        raise CommandError("--expect-head needs --agent; a head belongs to one chain")
    text = expected.strip().lower()
    if (
        len(text) < 12
        or len(text) > 64
        or any(c not in "0123456789abcdef" for c in text)
    ):
        raise CommandError(
            f"--expect-head {expected!r:.80} is not a hash; pass 12 to 64 hex "
            "digits of the head that `rankigi verify` printed earlier"
        )
    return str(text)


def _check_expected_head(result: VerifyResult, expected: str) -> VerifyResult:
    """Count a chain that does not end at ``expected`` as broken."""
    if not result.valid or (result.head_hash or "").startswith(expected):
        return result
    head = (result.head_hash or "nothing")[:16]
    return dataclasses.replace(
        result,
        valid=False,
        broken_at=result.event_count,
        reason=(
            f"head mismatch: the chain ends at {head}…, "
            f"not at the expected {expected[:16]}…; events were removed from "
            "its end, or appended since that head was recorded"
        ),
    )


def _run_export(args: argparse.Namespace) -> int:
    with open_ledger(args) as ledger, _output(args.output) as output:
        agents = [args.agent] if args.agent is not None else ledger.agents()
        for agent_id in agents:
            for record in _chain(ledger, agent_id):
                output.write(_json_line(record) + "\n")
    return EXIT_OK


def _chain(ledger: Ledger, agent_id: str) -> Iterator[dict[str, Any]]:
    """Yield an agent's records in chain order, one page at a time."""
    after: int | None = None
    while True:
        page = ledger.events(agent_id, after=after, limit=_EXPORT_PAGE_SIZE)
        yield from page
        if len(page) < _EXPORT_PAGE_SIZE:
            return
        last_index = page[-1]["chain_index"]
        if type(last_index) is not int:
            raise CommandError(
                f"agent {agent_id!r} has an event with chain index "
                f"{last_index!r:.40} in {ledger.path}; the file was edited "
                "outside rankigi, so run `rankigi verify` on it"
            )
        after = last_index


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    # Errors while opening and while writing (a full disk) both end up here.
    try:
        with open(path, "w", encoding="utf-8", newline="\n") as file:
            yield file
    except OSError as exc:
        raise CommandError(
            f"cannot write {path}: {exc.strerror}; pass --output with a writable path"
        ) from exc


def _verify_line(result: VerifyResult) -> str:
    agent = _printable(result.agent_id)
    if not result.valid:
        return f"{agent}: BROKEN at index {result.broken_at}: {result.reason}"
    if result.event_count == 0 or result.head_hash is None:
        return f"{agent}: no events"
    noun = "event" if result.event_count == 1 else "events"
    head = result.head_hash[:_HASH_PREFIX]
    return f"{agent}: intact, {result.event_count} {noun}, head {head}…"


_TABLE_COLUMNS = (
    ("TIME", "timestamp"),
    ("AGENT", "agent_id"),
    ("INDEX", "chain_index"),
    ("ACTION", "action_type"),
    ("TOOL", "tool_invoked"),
    ("SEVERITY", "severity"),
    ("RESULT", "execution_result"),
    ("HASH", "event_hash"),
)


def _format_table(records: list[dict[str, Any]]) -> str:
    rows = [[title for title, _ in _TABLE_COLUMNS]]
    rows.extend(
        [_cell(record, field) for _, field in _TABLE_COLUMNS] for record in records
    )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    index_column = [field for _, field in _TABLE_COLUMNS].index("chain_index")
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if column == index_column else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _cell(record: dict[str, Any], field: str) -> str:
    value = record.get(field)
    if value is None:
        return "-"
    text = _printable(str(value))
    if field == "event_hash":
        return text[:_HASH_PREFIX]
    if len(text) > _MAX_CELL_WIDTH:
        return text[: _MAX_CELL_WIDTH - 1] + "…"
    return text


def _printable(text: str) -> str:
    return _CONTROL_CHARACTERS.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def _json_line(record: dict[str, Any]) -> str:
    # ASCII escapes keep the output valid on any terminal encoding; a JSON
    # parser returns the same strings.
    return json.dumps(record, separators=(",", ":"))


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _fail(message: str) -> int:
    print(f"rankigi: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _stdout_closed() -> int:
    # The reader of a pipe went away (``rankigi export | head``). Pointing
    # stdout at devnull stops Python from failing again when it flushes at exit.
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_BROKEN
