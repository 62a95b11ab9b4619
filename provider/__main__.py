"""Entry point of the component provider: serves TimescaleDB, Autoscaler, Monitoring, Workload and Pooler.

The plugin directory sits in the repository, one level below the component package; the package's internal
imports are relative, so it is imported here from the checkout under its repository name.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components.provider import serve  # noqa: E402  (after the path is set)

if __name__ == "__main__":
    serve()
