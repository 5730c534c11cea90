"""
C{mmo-bot}: many scripted players in one process, for load tests.

Each bot logs in, enters the world with the Python SDK (L{mmo.client}) and
runs a scenario (C{idle}, C{chat}, C{wander}, C{border-walk},
C{login-storm}), or plays one in the lobby (C{ranked}, C{trader}); the run
ends with a report of latencies, errors, disconnects, handoffs, world
checks and what the lobby scenarios counted.  C{docs/bot.md} documents the
command, the scenario files and the report.

The parts:

  - L{mmo.bot.stats}: latency and error counting, the report.
  - L{mmo.bot.scenario}: scenarios and their files.
  - L{mmo.bot.geometry}: the world's borders, lanes and paths (pure).
  - L{mmo.bot.views}: each bot's view and the checks on it.
  - L{mmo.bot.play}: a bot's play of a lobby scenario, L{mmo.bot.ranked}
    (ranked duels) and L{mmo.bot.trader} (shops and trades).
  - L{mmo.bot.swarm}: the bots themselves and the run.
  - L{mmo.bot.cli}: the command line.
"""
