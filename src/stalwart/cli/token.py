"""``stalwart token issue``: signed tokens for services and tools."""

from __future__ import annotations

from typing import Annotated

import typer

from stalwart.cli._common import ConfigOption, say, settings_from
from stalwart.cli._params import duration, nonblank
from stalwart.service import TokenAuthority

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    token = typer.Typer(
        help="Signed tokens (JWT).\n\nExample: stalwart token issue --subject qa "
        "--role operator --ttl 1h",
        no_args_is_help=True,
    )
    app.add_typer(token, name="token")

    @token.command()
    def issue(
        subject: Annotated[
            str, typer.Option("--subject", parser=nonblank, help="Who the token is for.")
        ],
        role: Annotated[
            list[str] | None, typer.Option("--role", "-r", help="A role (repeat).")
        ] = None,
        ttl: Annotated[
            float,
            typer.Option(
                parser=duration,
                metavar="DURATION",
                show_default="1h",
                help="Lifetime: 30s, 15m, 1h, 7d.",
            ),
        ] = 3600.0,
        config: ConfigOption = None,
    ) -> None:
        """Issue a token; print it on stdout (for STALWART_TOKEN), nothing else.

        Example: STALWART_TOKEN=$(stalwart token issue --subject qa --role operator --ttl 1h)
        """
        authority = TokenAuthority(settings_from(config).security)
        say(authority.issue(subject, role or [], ttl))
