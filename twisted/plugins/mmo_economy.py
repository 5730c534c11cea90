from twisted.application.service import ServiceMaker

mmo_economy = ServiceMaker("mmo-economy", "mmo.economy.tap", "The economy.", "mmo-economy")
