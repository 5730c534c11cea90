from twisted.application.service import ServiceMaker

mmo_manager = ServiceMaker("mmo-manager", "mmo.manager.tap", "Supervise processes.", "mmo-manager")
