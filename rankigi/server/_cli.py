"""The ``rankigi serve`` subcommand: options, key sources and start-up.

This module imports no web framework, so ``rankigi --help`` and the other
subcommands start without the ``server`` extra installed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from rankigi.cli import EXIT_OK, CommandError, ledger_path, positive_int
from rankigi.server._keys import API_KEYS_ENV, generate_key, keys_from_sources
from rankigi.server._settings import (
    DEFAULT_MAX_BATCH_EVENTS,
    DEFAULT_MAX_BODY_BYTES,
    ServerSettings,
)

__all__ = ["INSTALL_HINT", "add_serve", "run_serve"]

INSTALL_HINT = "pip install 'rankigi[server]'"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787

logger = logging.getLogger("rankigi.server")


def add_serve(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add the ``serve`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "serve",
        parents=[common],
        help="run a local RANKIGI-compatible HTTP server over the ledger",
        description=(
            "Serve the RANKIGI ingest API over the ledger, for SDK clients on "
            "this machine or network. Listens on the loopback address unless "
            f"--host says otherwise. Needs the server extra: {INSTALL_HINT}"
        ),
    )
    _add_address_options(parser)
    _add_key_options(parser)
    _add_limit_options(parser)
    _add_log_options(parser)
    parser.set_defaults(handler=run_serve)


def _add_address_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=(
            f"address to listen on (default: {DEFAULT_HOST}); any other than a "
            "loopback address lets other machines connect"
        ),
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"TCP port to listen on, 0 for any free port (default: {DEFAULT_PORT})",
    )


def _add_key_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help=(
            "accept this Bearer key; repeat for several keys. Keys also come "
            f"from --api-key-file and ${API_KEYS_ENV} (comma-separated). With "
            "none, the server generates a key and prints it once"
        ),
    )
    parser.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="accept the keys in FILE, one per line; '#' starts a comment line",
    )


def _add_limit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-body-bytes",
        type=positive_int,
        default=DEFAULT_MAX_BODY_BYTES,
        metavar="N",
        help=f"largest request body in bytes (default: {DEFAULT_MAX_BODY_BYTES})",
    )
    parser.add_argument(
        "--max-batch-events",
        type=positive_int,
        default=DEFAULT_MAX_BATCH_EVENTS,
        metavar="N",
        help=(
            "maximum number of events in one batch "
            f"(default: {DEFAULT_MAX_BATCH_EVENTS})"
        ),
    )
    parser.add_argument(
        "--rate-limit",
        type=_positive_float,
        metavar="PER_SECOND",
        help="requests per second allowed to each key (default: no limit)",
    )
    parser.add_argument(
        "--rate-burst",
        type=positive_int,
        metavar="N",
        help="requests a key may send at once (default: the rate rounded up)",
    )


def _add_log_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="log one line per request (default: only start, stop and errors)",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="lowest level of log messages on standard error (default: info)",
    )


def run_serve(args: argparse.Namespace) -> int:
    """Start the server with the parsed options and return the exit status."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise CommandError(
            f"rankigi serve needs the server extra ({exc.name or exc} is not "
            f"installed); install it with: {INSTALL_HINT}"
        ) from exc
    from rankigi.server._runner import ServeError, is_loopback, run_server

    try:
        keys = keys_from_sources(args.api_key, args.api_key_file, os.environ)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    generated = None
    if not keys:
        generated = generate_key()
        keys = [generated]
    settings = ServerSettings(
        ledger_path=ledger_path(args),
        api_keys=tuple(keys),
        max_body_bytes=args.max_body_bytes,
        max_batch_events=args.max_batch_events,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
    )
    _configure_logging(args.log_level)
    if not is_loopback(args.host):
        logger.warning(
            "listening on %s: other machines can connect, and requests travel "
            "as plain HTTP; keep to a trusted network or put a TLS proxy in front",
            args.host,
        )
    try:
        run_server(
            settings,
            args.host,
            args.port,
            out=sys.stdout,
            generated_key=generated,
            access_log=args.access_log,
            log_level=args.log_level,
        )
    except ServeError as exc:
        raise CommandError(str(exc)) from exc
    return EXIT_OK


def _configure_logging(level: str) -> None:
    """Send the server's log records to standard error."""
    root = logging.getLogger("rankigi")
    # The package installs a NullHandler, as libraries do, so look for a
    # handler that prints.
    if all(isinstance(h, logging.NullHandler) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        root.addHandler(handler)
    root.setLevel(level.upper())


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"expected a port from 0 to 65535, got {text!r}"
        )
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value
