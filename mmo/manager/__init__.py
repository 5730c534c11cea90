"""
C{mmo-manager}: runs and supervises the processes of one machine of a
deployment, and carries out operators' commands (C{mmo-admin}).  See
C{docs/manager.md}.
"""
