"""The ``crm`` command line: one entry point for every deployable and tool."""

from __future__ import annotations

from pathlib import Path

import click

from schemas.records import AlertKind
from stream.logs import configure_logging
from stream.settings import Settings


@click.group()
@click.option("--log-level", default=None, help="Overrides CRM_LOG_LEVEL.")
@click.pass_context
def cli(ctx: click.Context, log_level: str | None) -> None:
    """Real-time customer event processor for an AI-driven CRM."""
    settings = Settings()
    configure_logging(log_level or settings.log_level)
    ctx.obj = settings


@cli.command()
@click.option("--broker", type=click.Choice(["embedded", "apache"]), default="embedded",
              show_default=True, help="Which Kafka to start when CRM_KAFKA_BOOTSTRAP is unset.")
@click.option("--brokers", default=1, show_default=True, type=click.IntRange(1, 9),
              help="Apache Kafka brokers to start (with --broker apache); topics get "
              "replication factor min(3, N), and min.insync.replicas is 2 from three up.")
@click.option("--redis", "redis_mode", type=click.Choice(["single", "cluster"]),
              default="single", show_default=True,
              help="Which Redis to start when CRM_REDIS_URL is unset: one redis-server, or a "
              "Redis Cluster of three masters with a replica each.")
@click.option("--port", default=8000, show_default=True, help="API and dashboard port.")
@click.option("--simulate", "simulate_rate", type=float, default=None, is_flag=False,
              flag_value=200.0, help="Also run the simulated web shop at RATE events/s "
              "(200 if no rate is given).")
@click.option("--work-dir", type=click.Path(path_type=Path), default=Path(".crm"),
              show_default=True)
def dev(broker: str, brokers: int, redis_mode: str, port: int, simulate_rate: float | None,
        work_dir: Path) -> None:
    """Run broker, redis-server, topics, worker and API on this machine (Ctrl-C stops all)."""
    from crm.dev import run_dev

    if brokers > 1 and broker != "apache":
        raise click.UsageError("--brokers needs --broker apache")
    run_dev(broker=broker, port=port, simulate_rate=simulate_rate,  # type: ignore[arg-type]
            work_dir=work_dir, echo=click.echo, brokers=brokers,
            redis_mode=redis_mode)  # type: ignore[arg-type]


@cli.command()
@click.pass_obj
def worker(settings: Settings) -> None:
    """Run one Faust worker (configured by CRM_* variables)."""
    from agents.worker import run_worker

    run_worker(settings)


@cli.command()
@click.option("--host", default=None, help="Overrides CRM_API_HOST.")
@click.option("--port", type=int, default=None, help="Overrides CRM_API_PORT.")
@click.option("--workers", type=int, default=None,
              help="Server processes; overrides CRM_API_WORKERS (default 1).")
@click.pass_obj
def api(settings: Settings, host: str | None, port: int | None, workers: int | None) -> None:
    """Run the HTTP API and dashboard."""
    import importlib.util

    import uvicorn

    from api.settings import ApiSettings

    # uvloop and httptools (both dependencies) where they exist; uvicorn's pure-Python
    # fallbacks elsewhere (uvloop has no Windows build).
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    uvicorn.run("api.main:create_app", factory=True, host=host or settings.api_host,
                port=port or settings.api_port, log_level=settings.log_level.lower(),
                access_log=False, timeout_graceful_shutdown=5, loop=loop, http=http,
                workers=workers or ApiSettings().api_workers)


@cli.group()
def topics() -> None:
    """Manage the Kafka topics."""


@topics.command("create")
@click.pass_obj
def topics_create(settings: Settings) -> None:
    """Create every topic with CRM_PARTITIONS partitions; refuse mismatching ones."""
    from stream.topics import TopicMismatchError, create_topics

    try:
        outcomes = create_topics(settings)
    except TopicMismatchError as error:
        raise click.ClickException(str(error)) from error
    for outcome in outcomes:
        state = "created" if outcome.created else "exists"
        click.echo(f"{outcome.topic:20} {outcome.partitions:4} partitions  {state}")


@cli.group()
def schemas() -> None:
    """Event and record schemas."""


@schemas.command("export")
@click.argument("directory", type=click.Path(path_type=Path))
def schemas_export(directory: Path) -> None:
    """Write one JSON Schema file per record into DIRECTORY."""
    from schemas.export import export_json_schemas

    for path in export_json_schemas(directory):
        click.echo(str(path))


@cli.command()
@click.option("--customers", default=1000, show_default=True)
@click.option("--seed", default=42, show_default=True)
@click.option("--rate", type=float, default=None, help="Events/s; as fast as possible if unset.")
@click.option("--events", "max_events", type=int, default=None, help="Stop after N events.")
@click.option("--duration", type=float, default=None, help="Stop after N seconds.")
@click.option("--truth", type=click.Path(path_type=Path), default=None,
              help="Write the hidden ground truth (JSON lines) here.")
@click.option("--events-out", type=click.Path(path_type=Path), default=None,
              help="Also write the events (JSON lines) here.")
@click.option("--history-days", type=float, default=0.0, show_default=True,
              help="End the simulated period now and send its first N days as fast as "
              "possible (the models learn a history), the rest at --rate.")
@click.pass_obj
def simulate(settings: Settings, customers: int, seed: int, rate: float | None,
             max_events: int | None, duration: float | None, truth: Path | None,
             events_out: Path | None, history_days: float) -> None:
    """Simulate a web shop: sessions, purchases and tickets, produced to Kafka."""
    from simulator import run_simulation

    report = run_simulation(settings=settings, customers=customers, seed=seed, rate=rate,
                            max_events=max_events, duration_s=duration, truth_path=truth,
                            events_path=events_out, progress=True,
                            history_days=history_days)
    click.echo(str(report))


@cli.group()
def keys() -> None:
    """Manage API keys."""


@keys.command("create")
@click.option("--tenant", required=True)
@click.option("--scopes", default="read", show_default=True,
              help="Comma-separated: read, ingest, admin.")
@click.option("--name", default="", help="What the key is for.")
@click.option("--rate-limit", type=int, default=None,
              help="Requests per window (default CRM_API_RATE_LIMIT; 0 = unlimited).")
@click.pass_obj
def keys_create(settings: Settings, tenant: str, scopes: str, name: str,
                rate_limit: int | None) -> None:
    """Create an API key and print it (shown only this once)."""
    from api.keys import create_key_sync

    try:
        key = create_key_sync(settings, tenant=tenant, scopes=scopes,
                              name=name or f"{tenant} key", rate_limit=rate_limit)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    click.echo(key)


@cli.group()
def alerts() -> None:
    """Alerts for marketing automation."""


@alerts.command("tail")
@click.option("--kind", type=click.Choice([kind.value for kind in AlertKind]), default=None,
              help="Only this alert kind.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest alert, not the next.")
@click.option("--group", "group_id", default=None,
              help="Commit and resume in this consumer group.")
@click.option("--max", "max_messages", type=int, default=None, help="Stop after N alerts.")
@click.option("--idle-timeout", "idle_timeout_s", type=float, default=None,
              help="Stop after this many seconds without a new alert (e.g. to dump the topic).")
@click.pass_obj
def alerts_tail(settings: Settings, kind: str | None, from_beginning: bool,
                group_id: str | None, max_messages: int | None,
                idle_timeout_s: float | None) -> None:
    """Print alerts from crm.alerts as JSON lines (a consumer for marketing tools)."""
    from stream.alerts_consumer import tail_alerts

    tail_alerts(settings, kind, from_beginning, max_messages=max_messages, group_id=group_id,
                idle_timeout_s=idle_timeout_s)


@cli.group()
def bench() -> None:
    """Benchmarks (run from a source checkout; reports under load_tests/results/)."""


@bench.command("quality", context_settings={"ignore_unknown_options": True})
@click.option("--quick", is_flag=True, help="Small shops and a CDNOW sample (a few minutes).")
@click.option("--output-dir", type=click.Path(path_type=Path), default=None,
              help="Where QUALITY.md and its plots go (default load_tests/results).")
def bench_quality(quick: bool, output_dir: Path | None) -> None:
    """Served model quality on shop families with planted truth, our simulated shop and the
    real CDNOW history, through the pipeline; fails when served and self-reported disagree.

    The benchmarks are not part of the product: this runs ``python -m
    load_tests.bench_quality`` from a source checkout (``make bench-quality``)."""
    argv = ["--quick"] if quick else []
    if output_dir is not None:
        argv += ["--output-dir", str(output_dir)]
    _run_benchmark("bench_quality", argv)


@bench.command("segments", context_settings={"ignore_unknown_options": True,
                                             "allow_extra_args": True})
@click.pass_context
def bench_segments(ctx: click.Context) -> None:
    """How many segments each quality shop is served, and how well they match its planted
    groups, over replays that differ only in where the batches fall; report in
    load_tests/results/SEGMENTS.md.

    Runs ``python -m load_tests.bench_segments`` from a source checkout (options such as
    --shop-seed are passed on: see its --help)."""
    _run_benchmark("bench_segments", list(ctx.args))


@bench.command("throughput", context_settings={"ignore_unknown_options": True,
                                               "allow_extra_args": True})
@click.option("--broker", type=click.Choice(["embedded", "apache"]), default="embedded",
              show_default=True, help="Which Kafka to start on this machine.")
@click.option("--profile", is_flag=True, help="Drain again with py-spy on the worker.")
@click.pass_context
def bench_throughput(ctx: click.Context, broker: str, profile: bool) -> None:
    """A pre-produced backlog of simulated shop events drained by one `crm worker` with every
    model on, against the consume-only ceiling of the same broker; CPU of worker, broker and
    redis-server; the in-process stages; report in load_tests/results/THROUGHPUT.md.

    Runs ``python -m load_tests.bench_throughput`` from a source checkout (further options
    are passed on: see its --help)."""
    _run_benchmark("bench_throughput",
                   ["--broker", broker, *(["--profile"] if profile else []), *ctx.args])


def _run_benchmark(module: str, argv: list[str]) -> None:
    """``python -m load_tests.MODULE ARGV``: the benchmarks are not part of the product, so
    they run from a source checkout."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("load_tests") is None:
        raise click.ClickException("the benchmarks run from a source checkout of crm-stream "
                                   f"(python -m load_tests.{module})")
    sys.exit(subprocess.call([sys.executable, "-m", f"load_tests.{module}", *argv]))


def main() -> None:
    cli(prog_name="crm")
