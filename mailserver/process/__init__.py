"""One process model: the daemon as one process, or a supervisor and N workers.

Imports point one way::

    main -> single | supervisor -> worker -> lifecycle -> app
                      supervisor -> sockets, demo, counters.service

``main.serve`` is the entry (``mailserver run``); ``lifecycle`` is the only
place that chooses the event loop (uvloop), installs the stop signals and
speaks sd_notify.
"""
