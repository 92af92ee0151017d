"""The command line: parses, builds Settings, calls the node and its services."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from pedipacs.config import DuplicatePolicy, Settings, load_settings

app = typer.Typer(help="pedipacs: a PACS for children's hospitals.", no_args_is_help=True)
peer_app = typer.Typer(help="Known remote DICOM Application Entities.", no_args_is_help=True)
app.add_typer(peer_app, name="peer")
audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
user_app = typer.Typer(help="Accounts of the people who sign in.", no_args_is_help=True)
app.add_typer(user_app, name="user")
token_app = typer.Typer(help="Bearer tokens for programs (DICOMweb, API).", no_args_is_help=True)
app.add_typer(token_app, name="token")
care_app = typer.Typer(
    help="Care teams: the patients a referring clinician sees.", no_args_is_help=True
)
app.add_typer(care_app, name="care-team")
console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", envvar="PEDIPACS_CONFIG_FILE", help="TOML settings file."),
]
DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Data folder [env PEDIPACS_DATA_DIR].")
]
DatabaseOption = Annotated[
    str | None,
    typer.Option("--database-url", help="Index database URL [env PEDIPACS_DATABASE_URL]."),
]


def _settings(config: Path | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config, **overrides)
    except ValueError as error:
        console.print(f"[red]invalid settings:[/red] {error}")
        raise typer.Exit(2) from error


def _node(settings: Settings) -> Any:
    from pedipacs.node import Node

    node = Node.from_settings(settings)
    node.migrate()
    return node


@app.command()
def serve(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    host: Annotated[str | None, typer.Option(help="Bind address [env PEDIPACS_HOST].")] = None,
    ae_title: Annotated[str | None, typer.Option(help="AE title [env PEDIPACS_AE_TITLE].")] = None,
    dicom_port: Annotated[
        int | None, typer.Option(help="DICOM port [env PEDIPACS_DICOM_PORT].")
    ] = None,
    dicom_workers: Annotated[
        int | None, typer.Option(help="DIMSE worker processes, 0 = one per core.")
    ] = None,
    http_port: Annotated[
        int | None, typer.Option(help="HTTP port [env PEDIPACS_HTTP_PORT].")
    ] = None,
    duplicate_policy: Annotated[
        DuplicatePolicy | None, typer.Option(help="Same UID, other content.")
    ] = None,
    max_pdu_size: Annotated[int | None, typer.Option(help="Largest PDU accepted.")] = None,
    max_object_size: Annotated[int | None, typer.Option(help="Largest object accepted.")] = None,
    orphan_grace_seconds: Annotated[
        float | None, typer.Option(help="Age before an unindexed blob is swept.")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING, ERROR.")] = None,
) -> None:
    """Start pedipacs: DICOM and HTTP listeners on the embedded database by default.

    Every option also comes from a PEDIPACS_<OPTION> environment variable or the TOML file;
    see docs/configuration.md for all settings.
    """
    from pedipacs.serve import serve as run

    run(
        _settings(
            config,
            data_dir=data_dir,
            database_url=database_url,
            host=host,
            ae_title=ae_title,
            dicom_port=dicom_port,
            dicom_workers=dicom_workers,
            http_port=http_port,
            duplicate_policy=duplicate_policy,
            max_pdu_size=max_pdu_size,
            max_object_size=max_object_size,
            orphan_grace_seconds=orphan_grace_seconds,
            log_level=log_level,
        )
    )


@app.command()
def migrate(
    config: ConfigOption = None, data_dir: DataDirOption = None, database_url: DatabaseOption = None
) -> None:
    """Create or upgrade the index database to the current schema."""
    settings = _settings(config, data_dir=data_dir, database_url=database_url)
    _node(settings).stop()
    console.print("database is at the current schema")


@app.command("import")
def import_files(
    paths: Annotated[list[Path], typer.Argument(help="Files, folders, zip files or DICOMDIRs.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Import DICOM files through the same ingest path as C-STORE, with a progress bar."""
    from pedipacs.archive.file_import import ImportService
    from pedipacs.model.origin import Origin

    settings = _settings(config, data_dir=data_dir, database_url=database_url)
    node = _node(settings)
    service = ImportService(node.ingest, max_object_size=settings.max_object_size)
    items = service.collect(paths)
    with Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("import", total=len(items))
        summary = service.run(
            items, Origin.cli(_user()), progress=lambda n: progress.advance(task, n)
        )
    node.stop()
    table = Table(title="import summary")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    table.add_row("stored", str(summary.stored))
    table.add_row("duplicates", str(summary.duplicates))
    table.add_row("refused", str(len(summary.refused)))
    Console().print(table)
    for source, reason in summary.refused:
        # Names come from the files (a zip entry may be called "[bold]..."): no markup in them.
        console.print(f"[yellow]refused[/yellow] {escape(str(source))}: {escape(reason)}")
    if summary.refused:
        raise typer.Exit(1)


@app.command("demo-data")
def demo_data(
    output: Annotated[Path, typer.Argument(help="Folder to write the files into.")] = Path(
        "demo-data"
    ),
    patients: Annotated[int, typer.Option(help="Number of children.")] = 12,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same files.")] = 2026,
) -> None:
    """Write a realistic synthetic paediatric data set (US cine, CR/DX, CT)."""
    from pedipacs.demo.generator import generate_demo_data

    with Progress(
        TextColumn("generating"), BarColumn(), MofNCompleteColumn(), console=console
    ) as progress:
        task = progress.add_task("generate", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        summary = generate_demo_data(output, patients=patients, seed=seed, progress=advance)
    Console().print(
        f"{summary.instances} instances in {summary.series} series, {summary.studies} studies, "
        f"{summary.patients} patients ({summary.total_bytes / 1e6:.1f} MB) under {output}"
    )


@app.command()
def check(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    sweep: Annotated[bool, typer.Option(help="Remove orphan blobs past the grace period.")] = True,
) -> None:
    """Check storage against the index: sweep orphan blobs, report missing ones."""
    settings = _settings(config, data_dir=data_dir, database_url=database_url)
    node = _node(settings)
    if sweep:
        report = node.sweep_orphans()
        Console().print(f"{report.blobs_seen} blobs, {report.orphans_removed} orphans swept")
    missing = node.integrity.missing_blobs()
    node.stop()
    for uid in missing:
        console.print(f"[red]missing bytes[/red] for SOP Instance {uid}")
    if missing:
        raise typer.Exit(1)
    Console().print("every indexed instance has its bytes")


@audit_app.command("verify")
def audit_verify(
    config: ConfigOption = None, data_dir: DataDirOption = None, database_url: DatabaseOption = None
) -> None:
    """Check that no audit record was changed, removed or inserted (exit status 1 if one was)."""
    from pedipacs.model.origin import Origin

    node = _node(_settings(config, data_dir=data_dir, database_url=database_url))
    try:
        report = node.audit.verify(Origin.cli(_user()))
    finally:
        node.stop()
    if not report.is_intact:
        console.print(
            f"[red]audit chain broken at record {report.broken_at}[/red]: {report.reason} "
            f"({report.records_checked} records before it are intact)"
        )
        raise typer.Exit(1)
    Console().print(f"audit chain intact: {report.records_checked} records")


@peer_app.command("add")
def peer_add(
    name: Annotated[str, typer.Argument(help="A short name for the peer.")],
    aet: Annotated[str, typer.Option("--aet", help="Its AE title.")],
    host: Annotated[str, typer.Option("--host", help="Its host name or address.")],
    port: Annotated[int, typer.Option("--port", help="Its DICOM port.")],
    allow: Annotated[
        str,
        typer.Option(
            "--allow",
            help="What it may ask of pedipacs, comma-separated: store, find, move, get, worklist "
            "(echo always).",
        ),
    ] = "store,find,move,get,worklist",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Register a peer: a modality or workstation that may connect, or a C-MOVE destination."""
    from pedipacs.errors import PedipacsError
    from pedipacs.model.origin import Origin
    from pedipacs.model.records import DimseOperation, Peer

    try:
        operations = DimseOperation.parse_list(allow)
    except ValueError as error:
        console.print(f"[red]--allow: {error}[/red]")
        raise typer.Exit(2) from error
    node = _node(_settings(config, data_dir=data_dir, database_url=database_url))
    try:
        peer = node.peers.add(
            Peer(name=name, ae_title=aet, host=host, port=port, allowed_operations=operations),
            Origin.cli(_user()),
        )
    except PedipacsError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    finally:
        node.stop()
    allowed = ", ".join(sorted(peer.allowed_operations))
    Console().print(f"peer {peer.name}: {peer.ae_title} at {peer.host}:{peer.port}, may {allowed}")


@peer_app.command("list")
def peer_list(
    config: ConfigOption = None, data_dir: DataDirOption = None, database_url: DatabaseOption = None
) -> None:
    """List the known peers."""
    node = _node(_settings(config, data_dir=data_dir, database_url=database_url))
    table = Table("name", "AE title", "host", "port", "may")
    for peer in node.peers.list():
        allowed = ", ".join(sorted(peer.allowed_operations))
        table.add_row(peer.name, peer.ae_title, peer.host, str(peer.port), allowed)
    node.stop()
    Console().print(table)


@peer_app.command("remove")
def peer_remove(
    name: Annotated[str, typer.Argument(help="The peer's name.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Forget a peer."""
    from pedipacs.errors import PedipacsError
    from pedipacs.model.origin import Origin

    node = _node(_settings(config, data_dir=data_dir, database_url=database_url))
    try:
        node.peers.remove(name, Origin.cli(_user()))
    except PedipacsError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    finally:
        node.stop()


@contextmanager
def _running_node(
    config: Path | None, data_dir: Path | None, database_url: str | None
) -> Iterator[Any]:
    """A migrated node for one command; a domain error is printed and exits with status 1."""
    from pedipacs.errors import PedipacsError

    node = _node(_settings(config, data_dir=data_dir, database_url=database_url))
    try:
        yield node
    except PedipacsError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    finally:
        node.stop()


def _roles(text: str) -> Any:
    from pedipacs.security.permissions import Role

    try:
        return Role.parse_list(text)
    except ValueError as error:
        console.print(f"[red]--roles: {error}[/red]")
        raise typer.Exit(2) from error


RolesOption = Annotated[
    str,
    typer.Option(
        "--roles",
        help="Comma-separated: administrator, radiologist, technologist, referring-clinician, "
        "auditor.",
    ),
]
UsernameArgument = Annotated[str, typer.Argument(help="The account's username.")]


@user_app.command("add")
def user_add(
    username: UsernameArgument,
    roles: RolesOption,
    display_name: Annotated[str | None, typer.Option(help="Name shown on pages.")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Create a local account. Without --password-stdin a one-time password is printed, to be
    changed at the first sign-in."""
    import sys

    from pedipacs.model.origin import Origin
    from pedipacs.security.accounts import one_time_password

    role_set = _roles(roles)
    password = sys.stdin.readline().rstrip("\n") if password_stdin else one_time_password()
    with _running_node(config, data_dir, database_url) as node:
        account = node.accounts.create(
            username,
            role_set,
            Origin.cli(_user()),
            password=password,
            display_name=display_name,
            must_change_password=not password_stdin,
        )
    Console().print(f"account {account.username} created ({', '.join(sorted(account.roles))})")
    if not password_stdin:
        Console().print(f"one-time password: {password}")


@user_app.command("list")
def user_list(
    config: ConfigOption = None, data_dir: DataDirOption = None, database_url: DatabaseOption = None
) -> None:
    """List the accounts, their roles and state."""
    table = Table("username", "name", "roles", "signs in with", "state")
    with _running_node(config, data_dir, database_url) as node:
        for account in node.accounts.list():
            state = "disabled" if account.disabled else "active"
            if account.locked_until is not None:
                state += f", locked until {account.locked_until:%Y-%m-%d %H:%M} UTC"
            table.add_row(
                account.username,
                account.display_name,
                ", ".join(sorted(account.roles)),
                account.signs_in_with,
                state,
            )
    Console().print(table)


@user_app.command("roles")
def user_roles(
    username: UsernameArgument,
    roles: RolesOption,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Replace an account's roles."""
    from pedipacs.model.origin import Origin

    role_set = _roles(roles)
    with _running_node(config, data_dir, database_url) as node:
        account = node.accounts.set_roles(username, role_set, Origin.cli(_user()))
    Console().print(f"{account.username}: {', '.join(sorted(account.roles))}")


@user_app.command("disable")
def user_disable(
    username: UsernameArgument,
    enable: Annotated[bool, typer.Option("--enable", help="Enable it again instead.")] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Disable an account (its sessions and tokens end at once), or enable it again."""
    from pedipacs.model.origin import Origin

    with _running_node(config, data_dir, database_url) as node:
        account = node.accounts.set_disabled(username, not enable, Origin.cli(_user()))
    Console().print(f"{account.username}: {'disabled' if account.disabled else 'enabled'}")


@user_app.command("reset-password")
def user_reset_password(
    username: UsernameArgument,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Give an account a one-time password (printed) and end its sessions and lock."""
    from pedipacs.model.origin import Origin

    with _running_node(config, data_dir, database_url) as node:
        password = node.accounts.reset_password(username, Origin.cli(_user()))
    Console().print(f"one-time password for {username}: {password}")


@token_app.command("issue")
def token_issue(
    username: UsernameArgument,
    label: Annotated[str, typer.Option(help="What the token is for (shown in the audit).")],
    days: Annotated[float, typer.Option(help="Days until it expires (at most 366).")] = 90,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Print a new bearer token acting as USERNAME (send as `Authorization: Bearer <token>`)."""
    from pedipacs.model.origin import Origin

    with _running_node(config, data_dir, database_url) as node:
        token = node.accounts.issue_token(username, label, days, Origin.cli(_user()))
    print(token)  # stdout only, so that scripts can capture it


@token_app.command("revoke")
def token_revoke(
    username: UsernameArgument,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """End every session and token of an account."""
    from pedipacs.model.origin import Origin

    with _running_node(config, data_dir, database_url) as node:
        ended = node.accounts.revoke_tokens(username, Origin.cli(_user()))
    Console().print(f"{ended} session(s) and token(s) ended for {username}")


@care_app.command("add")
def care_team_add(
    username: UsernameArgument,
    patient_id: Annotated[str, typer.Argument(help="The patient's ID.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Let a referring clinician see a patient's images."""
    from pedipacs.model.origin import Origin

    with _running_node(config, data_dir, database_url) as node:
        node.access.add_to_care_team(username, patient_id, Origin.cli(_user()))
    Console().print(f"{username} cares for patient {patient_id}")


@care_app.command("remove")
def care_team_remove(
    username: UsernameArgument,
    patient_id: Annotated[str, typer.Argument(help="The patient's ID.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Stop a referring clinician seeing a patient's images."""
    from pedipacs.model.origin import Origin

    with _running_node(config, data_dir, database_url) as node:
        node.access.remove_from_care_team(username, patient_id, Origin.cli(_user()))
    Console().print(f"{username} no longer cares for patient {patient_id}")


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
