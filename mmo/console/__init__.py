"""
The operators' console: a C{twisted.web} site served by the manager over
HTTPS, and its live world map (L{mmo.console.map}).
"""
