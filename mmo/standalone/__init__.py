"""
The standalone server, C{twistd -n mmo --config FILE}: login, a gateway, the
lobby, chat and every zone of the world in one process, on SQLite and the
in-process bus (L{mmo.standalone.tap}).
"""
