"""`inkflow COMMAND`: the parser, one table of commands, and errors as one line."""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from services.cli import dev, environment, operator, refunds, token
from services.cli.errors import CliError
from shared.config import ConfigError, database_url_from_env


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]  # ("events", "list")
    synopsis: str  # what follows the words in the listing
    help: str
    run: Callable[[argparse.Namespace], int]
    group: str


COMMANDS = (
    Command(("seed",), "", "the demo artist, service, hours and client; prints their ids",
            operator.seed, "operator"),
    Command(("events", "list"), "[--status S]", "webhook events not applied yet (RECEIVED, FAILED)",
            operator.events_list, "operator"),
    Command(("events", "replay"), "ID… | --all-unprocessed", "apply webhook events again, now",
            operator.events_replay, "operator"),
    Command(("refunds", "list"), "[--failed] [--booking ID]",
            "refunds, newest first; --failed: those nobody made good", refunds.refunds_list,
            "operator"),
    Command(("refunds", "retry"), "REFUND_ID…", "ask Stripe again for failed refunds, now",
            refunds.refunds_retry, "operator"),
    Command(("pay",), "BOOKING_ID [--card C]",
            "pay a deposit with a Stripe test card, wait for the webhook", dev.pay,
            "development"),
    Command(("trigger",), "EVENT_TYPE", "have the Stripe emulator send an event (`stripe trigger`)",
            dev.trigger, "development"),
    Command(("demo",), "", "book, pay with 4242, show the CONFIRMED booking and its emails",
            dev.demo, "development"),
    Command(("token",), "--artist ID | --client ID [--ttl 1h]",
            "a JWT signed with AUTH_JWT_SECRET, to call the API as that artist or client",
            token.token, "development"),
)  # fmt: skip

EPILOG = """\
Settings: the environment, then var/run.env (written by `make run`), then .env.
`inkflow COMMAND --help` shows a command's options."""


def _listing() -> str:
    width = max(len(" ".join(c.words) + " " + c.synopsis) for c in COMMANDS) + 2
    lines = []
    for group, title in (
        ("operator", "operator commands"),
        ("development", "development (beside `make run`)"),
    ):
        lines.append(f"{title}:")
        for c in (c for c in COMMANDS if c.group == group):
            name = " ".join(c.words) + (f" {c.synopsis}" if c.synopsis else "")
            lines.append(f"  {name:<{width}}{c.help}")
    return "\n".join(lines)


class Parser(argparse.ArgumentParser):
    """Usage errors on one line too (exit status 2, as argparse's)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (`{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="inkflow",
        usage="inkflow COMMAND ...",
        description=_listing(),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help=argparse.SUPPRESS)  # fmt: skip
    subparsers: dict[str, argparse._SubParsersAction[Parser]] = {}
    parsers: dict[tuple[str, ...], Parser] = {}
    for c in COMMANDS:
        holder = top
        if len(c.words) == 2:
            group = c.words[0]
            if group not in subparsers:
                outer = top.add_parser(group, prog=f"inkflow {group}", help=argparse.SUPPRESS)
                subparsers[group] = outer.add_subparsers(
                    dest=f"{group}_command", required=True, metavar="COMMAND"
                )
            holder = subparsers[group]
        prog = "inkflow " + " ".join(c.words)
        sub = holder.add_parser(c.words[-1], prog=prog, help=c.help, description=c.help)
        sub.set_defaults(func=c.run)
        parsers[c.words] = sub

    listing = parsers[("events", "list")]
    listing.add_argument(
        "--status", action="append", choices=["RECEIVED", "FAILED", "PROCESSED", "IGNORED"],
        help="events with this status (repeatable; default RECEIVED and FAILED)",
    )  # fmt: skip
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    replay = parsers[("events", "replay")]
    replay.add_argument("event_ids", nargs="*", metavar="EVENT_ID")
    replay.add_argument(
        "--all-unprocessed", action="store_true", help="every RECEIVED or FAILED event"
    )
    replay.add_argument("--json", action="store_true", help="one JSON object per line")
    refund_listing = parsers[("refunds", "list")]
    refund_listing.add_argument(
        "--failed", action="store_true",
        help="failed refunds nobody made good since (deposit REFUND_FAILED): an operator's",
    )  # fmt: skip
    refund_listing.add_argument("--booking", type=uuid.UUID, metavar="BOOKING_ID")
    refund_listing.add_argument("--limit", type=int, default=100)
    refund_listing.add_argument("--json", action="store_true", help="one JSON object per line")
    retry = parsers[("refunds", "retry")]
    retry.add_argument("refund_ids", nargs="+", type=uuid.UUID, metavar="REFUND_ID")
    retry.add_argument("--json", action="store_true", help="one JSON object per line")
    pay = parsers[("pay",)]
    pay.add_argument("booking_id", metavar="BOOKING_ID")
    pay.add_argument(
        "--card", default="visa",
        help=(f"a test card: {', '.join(dev.CARDS)}; a test PaymentMethod (pm_card_…); or a "
              "test card number such as '4000 0000 0000 9995' (emulator only). Default visa"),
    )  # fmt: skip
    pay.add_argument("--no-wait", action="store_true", help="do not wait for the webhook")
    pay.add_argument("--timeout", type=float, default=15.0, help="seconds to wait (default 15)")
    trig = parsers[("trigger",)]
    trig.add_argument("event_type", metavar="EVENT_TYPE", choices=dev.TRIGGERS,
                      help=", ".join(dev.TRIGGERS))  # fmt: skip
    trig.add_argument(
        "--booking", metavar="ID", help="act on this booking's PaymentIntent (default: a new one)"
    )
    trig.add_argument("--account", metavar="ACCT", help="account.updated: this account")
    trig.add_argument(
        "--disable", action="store_true", help="account.updated: charges_enabled false"
    )
    trig.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for delivery")
    token.add_arguments(parsers[("token",)])
    demo = parsers[("demo",)]
    demo.add_argument("--json", action="store_true", help="print the booking detail as JSON")
    demo.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (default 10)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    environment.load()
    try:
        result: int = args.func(args)
    except (CliError, ConfigError) as exc:
        return _fail(str(exc))
    except OperationalError:
        return _fail(f"cannot reach the database at {_database()}: is `make run` running?")
    except KeyboardInterrupt:
        return 130
    return result


def _database() -> str:
    try:
        url = make_url(database_url_from_env())
    except (ConfigError, ArgumentError):
        return "DATABASE_URL"
    return f"{url.host}:{url.port or 5432}/{url.database}"


def _fail(message: str) -> int:
    print(f"inkflow: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
