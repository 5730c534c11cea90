"""
The lobby: what a player sees before and between entering the world.

  - characters, kept in the store and owned by an account
    (C{character.*});
  - rooms (parties, groups waiting for a game), kept in the memory of the
    lobby process that made them (C{room.*});
  - the step into the world (C{world.*}), which the zones take over.

The domain is L{mmo.lobby.service.LobbyService}; C{docs/lobby.md} is its
contract with clients.
"""
