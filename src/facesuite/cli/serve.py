"""`facesuite serve` (API + dashboard), `facesuite report` and `facesuite demo`."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path

from facesuite.errors import InputError


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from facesuite.config import data_root
    from facesuite.integrity import verify_installation
    from facesuite.serve import create_app
    from facesuite.serve.security import API_KEY_ENV, LOOPBACK_HOSTS

    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    loopback = _is_loopback(args.host)
    if not loopback:
        # Exposing the API is a deliberate choice; without a key anyone who reaches it can enroll.
        who = "the read-only routes" if api_key else f"every route (set {API_KEY_ENV} to protect the gallery)"
        print(f"facesuite: warning: listening on {args.host}: anyone who can reach it can use {who}", file=sys.stderr)
    if args.max_upload_mb <= 0:
        raise InputError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    for root in args.eval_root or ():
        if not Path(root).is_dir():
            raise InputError("no such folder for --eval-root", root)
    eval_roots = [Path(root) for root in args.eval_root] if args.eval_root else [data_root()]
    # The models load after the server starts; a changed model file stops it here instead, rather
    # than leaving a server that analyses without gender or routes.
    verify_installation()
    # A model folder of the user's is checked now too: a wrong one is one line and exit 2.
    if args.gender_model:
        from facesuite.classify.gender import GenderConfig

        GenderConfig.load(Path(args.gender_model))
    if args.age_model:
        from facesuite.classify.age import AgeHead

        AgeHead.load(args.age_model)
    if args.gallery and args.gallery.startswith("milvus://"):
        from facesuite.gallery.milvus import parse_uri

        parse_uri(args.gallery)  # a malformed URI is a one-line error now, not on the first request
    app = create_app(gallery=args.gallery, embedder=args.embedder, use_cache=not args.no_cache,
                     max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), api_key=api_key,
                     eval_roots=eval_roots, allowed_hosts=sorted(LOOPBACK_HOSTS | {args.host}) if loopback else None,
                     gender_model=args.gender_model, age_model=args.age_model)
    _check_can_listen(args.host, args.port)
    print(f"dashboard: http://{args.host}:{args.port}/  (API schema: /openapi.json)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _check_can_listen(host: str, port: int) -> None:
    """An :class:`InputError` when ``host:port`` cannot be listened on (the port taken, the address
    not this machine's), before the dashboard's address is printed: uvicorn reports it as a log
    line and exits 3, after the address."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise InputError(f"cannot listen on {host}:{port} ({error.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds it
        try:
            probe.bind(address)
        except OSError as error:
            raise InputError(f"cannot listen on {host}:{port} ({error.strerror})") from None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def cmd_report(args: argparse.Namespace) -> int:
    from facesuite.report.folder import write_folder_report

    out = write_folder_report(Path(args.dir), Path(args.out) if args.out else None)
    print(f"report: {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from facesuite.config import data_root
    from facesuite.demo import run_demo

    from facesuite.text import output_folder

    output_folder(args.out)
    data = Path(args.data) if args.data else data_root()
    gallery = args.gallery or str(Path(args.out) / "gallery")
    from facesuite.cli.summary import print_summary

    result = run_demo(data, Path(args.out), identities=args.identities, gallery_uri=args.gallery)
    print_summary("facesuite demo", result.headline)
    print(f"demo report: {result.report.resolve()}  (open it in a browser)")
    print(f"dashboard:   facesuite serve --gallery {gallery}  then open http://127.0.0.1:8000/")
    return 0


def register(groups: dict) -> None:
    root = groups["root"]
    serve = root.add_parser("serve", help="REST API and web dashboard on this machine",
                            description="Serve the REST API (/analyze, /verify, /gallery/..., /explain, /health) "
                                        "and the dashboard pages from one process.")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--gallery", metavar="URI", help="gallery: a folder, NAME.db (Milvus Lite) or milvus://HOST:PORT/COLLECTION "
                                                      "(default the folder $FACESUITE_HOME/gallery)")
    serve.add_argument("--embedder", default="default", help="embedder backend by registered name")
    serve.add_argument("--max-upload-mb", type=float, default=10.0, help="largest request body accepted (default 10)")
    serve.add_argument("--no-cache", action="store_true", help="do not read or write the detection cache")
    serve.add_argument("--gender-model", metavar="DIR", help="a gender model folder written by `facesuite train gender` "
                                                            "(default: the shipped model)")
    serve.add_argument("--age-model", metavar="DIR", help="an age model folder written by `facesuite train age` "
                                                         "(default: the shipped model)")
    serve.add_argument("--api-key", help="require this key (header X-API-Key) on routes that change the gallery or "
                                         "start evaluations; default $FACESUITE_API_KEY, which keeps it out of `ps`")
    serve.add_argument("--eval-root", action="append", metavar="DIR",
                       help="a folder evaluations may read (repeatable; default $FACESUITE_DATA)")
    serve.set_defaults(handler=cmd_serve)

    report = root.add_parser("report", help="one self-contained HTML page for an evaluation output folder",
                             description="Collect metrics.json and every PNG of DIR (and of its sub-folders holding a "
                                         "metrics.json) into one HTML file with the images embedded.")
    report.add_argument("dir", help="evaluation output folder (holds metrics.json)")
    report.add_argument("--out", help="HTML file to write (default DIR/summary.html)")
    report.set_defaults(handler=cmd_report)

    demo = root.add_parser("demo", help="the whole suite on a sample of FACECOM, in a few minutes",
                           description="Enroll a gallery from FACECOM task_b identities, analyse clean and distorted "
                                       "faces against it, evaluate gender (task_a sample) and routed recognition, and "
                                       "write one report.")
    demo.add_argument("--data", help=f"data root holding facecom/ (default $FACESUITE_DATA or ../shared/data; now {os.environ.get('FACESUITE_DATA', '../shared/data')})")
    demo.add_argument("--out", default="demo-out", help="output folder (default demo-out)")
    demo.add_argument("--identities", type=int, default=40, help="identities to enroll and evaluate (default 40)")
    demo.add_argument("--gallery", metavar="URI", help="gallery to enroll the sample into: a folder, NAME.db (Milvus Lite) or "
                                                    "milvus://HOST:PORT/COLLECTION; the sample's identities are replaced, "
                                                    "others kept (default OUT/gallery, rebuilt each run)")
    demo.set_defaults(handler=cmd_demo)
