"""
The economy: currencies, items, shops and trades over the store's ledger
(see C{docs/economy.md}).

  - L{mmo.economy.metrics}: the money-supply figures of one interval's
    postings and balances, and L{mmo.economy.metrics.SupplyTracker}, which
    keeps them over successive intervals and raises the supply alarm.
  - L{mmo.economy.prices}: the sales found in postings and the chained
    price index over them.

Both are pure: they read plain data (postings, balances) and touch no
store, bus or network.

  - L{mmo.economy.supply}: the scheduled job that computes them every
    C{metrics_interval} over the store's ledger, saves them in the store
    and answers C{mmo-admin economy} (L{mmo.economy.supply.economy_jobs}).
  - L{mmo.economy.daily}: the daily reward, a job handler of the config.

  - L{mmo.economy.economy.Economy}: the config's economy over the store's
    ledger, for game code, split by concern: L{mmo.economy.wallets},
    L{mmo.economy.inventory}, L{mmo.economy.shops},
    L{mmo.economy.rewards} and L{mmo.economy.transfers}, on
    L{mmo.economy.ledger} (the config's rules as legs, floors and
    limits), with L{mmo.economy.holdings} (what a transfer moves, the
    keys of events) and L{mmo.economy.errors}; trades with escrow in
    L{mmo.economy.trades}.
  - L{mmo.economy.service}: the economy service, for clients (C{wallet.*},
    C{inventory.*}, C{shop.*}, C{trade.*}), with the store's requests
    (L{mmo.economy.ledger_requests}), the trades' (L{mmo.economy.trade_requests}),
    what clients see (L{mmo.economy.views}) and its process
    (L{mmo.economy.tap}).
"""
