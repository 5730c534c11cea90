from twisted.application.service import ServiceMaker

mmo_ladder = ServiceMaker("mmo-ladder", "mmo.ladder.tap", "Ranked play.", "mmo-ladder")
