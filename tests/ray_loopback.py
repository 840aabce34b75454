"""``ray start`` with every node address kept on 127.0.0.1 (the test cluster is loopback only).

Ray rewrites a loopback ``--node-ip-address`` or ``--address`` to the machine's network
address (``resolve_ip_for_localhost``) when multi-node clusters are enabled; a node of this
test cluster must never advertise or dial anything but 127.0.0.1.

    python tests/ray_loopback.py start --head --port=6390 ...
"""

import sys

import ray._private.services as services

services.resolve_ip_for_localhost = lambda host: host
services.get_node_ip_address = lambda address=None: "127.0.0.1"

from ray.scripts.scripts import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
