from twisted.application.service import ServiceMaker

mmo_chat = ServiceMaker("mmo-chat", "mmo.chat.tap", "Chat channels.", "mmo-chat")
