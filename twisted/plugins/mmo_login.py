from twisted.application.service import ServiceMaker

mmo_login = ServiceMaker("mmo-login", "mmo.login.tap", "Accounts and logins.", "mmo-login")
