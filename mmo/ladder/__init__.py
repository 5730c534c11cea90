"""
The ladder: ranked play.  Ratings, the board and seasons (L{mmo.ladder.ladder});
the ranked queue (L{mmo.ladder.queue}), the service and its process
(L{mmo.ladder.service}, L{mmo.ladder.tap}) and the reporting of results by
game code (L{mmo.ladder.report}).
"""
