"""What the Realtime service decides, not the module: the model to ask for when none is named."""
from __future__ import annotations

# The current GA model. gpt-realtime, gpt-realtime-mini and gpt-audio-mini (and their dated
# snapshots) are deprecated, to be shut down on 2027-01-20.
DEFAULT_MODEL = "gpt-realtime-2.1"
