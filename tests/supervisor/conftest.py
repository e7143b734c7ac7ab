"""The supervisor tests run real child processes and need no database.

The ``anyio_backend`` fixture (asyncio and trio) comes from tests/conftest.py. This folder
goes on ``sys.path`` so that ``supervisor_jobs`` is importable here, and therefore in the
children, which get the supervisor's ``sys.path``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
