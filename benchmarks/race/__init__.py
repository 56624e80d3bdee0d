"""The freshness race harness (issue 15): ``python benchmarks/race.py``.

A writer process changes rows of every relation kind while reader processes call
``@cached`` functions that read through those relations; a checker then counts the stale
reads. The pieces, one module each:

``harness``    the command: a database per run, servers per scenario, processes, the table
``scenarios``  what each scenario writes, reads, and which fault it injects
``worker``     the writer and reader processes (``python -m benchmarks.race.worker``)
``writes``     the write operations (every write kind Django has)
``readers``    the cached reader functions and their ``depends_on``
``check``      the stale-read checker and its own self-test
``faults``     freezing, killing and flooding the counters' memcached
``copier``     the delayed copy of the database that plays a replica
``servers``    memcached and Redis on free loopback ports
``settings``   the Django settings, read from the JSON file each process is given
``app``        the models (app label ``race``)
"""
