"""Day-2 commands for a deployed stack: ``python -m ops <command> --stack <name>``.

Every command reads ``Pulumi.<stack>.yaml`` (through the program's own config parser, so it agrees with what
``pulumi up`` deployed), and runs ``kubectl --context <cluster.context> -n <cluster.namespace> exec`` into the
database members: ``patronictl`` in the ``timescaledb`` container, ``pgbackrest`` in the ``backup-agent``
container, ``psql`` over the member's socket. ``--dry-run`` prints the commands instead of running them.
"""
