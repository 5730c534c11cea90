"""
The seamless world: one map split into regions, each simulated by one zone
(L{simulation}), with areas of interest (L{aoi}), ghosts across borders and
handoff of entities between zones (L{handoff}).
"""
