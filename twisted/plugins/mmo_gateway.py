from twisted.application.service import ServiceMaker

mmo_gateway = ServiceMaker("mmo-gateway", "mmo.gateway.tap", "Player sessions.", "mmo-gateway")
