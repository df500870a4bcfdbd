"""``python3 -m openai_s2s install|doctor``: operator tooling (never imported by the switch)."""
import sys

from .tools.cli import main

sys.exit(main())
