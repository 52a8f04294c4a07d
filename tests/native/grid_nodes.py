"""Grid nodes as Modbus TCP servers on loopback, in their own process (not under the fault
library): prints {"node-01": port, ...} as one JSON line, serves until stdin closes.

Usage: python grid_nodes.py NODES SEED FREQUENCY_HZ
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from load._grid_model import GridNodeServers, GridProfile


async def main(nodes: int, seed: int, hz: float) -> None:
    """Serve until stdin reaches EOF."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    servers = GridNodeServers(GridProfile(nodes=nodes, seed=seed, nominal_hz=hz))
    await servers.start()
    print(json.dumps(servers.ports), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await servers.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
