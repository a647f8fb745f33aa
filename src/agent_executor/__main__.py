"""`python -m agent_executor` / the `agent-executor` console script."""

import sys

from agent_executor.bootstrap import main

if __name__ == "__main__":
    sys.exit(main())
