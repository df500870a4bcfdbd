"""``python3 -m openai_s2s install|doctor``: operator tooling; nothing here runs inside the switch."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from .doctor import doctor
from .install import DEFAULT_TARGET, plan_install
from .paths import LAYOUT_ALIASES, LAYOUTS, PathError, resolve_paths


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m openai_s2s", description="Install openai_s2s into a FreeSWITCH, or check an installation.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("install", "doctor"):
        p = sub.add_parser(name)
        p.add_argument("--layout", choices=sorted(LAYOUTS) + sorted(LAYOUT_ALIASES),
                       help="where to look for paths neither given nor read from a running switch: package "
                            "(/etc/freeswitch, /usr/share/freeswitch; debian is the same) or source "
                            "(/usr/local/freeswitch); default: the one found on disk")
        p.add_argument("--conf-dir", dest="conf_dir")
        p.add_argument("--scripts-dir", dest="script_dir")
        p.add_argument("--mod-dir", dest="mod_dir")
        p.add_argument("--fs-cli", dest="fs_cli")
        p.add_argument("--cli-arg", dest="cli_args", action="append", default=[],
                       help="extra fs_cli argument (repeat), e.g. --cli-arg=-P --cli-arg=8022")
        p.add_argument("--python", default="/usr/bin/python3", help="the Python mod_python3 embeds")
        p.add_argument("--target", default=DEFAULT_TARGET,
                       help=f"directory to pip-install the package into (default {DEFAULT_TARGET}; "
                            "'none' installs into the switch's Python itself)")
        p.add_argument("--no-switch", action="store_true", help="do not ask a running switch for its paths")
        if name == "install":
            p.add_argument("--no-pip", action="store_true", help="place files only; do not run pip")
            p.add_argument("--dialplan", action="store_true", help="also place the sample agent extension")
            p.add_argument("--dry-run", action="store_true", help="print what would be done")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        paths = resolve_paths(args)
        steps = plan_install(paths, pip=not args.no_pip, dialplan=args.dialplan) if args.command == "install" else []
    except PathError as exc:
        print(f"-ERR {exc}", file=sys.stderr)
        return 2
    if args.command == "install":
        for line in paths.provenance():
            print(line)
        for step in steps:
            print(("would " if args.dry_run else "") + step.describe)
            if not args.dry_run:
                step.apply()
        if not args.dry_run:
            print("done; restart FreeSWITCH (mod_python3 cannot be unloaded or reloaded), "
                  "then: python3 -m openai_s2s doctor")
        return 0
    failed = False
    for line in paths.provenance():
        print(f"[info] {line}")
    for status, what, hint in doctor(paths, args.cli_args):
        failed |= status == "FAIL"
        print(f"[{status:^4}] {what}" + (f"\n       -> {hint}" if hint and status != "ok" else ""))
    return 1 if failed else 0
