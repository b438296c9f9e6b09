"""``python -m stalwart.ha package.module:service``: one HA replica (a child of run_ha)."""

from stalwart.ha.replicas import main

main()
