from twisted.application.service import ServiceMaker

mmo_lobby = ServiceMaker("mmo-lobby", "mmo.lobby.tap", "Characters and rooms.", "mmo-lobby")
