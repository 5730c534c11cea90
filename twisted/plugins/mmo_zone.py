from twisted.application.service import ServiceMaker

mmo_zone = ServiceMaker("mmo-zone", "mmo.zone.tap", "World zones.", "mmo-zone")
