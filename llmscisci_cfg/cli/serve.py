"""``llmscisci serve``: an OpenAI-compatible server over a model or a run's final model."""

from __future__ import annotations

import socket

import click

from llmscisci_cfg.cli.common import device_option
from llmscisci_cfg.errors import UserError


def register(group: click.Group) -> None:
    group.add_command(serve)


@click.command()
@click.argument("model_or_run")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default)."
)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--api-key-env",
    metavar="NAME",
    help="Require `Authorization: Bearer KEY`, KEY read from this environment variable.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Most requests generated together (requests arriving within 10 ms share a batch).",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1024),
    default=None,
    show_default="4 MiB",
    help="Largest request body read; a larger one is refused (413).",
)
@device_option("the model runs")
@click.option(
    "--seed",
    type=click.IntRange(0, 2**32 - 1),
    default=42,  # train.seed's default: a recipe naming the same builtin model gets these weights
    show_default=True,
    help="Seed of a builtin: model's random weights, as a recipe's train.seed sets them for "
    "predict, eval and run (ignored for trained and hub models).",
)
@click.option(
    "--compile",
    "compile_mode",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Compiled decode step (static cache, CUDA graphs): ~9x the decode speed of a 1B model "
    "on an H200, after a first request that compiles (~1.5 min). auto: on CUDA with bf16/fp16 "
    "weights.",
)
def serve(
    model_or_run: str,
    host: str,
    port: int,
    api_key_env: str | None,
    batch_size: int,
    max_body_bytes: int | None,
    device: str,
    seed: int,
    compile_mode: str,
) -> None:
    """Serve MODEL_OR_RUN (a run directory, a local model folder, a hub id or builtin:tiny) at
    http://HOST:PORT/v1 for any OpenAI client: GET /v1/models, POST /v1/chat/completions
    (streaming, response_format json_schema). A run is served with its training chat template.

    Requests must be application/json and at most --max-body-bytes; every mistake in one is a
    4xx JSON error that costs no other request its answer; a client that disconnects stops its
    generation. With --api-key-env, every path needs the key. On loopback (the default) only
    loopback Host names are answered, so a web page cannot reach it by DNS rebinding.
    """
    import uvicorn

    from llmscisci_cfg.models.engines import make_engine
    from llmscisci_cfg.models.generate import Sampling
    from llmscisci_cfg.models.genspec import GenSpec
    from llmscisci_cfg.models.load import open_model, pick_device, quiet_bitsandbytes
    from llmscisci_cfg.models.refs import family_template, named_model
    from llmscisci_cfg.models.remote import api_key
    from llmscisci_cfg.serve.app import DEFAULT_MAX_BODY_BYTES, create_app, is_loopback
    from llmscisci_cfg.serve.batcher import Batcher

    key = api_key(api_key_env) if api_key_env else None
    sock = listening_socket(host, port)  # a taken port is found before any model loads
    port = sock.getsockname()[1]
    quiet_bitsandbytes()
    opened = open_model(
        named_model(model_or_run, seed), family_template(model_or_run), pick_device(device)
    )
    what, tokenizer = opened.description, opened.tokenizer
    spec = GenSpec("transformers", Sampling(), batch_size, compile_mode, template=opened.template)
    engine = make_engine(spec, opened, description=f"serve {what}")
    if engine.may_compile:  # a server lives long: compile from the first request on
        engine.compiled = True
    batcher = Batcher(engine, max_batch=batch_size)
    app = create_app(
        batcher,
        tokenizer,
        model_name=model_or_run,
        max_context=opened.context,
        template=opened.template,
        api_key=key,
        max_body_bytes=max_body_bytes or DEFAULT_MAX_BODY_BYTES,
        loopback_only=is_loopback(host),
    )
    click.echo(f"serving {what} as {model_or_run!r} on http://{host}:{port}/v1", err=True)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    try:
        server.run(sockets=[sock])
    finally:
        batcher.close()
        sock.close()


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, or a `UserError` saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)  # a second server on this port fails now, not after loading a model
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock
