"""tsreconcile: makes a running Patroni + TimescaleDB cluster match its declaration, then reports.

Runs in the cluster as a Job on the database image (Python 3.8+ standard library plus the PostgreSQL
driver Patroni itself uses: psycopg 3 or psycopg2). Modules: ``desired`` (the declaration, JSON),
``sql`` (role passwords as SCRAM verifiers, extension updates), ``pgvalues`` (comparing parameter
values the way PostgreSQL reads them), ``patroni`` (DCS parameters and safe restarts through Patroni's
REST API), ``report`` (what was done), ``run`` (the order of it all) and ``__main__`` (the entry point).
"""
