"""
Scheduled jobs for the whole deployment: cron, interval and one-shot
schedules (L{mmo.schedules}), the jobs and their runs
(L{mmo.jobs.job}), and the L{mmo.jobs.scheduler.Scheduler} that every
game-service process and the standalone server run, each run of a job
happening once across them under a lease on the bus with a fencing token.

See C{docs/jobs.md}.
"""
