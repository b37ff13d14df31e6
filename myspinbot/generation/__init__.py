"""The generate job: script -> speech -> portrait -> talking head -> MP4."""
