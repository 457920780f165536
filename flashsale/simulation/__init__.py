"""An end-to-end drop simulation: many shoppers over real HTTP and websockets against a running server.

``manage.py simulate_drop`` is its command line. The pieces:

- ``config``: what to simulate (``SimulationConfig``) and who each shopper is (``ShopperPlan``);
- ``setup``: done in the server's Django environment before the first shopper arrives: the
  drop is scheduled, the shoppers are created in bulk and, unless they sign in with their
  password, given a signed-in session;
- ``shopper``: one shopper's journey, every step over HTTP or the websocket to ``--url``;
- ``beat``: the monitor that samples the queue and stock every quarter second, and the local
  stand-in for Celery beat (``--tick-locally``);
- ``report``: the figures at the end, read from the database and Redis, as JSON or a table;
- ``runner``: ties them together (``simulation_run``).
"""

from .config import SimulationConfig
from .report import report_format
from .runner import simulation_run

__all__ = ["SimulationConfig", "report_format", "simulation_run"]
