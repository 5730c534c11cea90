"""
Chat: channels (the realm's world, lobby rooms, parties), whispers, history,
moderation, ignore lists and flood limits, delivered through the bus to
whichever gateway holds each player.

  - L{mmo.chat.service}: L{ChatService<mmo.chat.service.ChatService>}, the
    domain object the gateways route C{chat.*} messages to;
  - L{mmo.chat.tap}: the C{mmo-chat} plugin.

The messages, pushes and rules are in C{docs/chat.md}.
"""
