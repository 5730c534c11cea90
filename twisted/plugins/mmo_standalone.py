from twisted.application.service import ServiceMaker

mmo = ServiceMaker("mmo", "mmo.standalone.tap", "Every mmo service in one process.", "mmo")
