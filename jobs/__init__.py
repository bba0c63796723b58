"""Scheduled jobs: the APScheduler worker that runs the pipeline steps on the schedule from the settings."""
