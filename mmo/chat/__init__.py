"""
Chat: channels (the realm's world, lobby rooms, parties), whispers, history,
moderation, ignore lists and flood limits, delivered through the bus to
whichever gateway holds each player.

  - L{mmo.chat.service}: L{ChatService<mmo.chat.service.ChatService>}, the
    domain object the gateways route C{chat.*} messages to, and the lobby's
    room events;
  - the parts it is made of, one per concern: L{mmo.chat.membership} (session
    and room events: the channels a session is in without asking),
    L{mmo.chat.channel_requests} (the channels' requests),
    L{mmo.chat.player_requests} (whispers, C{chat.who}, ignore lists),
    L{mmo.chat.moderation_requests} (mutes);
  - the objects that hold its state: L{mmo.game.presence} (who is online,
    shared with the economy),
    L{mmo.chat.channels} (channels, members, history), L{mmo.chat.ignores}
    (ignore lists), L{mmo.chat.moderation} (moderators and mutes),
    L{mmo.chat.flood} (the flood limit), L{mmo.chat.logs} (the store logs
    behind history and ignore lists);
  - L{mmo.chat.checks}: the checks of request fields;
  - L{mmo.chat.tap}: the C{mmo-chat} plugin.

The messages, pushes and rules are in C{docs/chat.md}.
"""
