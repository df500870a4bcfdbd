"""``python -m openai_s2s.localserver --help``."""
from .cli import main

raise SystemExit(main())
